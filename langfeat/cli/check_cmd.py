"""CLI commands: ``langfeat check`` (the language-specific features that fire on a text)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from langfeat.cli.app import app, handle_errors, out_console
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit

HIGHLIGHT = "bold black on yellow"


@app.command("check")
@handle_errors
def check_command(
    text: list[str] = typer.Option(..., "--text", "-t", help="A text to check; repeat for several."),
    model: str = typer.Option(..., help="Model: hub id, local folder, GGUF file, or 'smollm2'."),
    feature_set: str | None = typer.Option(None, help="Named feature set in the store."),
    lape_result_path: Path | None = typer.Option(None, help="A paper LAPE result .pt file instead of a stored set."),
    classifier_type: str = typer.Option("sae-count", help="How votes become the prediction: sae-count | sae-norm | "
                                                          "sae-min-max."),
    layer: list[str] | None = typer.Option(None, help="Layer pattern(s); default: every layer of the set."),
    sae_model: str | None = typer.Option(None, help="Hub repo of the SAEs (sparsify layout)."),
    local_sae_dir: Path | None = typer.Option(None, help="Local folder holding <hookpoint>/cfg.json SAEs."),
    gguf_file: str | None = typer.Option(None, help="GGUF file name inside MODEL."),
    explanations: str | None = typer.Option(None, help="Name of the imported explanations to show (default: any)."),
    max_length: int | None = typer.Option(None, help="Truncate texts to this many tokens (BOS included)."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """For each text: the predicted language and, per language, the set's features that fired and on which tokens."""
    from langfeat.experiments.check import CheckOptions, check

    result = check(CheckOptions(
        texts=list(text), model=model, feature_set=feature_set,
        lape_result_path=str(lape_result_path) if lape_result_path else None, classifier=classifier_type,
        layers=list(layer or []), sae_model=sae_model, local_sae_dir=str(local_sae_dir) if local_sae_dir else None,
        gguf_file=gguf_file, explanations=explanations, max_length=max_length, dtype=dtype, device=device,
        store=str(store) if store else None,
    ))
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
