"""CLI commands: ingest."""

from __future__ import annotations

from typing import Annotated

import typer

from langfeat.cli.app import app, err_console, handle_errors


@app.command("ingest")
@handle_errors
def ingest_command(
    model: Annotated[str, typer.Argument(help="Hub id, local folder, GGUF folder (with --gguf-file) or 'smollm2'.")],
    dataset: Annotated[str, typer.Argument(help="Hub dataset id, or a local file path (may contain {lang}).")],
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets).")] = "train",
    lang: Annotated[list[str], typer.Option("--lang", help="Dataset config / language; repeat for several.")] = [],  # noqa: B006
    layer: Annotated[
        list[str], typer.Option("--layer", help="Module path patterns, e.g. 'model.layers.{0..15}.mlp'.")
    ] = [],  # noqa: B006
    start: Annotated[int, typer.Option(help="First row (inclusive).")] = 0,
    end: Annotated[int | None, typer.Option(help="Last row (exclusive); default: all rows.")] = None,
    sae_model: Annotated[str | None, typer.Option(help="Hub repo of sparsify SAEs.")] = None,
    local_sae_dir: Annotated[str | None, typer.Option(help="Folder holding <hookpoint>/cfg.json SAEs.")] = None,
    neurons: Annotated[bool, typer.Option("--neurons", help="Also (or only) count mlp.act_fn neurons.")] = False,
    batch: Annotated[int, typer.Option(help="Documents per forward pass.")] = 16,
    max_length: Annotated[int | None, typer.Option(help="Truncate documents to this many tokens (BOS incl.).")] = None,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    text_template: Annotated[str | None, typer.Option(help="Python format template over columns.")] = None,
    text_column: Annotated[str | None, typer.Option(help="The text column (instead of a template).")] = None,
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file name inside MODEL.")] = None,
    store: Annotated[str | None, typer.Option(help="Store directory (default: $LANGFEAT_STORE).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a completed run of that identity.")] = False,
    shard_docs: Annotated[int, typer.Option(help="Documents per shard (the unit of resumption).")] = 1024,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another process writing the same run.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Run MODEL over DATASET, SAE-encode MLP outputs and store events, docs, tokens and per-unit counts."""
    from langfeat.ingest import IngestConfig, ingest

    config = IngestConfig(
        model=model, dataset=dataset, langs=list(lang), layers=list(layer), split=split, start=start, end=end,
        sae_model=sae_model, local_sae_dir=local_sae_dir, neurons=neurons, batch=batch, max_length=max_length,
        dtype=dtype, device=device, text_template=text_template, text_column=text_column, gguf_file=gguf_file,
        store=store, overwrite=overwrite, shard_docs=shard_docs, wait=wait,
    )
    for manifest in ingest(config, progress=progress):
        state = "skipped (already complete)" if manifest.get("skipped") else "complete"
        err_console.print(
            f"{manifest['lang']}: run {manifest['run_id']} {state}, {manifest.get('n_docs')} docs, "
            f"{manifest.get('n_tokens')} tokens",
            highlight=False,
        )
