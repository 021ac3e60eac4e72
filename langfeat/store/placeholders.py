"""Creating a store: its folders and the zero-row placeholder files that give every view's glob a match."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from langfeat.errors import StoreError
from langfeat.store.atomic import write_atomic, write_json_atomic
from langfeat.store.layout import SCHEMA_RUN, Layout, arrow_schemas

__all__ = ["ensure_store", "missing_placeholders"]




def _runs_placeholder(layout: Layout) -> Path:
    """``runs/_schema.json``: gives the ``runs`` view's glob a match in a store without runs (filtered out)."""
    return layout.runs_dir / f"{SCHEMA_RUN}.json"


def _params_placeholder(layout: Layout) -> Path:
    return layout.set_dir(SCHEMA_RUN) / "params.json"


def _placeholder_current(path: Path, schema: pa.Schema) -> bool:
    try:
        return pq.read_schema(path).remove_metadata().equals(schema.remove_metadata())
    except (OSError, pa.ArrowException):
        return False


def _write_placeholder(path: Path, schema: pa.Schema) -> None:
    write_atomic(path, lambda tmp: pq.write_table(schema.empty_table(), tmp))


def missing_placeholders(layout: Layout) -> list[Path]:
    out = [p for p in (_runs_placeholder(layout), _params_placeholder(layout)) if not p.is_file()]
    out += [
        layout.placeholder(table) for table, schema in arrow_schemas().items()
        if not _placeholder_current(layout.placeholder(table), schema)
    ]
    return out


def ensure_store(path: str | os.PathLike | None = None) -> Layout:
    """Create the store folders and a zero-row placeholder file for every table (idempotent, concurrent-safe)."""
    layout = Layout(path)
    try:
        for folder in (layout.root, layout.runs_dir, layout.data_dir, layout.sets_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not _runs_placeholder(layout).is_file():
            write_json_atomic(_runs_placeholder(layout), {"run_id": SCHEMA_RUN})
        if not _params_placeholder(layout).is_file():
            write_json_atomic(_params_placeholder(layout), {})
        for table, schema in arrow_schemas().items():
            target = layout.placeholder(table)
            if not _placeholder_current(target, schema):
                _write_placeholder(target, schema)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store at {layout.root} ({exc.strerror or exc}): pass a writable --store"
        ) from None
    return layout


