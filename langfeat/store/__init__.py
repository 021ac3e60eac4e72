"""The store: files on disk (``layout``), how runs appear (``runs``, ``writer``), results and feature sets
(``results``), the SQL views (``catalog``) and the query connection (``database``).

``open_store(path)`` returns a :class:`Store` whose methods return Polars frames.
"""

from langfeat.store.catalog import build_catalog, catalog_meta, expected_meta, refresh_catalog, view_files
from langfeat.store.database import Store, open_store
from langfeat.store.layout import Layout, store_path
from langfeat.store.placeholders import ensure_store
from langfeat.store.runs import remove_runs, resolve_runs

__all__ = [
    "Layout", "Store", "build_catalog", "catalog_meta", "ensure_store", "expected_meta", "open_store",
    "refresh_catalog", "remove_runs", "resolve_runs", "store_path", "view_files",
]
