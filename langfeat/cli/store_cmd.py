"""CLI commands over the store itself: ``sql``, ``runs``, ``views``, ``rm``, ``catalog``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from langfeat.cli.app import app, err_console, handle_errors, out_console
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table

if TYPE_CHECKING:
    import polars as pl


def flat_for(df: pl.DataFrame, fmt: Format) -> pl.DataFrame:
    """CSV cannot hold lists or structs: encode such columns as JSON text (other formats keep them)."""
    import polars as pl

    if fmt is not Format.csv:
        return df
    nested = [name for name, dtype in df.schema.items() if dtype.is_nested()]
    if not nested:
        return df
    return df.with_columns(
        pl.col(name).map_elements(lambda v: _json(v), return_dtype=pl.String, skip_nulls=True) for name in nested
    )


def _json(value: object) -> str:
    import json

    import polars as pl

    return json.dumps(value.to_list() if isinstance(value, pl.Series) else value, default=str, ensure_ascii=False)


@app.command("sql")
@handle_errors
def sql_cmd(
    query: Annotated[str, typer.Argument(help="A DuckDB SQL query over the store's views (see `langfeat views`).")],
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Run a SQL query over the store and print the result.

    Example: langfeat sql "SELECT lang, count(*) FROM docs GROUP BY lang" --format csv
    """
    from langfeat.store import open_store

    with open_store(store) as st:
        df = st.sql(query)
    emit(flat_for(df, fmt), fmt, output)


@app.command("runs")
@handle_errors
def runs_cmd(
    store: StoreOption = None,
    status: Annotated[Optional[str], typer.Option(help="Only runs with this status (running|complete|failed).")  # noqa: UP045
                      ] = None,
    all_columns: Annotated[bool, typer.Option("--all", help="Every manifest column, not the summary.")] = False,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """List the runs of the store (every status), oldest first."""
    import polars as pl

    from langfeat.reports import run_summary
    from langfeat.store import open_store

    with open_store(store) as st:
        df = st.runs(status=status) if all_columns else run_summary(st, status=status)
    title = f"runs in {st.root}"
    if fmt is Format.table and output is None and not all_columns:
        # On screen, paths and long model ids shrink to their last component; csv/json/parquet keep them whole.
        df = df.with_columns(
            pl.col(c).str.replace(r" \(.*\)$", "").str.split("/").list.last().alias(c)
            for c in ("model", "units", "dataset")
        ).drop("split", "created")
        out_console.print(_runs_table(df, title, out_console.width))
        return
    emit(flat_for(df, fmt), fmt, output, title=title)


def _runs_table(df: pl.DataFrame, title: str, width: int) -> Table:
    """The run list on screen: one column per field where the terminal is wide enough, else (under 132
    columns) run id, language, sizes and status in columns and the rest stacked in one wrapped ``source`` cell, so
    no value is cut at 80 columns."""
    if width >= 132:
        table = rich_table(df, title)
        table.columns[0].no_wrap = True  # run ids stay whole (for `langfeat rm`)
        return table
    table = Table(title=title, header_style="bold", pad_edge=False)
    table.add_column("run_id", no_wrap=True)
    table.add_column("lang", no_wrap=True)
    table.add_column("docs", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("source", ratio=1, overflow="fold")
    for r in df.iter_rows(named=True):
        source = " · ".join(str(v) for v in (r["model"], r["units"], f"{r['dataset']}:{r['config']}",
                                              f"rows {r['slice']}", f"layers {r['layers']}") if v not in (None, ""))
        table.add_row(r["run_id"], r["lang"] or "", str(r["docs"] or 0), str(r["tokens"] or 0), r["status"] or "",
                      source)
    return table


@app.command("views")
@handle_errors
def views_cmd(
    store: StoreOption = None,
    columns: Annotated[bool, typer.Option("--columns", "-c", help="One row per column (with its type).")] = False,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """List the views you can query with `langfeat sql`, with their columns."""
    import polars as pl

    from langfeat.store import open_store

    with open_store(store) as st:
        schema = st.schema()
    if not columns:
        schema = (
            schema.group_by("view", maintain_order=True)
            .agg(pl.format("{} {}", "column", "type").str.join(", ").alias("columns"), pl.first("description"))
        )
    emit(schema, fmt, output, title="views")


@app.command("rm")
@handle_errors
def rm_cmd(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes) to remove, see `langfeat runs`.")],
    store: StoreOption = None,
) -> None:
    """Remove runs: their data, staging files and manifests (every id is checked before anything is removed)."""
    from langfeat.store import open_store, remove_runs

    with open_store(store) as st:
        root = st.root
    for run_id in remove_runs(root, run_ids):
        err_console.print(f"removed run {run_id}", highlight=False)


@app.command("catalog")
@handle_errors
def catalog_cmd(store: StoreOption = None) -> None:
    """Rebuild <store>/catalog.duckdb (the views for the duckdb CLI); prints its path."""
    from langfeat.store import build_catalog, open_store

    with open_store(store) as st:
        root = st.root
    path = build_catalog(root)
    typer.echo(str(path))
