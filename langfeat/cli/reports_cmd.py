"""CLI reports: ``langfeat report features|languages|feature`` and ``langfeat sets``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from langfeat.cli.app import app, handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.cli.store_cmd import flat_for

if TYPE_CHECKING:
    import polars as pl


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


@app.command("sets")
@handle_errors
def sets_cmd(store: StoreOption = None, fmt: FormatOption = Format.table, output: OutputOption = None) -> None:
    """List the feature sets: name, algorithm, kind, #features, #languages, created, parameters.

    Example: langfeat sets --format csv
    """
    from langfeat.reports import sets_report

    df = sets_report(store)
    if fmt is Format.table and output is None:
        out_console.print(_sets_table(df, out_console.width))
        return
    emit(df, fmt, output, title="feature sets")


def _sets_table(df: pl.DataFrame, width: int) -> Table:
    """The set list on screen: every column from 132 terminal columns up; narrower, the parameters (a long
    key=value list) and creation times are left to ``--format json``, so no value is cut at 80 (long names fold)."""
    if width >= 132:
        table = rich_table(df, "feature sets")
        table.columns[0].no_wrap = True
        table.columns[-1].overflow = "fold"
        return table
    table = Table(title="feature sets", header_style="bold", pad_edge=False,
                  caption="units: distinct features or neurons; pairs: (language, unit) memberships; created and "
                          "parameters: langfeat sets --format json")
    table.add_column("name", overflow="fold")
    for col in ("algorithm", "kind"):
        table.add_column(col, no_wrap=True)
    for col in ("units", "pairs", "langs"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("layers", no_wrap=True)
    for r in df.iter_rows(named=True):
        table.add_row(r["name"], r["algorithm"] or "", r["kind"] or "", str(r["features"]), str(r["memberships"]),
                      str(r["languages"]), r["layers"] or "")
    return table


@report_app.command("features")
@handle_errors
def report_features(
    name: Annotated[str, typer.Argument(help="Feature set name (see `langfeat sets`).")],
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """A feature set per language × layer: units per layer, total, entropy min / median / max, and a total row.

    Example: langfeat report features lape_all
    """
    from langfeat.reports import features_report

    df = features_report(store, name)
    if fmt is Format.table and output is None:
        table = Table(title=f"feature set {name}: units per language and layer", header_style="bold")
        for col, dtype in df.schema.items():
            table.add_column(col.replace("entropy_", "H "), justify="right" if dtype.is_numeric() else "left")
        for i, row in enumerate(df.iter_rows()):
            cells = [_fmt(v) for v in row]
            table.add_row(*cells, style="bold" if i == df.height - 1 else None, end_section=i == df.height - 2)
        out_console.print(table)
        return
    emit(df, fmt, output, title=f"feature set {name}")


@report_app.command("languages")
@handle_errors
def report_languages(
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Documents and tokens (BOS included) per language and run, with per-language totals in table form.

    Example: langfeat report languages
    """
    from langfeat.reports import language_totals_report, languages_report

    df = languages_report(store)
    if fmt is Format.table and output is None:
        out_console.print(rich_table(df.drop("lang_name"), title="runs per language"))
        out_console.print(rich_table(language_totals_report(store), title="totals per language"))
        return
    emit(df, fmt, output, title="runs per language")


def _contexts_table(ctx: pl.DataFrame, decoded: bool) -> Table:
    table = Table(title="top activations" + ("" if decoded else " (token ids: no tokenizer loaded)"),
                  header_style="bold")
    for col in ("act", "lang", "doc_id", "pos", "context"):
        table.add_column(col, justify="right" if col in ("act", "doc_id", "pos") else "left")
    for row in ctx.iter_rows(named=True):
        text = Text.assemble(
            row["left"].replace("\n", "⏎"), (row["token"].replace("\n", "⏎"), "bold black on yellow"),
            row["right"].replace("\n", "⏎"),
        )
        table.add_row(f"{row['act']:.3g}", row["lang"], str(row["doc_id"]), str(row["pos"]), text)
    return table


@report_app.command("feature")
@handle_errors
def report_feature(
    unit: Annotated[str, typer.Argument(help="LAYER:FEATURE (or LAYER:NEURON with --kind neuron).")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="sae | neuron.")] = "sae",
    run: Annotated[list[str] | None, typer.Option("--run", "-r", help="Only these runs (ids or prefixes).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only runs of this model.")] = None,
    lang: Annotated[str | None, typer.Option("--lang", "-l", help="Only runs of this language.")] = None,
    top: Annotated[int, typer.Option(help="Top-activating contexts to show.")] = 10,
    window: Annotated[int, typer.Option(help="Tokens of context either side.")] = 8,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer folder / id for decoding contexts.")] = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """One SAE feature or neuron: per-language p, coverage and entropy, its feature sets and top contexts.

    With --format csv/json/parquet only the per-language table is written.

    Example: langfeat report feature 12:345 --top 5
    """
    from langfeat.reports import feature_report

    rep = feature_report(store, unit, kind=kind, run=run, model=model, lang=lang, top=top, window=window,
                         tokenizer=tokenizer)
    if fmt is not Format.table or output is not None:
        emit(flat_for(rep.langs, fmt), fmt, output, title=f"{kind} {rep.layer}:{rep.unit}")
        return
    head = Text.assemble(
        (f"{kind} {rep.layer}:{rep.unit}", "bold"),
        f"  entropy {_fmt(rep.entropy) if rep.entropy is not None else '- (never fired)'}",
        f"  over {len(rep.runs)} run(s)",
    )
    parts: list = [rich_table(rep.langs, title="per language (p = tok_count / tokens, coverage = doc_count / docs)")]
    if rep.sets.height:
        parts.append(rich_table(rep.sets, title="feature sets holding it"))
    else:
        parts.append(Text("in no feature set", style="dim"))
    if rep.contexts.height:
        parts.append(_contexts_table(rep.contexts, rep.decoded))
    elif kind == "sae":
        parts.append(Text("no events stored for it in these runs (imported runs have counts only)", style="dim"))
    out_console.print(Panel(Group(*parts), title=head, title_align="left"))

