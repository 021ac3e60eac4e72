"""CLI commands: ``langfeat classify`` (language identification), ``langfeat report classify`` and
``langfeat import-explanations``."""

from __future__ import annotations

import contextlib
import enum
from pathlib import Path

import polars as pl
import typer
from rich.table import Table

from langfeat.cli.app import app, err_console, handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.errors import UsageError
from langfeat.progress import progress_bar


class Show(str, enum.Enum):
    summary = "summary"
    classes = "classes"
    confusion = "confusion"
    predictions = "predictions"


def _split(values: list[str] | None) -> list[str]:
    return [p.strip() for v in values or [] for p in str(v).split(",") if p.strip()]


def _log(message: str) -> None:
    err_console.print(message, highlight=False)


@app.command("classify")
@handle_errors
def classify_command(
    dataset: str = typer.Argument(..., help="Hub dataset (config or label per language) or local file; '{lang}' "
                                            "expands."),
    lang: list[str] = typer.Option(..., "--lang", "-l", help="Evaluated language(s)/config(s); repeat or "
                                                              "comma-separate."),
    split: str = typer.Option("test", help="Dataset split (hub datasets)."),
    start: int = typer.Option(0, help="First row (inclusive)."),
    end: int | None = typer.Option(None, help="Last row (exclusive); default: all rows."),
    text_template: str | None = typer.Option(None, help="Python format template over columns, e.g. '{sentence}'."),
    text_column: str | None = typer.Option(None, help="Text column (shorthand for --text-template '{col}')."),
    classifier_type: str = typer.Option(
        "sae-count", help="sae-count | sae-min-max | sae-norm | neuron-count | fasttext."
    ),
    model: str | None = typer.Option(None, help="Model (hub id, folder, GGUF or 'smollm2'); needed to ingest "
                                                 "texts not in the store yet, and for neuron-count."),
    gguf_file: str | None = typer.Option(None, help="GGUF file name inside MODEL."),
    layer: list[str] | None = typer.Option(None, help="Layer pattern(s) to vote with, e.g. 'model.layers.{8..15}.mlp';"
                                                      " default: every layer of the set."),
    sae_model: str | None = typer.Option(None, help="Hub repo of the SAEs (sparsify layout)."),
    local_sae_dir: Path | None = typer.Option(None, help="Local folder holding <hookpoint>/cfg.json SAEs."),
    feature_set: str | None = typer.Option(None, help="Named feature set in the store."),
    lape_result_path: Path | None = typer.Option(None, help="A paper LAPE result .pt file instead of a stored set."),
    fasttext_model: Path | None = typer.Option(None, help="fastText model (lid.176.bin); default: the packaged "
                                                          "lid.176.ftz."),
    batch: int = typer.Option(16, help="Documents per forward pass."),
    max_length: int | None = typer.Option(None, help="Truncate documents to this many tokens (BOS included)."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    name: str | None = typer.Option(None, help="Result name in the store (default: derived from the options)."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Identify the language of each text by votes of language-specific features (or fastText); store and score."""
    from langfeat.experiments.classify import ClassifyOptions, check_options, classify
    from langfeat.store import open_store

    opts = ClassifyOptions(
        dataset=dataset, langs=_split(lang), classifier=classifier_type, split=split, start=start, end=end,
        template=text_template, text_column=text_column, model=model, gguf_file=gguf_file, layers=list(layer or []),
        sae_model=sae_model, local_sae_dir=str(local_sae_dir) if local_sae_dir else None, feature_set=feature_set,
        lape_result_path=str(lape_result_path) if lape_result_path else None,
        fasttext_model=str(fasttext_model) if fasttext_model else None, batch=batch, max_length=max_length,
        dtype=dtype, device=device, store=str(store) if store else None, name=name,
    )
    check_options(opts)
    progress = None
    if opts.classifier == "neuron-count":  # the only classifier with forward passes of its own
        progress = progress_bar()
    with progress or contextlib.nullcontext():
        result = classify(opts, progress, log=_log)
    _log(f"stored classify result [bold]{result}[/]")
    with open_store(store) as st:
        _report(st, [result], Show.summary, fmt, output)


@report_app.command("classify")
@handle_errors
def report_classify(
    names: list[str] | None = typer.Argument(None, help="Result name(s); several are compared side by side; none: "
                                                        "list the stored classify results."),
    show: Show = typer.Option(Show.summary, help="summary (metrics, per-class, confusion) | classes | confusion | "
                                                 "predictions."),
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
    table = Table(title=f"confusion {name} (rows: true, columns: predicted)", header_style="bold")
    for col in matrix.columns:
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in matrix.iter_rows(named=True):
        cells = [row["label"]]
        for col in matrix.columns[1:]:
            v = row[col]
            text = str(v) if v or col == row["label"] else "·"
            cells.append(f"[bold green]{text}[/]" if col == row["label"] else (f"[red]{text}[/]" if v else text))
        table.add_row(*cells)
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
@handle_errors
def import_explanations_command(
    folder: Path = typer.Argument(..., help="Folder of delphi explanation files layers.N.mlp_latent<id>.txt."),
    name: str = typer.Option("delphi", help="Name of this set of explanations in the store."),
    store: StoreOption = None,
) -> None:
    """Load feature explanations (e.g. delphi's) into the store; `langfeat check` shows them."""
    from langfeat.experiments.check import import_explanations

    n = import_explanations(str(store) if store else None, folder, name)
    _log(f"stored {n} explanations as [bold]{name}[/]")
