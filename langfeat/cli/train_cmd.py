"""CLI commands: train-sae (sparsify TopK SAEs for models that have no published SAE)."""

from __future__ import annotations

import itertools
from typing import Annotated

import typer

from langfeat.cli.app import app, err_console, handle_errors


@app.command("train-sae")
@handle_errors
def train_sae_command(
    model: Annotated[str, typer.Argument(help="Hub id, local folder, GGUF folder (with --gguf-file) or 'smollm2'.")],
    dataset: Annotated[str, typer.Argument(help="Hub dataset id, or a local file path (may contain {lang}).")],
    out_dir: Annotated[str, typer.Option("--out-dir", help="Where to write <hookpoint>/{cfg.json,sae.safetensors}.")],
    layer: Annotated[
        list[str], typer.Option("--layer", help="Module path patterns, e.g. 'model.layers.{0..7}.mlp'.")
    ],
    lang: Annotated[list[str], typer.Option("--lang", help="Dataset config / language; repeat for several.")] = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets).")] = "train",
    start: Annotated[int, typer.Option(help="First row (inclusive).")] = 0,
    end: Annotated[int | None, typer.Option(help="Last row (exclusive); default: all rows.")] = None,
    text_template: Annotated[str | None, typer.Option(help="Python format template over columns.")] = None,
    text_column: Annotated[str | None, typer.Option(help="The text column (instead of a template).")] = None,
    num_latents: Annotated[int, typer.Option(help="SAE width (latents per layer).")] = 4096,
    k: Annotated[int, typer.Option(help="Active latents per token (TopK).")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (set it explicitly for small SAEs).")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Sequences per training step.")] = 8,
    ctx_len: Annotated[int, typer.Option(help="Tokens per training sequence.")] = 128,
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file name inside MODEL.")] = None,
) -> None:
    """Train one sparsify TopK SAE per --layer on the MLP outputs of DATASET's texts (all --lang mixed, in turn).

    The paper used EleutherAI's published SAEs; this is for models without one, e.g. the offline default:
    `langfeat train-sae smollm2 'data/{lang}.txt' --lang en --lang de --layer 'model.layers.{0..7}.mlp' --out-dir saes`
    """
    from langfeat.data import load_texts
    from langfeat.models import load_model
    from langfeat.train import TrainSaeConfig, train_saes

    per_lang = [load_texts(dataset, value, split, start, end, text_template, text_column)[1] for value in lang or [""]]
    # Interleave languages so a one-pass, unshuffled training run sees all of them throughout.
    texts = [t for group in itertools.zip_longest(*per_lang) for t in group if t is not None]
    mdl, tokenizer = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
    config = TrainSaeConfig(
        layers=list(layer), out_dir=out_dir, num_latents=num_latents, k=k, lr=lr, batch_size=batch_size,
        ctx_len=ctx_len, seed=seed,
    )
    paths = train_saes(config, mdl, tokenizer, texts)
    for hookpoint, path in paths.items():
        err_console.print(f"{hookpoint}: {path}", highlight=False)
