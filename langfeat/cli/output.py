"""Shared output options (like sqlite-utils): every command that returns rows renders them the same way."""

from __future__ import annotations

import enum
import io
import sys
from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.table import Table

from langfeat.errors import UsageError


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


# Options shared by every command that reads a store or prints rows.
StoreOption = Annotated[
    Optional[Path],  # noqa: UP045  (typer needs Optional on Python 3.10)
    typer.Option("--store", "-s", envvar="LANGFEAT_STORE", show_envvar=True,
                 help="Store directory (default: $LANGFEAT_STORE, else ./langfeat-store)."),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OutputOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--output", "-o", help="Write the result to FILE instead of stdout (needed for parquet)."),
]

def rich_table(df: pl.DataFrame, title: str | None = None, max_rows: int = 200) -> Table:
    """A rich table of ``df`` (first ``max_rows`` rows; floats to 4 significant digits)."""
    table = Table(title=title, header_style="bold")
    for name, dtype in df.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in df.head(max_rows).iter_rows():
        table.add_row(*("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    if df.height > max_rows:
        table.caption = f"{max_rows} of {df.height} rows shown; use --format csv/json/parquet for all"
    return table


def emit(
    df: pl.DataFrame, fmt: Format | str = Format.table, output: Path | None = None, title: str | None = None
) -> None:
    """Write ``df`` as a table/csv/json/parquet to ``output`` or stdout (stdout carries only the result)."""
    fmt = Format(fmt)
    if fmt is Format.parquet:
        if output is None:
            raise UsageError("--format parquet needs --output FILE (Parquet is binary)")
        df.write_parquet(output)
        return
    if fmt is Format.table:
        from rich.console import Console

        if output is None:
            Console().print(rich_table(df, title))
        else:
            with open(output, "w", encoding="utf-8") as fh:
                Console(file=fh, width=200).print(rich_table(df, title, max_rows=df.height))
        return
    buf = io.StringIO()
    if fmt is Format.csv:
        df.write_csv(buf)
    else:
        buf.write(df.write_json())
        buf.write("\n")
    if output is None:
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    else:
        Path(output).write_text(buf.getvalue(), encoding="utf-8")
