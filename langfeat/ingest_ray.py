"""The Ray engine of ingestion (``langfeat ingest --engine ray``): shards encoded by a Ray Data pipeline.

The driver plans every run exactly as the local engine does (run identity, run number, doc ids, shard plan,
manifest) and reads the texts; one Ray Data pipeline then carries every unfinished shard (one row each, with its
texts) through ``map_batches`` on a pool of actor workers (:class:`ShardWorker`), each holding the model and
SAEs and writing whole shards into the runs' staging folders with the same per-shard code as the local engine
(:func:`langfeat.ingest.process_shard`, handed over as :class:`Steps`). The driver commits each run with the
same single rename once every shard's marker is there, so readers never see a partial run.

Resumption and failures: a shard whose marker exists is skipped by the driver and by the workers (whoever wrote
it); an actor that dies is restarted by Ray and its shard retried (``max_restarts`` / ``max_task_retries``); a
shard killed half-way has no marker, so it is redone and its files replaced. The store must be on a
filesystem every worker sees: each worker checks that it reads a probe file the driver wrote.

``ray`` is imported only here (install ``langfeat[ray]``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from langfeat import data as datamod
from langfeat.errors import LangfeatError, StoreError, UsageError
from langfeat.options import IngestConfig
from langfeat.store.runs import FAULT_ENV, fault_point

Advance = Callable[[int, int], None]


@dataclass
class Job:
    """One begun run as the engine sees it: its shard plan, its texts and its progress callback."""

    run: Any  # langfeat.ingest.RunShards
    source: datamod.TextSource
    advance: Advance


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'langfeat[ray]'") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Join ``address`` (or $RAY_ADDRESS), or start a local Ray instance; True when this call started Ray."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"cannot connect to the Ray cluster at {address or os.environ.get('RAY_ADDRESS')} ({first}): start it "
            "(`ray start --head`) or pass --ray-address auto | ray://HOST:10001"
        ) from None
    return True


def _resources(ray, config: IngestConfig, pending: int) -> tuple[int, float, float]:
    """Workers, GPUs and CPUs per worker (the defaults filled in from the cluster's resources)."""
    cluster = ray.cluster_resources()
    gpus = int(cluster.get("GPU", 0))
    per_gpu = config.gpus_per_worker if config.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    workers = config.workers if config.workers is not None else max(1, int(gpus // per_gpu) if per_gpu else 1)
    workers = max(1, min(workers, pending))  # no idle actors
    need_gpu, need_cpu = workers * per_gpu, workers * config.cpus_per_worker
    if need_gpu > gpus + 1e-9 or need_cpu > cluster.get("CPU", 0) + 1e-9:
        raise UsageError(
            f"{workers} workers x {per_gpu:g} GPU, {config.cpus_per_worker:g} CPU need {need_gpu:g} GPUs and "
            f"{need_cpu:g} CPUs but the Ray cluster has {gpus} GPUs and {cluster.get('CPU', 0):g} CPUs: lower "
            "--workers, --gpus-per-worker or --cpus-per-worker"
        )
    return workers, per_gpu, config.cpus_per_worker


# -- the shared-filesystem check -------------------------------------------------------------------------------
def write_probe(work_dir: Path) -> tuple[str, str]:
    """Write a probe file with a random token under the store's staging folder; return (path, token)."""
    from langfeat.store.atomic import write_atomic

    token = uuid.uuid4().hex
    path = work_dir / f".probe-{token[:12]}"
    write_atomic(path, lambda tmp: tmp.write_text(token, encoding="utf-8"))
    return str(path), token


def check_shared(path: str, token: str, store: str) -> None:
    """StoreError unless this process reads ``token`` in ``path`` (the store is on a filesystem it shares)."""
    try:
        seen = Path(path).read_text(encoding="utf-8")
    except OSError:
        seen = None
    if seen != token:
        raise StoreError(
            f"the store {store} is not visible to the Ray worker on host {socket.gethostname()}: put the store on "
            "a filesystem every Ray node mounts at the same path (NFS, Lustre; local disk on one machine)"
        )


# -- the workers -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Steps:
    """The per-shard code the workers run, given by the caller (:mod:`langfeat.ingest`): ``plan(config)`` loads
    the model and SAEs into a plan with ``dims()``; ``shard(plan, run, shard, texts, batch)`` encodes and writes
    one shard and returns its marker. Functions travel to the workers by reference."""

    plan: Callable[[IngestConfig], Any]
    shard: Callable[[Any, Any, int, list[str], int], dict[str, Any]]


class ShardWorker:
    """A Ray Data actor: loads the model and SAEs once, then encodes and writes whole shards (one per row)."""

    def __init__(self, config: IngestConfig, steps: Steps, runs: Sequence[Any], dims: dict,
                 probe: tuple[str, str, str]):
        self.plan, self.steps = steps.plan(config), steps
        self.runs, self.batch, self.dims, self.probe = list(runs), config.batch, dims, probe
        self.checked = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {k: [] for k in ("job", "shard", "n_docs", "n_tokens", "encoded", "error")}
        try:
            self._check()
            for job, shard, texts in zip(batch["job"], batch["shard"], batch["texts"], strict=True):
                info, encoded = self._shard(self.runs[int(job)], int(shard), [str(t) for t in texts])
                for key, value in (("job", int(job)), ("shard", int(shard)), ("n_docs", info["n_docs"]),
                                   ("n_tokens", info["n_tokens"]), ("encoded", encoded), ("error", "")):
                    out[key].append(value)
        except LangfeatError as exc:  # a one-line error for the user: returned (Ray's wrappers lose its type)
            out = {"job": [-1], "shard": [-1], "n_docs": [0], "n_tokens": [0], "encoded": [False],
                   "error": [f"{type(exc).__name__}:{exc}"]}
        return {k: np.asarray(v) for k, v in out.items()}

    def _check(self) -> None:
        if self.checked:
            return
        check_shared(*self.probe)
        if self.plan.dims() != self.dims:
            raise UsageError(
                "a Ray worker loaded other SAEs or another model than the driver planned with: give the model "
                "and SAEs by a path or id that resolves to the same files on every node"
            )
        self.checked = True

    def _shard(self, run: Any, shard: int, texts: list[str]) -> tuple[dict[str, Any], bool]:
        info = run.done(shard)  # a retried task may find its shard finished by an earlier attempt
        if info is not None:
            return info, False
        return self.steps.shard(self.plan, run, shard, texts, self.batch), True


# -- the driver ------------------------------------------------------------------------------------------------
def run_shards(jobs: Sequence[Job], config: IngestConfig, steps: Steps, dims: dict, store_root: Path,
               log: Callable[[str], None]) -> list[dict[int, dict]]:
    """Encode and write every unfinished shard of ``jobs`` on Ray; return each job's shard markers.

    Finished shards are skipped (whoever wrote them); the markers returned are read back from the staging
    folders, so the caller commits exactly what the workers left on the shared filesystem.
    """
    items = []
    for j, job in enumerate(jobs):
        for shard in range(job.run.n_shards):
            done = job.run.done(shard)
            if done is not None:
                job.advance(done["n_docs"], 0)
            else:
                items.append({"job": j, "shard": shard, "texts": job.source.texts(*job.run.bounds(shard))})
    if items:
        ray = _import_ray()
        started = _connect(ray, config.ray_address)
        try:
            _run_pipeline(ray, items, jobs, config, steps, dims, store_root, log)
        finally:
            if started:
                ray.shutdown()
    out = []
    for job in jobs:
        infos = {k: info for k in range(job.run.n_shards) if (info := job.run.done(k)) is not None}
        out.append(infos)
    return out


def _run_pipeline(ray, items: list[dict], jobs: Sequence[Job], config: IngestConfig, steps: Steps, dims: dict,
                  store_root: Path, log: Callable[[str], None]) -> None:
    workers, gpus, cpus = _resources(ray, config, len(items))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # langfeat's own bar shows documents and tokens/s
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-execution INFO lines on the terminal
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    # Ray Data's actor defaults give the fault tolerance: max_restarts=-1 (a dead actor is replaced) and
    # max_task_retries=-1 (its shard is retried on the new one); tests/test_ray.py kills a worker mid-shard.
    fault = os.environ.get(FAULT_ENV)  # the crash-safety test hook reaches the workers
    runtime_env = {"env_vars": {FAULT_ENV: fault}} if fault else None
    probe_path, token = write_probe(store_root / "_work")
    try:
        ds = ray.data.from_items(items, override_num_blocks=len(items))  # one block (one task) per shard
        ds = ds.map_batches(
            ShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"config": config, "steps": steps, "runs": [job.run for job in jobs],
                                   "dims": dims, "probe": (probe_path, token, str(store_root))},
            num_gpus=gpus, num_cpus=cpus, runtime_env=runtime_env,
        )
        encoded = 0
        for row in ds.iter_rows():
            if row["error"]:
                name, _, message = str(row["error"]).partition(":")
                raise {"StoreError": StoreError, "UsageError": UsageError}.get(name, LangfeatError)(message)
            jobs[int(row["job"])].advance(int(row["n_docs"]), int(row["n_tokens"]))
            encoded += bool(row["encoded"])
            fault_point("ray-received")  # a shard is done, the run is not committed
        log(f"ray: {encoded} shard(s) encoded by {workers} worker(s) ({gpus:g} GPU, {cpus:g} CPU each)")
    finally:
        Path(probe_path).unlink(missing_ok=True)
