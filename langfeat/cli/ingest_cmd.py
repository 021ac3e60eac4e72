"""CLI commands: ingest."""

from __future__ import annotations

from typing import Annotated

import typer

from langfeat.cli.app import app, err_console
from langfeat.cli.options import (
    CpusPerWorker,
    DatasetArg,
    Device,
    Dtype,
    End,
    Engine,
    GgufFile,
    GpusPerWorker,
    Langs,
    Layers,
    LocalSaeDir,
    MaxLength,
    ModelArg,
    Progress,
    RayAddress,
    SaeModel,
    Split,
    Start,
    Template,
    TextColumn,
    Workers,
    build,
    quiet_progress,
)
from langfeat.cli.output import StoreOption
from langfeat.options import IngestConfig as C


@app.command("ingest")
def ingest_command(
    model: ModelArg,
    dataset: DatasetArg,
    langs: Langs = [],  # noqa: B006
    layers: Layers = None,
    split: Split = C.split,
    start: Start = C.start,
    end: End = None,
    template: Template = None,
    text_column: TextColumn = None,
    sae_model: SaeModel = None,
    local_sae_dir: LocalSaeDir = None,
    neurons: Annotated[bool, typer.Option("--neurons", help="Also (or, without SAEs, only) count the mlp.act_fn "
                                                           "neurons.")] = C.neurons,
    neuron_docs: Annotated[bool, typer.Option(
        "--neuron-docs", help="Also store per-document neuron values (table neuron_docs: positive tokens and their "
                              "sum per document and neuron), which classify --classifier-type neuron-probe trains "
                              "on; implies --neurons.")] = C.neuron_docs,
    batch: Annotated[int, typer.Option(
        help="Documents per forward pass (the paper's --batch was tokens per SAE encode call; any value of it "
             "gives the same counts).")] = C.batch,
    max_length: MaxLength = None,
    dtype: Dtype = C.dtype,
    device: Device = C.device,
    gguf_file: GgufFile = None,
    store: StoreOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a completed run of that identity.")
                         ] = C.overwrite,
    shard_docs: Annotated[int, typer.Option(help="Documents per shard (the unit of resumption).")] = C.shard_docs,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another process writing the same run (default: "
                                                      "stop, naming it).")] = C.wait,
    engine: Engine = C.engine,
    ray_address: RayAddress = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = C.cpus_per_worker,
    progress: Progress = True,
) -> None:
    """Run MODEL over DATASET, SAE-encode MLP outputs and store events, docs, tokens and per-unit counts.

    Example: langfeat ingest smollm2 'data/{lang}.txt' --lang en de --layer model.layers.{0..7}.mlp
    --local-sae-dir saes

    On several GPUs or a Ray cluster: the same command with --engine ray --workers N (docs/ray.md).
    """
    from langfeat.ingest import ingest

    quiet_progress(progress)
    config = build(C, locals(), layers=list(layers or []), store=str(store) if store else None)
    for manifest in ingest(config, progress=progress):
        state = "skipped (already complete)" if manifest.get("skipped") else "complete"
        err_console.print(
            f"{manifest['lang']}: run {manifest['run_id']} {state}, {manifest.get('n_docs')} docs, "
            f"{manifest.get('n_tokens')} tokens",
            highlight=False,
        )
