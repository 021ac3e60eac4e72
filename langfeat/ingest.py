"""Ingestion: run a model over a dataset, SAE-encode MLP outputs and store events, docs, tokens and aggregates.

The paper's ``activations_to_sae_features.py`` and ``activations_count.py`` in one streaming job. One run per
language (dataset config). Documents are processed in shards of ``shard_docs``; each shard's files are written
atomically and marked done, so an interrupted run resumes where it stopped, and the committed store is the same
as an uninterrupted run's. Aggregates per (layer, unit) are computed on the device while streaming.

Two engines run the shards: ``local`` (this process; encoding overlaps writing) and ``ray``
(:mod:`langfeat.ingest_ray`, actor workers of a Ray Data pipeline). Both call :func:`encode_shard` and
:func:`~langfeat.store.writer.write_shard` per shard; planning and the commit are the same code.
"""

from __future__ import annotations

import collections
import errno
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from langfeat import data as datamod
from langfeat.activations import Encoder, PendingEvents, plan_batches, probe_widths
from langfeat.errors import StoreError, UsageError
from langfeat.layers import LayerSpec, mlp_path, parse_option
from langfeat.models import (
    base_prefix,
    load_model,
    load_saes,
    model_description,
    model_id,
    tokenize,
)
from langfeat.options import ENGINES, IngestConfig, flag
from langfeat.sae_identity import check_sae_source, sae_id
from langfeat.store import runs
from langfeat.store.layout import Layout, doc_id
from langfeat.store.runs import RunManifest
from langfeat.store.writer import ShardData, compact_partials, shard_done, token_rows, write_shard

WRITERS = 2  # shards being written while the next one is encoded (each holds its events in memory)


@dataclass
class Plan:
    """What a run hooks: the layer specs, SAEs by layer, neuron layers (and their widths), and the encoder."""

    specs: list[LayerSpec]
    saes: dict[int, Any]
    neuron_layers: list[int]
    neuron_widths: dict[int, int]
    encoder: Encoder
    neuron_docs: bool = False  # per-document neuron values (neuron_docs) written too

    def dims(self) -> dict[tuple[str, int], int]:
        """Units per (unit kind, layer)."""
        out = {("sae", layer): int(sae.num_latents) for layer, sae in self.saes.items()}
        out.update({("neuron", layer): self.neuron_widths[layer] for layer in self.neuron_layers})
        return out


# -- validation and setup ------------------------------------------------------------------------------------
def _check_config(config: IngestConfig) -> None:
    if config.batch < 1:
        raise UsageError(f"--batch {config.batch} is not positive: pass a batch size >= 1")
    if config.shard_docs < 1:
        raise UsageError(f"--shard-docs {config.shard_docs} is not positive: pass a shard size >= 1")
    if config.max_length is not None and config.max_length < 1:
        raise UsageError(f"--max-length {config.max_length} is not positive: pass a length >= 1 or omit it")
    check_sae_source(config.sae_model, config.local_sae_dir)
    if config.engine not in ENGINES:
        raise UsageError(f"unknown --engine {config.engine!r}: use one of {' | '.join(ENGINES)}")
    if config.engine == "local":
        given = [flag(name) for name in ("ray_address", "workers", "gpus_per_worker") if getattr(config, name)]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to the Ray engine: add --engine ray")
        return
    if config.workers is not None and config.workers < 1:
        raise UsageError(f"--workers {config.workers} is not positive: pass a number of workers >= 1")
    if config.gpus_per_worker is not None and config.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker {config.gpus_per_worker:g} is negative: pass 0 or more")
    if config.cpus_per_worker <= 0:
        raise UsageError(f"--cpus-per-worker {config.cpus_per_worker:g} is not positive: pass a value > 0")


def default_layers(model) -> list[str]:
    """Every MLP of the model (``model.layers.{0..N-1}.mlp``)."""
    n = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    if n == 0:
        raise UsageError("cannot tell the model's number of layers: pass --layer")
    return [mlp_path(base_prefix(model), f"{{0..{n - 1}}}")]


def build_plan(
    model,
    tokenizer,
    patterns: Sequence[str],
    sae_model: str | None = None,
    local_sae_dir: str | None = None,
    neurons: bool = False,
    max_length: int | None = None,
    saes: Mapping[int | str, Any] | None = None,
    neuron_events: bool = False,
    neuron_docs: bool = False,
) -> Plan:
    """Resolve layers, load and check SAEs (width = hooked output width) and build the encoder. ``neuron_docs``
    implies ``neurons`` (every layer's neurons are counted, per run and per document)."""
    neurons = neurons or neuron_docs
    specs = parse_option(list(patterns) or default_layers(model))
    if not specs:
        raise UsageError("no layers given: pass --layer 'model.layers.{0..15}.mlp'")
    have_sae = sae_model is not None or local_sae_dir is not None or saes is not None
    sae_specs = [s for s in specs if not s.neurons] if have_sae else []
    neuron_layers = sorted({s.layer for s in specs if s.neurons or neurons})
    if not have_sae and any(not s.neurons for s in specs) and not neurons:
        raise UsageError("no SAE given: pass --sae-model HUB_ID or --local-sae-dir DIR, or --neurons for neurons only")
    paths = [s.mlp_path for s in sae_specs] + [s.act_fn_path for s in specs if s.layer in neuron_layers]
    widths = probe_widths(model, paths, token_id=tokenizer.bos_token_id or 0) if paths else {}
    prefix = base_prefix(model)
    if saes is None:
        param = next(model.parameters())
        loaded = load_saes(sae_specs, sae_model, local_sae_dir, param.device, param.dtype, prefix=prefix)
    else:
        loaded = {}
        for spec in sae_specs:
            sae = saes.get(spec.layer, saes.get(spec.hookpoint(prefix)))  # type: ignore[call-overload]
            if sae is None:
                raise UsageError(f"no SAE for {spec.hookpoint(prefix)}: provide one per SAE layer")
            loaded[spec.layer] = sae
    for spec in sae_specs:
        width = widths[spec.mlp_path]
        if int(loaded[spec.layer].d_in) != width:
            raise UsageError(
                f"SAE for {spec.hookpoint(prefix)} has width {loaded[spec.layer].d_in} but {spec.mlp_path} outputs "
                f"{width}: use the SAEs trained for this model"
            )
    encoder = Encoder(model, tokenizer, specs, loaded, neuron_layers, max_length, neuron_events=neuron_events,
                      neuron_docs=neuron_docs)
    neuron_widths = {s.layer: widths[s.act_fn_path] for s in specs if s.layer in neuron_layers}
    return Plan(specs=specs, saes=loaded, neuron_layers=neuron_layers, neuron_widths=neuron_widths, encoder=encoder,
                neuron_docs=neuron_docs)


def _manifest(source: datamod.TextSource, config: IngestConfig, plan: Plan, model_name: str) -> RunManifest:
    return RunManifest(
        origin="ingest",
        role=config.role,
        model=model_name,
        model_description=model_description(config.model, config.gguf_file),
        sae_model=sae_id(config.sae_model, config.local_sae_dir) if plan.saes else None,
        sae_path=str(Path(config.local_sae_dir).expanduser().resolve()) if plan.saes and config.local_sae_dir else None,
        dataset=source.dataset,
        split=source.split,
        config=source.config,
        lang=source.lang.tag,
        lang_name=source.lang.name,
        start=source.start,
        end=source.end,
        template=source.template,
        text_column=source.text_column,
        layers=sorted({s.layer for s in plan.specs}),
        layer_paths=[s.path for s in plan.specs],
        sae_layers=sorted(plan.saes),
        neuron_layers=plan.neuron_layers,
        neurons=bool(plan.neuron_layers),
        neuron_docs=plan.neuron_docs,
        dtype=config.dtype,
        max_length=config.max_length,
        bos=plan.encoder.bos,
        shard_docs=config.shard_docs,
        source_path=source.path,
    )


# -- the streaming job ----------------------------------------------------------------------------------------
class _Progress:
    """A rich progress bar on stderr with documents and tokens/s (or nothing)."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from langfeat.progress import progress_bar

            self.bar = progress_bar(rate=True, transient=False)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def task(self, description: str, total: int) -> Callable[[int, int], None]:
        if self.bar is None:
            return lambda docs, tokens: None
        task = self.bar.add_task(description, total=total, rate="")
        t0 = time.perf_counter()
        seen = {"tokens": 0}

        def advance(docs: int, tokens: int) -> None:
            seen["tokens"] += tokens
            rate = seen["tokens"] / max(time.perf_counter() - t0, 1e-9)
            self.bar.update(task, advance=docs, rate=f"{rate:,.0f} tok/s")

        return advance

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message, highlight=False)


SaeEvents = dict[int, list[tuple[np.ndarray, PendingEvents]]]  # layer -> (shard-relative doc of each batch row, events)


@dataclass(frozen=True)
class RunShards:
    """The driver's plan of one begun run: its staging folder and which documents each shard holds."""

    run_id: str
    work: Path
    lang: str
    dataset: str
    start: int  # first source row of the slice
    n_docs: int  # documents in the slice
    shard_docs: int
    base_doc_id: int  # doc_id of source row 0 (run_num << 40)

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_docs / self.shard_docs)

    def bounds(self, shard: int) -> tuple[int, int]:
        """Slice-relative rows ``[lo, hi)`` of ``shard``."""
        return shard * self.shard_docs, min((shard + 1) * self.shard_docs, self.n_docs)

    def done(self, shard: int) -> dict[str, Any] | None:
        """The marker of ``shard`` if it is finished (whoever wrote it), else None."""
        return shard_done(self.work / "_partials", shard)


def encode_shard(
    plan: Plan, run: RunShards, shard: int, texts: list[str], batch: int,
    advance: Callable[[int, int], None] = lambda docs, tokens: None,
) -> ShardData:
    """Tokenize and encode the ``texts`` of ``shard`` of ``run``: everything :func:`finish_shard` writes (the SAE
    events still on their way to the host, see :func:`_host_events`).

    The one per-shard computation of every engine (the local loop and the Ray workers).
    """
    enc = plan.encoder
    token_ids = tokenize(enc.tokenizer, texts, enc.max_length)
    events: SaeEvents = {layer: [] for layer in plan.saes}
    neuron_docs: SaeEvents = {layer: [] for layer in plan.neuron_layers} if plan.neuron_docs else {}
    with enc.hooked():
        for idx in plan_batches([len(t) for t in token_ids], batch):
            out = enc.encode_batch_async([token_ids[i] for i in idx])
            local = np.asarray(idx, dtype=np.int32)
            for (kind, layer), ev in out.items():
                if kind == "sae":
                    events[layer].append((local, ev))
                elif kind == "neuron_docs":
                    neuron_docs[layer].append((local, ev))
            advance(len(idx), sum(len(token_ids[i]) for i in idx))
    advance(sum(1 for t in token_ids if not t), 0)
    lo, hi = run.bounds(shard)
    return ShardData(
        shard=shard, dataset=run.dataset, base_doc_id=run.base_doc_id,
        rows=np.arange(run.start + lo, run.start + hi, dtype=np.int64),
        n_tokens=np.asarray([len(t) for t in token_ids], dtype=np.int32), texts=texts,
        token_ids=token_ids, events=events, neuron_docs=neuron_docs, stats=enc.take_stats(),
    )


def process_shard(plan: Plan, run: RunShards, shard: int, texts: list[str], batch: int) -> dict[str, Any]:
    """Encode ``shard`` of ``run`` and write its files and marker into the run's staging folder; return the
    marker (one shard start to finish: what a Ray worker does per shard)."""
    return finish_shard(run.work, run.lang, encode_shard(plan, run, shard, texts, batch))


def worker_plan(config: IngestConfig) -> Plan:
    """The plan of a Ray worker: the model on ``config.device`` and the SAEs of ``config``, loaded by the worker."""
    model, tokenizer = load_model(config.model, config.gguf_file, config.dtype, config.device)
    return build_plan(model, tokenizer, config.layers, config.sae_model, config.local_sae_dir, config.neurons,
                      config.max_length, neuron_docs=config.neuron_docs)


def _local_shards(
    run: RunShards, source: datamod.TextSource, plan: Plan, batch: int, advance: Callable[[int, int], None]
) -> dict[int, dict]:
    """The single-process engine: encode shard k+1 while shards k-1, k are written; return the markers."""
    infos: dict[int, dict] = {}
    pending: collections.deque[Future] = collections.deque()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for shard in range(run.n_shards):
            done = run.done(shard)
            if done is not None:
                infos[shard] = done
                advance(done["n_docs"], 0)
                continue
            shard_data = encode_shard(plan, run, shard, source.texts(*run.bounds(shard)), batch, advance)
            while len(pending) >= WRITERS:
                info = pending.popleft().result()
                infos[info["shard"]] = info
            pending.append(pool.submit(finish_shard, run.work, run.lang, shard_data))
        while pending:
            info = pending.popleft().result()
            infos[info["shard"]] = info
    return infos


def _begin_source(
    source: datamod.TextSource, config: IngestConfig, plan: Plan, layout: Layout, model_name: str
) -> tuple[dict[str, Any], RunShards | None]:
    """Begin (own) the run of ``source``: its manifest and shard plan (None: the run is already complete)."""
    record = _manifest(source, config, plan, model_name)
    # begin_run owns the run (a second writer stops with RunBusy) and resumes it with its recorded shard size
    manifest, complete = runs.begin_run(layout, record, overwrite=config.overwrite, wait=config.wait)
    if complete:
        return dict(manifest, skipped=True), None
    try:
        runs.fault_point("begin")  # the run is begun and owned
        run_id = manifest["run_id"]
        work = layout.run_work(run_id)
        for tmp in work.rglob(".*.tmp") if work.exists() else []:
            tmp.unlink()
        run = RunShards(
            run_id=run_id, work=work, lang=source.lang.tag, dataset=source.dataset, start=source.start,
            n_docs=len(source), shard_docs=int(manifest["shard_docs"]), base_doc_id=doc_id(manifest["run_num"], 0),
        )
    except BaseException as exc:
        _fail(layout, manifest, exc)
        raise
    return manifest, run


def _commit_source(layout: Layout, manifest: dict[str, Any], run: RunShards, plan: Plan, infos: dict[int, dict]
                   ) -> dict[str, Any]:
    """Fold the shards' partials into the run's aggregates and publish the run (one rename)."""
    missing = [k for k in range(run.n_shards) if k not in infos]
    if missing:
        raise StoreError(
            f"run {run.run_id}: shard(s) {', '.join(map(str, missing[:5]))} have no finished files in {run.work}: "
            "rerun the same command to redo them"
        )
    compact_partials(run.work, run.lang, range(run.n_shards), plan.dims())
    n_docs = sum(i["n_docs"] for i in infos.values())
    n_tokens = sum(i["n_tokens"] for i in infos.values())
    return runs.commit_run(layout, manifest, expect_docs=run.n_docs, n_docs=n_docs, n_tokens=n_tokens, error=None)


def _fail(layout: Layout, manifest: dict[str, Any], exc: BaseException) -> None:
    why = str(exc) if isinstance(exc, runs.Interrupted) else f"{type(exc).__name__}: {exc}"
    runs.fail_run(layout, manifest, why)


def _label(source: datamod.TextSource) -> str:
    return f"{source.lang.tag} {Path(source.path).name if source.path else source.dataset}"


def _host_events(events: SaeEvents, neuron_docs: bool = False) -> dict[int, list[tuple]]:
    """Wait for a shard's event copies and index documents within the shard (runs in a writer thread): SAE events
    as (doc, pos, feature, act); ``neuron_docs`` rows as (doc, neuron, tok_count, act_sum)."""
    out: dict[int, list[tuple]] = {}
    for layer, batches in events.items():
        out[layer] = []
        for local, pending in batches:
            ev = pending.result()
            if neuron_docs:  # the encoder's neuron-doc rows: pos = tok_count, feature = neuron, act = act_sum
                out[layer].append((local[ev.doc], ev.feature, ev.pos, ev.act))
            else:
                out[layer].append((local[ev.doc], ev.pos, ev.feature, ev.act))
    return out


def finish_shard(work: Path, lang: str, data: ShardData) -> dict[str, Any]:
    """Wait for the shard's events to reach the host, then write its files and marker (a writer thread's job)."""
    data.events = _host_events(data.events)
    data.neuron_docs = _host_events(data.neuron_docs, neuron_docs=True)
    return write_shard(work, lang, data)


def _ingest_source(
    source: datamod.TextSource,
    config: IngestConfig,
    plan: Plan,
    layout: Layout,
    model_name: str,
    progress: _Progress,
) -> dict[str, Any]:
    manifest, run = _begin_source(source, config, plan, layout, model_name)
    if run is None:
        progress.log(f"skipped {source.lang.tag} ({source.dataset}): run {manifest['run_id']} is already complete")
        return manifest
    try:
        infos = _local_shards(run, source, plan, config.batch, progress.task(_label(source), len(source)))
        manifest = _commit_source(layout, manifest, run, plan, infos)
    except BaseException as exc:
        _fail(layout, manifest, exc)
        raise
    progress.log(f"ingested {source.lang.tag}: {manifest['n_docs']} docs, {manifest['n_tokens']} tokens -> run "
                 f"{run.run_id}")
    return manifest


def _open_sources(config: IngestConfig) -> list[datamod.TextSource]:
    if not config.langs:
        raise UsageError("no --lang given: pass the dataset configs to ingest, e.g. --lang en de")
    sources = [
        datamod.open_source(
            config.dataset, value, config.split, config.start, config.end, config.template, config.text_column
        )
        for value in config.langs
    ]
    for source in sources:
        blank = datamod.count_blank(source)
        if blank == len(source):
            raise UsageError(
                f"every text of {source.config!r} in {source.path or source.dataset} is blank ({blank} rows): "
                "check the file, --text-column / --text-template, or --start / --end"
            )
    return sources


def ingest(
    config: IngestConfig, model=None, tokenizer=None, progress: bool = True, saes: Mapping[int | str, Any] | None = None
) -> list[dict[str, Any]]:
    """Ingest every language of ``config``; return one manifest per language (skipped runs: ``skipped=True``).

    ``saes`` (layer number or hookpoint -> sparsify SAE) passes SAEs already in memory; ``config.sae_model`` then
    names them in the manifest. Everything is validated (data, columns, layers, SAEs, widths) before the first
    run is created. With ``config.engine == "ray"`` a given ``model`` only plans the runs: every worker loads
    ``config.model`` and the SAEs of ``config.sae_model`` / ``config.local_sae_dir`` itself.
    """
    _check_config(config)
    sources = _open_sources(config)
    if saes is not None and config.engine == "ray":
        raise UsageError("the Ray engine's workers load the SAEs themselves: give --sae-model or --local-sae-dir")
    if model is None or tokenizer is None:
        model, tokenizer = _load_driver_model(config)
    if saes is not None and not config.sae_model:
        raise UsageError("SAEs passed in memory need a name: set IngestConfig.sae_model")
    plan = build_plan(
        model, tokenizer, config.layers, config.sae_model if saes is None else None,
        config.local_sae_dir if saes is None else None, config.neurons, config.max_length, saes=saes,
        neuron_docs=config.neuron_docs,
    )
    return _run_sources(sources, config, plan, model_id(config.model, config.gguf_file), progress)


def _load_driver_model(config: IngestConfig):
    """The model the run is planned with: on ``--device`` for the local engine; on the CPU for the Ray engine,
    whose workers load their own copy on their devices."""
    device = "cpu" if config.engine == "ray" else config.device
    return load_model(config.model, config.gguf_file, config.dtype, device)


def _ray_sources(sources: list[datamod.TextSource], config: IngestConfig, plan: Plan, layout: Layout,
                 model_name: str, progress: _Progress) -> list[dict[str, Any]]:
    """Begin every run, encode all their unfinished shards in one Ray Data pipeline, then commit each run."""
    from langfeat import ingest_ray

    out: list[dict[str, Any]] = []
    begun: list[tuple[int, dict[str, Any], RunShards, datamod.TextSource]] = []
    committed = 0
    try:
        for source in sources:
            manifest, run = _begin_source(source, config, plan, layout, model_name)
            out.append(manifest)
            if run is None:
                progress.log(f"skipped {source.lang.tag} ({source.dataset}): run {manifest['run_id']} is already "
                             "complete")
            else:
                begun.append((len(out) - 1, manifest, run, source))
        jobs = [ingest_ray.Job(run, source, progress.task(_label(source), len(source)))
                for _, _, run, source in begun]
        steps = ingest_ray.Steps(plan=worker_plan, shard=process_shard)
        infos = ingest_ray.run_shards(jobs, config, steps, plan.dims(), layout.root, progress.log) if jobs else []
        for (i, manifest, run, source), shard_infos in zip(begun, infos, strict=True):
            out[i] = _commit_source(layout, manifest, run, plan, shard_infos)
            committed += 1
            progress.log(f"ingested {source.lang.tag}: {out[i]['n_docs']} docs, {out[i]['n_tokens']} tokens -> run "
                         f"{run.run_id}")
    except BaseException as exc:
        for _, manifest, _, _ in begun[committed:]:
            _fail(layout, manifest, exc)
        raise
    return out


def _run_sources(
    sources: list[datamod.TextSource], config: IngestConfig, plan: Plan, model_name: str, progress: bool
) -> list[dict[str, Any]]:
    from langfeat.store import ensure_store, refresh_catalog

    out = []
    try:
        layout = ensure_store(config.store)
        with runs.handle_signals(), _Progress(progress) as bar:
            if config.engine == "ray":
                out = _ray_sources(sources, config, plan, layout, model_name, bar)
                refresh_catalog(layout.root)
            else:
                for source in sources:
                    out.append(_ingest_source(source, config, plan, layout, model_name, bar))
                    refresh_catalog(layout.root)  # best effort; writers keep catalog.duckdb current, readers never
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {exc.filename}" if exc.filename else ""
            raise StoreError(
                f"no space left on the device{where}: free some space and rerun the same command to resume "
                "(finished shards are kept)"
            ) from None
        raise
    return out


def ingest_texts(
    texts: list[str], lang: str, name: str, config: IngestConfig, model=None, tokenizer=None, progress: bool = False
) -> dict[str, Any]:
    """Ingest an in-memory list of texts as one run (``dataset = name``); return its manifest."""
    _check_config(config)
    source = datamod.from_texts(list(texts), lang, name)
    if model is None or tokenizer is None:
        model, tokenizer = _load_driver_model(config)
    plan = build_plan(
        model, tokenizer, config.layers, config.sae_model, config.local_sae_dir, config.neurons, config.max_length,
        neuron_docs=config.neuron_docs,
    )
    return _run_sources([source], config, plan, model_id(config.model, config.gguf_file), progress)[0]


def encode_texts(
    texts: Sequence[str],
    model,
    tokenizer,
    specs: Sequence[LayerSpec] | Sequence[str] | str,
    saes: Mapping[int | str, Any] | None,
    batch: int = 16,
    max_length: int | None = None,
    neurons: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Encode a small list of texts in memory, through the same batching and encoding code as ingestion.

    ``specs`` are layer specs or patterns; ``saes`` maps a layer number or hookpoint to its SAE. Returns
    ``events`` (doc, pos, layer, feature, act; doc = index in ``texts``; act > 0, float32 of the float16 value)
    and ``tokens`` (doc, pos, token_id). With ``neurons``, neuron layers' positive ``act_fn`` outputs are returned
    as events too (feature = neuron index) in a third column set, ``kind`` = 'neuron' (SAE rows: 'sae').
    """
    patterns = [s.path for s in specs] if specs and isinstance(next(iter(specs)), LayerSpec) else specs
    if isinstance(patterns, str):
        patterns = [patterns]
    plan = build_plan(model, tokenizer, list(patterns), saes=saes or None, neurons=neurons, max_length=max_length,
                      neuron_events=True)
    if not plan.saes and not plan.neuron_layers:
        raise UsageError("nothing to encode: give SAEs for the layers or neurons=True")
    enc = plan.encoder
    token_ids = tokenize(tokenizer, list(texts), max_length)
    parts: list[dict[str, np.ndarray]] = []
    with enc.hooked():
        for idx in plan_batches([len(t) for t in token_ids], batch):
            local = np.asarray(idx, dtype=np.int32)
            for (kind, layer), ev in enc.encode_batch([token_ids[i] for i in idx]).items():
                parts.append({
                    "doc": local[ev.doc], "pos": ev.pos, "layer": np.full(len(ev.doc), layer, np.int32),
                    "feature": ev.feature, "act": ev.act.astype(np.float32),
                    "kind": np.full(len(ev.doc), kind),
                })
    enc.take_stats()
    cols = ["doc", "pos", "layer", "feature", "act", "kind"]
    if parts:
        events = pl.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in cols})
    else:
        events = pl.DataFrame(schema={"doc": pl.Int32, "pos": pl.Int32, "layer": pl.Int32, "feature": pl.Int32,
                                      "act": pl.Float32, "kind": pl.String})
    events = events.sort(["kind", "layer", "doc", "pos", "feature"], descending=[True, False, False, False, False])
    if not plan.neuron_layers:
        events = events.drop("kind")
    doc, pos, token_id = token_rows(token_ids)
    tokens = pl.DataFrame({"doc": doc.astype(np.int32), "pos": pos, "token_id": token_id})
    return events, tokens
