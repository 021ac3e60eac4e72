"""Every CLI flag declared once, as ``Annotated`` aliases the command modules share.

A command's parameter is named like the option field it fills (``langfeat.options``), so :func:`build` turns
the parsed parameters into the option dataclass without a hand-written mapping. Multi-value options
(``list[...]``) take space-separated, repeated or comma-separated values (``langfeat.cli.app.Command``).
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

T = TypeVar("T")

# Multi-value options whose values are free text: never split at commas.
NO_SPLIT = {"texts", "prompt"}

_STORE = "results live in the store: pass --store DIR (and --name NAME for a result)"
# Flags of the paper's scripts that have no meaning here, with what to use instead (checked by the command
# class for every command that does not declare the flag itself).
PAPER_ONLY_FLAGS = {
    "--out-dir": _STORE + "; `langfeat export-pt` writes a paper .pt file",
    "--out-path": _STORE + "; `langfeat export-pt` writes a paper .pt file",
    "--out-filename": "name the feature set with --name (and write a paper .pt with --export-pt FILE)",
    "--in-dir": "runs are read from the store: pass --store DIR (paper count files: `langfeat import-counts DIR`)",
    "--in-path": "runs are read from the store: pass --store DIR (paper count files: `langfeat import-counts DIR`)",
    "--local-path": "pass the local file as DATASET (a '{lang}' in the path expands per language)",
    "--interpretation-folder": "import the explanations once with `langfeat import-explanations FOLDER`; "
                               "check shows them (--explanations NAME picks one import)",
    "--output-type": "not needed: `langfeat ingest` stores the counts as it encodes",
    "--hidden-dim": "not needed: the SAE or model gives the width",
}

# -- the model, the SAEs and the store ------------------------------------------------------------------------
MODEL_HELP = "Model: hub id, local folder, GGUF folder (with --gguf-file) or 'smollm2'."
ModelArg = Annotated[str, typer.Argument(help=MODEL_HELP, show_default=False)]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help=MODEL_HELP)]  # noqa: UP045
GgufFile = Annotated[Optional[str], typer.Option(help="GGUF file name inside MODEL (a folder).")]  # noqa: UP045
Dtype = Annotated[str, typer.Option(help="Model precision: float32 | bfloat16 | float16.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")]
SaeModel = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Hub repo of sparsify SAEs, e.g. EleutherAI/sae-Llama-3.2-1B-131k.")]
LocalSaeDir = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Local folder holding <hookpoint>/cfg.json SAEs (instead of --sae-model).")]
Layers = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    "--layer", help="MLP module path(s); bracex patterns like model.layers.{0..15}.mlp, quoted or not.")]

# -- texts ----------------------------------------------------------------------------------------------------
DatasetArg = Annotated[str, typer.Argument(
    help="Hub dataset id, or a local file (.txt/.jsonl/.csv/.tsv/.parquet/.gz); '{lang}' expands per language.",
    show_default=False)]
LANG_HELP = "Language(s) / dataset config(s): space- or comma-separated, or repeated."
Langs = Annotated[list[str], typer.Option("--lang", "-l", help=LANG_HELP, show_default=False)]
OptLangs = Annotated[Optional[list[str]], typer.Option("--lang", "-l", help=LANG_HELP)]  # noqa: UP045
Split = Annotated[str, typer.Option(help="Dataset split (hub datasets).")]
Start = Annotated[int, typer.Option(help="First row (inclusive).")]
End = Annotated[Optional[int], typer.Option(help="Last row (exclusive); default: all rows.")]  # noqa: UP045
Template = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--template", "--text-template",
    help="Python format template over the row's columns, e.g. '{premise} {hypothesis}'; default: the paper's for "
         "known datasets, else 'text'.")]
TextColumn = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="The text column (same as --template '{COLUMN}').")]
MaxLength = Annotated[Optional[int], typer.Option(  # noqa: UP045
    help="Truncate texts to this many tokens (BOS included); default: no limit.")]

# -- feature sets ---------------------------------------------------------------------------------------------
FeatureSet = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Named feature set in the store (see `langfeat sets`).")]
LapeResultPath = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="A paper LAPE result .pt file instead of --feature-set.")]
CLASSIFIER_HELP = ("How votes become the prediction: sae-count | sae-min-max | sae-norm (the paper's 'count' and "
                   "'min-max' are accepted)")

# -- the ingestion engine -------------------------------------------------------------------------------------
Engine = Annotated[str, typer.Option(
    help="Where shards are encoded: local (this process) | ray (a Ray Data pipeline of actor workers; needs "
         "langfeat[ray]; docs/ray.md).")]
RayAddress = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Ray cluster to run on: auto (the running one) | ray://HOST:10001 | HOST:6379; default: $RAY_ADDRESS, "
         "else a new local Ray instance. --engine ray only.")]
Workers = Annotated[Optional[int], typer.Option(  # noqa: UP045
    help="Ray actor workers, each holding the model and SAEs; default: one per GPU of the cluster (1 without "
         "GPUs). --engine ray only.")]
GpusPerWorker = Annotated[Optional[float], typer.Option(  # noqa: UP045
    help="GPUs per Ray worker; default: 1 on a cluster with GPUs, else 0. --engine ray only.")]
CpusPerWorker = Annotated[float, typer.Option(
    help="CPUs per Ray worker (its torch threads). --engine ray only.")]

# -- results --------------------------------------------------------------------------------------------------
Name = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Result name in the store; default: derived from the options.")]
Progress = Annotated[bool, typer.Option(
    help="Progress bars on stderr; --no-progress shows none (model and dataset loading included).")]


def build(cls: type[T], params: dict[str, Any], **extra: Any) -> T:
    """The option dataclass ``cls`` from a command's parameters (those named like its fields) and ``extra``."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
              for k, v in params.items() if k in names}
    values.update(extra)
    return cls(**values)


def quiet_progress(progress: bool) -> None:
    """With ``--no-progress``, silence the hub / transformers / datasets loading bars too (they use tqdm)."""
    if progress:
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    import sys

    if "transformers" in sys.modules:  # already imported: the environment variables came too late for it
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].utils.logging.disable_progress_bar()
