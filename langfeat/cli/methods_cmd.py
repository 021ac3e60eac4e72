"""CLI reports: ``langfeat report methods`` (every method side by side) and ``langfeat report compare A B``."""

from __future__ import annotations

from typing import Annotated

import typer

from langfeat.cli.app import handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table


@report_app.command("methods")
@handle_errors
def report_methods(
    section: Annotated[str | None, typer.Option(
        help="Only this section (methods_lid | methods_steering | methods_ppl); needed with --format csv/json/"
             "parquet when several exist.")] = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """The methods side by side: LID accuracy per method vs fastText on the same texts, steering score per method
    and language, ΔPPL diagonal dominance per method (sections without results are left out).

    Example: langfeat report methods --store demo-store
    """
    from langfeat.errors import UsageError
    from langfeat.experiments.methods import SECTIONS, methods, title
    from langfeat.store import open_store

    if section is not None and section not in SECTIONS:
        raise UsageError(f"unknown --section {section!r}: use one of {', '.join(SECTIONS)}")
    with open_store(store) as st:
        frames = methods(st)
    if section is not None:
        frames = {k: v for k, v in frames.items() if k == section}
    if not frames:
        raise UsageError("no method results in the store yet: run `langfeat classify` (and fastText on the same "
                         "texts), generate or ppl first")
    if fmt is Format.table and output is None:
        for name, frame in frames.items():
            out_console.print(rich_table(frame, title=f"{name}: {title(name)}"))
        return
    if len(frames) > 1:
        raise UsageError(f"--format {fmt.value} writes one section: pass --section ({', '.join(frames)})")
    emit(next(iter(frames.values())), fmt, output)


@report_app.command("compare")
@handle_errors
def report_compare(
    a: Annotated[str, typer.Argument(help="First feature set (see `langfeat sets`).", show_default=False)],
    b: Annotated[str, typer.Argument(help="Second feature set.", show_default=False)],
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Two feature sets side by side: per language and layer the units of each, of both, and the Jaccard index
    (an empty layer cell totals the language; the last row totals both sets).

    Example: langfeat report compare demo-sae demo-nu
    """
    from langfeat.experiments.methods import compare_sets
    from langfeat.store import open_store

    with open_store(store) as st:
        frame = compare_sets(st, a, b)
    emit(frame.drop("set_a", "set_b") if fmt is Format.table and output is None else frame, fmt, output,
         title=f"{a} vs {b}: units per language and layer")
