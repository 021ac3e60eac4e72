"""CLI commands: ``langfeat check`` (the language-specific features that fire on a text)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from langfeat.cli.app import app, out_console
from langfeat.cli.options import (
    CLASSIFIER_HELP,
    MODEL_HELP,
    Device,
    Dtype,
    FeatureSet,
    GgufFile,
    LapeResultPath,
    LocalSaeDir,
    MaxLength,
    Progress,
    SaeModel,
    build,
    quiet_progress,
)
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit
from langfeat.options import CheckOptions as K

if TYPE_CHECKING:
    import polars as pl

HIGHLIGHT = "bold black on yellow"


@app.command("check")
def check_command(
    texts: Annotated[list[str], typer.Option(
        "--text", "-t", help="Text(s) to check: several after one --text (quote each), or --text repeated.",
        show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP, show_default=False)],
    feature_set: FeatureSet = None,
    lape_result_path: LapeResultPath = None,
    classifier: Annotated[str, typer.Option(
        "--classifier-type", help=CLASSIFIER_HELP + " | sae-probe (score with the weights of a sparse probe: pass "
                                                    "the set `classify --classifier-type sae-probe` wrote).")
    ] = K.classifier,
    layers: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--layer", help="Layer pattern(s), e.g. model.layers.{0..15}.mlp; default: every layer of the set.")
    ] = None,
    sae_model: SaeModel = None,
    local_sae_dir: LocalSaeDir = None,
    gguf_file: GgufFile = None,
    explanations: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Name of the imported explanations to show (default: any).")] = None,
    batch: Annotated[int, typer.Option(
        help="Texts per forward pass (the paper's --batch was tokens per SAE encode call).")] = K.batch,
    max_length: MaxLength = None,
    dtype: Dtype = K.dtype,
    device: Device = K.device,
    progress: Progress = True,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """For each text: the predicted language and, per language, the set's features that fired and on which tokens.

    Example: langfeat check --model smollm2 --feature-set lape_all --local-sae-dir saes --text "Hello there"
    "Guten Tag"
    """
    import polars as pl

    from langfeat.experiments.check import check

    quiet_progress(progress)
    result = check(build(K, locals(), layers=list(layers or []), store=str(store) if store else None))
    if fmt is Format.json:
        payload = json.dumps(result.to_json(), ensure_ascii=False, indent=1) + "\n"
        if output is None:
            sys.stdout.write(payload)
        else:
            output.write_text(payload, encoding="utf-8")
        return
    if fmt is not Format.table:
        flat = result.fired.join(result.predictions.select("doc", "pred"), on="doc").with_columns(
            pl.col("positions").cast(pl.List(pl.String)).list.join(" "),
            pl.col("tokens").list.join("\u241f"),  # ␟ separates token pieces
        )
        emit(flat, fmt, output)
        return
    for doc, body in enumerate(render(result)):
        if output is None:
            out_console.print(body)
        else:
            from rich.console import Console

            with open(output, "a" if doc else "w", encoding="utf-8") as fh:
                Console(file=fh, width=160).print(body)


def render(result) -> list[Panel]:
    """One rich panel per text: scores, then per language with fired features the highlighted text and a table."""
    import polars as pl

    panels = []
    for doc, _text in enumerate(result.texts):
        pred = result.predictions.filter(pl.col("doc") == doc)
        label = pred["pred"][0] if pred.height else "unknown"
        scores = result.scores.filter(pl.col("doc") == doc)
        tokens = result.tokens.filter(pl.col("doc") == doc).sort("pos")
        fired = result.fired.filter(pl.col("doc") == doc)
        parts: list = [Text("scores: " + "  ".join(f"{lang} {score:.4g}" for lang, score in
                                                    scores.select("lang", "score").iter_rows()), style="dim")]
        for lang in scores["lang"].to_list():
            rows = fired.filter(pl.col("lang") == lang)
            if rows.height == 0:
                continue
            positions = {p for ps in rows["positions"].to_list() for p in ps}
            parts.append(Text(f"\n{lang}: {rows.height} features, {len(positions)} tokens", style="bold"))
            parts.append(_highlighted(tokens, positions))
            table = Table(show_edge=False, header_style="bold", pad_edge=False)
            for col, justify in (("layer", "right"), ("feature", "right"), ("fired", "right"), ("tokens", "left"),
                                 ("explanation", "left")):
                table.add_column(col, justify=justify)  # type: ignore[arg-type]
            for r in rows.iter_rows(named=True):
                shown = [repr(t)[1:-1].replace(" ", "␣") for t in dict.fromkeys(r["tokens"])]
                listed = " | ".join(shown[:12]) + (" …" if len(shown) > 12 else "")
                table.add_row(str(r["layer"]), str(r["feature"]), str(r["n_fired"]), Text(listed),
                              Text(r["explanation"] or ""))
            parts.append(table)
        panels.append(Panel(Group(*parts), title=f"text {doc + 1}: predicted [bold]{label}[/]", title_align="left"))
    return panels


def _highlighted(tokens: pl.DataFrame, positions: set[int]) -> Text:
    """The text rebuilt from its token pieces, each character group highlighted if one of its tokens fired."""
    out = Text()
    for _group, part in tokens.group_by("group", maintain_order=True):
        piece = part["token"][0]
        hit = any(p in positions for p in part["pos"].to_list())
        out.append(piece, style=HIGHLIGHT if hit else None)
    return out
