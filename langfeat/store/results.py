"""Experiment results as named Parquet datasets: ``<store>/results/<table>/name=<name>/part-0.parquet``.

Each result table's file schema is declared in ``db/tables.sql``; its views live in ``queries/``. A result is
written to a temporary file and renamed into place, so readers never see half of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from langfeat.errors import UsageError
from langfeat.store.atomic import building_dir, write_json_atomic
from langfeat.store.layout import Layout, arrow_schemas

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(name: str) -> str:
    """A result or feature-set name must be a safe single path component."""
    if not _NAME.match(name or ""):
        raise UsageError(f"bad name {name!r}: use letters, digits and . _ + - (no spaces or slashes)")
    return name


def to_arrow(df: pl.DataFrame, table: str) -> pa.Table:
    """``df`` cast to the file schema of ``table`` (missing nullable columns become nulls)."""
    schema = arrow_schemas()[table]
    missing = [f.name for f in schema if f.name not in df.columns and not f.nullable]
    if missing:
        raise ValueError(f"{table}: missing columns {missing}")
    arrow = df.to_arrow()
    cols = []
    for field in schema:
        col = arrow.column(field.name) if field.name in arrow.column_names else pa.nulls(len(arrow), field.type)
        cols.append(col.cast(field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def publish(
    target: Path, table: str, filename: str, df: pl.DataFrame, params: dict[str, Any] | None, overwrite: bool,
    what: str,
) -> Path:
    """Write ``df`` (as ``table``'s file schema) and ``params.json`` into folder ``target`` atomically: built in a
    hidden temporary folder, then renamed over any older one. ``what`` names it in the already-exists error."""
    if target.exists() and not overwrite:
        raise UsageError(f"{what} already exists: pick another --name or pass --overwrite")
    with building_dir(target) as tmp:
        pq.write_table(to_arrow(df, table), tmp / filename, compression="zstd")
        if params is not None:
            write_json_atomic(tmp / "params.json", params)
    from langfeat.store.catalog import refresh_catalog

    refresh_catalog(target.parents[1] if table == "feature_sets" else target.parents[2])  # writers keep it current
    return target


def write_result(
    layout: Layout, table: str, name: str, df: pl.DataFrame, params: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write result ``name`` of ``table`` atomically (replacing an older one if ``overwrite``)."""
    check_name(name)
    return publish(layout.result_dir(table, name), table, "part-0.parquet", df, params, overwrite,
                   f"result {name!r} in {table}")
