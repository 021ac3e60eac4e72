"""CLI commands: ``langfeat classify`` (language identification), ``langfeat report classify`` and
``langfeat import-explanations``."""

from __future__ import annotations

import contextlib
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from langfeat.cli.app import app, err_console, out_console, report_app, split_values
from langfeat.cli.options import (
    CLASSIFIER_HELP,
    DatasetArg,
    Device,
    Dtype,
    End,
    FeatureSet,
    GgufFile,
    Langs,
    LapeResultPath,
    LocalSaeDir,
    MaxLength,
    Name,
    Progress,
    SaeModel,
    Start,
    Template,
    TextColumn,
    build,
    quiet_progress,
)
from langfeat.cli.output import (
    Format,
    FormatOption,
    OutputOption,
    StoreOption,
    emit,
    matrix_table,
    rich_table,
)
from langfeat.errors import UsageError
from langfeat.options import ClassifyOptions as C

if TYPE_CHECKING:
    import polars as pl


class Show(str, enum.Enum):
    summary = "summary"
    classes = "classes"
    confusion = "confusion"
    predictions = "predictions"


def _log(message: str) -> None:
    err_console.print(message, highlight=False)


@app.command("classify")
def classify_command(
    dataset: DatasetArg,
    langs: Langs,
    split: Annotated[str, typer.Option(
        help="Dataset split (hub datasets); the paper's script defaulted to train, its runs used test.")] = C.split,
    start: Start = C.start,
    end: End = None,
    template: Template = None,
    text_column: TextColumn = None,
    classifier: Annotated[str, typer.Option(
        "--classifier-type", help=CLASSIFIER_HELP + " | sae-probe (an L1 logistic-regression probe trained on the "
                                                    "identification runs) | neuron-probe (the same over MLP "
                                                    "neurons; runs ingested with --neuron-docs) | neuron-count | "
                                                    "fasttext; the paper's script defaulted to sae-min-max.")
    ] = C.classifier,
    train_configs: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        help="sae-probe / neuron-probe: identification runs to train on, as DATASET:CONFIG (bracex); default: "
             "every identification run of the model and SAE (neuron-probe: with neuron docs).")] = None,
    max_features_per_language: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="sae-probe / neuron-probe: keep the k features (neurons) per language of largest mean difference "
             "(SAEBench k-sparse probing), e.g. 1, 2, 5; 'all' (default) fits on every one.")] = None,
    probe_value: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="sae-probe: per-example value of a feature: count (ln(1 + firings); the default) | binary (1 if it "
             "fired) | max (largest activation). neuron-probe: count (ln(1 + tokens with output > 0); the "
             "default) | mean (positive outputs summed / tokens) | binary."
    )] = C.probe_value,
    probe_c: Annotated[float, typer.Option(
        help="sae-probe / neuron-probe: inverse L1 regularisation strength C (smaller: fewer units).")] = C.probe_c,
    probe_class_weight: Annotated[str, typer.Option(
        help="sae-probe / neuron-probe: balanced (the default: each language's examples weigh n / (languages · "
             "n_language), so a language with more training text gets no larger prior) | none (every example "
             "weighs 1).")] = C.probe_class_weight,
    probe_max_iter: Annotated[int, typer.Option(
        help="sae-probe / neuron-probe: at most this many epochs of the saga solver (fewer: a faster, less sparse "
             "fit).")] = C.probe_max_iter,
    probe_window: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="sae-probe: train on windows of N tokens of the training documents (every --probe-stride tokens) "
             "instead of whole documents, e.g. 32 when the scored texts are short; default: whole documents.")] = None,
    probe_stride: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="sae-probe: tokens between window starts (default: half of --probe-window).")] = None,
    model: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--model", "-m", help="Model (hub id, folder, GGUF or 'smollm2'); needed to ingest texts not in the store "
                              "yet, and for neuron-count.")] = None,
    gguf_file: GgufFile = None,
    layers: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--layer", help="Layer pattern(s) to vote with, e.g. model.layers.{8..15}.mlp; default: every layer of the "
                        "set.")] = None,
    sae_model: SaeModel = None,
    local_sae_dir: LocalSaeDir = None,
    feature_set: FeatureSet = None,
    lape_result_path: LapeResultPath = None,
    fasttext_model: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="fastText model (lid.176.bin); default: the packaged lid.176.ftz.")] = None,
    batch: Annotated[int, typer.Option(
        help="Documents per forward pass (the paper's --batch was tokens per SAE encode call).")] = C.batch,
    max_length: MaxLength = None,
    dtype: Dtype = C.dtype,
    device: Device = C.device,
    name: Name = None,
    progress: Progress = True,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Identify the language of each text by votes of language-specific features (or fastText); store and score.

    Example: langfeat classify 'wili/{lang}.txt' --lang eng deu tha --feature-set lape_all --classifier-type
    sae-count --model smollm2 --local-sae-dir saes
    """
    from langfeat.experiments.classify import check_options, classify
    from langfeat.progress import progress_bar
    from langfeat.store import open_store

    quiet_progress(progress)
    from langfeat.experiments.probe import parse_k

    opts = build(C, locals(), langs=split_values(langs), layers=list(layers or []),
                 store=str(store) if store else None, train_configs=list(train_configs or []),
                 max_features_per_language=parse_k(max_features_per_language))
    check_options(opts)
    bar = None
    if opts.classifier == "neuron-count":  # the only classifier with forward passes of its own
        bar = progress_bar()
        bar.disable = not progress
    with bar or contextlib.nullcontext():
        result = classify(opts, bar, log=_log)
    _log(f"stored classify result [bold]{result}[/]")
    with open_store(store) as st:
        _report(st, [result], Show.summary, fmt, output)


@report_app.command("classify")
def report_classify(
    names: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        help="Result name(s); several are compared side by side; none: list the stored classify results.")] = None,
    show: Annotated[Show, typer.Option(
        help="summary (metrics, per-class, confusion) | classes | confusion | predictions.")] = Show.summary,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Accuracy, macro and per-class precision/recall/F1 and the confusion matrix of classify results."""
    from langfeat.experiments import classify as lib
    from langfeat.store import open_store

    with open_store(store) as st:
        if not names:
            emit(lib.list_results(st), fmt, output, title="classify results")
            return
        _report(st, list(names), show, fmt, output)


def _report(st, names: list[str], show: Show, fmt: Format, output: Path | None) -> None:
    from langfeat.experiments import classify as lib

    table_out = fmt is Format.table and output is None
    if show is not Show.summary and len(names) > 1 and show is not Show.classes:
        raise UsageError(f"--show {show.value} takes one result name: drop the others")
    if show is Show.predictions:
        emit(lib.predictions(st, names[0]), fmt, output, title=f"predictions — {names[0]}")
        return
    if show is Show.confusion:
        _emit_confusion(lib.confusion(st, names[0]), names[0], fmt, output)
        return
    if len(names) > 1:
        side, per_class = lib.compare(st, names)
        if not table_out:
            emit(per_class if show is Show.classes else side, fmt, output)
            return
        if show is Show.summary:
            out_console.print(_best_table(side, "metric", "classifiers side by side"))
        out_console.print(_best_table(per_class, "class", "per-class F1"))
        return
    name = names[0]
    summary = lib.metrics(st, [name])
    classes = lib.class_metrics(st, name)
    if not table_out:
        emit(classes if show is Show.classes else summary, fmt, output)
        return
    if show is Show.summary:
        out_console.print(rich_table(summary, title=f"classify {name}"))
    out_console.print(rich_table(classes, title="per class"))
    if show is Show.summary:
        _emit_confusion(lib.confusion(st, name), name, fmt, output)


def _emit_confusion(matrix: pl.DataFrame, name: str, fmt: Format, output: Path | None) -> None:
    if fmt is not Format.table or output is not None:
        emit(matrix, fmt, output)
        return
    table = matrix_table(matrix, f"confusion {name} (rows: true, columns: predicted)", key="label", cell=str,
                         zero="·", diagonal="bold green", off_diagonal="red")
    out_console.print(table)


def _best_table(df: pl.DataFrame, key: str, title: str) -> Table:
    """A rich table of ``df`` (one column per result) with each row's best value in bold (lowest n_unknown)."""
    table = Table(title=title, header_style="bold")
    for col in df.columns:
        table.add_column(col, justify="left" if col == key else "right")
    for row in df.iter_rows(named=True):
        values = [row[c] for c in df.columns[1:]]
        present = [v for v in values if v is not None]
        best = (min(present) if row[key] == "n_unknown" else max(present)) if present else None
        cells = [str(row[key])]
        for v in values:
            text = "" if v is None else (f"{v:.0f}" if row[key] in ("n_docs", "n_unknown") else f"{v:.4f}")
            cells.append(f"[bold]{text}[/]" if v is not None and v == best and len(present) > 1 else text)
        table.add_row(*cells)
    return table


@app.command("import-explanations")
def import_explanations_command(
    folder: Annotated[Path, typer.Argument(help="Folder of delphi explanation files layers.N.mlp_latent<id>.txt.",
                                           show_default=False)],
    name: Annotated[str, typer.Option(help="Name of this set of explanations in the store.")] = "delphi",
    store: StoreOption = None,
) -> None:
    """Load feature explanations (e.g. delphi's) into the store; `langfeat check` shows them."""
    from langfeat.experiments.check import import_explanations

    n = import_explanations(str(store) if store else None, folder, name)
    _log(f"stored {n} explanations as [bold]{name}[/]")
