"""CLI: ``langfeat identify --algorithm diffmean`` (its output) and ``langfeat report diffmean``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from langfeat.cli.app import err_console, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table


def identify_diffmean(store: Any, **kw: Any) -> None:
    """Compute and store a DiffMean vector set; print its norms per language and layer."""
    from langfeat.diffmean import make_diffmean
    from langfeat.progress import progress_bar

    with progress_bar() as bar:
        name, norms = make_diffmean(store, progress=bar, **kw)
    err_console.print(f"stored DiffMean vector set [bold]{name}[/] ({norms['lang'].n_unique()} languages, layers "
                      f"{', '.join(map(str, sorted(set(norms['layer'].to_list()))))})", highlight=False)
    out_console.print(rich_table(norms, title=f"DiffMean vectors {name}", max_rows=norms.height))


@report_app.command("diffmean")
def report_diffmean(
    name: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Vector set name; omitted: list the stored DiffMean vector sets.")] = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """DiffMean steering vectors: per language and layer the vector's norm, the mean's norm and the tokens averaged."""
    from langfeat import diffmean

    if name is None:
        emit(diffmean.list_sets(store), fmt, output, title="DiffMean vector sets")
        return
    emit(diffmean.norms(store, name), fmt, output, title=f"DiffMean vectors {name}")
