"""Shared output options (like sqlite-utils): every command that returns rows renders them the same way."""

from __future__ import annotations

import enum
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from langfeat.errors import UsageError

if TYPE_CHECKING:
    import polars as pl


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
    """A rich table of ``df`` (first ``max_rows`` rows; floats to 4 significant digits). When the terminal is too
    narrow, headers fold onto more lines instead of being cut, numbers are never cut, text cells wrap at spaces."""
    table = Table(title=title, header_style="bold")
    cells = [["" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
             for row in df.head(max_rows).iter_rows()]
    for i, (name, dtype) in enumerate(df.schema.items()):
        numeric = dtype.is_numeric()
        widest = max((len(row[i]) for row in cells), default=0)
        table.add_column(Text(name, overflow="fold"), justify="right" if numeric else "left",
                         min_width=widest if numeric else None)
    for row in cells:
        table.add_row(*row)
    if df.height > max_rows:
        table.caption = f"{max_rows} of {df.height} rows shown; use --format csv/json/parquet for all"
    return table


def matrix_table(
    matrix: pl.DataFrame, title: str, key: str, cell: Callable[[Any], str] | None = None, zero: str | None = None,
    diagonal: str = "bold", off_diagonal: str | None = None,
) -> Table:
    """A rich table of a language × language matrix: first column ``key`` (the row's language), one column per
    language; the diagonal cell (column = row's key) in style ``diagonal``, other non-zero cells in
    ``off_diagonal``, zero cells off the diagonal shown as ``zero`` (if given)."""
    fmt = cell or (lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    table = Table(title=title, header_style="bold")
    for col in matrix.columns:
        table.add_column(col, justify="left" if col == key else "right")
    for row in matrix.iter_rows(named=True):
        cells = [str(row[key])]
        for col in matrix.columns[1:]:
            v = row[col]
            on_diag = col == row[key]
            text = "" if v is None else (zero if zero is not None and not v and not on_diag else fmt(v))
            style = diagonal if on_diag else (off_diagonal if v else None)
            cells.append(f"[{style}]{text}[/]" if style and text else text)
        table.add_row(*cells)
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
