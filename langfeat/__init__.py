"""langfeat: a storage-centric database of language-specific SAE features and MLP neurons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Store", "__version__", "ensure_store", "open_store", "refresh_catalog"]

if TYPE_CHECKING:
    from langfeat.store import Store, ensure_store, open_store, refresh_catalog


def __getattr__(name: str) -> Any:
    # The store API imports DuckDB and Polars: load it on first use so ``import langfeat.<module>`` stays light.
    if name in ("Store", "ensure_store", "open_store", "refresh_catalog"):
        from langfeat import store

        return getattr(store, name)
    raise AttributeError(f"module 'langfeat' has no attribute {name!r}")
