"""CLI commands: train-sae (sparsify TopK SAEs for models that have no published SAE).

Every option also answers to sparsify's own underscore name (``--batch_size``, ``--ctx_len`` …), as the paper's
``train_sae.sh`` passes them; ``--hookpoints layers.0.mlp`` names layers the sparsify way.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Optional

import typer

from langfeat.cli.app import app, err_console, split_values
from langfeat.cli.options import (
    DatasetArg,
    Device,
    Dtype,
    End,
    GgufFile,
    Langs,
    ModelArg,
    Progress,
    Start,
    Template,
    build,
    quiet_progress,
)
from langfeat.errors import UsageError
from langfeat.train import TrainSaeConfig as T


@app.command("train-sae")
def train_sae_command(
    model: ModelArg,
    dataset: DatasetArg,
    out_dir: Annotated[str, typer.Option(
        "--out-dir", "--save-dir", "--save_dir", help="Where to write <hookpoint>/{cfg.json,sae.safetensors}.",
        show_default=False)],
    layers: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--layer", help="MLP module path(s), bracex patterns like model.layers.{0..7}.mlp.")] = None,
    hookpoints: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--hookpoints", help="Layers as sparsify names them (relative to the base model): layers.{0..7}.mlp.")
    ] = None,
    langs: Langs = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets).")] = "train",
    start: Start = 0,
    end: End = None,
    template: Template = None,
    text_column: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--text-column", "--text_column", help="The text column (same as --template '{COLUMN}').")] = None,
    num_latents: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--num-latents", "--num_latents", help="SAE width (latents per layer); default 4096 unless "
                                               "--expansion-factor is given.")] = None,
    expansion_factor: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--expansion-factor", "--expansion_factor", help="SAE width as a multiple of the model width (sparsify's; "
                                                         "64 gives 131072 latents at d = 2048).")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Active latents per token (TopK).")] = T.k,
    lr: Annotated[float, typer.Option(help="Learning rate (set it explicitly for small SAEs).")] = T.lr,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "--batch_size", help="Sequences per training step.")] = T.batch_size,
    ctx_len: Annotated[int, typer.Option("--ctx-len", "--ctx_len", help="Tokens per training sequence.")
                       ] = T.ctx_len,
    seed: Annotated[int, typer.Option("--seed", "--init-seeds", "--init_seeds", help="Initialisation seed.")
                    ] = T.seed,
    dtype: Dtype = "float32",
    device: Device = "auto",
    gguf_file: GgufFile = None,
    progress: Progress = True,
) -> None:
    """Train one sparsify TopK SAE per --layer on the MLP outputs of DATASET's texts (all --lang mixed, in turn).

    The paper used EleutherAI's published SAEs; this is for models without one, e.g. the offline default:
    `langfeat train-sae smollm2 'data/{lang}.txt' --lang en de --layer model.layers.{0..7}.mlp --out-dir saes`
    """
    import contextlib
    import sys

    from langfeat.data import load_texts
    from langfeat.models import base_prefix, load_model
    from langfeat.train import train_saes

    if num_latents is not None and expansion_factor is not None:
        raise UsageError("both --num-latents and --expansion-factor given: pass only one")
    if not layers and not hookpoints:
        raise UsageError("no layers to train: pass --layer 'model.layers.{0..3}.mlp' (or --hookpoints)")
    quiet_progress(progress)
    with contextlib.redirect_stdout(sys.stderr):  # sparsify prints a notice on import
        import sparsify  # noqa: F401
    per_lang = [load_texts(dataset, value, split, start, end, template, text_column)[1]
                for value in split_values(langs) or ["mul"]]  # no --lang: one mixed-language text source
    # Interleave languages so a one-pass, unshuffled training run sees all of them throughout.
    texts = [t for group in itertools.zip_longest(*per_lang) for t in group if t is not None]
    mdl, tokenizer = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
    prefix = base_prefix(mdl)
    paths = list(layers or []) + [f"{prefix}.{h}" if prefix else h for h in hookpoints or []]
    if expansion_factor is not None:
        num_latents = expansion_factor * int(mdl.config.hidden_size)
    config = build(T, locals(), layers=paths, num_latents=num_latents or T.num_latents)
    trained = train_saes(config, mdl, tokenizer, texts)
    for hookpoint, path in trained.paths.items():
        err_console.print(f"{hookpoint}: {path}", highlight=False)
