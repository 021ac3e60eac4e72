"""CLI commands over the store itself: ``sql``, ``runs``, ``views``, ``rm``, ``catalog``, ``verify``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from langfeat.cli.app import app, err_console, handle_errors, out_console
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.errors import UsageError

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
        if fmt is Format.table:
            df = st.read_only_sql(query)
        else:  # csv / json / parquet stream batch by batch: memory stays bounded whatever the result size
            import duckdb
            import pyarrow as pa

            try:
                write_stream(st.stream(query), fmt, output)
            except (duckdb.Error, pa.ArrowException) as exc:  # raised while the batches are computed
                raise st.query_error(exc) from None
            return
    emit(flat_for(df, fmt), fmt, output)


def _write_to(output: Path | None, binary: bool, write: Callable[[IO[Any]], None]) -> None:
    """``write(fh)`` to stdout, or to ``output`` through :func:`~langfeat.store.atomic.write_atomic` (a temporary
    file beside it, renamed over it when complete, removed on failure)."""
    from langfeat.store.atomic import write_atomic

    if output is None:
        fh = sys.stdout.buffer if binary else sys.stdout
        write(fh)
        fh.flush()
        return
    output = Path(output)
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: the folder {output.parent} does not exist; create it first")

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            write(fh)

    try:
        write_atomic(output, to_file)
    except OSError as exc:
        raise UsageError(f"cannot write --output {output} ({exc.strerror or exc}): pass a writable path") from None


def write_stream(reader: Any, fmt: Format, output: Path | None) -> None:
    """Write a ``pyarrow.RecordBatchReader`` as csv / json (an array of row objects) / parquet, batch by batch."""
    import polars as pl
    import pyarrow.parquet as pq

    if fmt is Format.parquet:
        if output is None:
            raise UsageError("--format parquet needs --output FILE (Parquet is binary)")

        def parquet(fh: IO[Any]) -> None:
            with pq.ParquetWriter(fh, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)

        _write_to(output, True, parquet)
        return

    def text(fh: IO[Any]) -> None:
        first = True
        if fmt is Format.json:
            fh.write("[")
        for batch in reader:
            if batch.num_rows == 0:
                continue
            df = flat_for(pl.from_arrow(batch), fmt)
            if fmt is Format.csv:
                fh.write(df.write_csv(include_header=first))
            else:
                fh.write(("" if first else ",") + df.write_json()[1:-1])
            first = False
        if fmt is Format.json:
            fh.write("]\n")
        elif first:  # no rows: the header alone
            fh.write(flat_for(pl.from_arrow(reader.schema.empty_table()), fmt).write_csv())

    _write_to(output, False, text)


@app.command("runs")
@handle_errors
def runs_cmd(
    store: StoreOption = None,
    status: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Only runs with this status (running|interrupted|complete|failed).")
                      ] = None,
    all_columns: Annotated[bool, typer.Option("--all", help="Every manifest column, not the summary.")] = False,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """List the runs of the store (every status), oldest first."""
    import polars as pl

    from langfeat.reports import run_summary
    from langfeat.store import open_store
    from langfeat.store.runs import is_live

    statuses = ("running", "interrupted", "complete", "failed", "removing")
    if status is not None and status not in statuses:
        raise UsageError(f"unknown --status {status!r}: use one of {', '.join(statuses)}")
    view_status = "running" if status == "interrupted" else status
    with open_store(store) as st:
        df = st.runs(status=view_status) if all_columns else run_summary(st, status=view_status)
        # A running run whose writer's lock is free was killed: shown as interrupted (rerunning resumes it).
        dead = [r for r, s in zip(df["run_id"], df["status"], strict=True)
                if s == "running" and not is_live(st.layout, r)]
    df = df.with_columns(
        pl.when(pl.col("run_id").is_in(dead)).then(pl.lit("interrupted")).otherwise(pl.col("status")).alias("status")
    )
    if status in ("running", "interrupted"):
        df = df.filter(pl.col("status") == status)
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
    from langfeat.store import open_store, refresh_catalog, remove_runs

    with open_store(store) as st:
        root = st.root
    remove_runs(root, run_ids, log=lambda run_id: err_console.print(f"removed run {run_id}", highlight=False))
    refresh_catalog(root)


@app.command("catalog")
@handle_errors
def catalog_cmd(store: StoreOption = None) -> None:
    """Rebuild <store>/catalog.duckdb (the views for the duckdb CLI); prints its path."""
    from langfeat.store import build_catalog, open_store

    with open_store(store) as st:
        root = st.root
    path = build_catalog(root)
    typer.echo(str(path))


@app.command("verify")
@handle_errors
def verify_cmd(
    store: StoreOption = None,
    repair: Annotated[bool, typer.Option("--repair", help="Remove leftovers of killed processes (never data).")
                      ] = False,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Check every file against its manifest (readable, row counts) and find leftovers; exit 1 on problems."""
    import polars as pl

    from langfeat.store import store_path
    from langfeat.store.verify import verify_store

    problems, removed = verify_store(store_path(store), repair=repair)
    gone = set(removed)
    rows = [p for p in problems if p.path not in gone]
    df = pl.DataFrame(
        {k: [getattr(p, k) for p in rows] for k in ("severity", "path", "problem", "fix")},
        schema={k: pl.String for k in ("severity", "path", "problem", "fix")},
    )
    for path in removed:
        err_console.print(f"removed {path}", highlight=False)
    if df.height:
        emit(df, fmt, output, title=f"problems in {store_path(store)}")
    counts = {s: int((df["severity"] == s).sum()) for s in ("error", "warning", "leftover")}
    err_console.print(
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['leftover']} leftovers"
        + (f" ({len(removed)} removed)" if repair else ""),
        highlight=False,
    )
    if counts["error"] or counts["leftover"]:
        raise typer.Exit(1)
