"""Ingestion: run a model over a dataset, SAE-encode MLP outputs and store events, docs, tokens and aggregates.

The paper's ``activations_to_sae_features.py`` and ``activations_count.py`` in one streaming job. One run per
language (dataset config). Documents are processed in shards of ``shard_docs``; each shard's files are written
atomically and marked done, so an interrupted run resumes where it stopped, and the committed store is the same
as an uninterrupted run's. Aggregates per (layer, unit) are computed on the device while streaming.
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
    check_sae_source,
    load_model,
    load_saes,
    model_description,
    model_id,
    sae_id,
    tokenize,
)
from langfeat.options import IngestConfig
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
) -> Plan:
    """Resolve layers, load and check SAEs (width = hooked output width) and build the encoder."""
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
    encoder = Encoder(model, tokenizer, specs, loaded, neuron_layers, max_length, neuron_events=neuron_events)
    neuron_widths = {s.layer: widths[s.act_fn_path] for s in specs if s.layer in neuron_layers}
    return Plan(specs=specs, saes=loaded, neuron_layers=neuron_layers, neuron_widths=neuron_widths, encoder=encoder)


def _manifest(source: datamod.TextSource, config: IngestConfig, plan: Plan, model_name: str) -> RunManifest:
    return RunManifest(
        origin="ingest",
        role=config.role,
        model=model_name,
        model_description=model_description(config.model, config.gguf_file),
        sae_model=sae_id(config.sae_model, config.local_sae_dir) if plan.saes else None,
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


def _encode_shard(
    plan: Plan, texts: list[str], batch: int, advance: Callable[[int, int], None]
) -> tuple[list[list[int]], SaeEvents, dict]:
    """Token ids, the SAE events still on their way to the host (see :func:`_host_events`), and aggregates."""
    enc = plan.encoder
    token_ids = tokenize(enc.tokenizer, texts, enc.max_length)
    events: SaeEvents = {layer: [] for layer in plan.saes}
    with enc.hooked():
        for idx in plan_batches([len(t) for t in token_ids], batch):
            out = enc.encode_batch_async([token_ids[i] for i in idx])
            local = np.asarray(idx, dtype=np.int32)
            for (kind, layer), ev in out.items():
                if kind == "sae":
                    events[layer].append((local, ev))
            advance(len(idx), sum(len(token_ids[i]) for i in idx))
    advance(sum(1 for t in token_ids if not t), 0)
    return token_ids, events, enc.take_stats()


def _host_events(events: SaeEvents) -> dict[int, list[tuple]]:
    """Wait for a shard's event copies and index documents within the shard (runs in a writer thread)."""
    out: dict[int, list[tuple]] = {}
    for layer, batches in events.items():
        out[layer] = []
        for local, pending in batches:
            ev = pending.result()
            out[layer].append((local[ev.doc], ev.pos, ev.feature, ev.act))
    return out


def _write_shard(work: Path, lang: str, data: ShardData, events: SaeEvents) -> dict[str, Any]:
    data.events = _host_events(events)
    return write_shard(work, lang, data)


def _ingest_source(
    source: datamod.TextSource,
    config: IngestConfig,
    plan: Plan,
    layout: Layout,
    model_name: str,
    progress: _Progress,
) -> dict[str, Any]:
    record = _manifest(source, config, plan, model_name)
    # begin_run owns the run (a second writer stops with RunBusy) and resumes it with its recorded shard size
    manifest, complete = runs.begin_run(layout, record, overwrite=config.overwrite, wait=config.wait)
    run_id = manifest["run_id"]
    if complete:
        progress.log(f"skipped {source.lang.tag} ({source.dataset}): run {run_id} is already complete")
        return dict(manifest, skipped=True)
    try:
        runs.fault_point("begin")  # the run is begun and owned
        work = layout.run_work(run_id)
        for tmp in work.rglob(".*.tmp") if work.exists() else []:
            tmp.unlink()
        shard_docs = int(manifest["shard_docs"])
        n_shards = math.ceil(len(source) / shard_docs)
        base = doc_id(manifest["run_num"], 0)
        label = Path(source.path).name if source.path else source.dataset
        advance = progress.task(f"{source.lang.tag} {label}", len(source))
        infos: dict[int, dict] = {}
        pending: collections.deque[Future] = collections.deque()
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:  # writes shards k-1, k while shard k+1 is encoded
            for shard in range(n_shards):
                done = shard_done(work / "_partials", shard)
                if done is not None:
                    infos[shard] = done
                    advance(done["n_docs"], 0)
                    continue
                lo, hi = shard * shard_docs, min((shard + 1) * shard_docs, len(source))
                texts = source.texts(lo, hi)
                token_ids, events, stats = _encode_shard(plan, texts, config.batch, advance)
                shard_data = ShardData(
                    shard=shard, dataset=source.dataset, base_doc_id=base,
                    rows=np.arange(source.start + lo, source.start + hi, dtype=np.int64),
                    n_tokens=np.asarray([len(t) for t in token_ids], dtype=np.int32), texts=texts,
                    token_ids=token_ids, stats=stats,
                )
                while len(pending) >= WRITERS:
                    info = pending.popleft().result()
                    infos[info["shard"]] = info
                pending.append(pool.submit(_write_shard, work, source.lang.tag, shard_data, events))
            while pending:
                info = pending.popleft().result()
                infos[info["shard"]] = info
        compact_partials(work, source.lang.tag, range(n_shards), plan.dims())
        n_docs = sum(i["n_docs"] for i in infos.values())
        n_tokens = sum(i["n_tokens"] for i in infos.values())
        manifest = runs.commit_run(layout, manifest, expect_docs=len(source), n_docs=n_docs, n_tokens=n_tokens,
                                   error=None)
    except BaseException as exc:
        why = str(exc) if isinstance(exc, runs.Interrupted) else f"{type(exc).__name__}: {exc}"
        runs.fail_run(layout, manifest, why)
        raise
    progress.log(f"ingested {source.lang.tag}: {n_docs} docs, {n_tokens} tokens -> run {run_id}")
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
    run is created.
    """
    _check_config(config)
    sources = _open_sources(config)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(config.model, config.gguf_file, config.dtype, config.device)
    if saes is not None and not config.sae_model:
        raise UsageError("SAEs passed in memory need a name: set IngestConfig.sae_model")
    plan = build_plan(
        model, tokenizer, config.layers, config.sae_model if saes is None else None,
        config.local_sae_dir if saes is None else None, config.neurons, config.max_length, saes=saes,
    )
    return _run_sources(sources, config, plan, model_id(config.model, config.gguf_file), progress)


def _run_sources(
    sources: list[datamod.TextSource], config: IngestConfig, plan: Plan, model_name: str, progress: bool
) -> list[dict[str, Any]]:
    from langfeat.store import ensure_store, refresh_catalog

    out = []
    try:
        layout = ensure_store(config.store)
        with runs.handle_signals(), _Progress(progress) as bar:
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
        model, tokenizer = load_model(config.model, config.gguf_file, config.dtype, config.device)
    plan = build_plan(
        model, tokenizer, config.layers, config.sae_model, config.local_sae_dir, config.neurons, config.max_length
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
