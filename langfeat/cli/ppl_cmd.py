"""CLI commands: ``langfeat ppl`` (perplexity under interventions) and ``langfeat report ppl``."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import typer
from rich.table import Table

from langfeat.cli.app import app, err_console, handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.experiments import ppl as ppl_lib
from langfeat.progress import progress_bar


def split_values(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated option values, flattened."""
    return [p.strip() for v in values or [] for p in str(v).split(",") if p.strip()]


@app.command("ppl")
@handle_errors
def ppl_command(
    model: str = typer.Argument(..., help="Model: hub id, local folder, GGUF file, or 'smollm2'."),
    dataset: str = typer.Argument(..., help="Hub dataset (one config per language) or local file; '{lang}' expands."),
    lang: list[str] = typer.Option(
        ..., "--lang", "-l", help="Evaluated language(s)/config(s); repeat or comma-separate."
    ),
    split: str = typer.Option("devtest", help="Dataset split (hub datasets)."),
    start: int = typer.Option(0, help="First row (inclusive)."),
    end: int | None = typer.Option(None, help="Last row (exclusive); default: all rows."),
    text_template: str | None = typer.Option(None, help="Python format template over columns, e.g. '{text}'."),
    text_column: str | None = typer.Option(None, help="Text column (shorthand for --text-template '{col}')."),
    layer: list[str] | None = typer.Option(
        None, help="MLP module pattern(s), e.g. 'model.layers.{0..15}.mlp'; default: the feature set's layers."
    ),
    intervention_type: str = typer.Option("none", help="none | sae-features | sae-ablate | neuron."),
    intervention_lang: list[str] | None = typer.Option(
        None, help="Intervened language(s); repeat, comma-separate, or 'all' (one sweep, baseline once)."
    ),
    multiplier: float | None = typer.Option(
        None, "--multiplier", "-a",
        help="α: steering scale (sae-features, neuron scaling); sae-ablate: latents × (1+α), default −1.",
    ),
    value: float = typer.Option(0.0, help="Value neurons are set to (neuron, fixed)."),
    lape_value_type: str = typer.Option("max", help="Per-feature value v_f for sae-features: max | min | avg."),
    neuron_intervention_method: str = typer.Option("fixed", help="fixed (set to --value) | scaling (+ α·max)."),
    feature_set: str | None = typer.Option(None, help="Named feature set in the store."),
    lape_result_path: Path | None = typer.Option(None, help="A paper LAPE result .pt file instead of a stored set."),
    sae_model: str | None = typer.Option(None, help="Hub repo of the SAEs (sparsify layout)."),
    local_sae_dir: Path | None = typer.Option(None, help="Local SAE folder holding <hookpoint>/cfg.json."),
    batch: int = typer.Option(16, help="Sentences per forward pass."),
    max_length: int | None = typer.Option(None, help="Truncate sentences to this many tokens (BOS included)."),
    baseline: bool = typer.Option(True, help="Also compute and store the unmodified baseline (needed for ΔPPL)."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    gguf_file: str | None = typer.Option(None, help="GGUF file name inside MODEL (a folder)."),
    name: str | None = typer.Option(None, help="Result name in the store (default: derived from the options)."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Per-sentence perplexity with an optional intervention; results stored as a named ppl result."""
    opts = ppl_lib.PplOptions(
        model=model, dataset=dataset, langs=split_values(lang), split=split, start=start, end=end,
        template=text_template, text_column=text_column, layers=layer or None,
        intervention_type=intervention_type, intervention_langs=split_values(intervention_lang),
        multiplier=multiplier, value=value, lape_value_type=lape_value_type,
        neuron_method=neuron_intervention_method, feature_set=feature_set,
        lape_result_path=str(lape_result_path) if lape_result_path else None, sae_model=sae_model,
        local_sae_dir=str(local_sae_dir) if local_sae_dir else None, batch=batch, dtype=dtype, device=device,
        gguf_file=gguf_file, max_length=max_length, store=str(store) if store else None, name=name,
        baseline=baseline,
    )
    with progress_bar() as progress:
        result, rows = ppl_lib.run_ppl(opts, progress)
    err_console.print(f"stored ppl result [bold]{result}[/] ({rows.height} sentence rows)", highlight=False)
    from langfeat.store import open_store

    emit(ppl_lib.result_summary(open_store(store), result), fmt, output, title=f"ppl {result}")


@report_app.command("ppl")
@handle_errors
def report_ppl(
    name: str | None = typer.Argument(None, help="Result name; omitted: list the stored ppl results."),
    metric: str = typer.Option("mean_delta", help="mean_delta | median_ratio | mean_log_ratio."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """The ΔPPL matrix (intervened × evaluated language) of a ppl result, with its diagonal summary."""
    from langfeat.store import open_store

    st = open_store(store)
    if name is None:
        emit(ppl_lib.list_results(st), fmt, output, title="ppl results")
        return
    matrix, summary = ppl_lib.delta_matrix(st, name, metric)
    if fmt is not Format.table or output is not None:
        emit(matrix, fmt, output, title=f"{metric} — {name}")
        return
    out_console.print(matrix_table(matrix, f"{metric} ({name}): rows intervened, columns evaluated"))
    if summary.height:
        out_console.print(rich_table(summary, title="diagonal vs off-diagonal"))


def matrix_table(matrix: pl.DataFrame, title: str) -> Table:
    """A rich table of a language × language matrix (first column ``int_lang``) with the diagonal in bold."""
    table = Table(title=title, header_style="bold")
    for col in matrix.columns:
        table.add_column(col, justify="left" if col == "int_lang" else "right")
    for row in matrix.iter_rows(named=True):
        cells = [row["int_lang"]]
        for col in matrix.columns[1:]:
            v = row[col]
            text = "" if v is None else f"{v:.4g}"
            cells.append(f"[bold]{text}[/]" if col == row["int_lang"] else text)
        table.add_row(*cells)
    return table
