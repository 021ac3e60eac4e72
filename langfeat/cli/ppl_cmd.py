"""CLI commands: ``langfeat ppl`` (perplexity under interventions) and ``langfeat report ppl``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from langfeat.cli.app import app, err_console, out_console, report_app, split_values
from langfeat.cli.options import (
    DatasetArg,
    Device,
    Dtype,
    End,
    FeatureSet,
    GgufFile,
    Langs,
    LapeResultPath,
    Layers,
    LocalSaeDir,
    MaxLength,
    ModelArg,
    Name,
    Progress,
    SaeModel,
    Split,
    Start,
    Template,
    TextColumn,
    build,
    quiet_progress,
)
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, matrix_table, rich_table
from langfeat.options import PplOptions as P

__all__ = ["split_values"]


@app.command("ppl")
def ppl_command(
    model: ModelArg,
    dataset: DatasetArg,
    langs: Langs,
    split: Split = P.split,
    start: Start = P.start,
    end: End = None,
    template: Template = None,
    text_column: TextColumn = None,
    layers: Layers = None,
    intervention_type: Annotated[str, typer.Option(
        help="none | sae-features (the paper's steering) | sae-ablate | neuron | diffmean (α · DiffMean vector, "
             "needs --diffmean).")] = P.intervention_type,
    intervention_langs: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--intervention-lang", help="Intervened language(s), or 'all' (one sweep, baseline once).")] = None,
    multiplier: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--multiplier", "-a", help="α: steering scale (sae-features, neuron scaling); sae-ablate: latents × (1+α). "
                                   "Default −1, the paper's (neuron scaling: --value, as the paper's script).")
    ] = None,
    value: Annotated[float, typer.Option(help="Value neurons are set to (--neuron-intervention-method fixed).")
                     ] = P.value,
    lape_value_type: Annotated[str, typer.Option(
        help="Per-feature v_f for sae-features: max | min | avg (or the paper's final_indice_global_max_active, "
             "…_min_…, …_avg_…).")] = P.lape_value_type,
    neuron_method: Annotated[str, typer.Option(
        "--neuron-intervention-method", help="fixed (set to --value) | scaling (+ α·max).")] = P.neuron_method,
    feature_set: FeatureSet = None,
    lape_result_path: LapeResultPath = None,
    diffmean: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="DiffMean vector set for --intervention-type diffmean (made by `identify --algorithm diffmean`).")
    ] = None,
    sae_model: SaeModel = None,
    local_sae_dir: LocalSaeDir = None,
    batch: Annotated[int, typer.Option(help="Sentences per forward pass (the paper ran one at a time).")] = P.batch,
    max_length: MaxLength = None,
    baseline: Annotated[bool, typer.Option(help="Also compute and store the unmodified baseline (for ΔPPL).")
                        ] = P.baseline,
    dtype: Dtype = P.dtype,
    device: Device = P.device,
    gguf_file: GgufFile = None,
    name: Name = None,
    progress: Progress = True,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Per-sentence perplexity with an optional intervention; results stored as a named ppl result.

    Example: langfeat ppl smollm2 'flores/{lang}.devtest.gz' --lang eng_Latn deu_Latn --intervention-type
    sae-features --intervention-lang all --multiplier -0.2 --feature-set lape_all --local-sae-dir saes
    """
    from langfeat.experiments import ppl as ppl_lib
    from langfeat.progress import progress_bar
    from langfeat.store import open_store

    quiet_progress(progress)
    opts = build(P, locals(), langs=split_values(langs), intervention_langs=split_values(intervention_langs),
                 store=str(store) if store else None).paper_multiplier()
    with progress_bar() as bar:
        bar.disable = not progress
        result, rows = ppl_lib.run_ppl(opts, bar)
    err_console.print(f"stored ppl result [bold]{result}[/] ({rows.height} sentence rows)", highlight=False)
    with open_store(store) as st:
        emit(ppl_lib.result_summary(st, result), fmt, output, title=f"ppl {result}")


@report_app.command("ppl")
def report_ppl(
    name: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Result name; omitted: list the stored ppl results.")] = None,
    metric: Annotated[str, typer.Option(help="mean_delta | median_ratio | mean_log_ratio.")] = "mean_delta",
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """The ΔPPL matrix (intervened × evaluated language) of a ppl result, with its diagonal summary."""
    from langfeat.experiments import ppl as ppl_lib
    from langfeat.store import open_store

    with open_store(store) as st:
        if name is None:
            emit(ppl_lib.list_results(st), fmt, output, title="ppl results")
            return
        matrix, summary = ppl_lib.delta_matrix(st, name, metric)
    if fmt is not Format.table or output is not None:
        emit(matrix, fmt, output, title=f"{metric} — {name}")
        return
    out_console.print(matrix_table(matrix, f"{metric} ({name}): rows intervened, columns evaluated", key="int_lang"))
    if summary.height:
        out_console.print(rich_table(summary, title="diagonal vs off-diagonal"))
