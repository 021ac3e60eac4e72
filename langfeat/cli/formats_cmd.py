"""CLI commands for the paper's file formats: ``import-counts``, ``import-lape`` and ``export-pt``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from langfeat.cli.app import app, err_console, handle_errors
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit

KindOption = Annotated[str, typer.Option("--kind", "-k", help="What the counts are of: sae | neuron.")]


def _with_warnings(func: Callable[[], Any]) -> Any:
    """Run ``func`` and print each warning it raised as one ``warning:`` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = func()
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    return result


@app.command("import-counts")
@handle_errors
def import_counts_cmd(
    directory: Annotated[Path, typer.Argument(help="Folder of count files: DIR/<dataset…>/<lang>.pt.")],
    kind: KindOption = "sae",
    model: Annotated[str, typer.Option("--model", "-m", help="The model the counts were made with.")] = ...,
    sae_model: Annotated[str | None, typer.Option(help="The SAE the counts were made with (--kind sae).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace runs imported before from the same files.")] = False,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Import the paper's count files (sae_features_count.py / activations_count.py output) as runs.

    One run per file (kind 'import', dataset = the folder path, config = the file's stem), with the units that
    fired in feature_counts (or neuron_counts), so `langfeat identify` works on them like on ingested runs.

    Example: langfeat import-counts counts/ --kind sae --model meta-llama/Llama-3.2-1B
    --sae-model EleutherAI/sae-Llama-3.2-1B-131k
    """
    from langfeat.formats.paper import import_counts

    df = import_counts(directory, kind, model, sae_model=sae_model, store=store, overwrite=overwrite)
    err_console.print(f"{(df['status'] == 'imported').sum()} run(s) imported, {(df['status'] == 'exists').sum()} "
                      "already present", highlight=False)
    emit(df, fmt, output, title="imported count files")


@app.command("import-lape")
@handle_errors
def import_lape_cmd(
    file: Annotated[Path, typer.Argument(help="A LAPE result file (lape_*.pt) of the paper or of export-pt.")],
    name: Annotated[str | None, typer.Option(help="Feature set name (default: the file's stem).")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", "-k", help="sae | neuron (default: from the file, else 'neuron' if its name says so, else sae).")
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model recorded on the import runs.")] = "unknown",
    sae_model: Annotated[str | None, typer.Option(help="SAE recorded on the import runs.")] = None,
    runs: Annotated[bool, typer.Option(help="Also store the file's counts as one import run per language.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a set (and runs) of the same name.")] = False,
    store: StoreOption = None,
) -> None:
    """Store a LAPE result file as a named feature set (algorithm 'imported').

    Probabilities are recomputed from the counts inside (the paper's features_info.selected_probs are
    misaligned); a file whose per-language lists are shifted (a language without features) is re-aligned through
    features_info, with a warning.

    Example: langfeat import-lape lape_all.pt --name paper_lape_all
    """
    from langfeat.formats.paper import import_lape

    features, run_rows = _with_warnings(
        lambda: import_lape(file, name=name, store=store, kind=kind, model=model, sae_model=sae_model, runs=runs,
                            overwrite=overwrite)
    )
    set_name = features["name"][0] if features.height else (name or file.stem)
    err_console.print(
        f"feature set {set_name!r}: {features.height} (language, unit) rows over "
        f"{features['lang'].n_unique()} languages; {run_rows.height} import run(s)", highlight=False,
    )


@app.command("export-pt")
@handle_errors
def export_pt_cmd(
    name: Annotated[str, typer.Argument(help="Feature set name (see `langfeat sets`).")],
    file: Annotated[Path, typer.Argument(help="The .pt file to write.")],
    sae_model: Annotated[str | None, typer.Option(help="Hub SAE whose decoder rows become sae_features.")] = None,
    local_sae_dir: Annotated[Path | None, typer.Option(help="Local SAE folder (<dir>/<hookpoint>/).")] = None,
    store: StoreOption = None,
) -> None:
    """Write a feature set in the paper's LAPE result schema (loads with torch.load(weights_only=True)).

    Every language gets an entry in final_indice (empty lists where it has no features) and features_info
    probabilities are aligned with their features.

    Example: langfeat export-pt lape_all lape_all.pt --local-sae-dir saes/
    """
    from langfeat.formats.paper import export_pt

    path = export_pt(store, name, file, sae_model=sae_model, local_sae_dir=local_sae_dir)
    err_console.print(f"wrote {path}", highlight=False)
