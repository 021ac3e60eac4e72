"""Ingestion throughput of the Ray engine vs the local engine, measured in one run (same model, texts, SAEs).

    .venv/bin/python benchmarks/ingest_ray.py [--docs N] [--workers 1 2] [--cpus-per-worker C] [--device cpu]
    # a multi-GPU machine: one worker per GPU
    .venv/bin/python benchmarks/ingest_ray.py --docs 8192 --device cuda --workers 1 2 4 8 --gpus-per-worker 1

A toy Llama (``--d-model``, ``--layers``, saved to disk so every worker loads it) with random sparsify SAEs of
``--latents`` latents (k = 32) at every layer; FLORES-200 devtest sentences of 8 scripts. Each row is a fresh
store and the time of the whole ``ingest()`` call (planning, encoding, writing, compaction, commit); for Ray it
includes starting the actors and loading the model in each, but not starting the Ray instance (printed apart);
the time to the first finished shard and the rate after it separate that start-up from the steady state.
The local engine runs with the threads of one worker (``--cpus-per-worker``), so ``ray, 1 worker`` vs ``local``
is the engine's own overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from langfeat.ingest import IngestConfig, ingest
from langfeat.layers import mlp_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_cpu import flores_texts  # the same texts as the CPU benchmark


def timed(config: IngestConfig) -> tuple[float, int, float | None, float | None]:
    """Seconds and tokens of one ``ingest()`` call; for Ray also the seconds to the first finished shard (actor
    start-up and model loading) and the tokens/s from then on (the steady state)."""
    from langfeat import ingest_ray

    seen: list[tuple[float, int]] = []  # (time, tokens) of every shard a Ray worker finished
    run_shards = ingest_ray.run_shards

    def recording(jobs, *args, **kwargs):
        for job in jobs:
            job.advance = lambda docs, tokens: seen.append((time.perf_counter(), tokens)) if tokens else None
        return run_shards(jobs, *args, **kwargs)

    ingest_ray.run_shards = recording
    try:
        t0 = time.perf_counter()
        (manifest,) = ingest(config, progress=False)
        seconds = time.perf_counter() - t0
    finally:
        ingest_ray.run_shards = run_shards
    if len(seen) < 2:
        return seconds, int(manifest["n_tokens"]), None, None
    first, last = seen[0][0], seen[-1][0]
    return seconds, int(manifest["n_tokens"]), first - t0, sum(t for _, t in seen[1:]) / max(last - first, 1e-9)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1200)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--latents", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--shard-docs", type=int, default=100)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cpus-per-worker", type=float, default=None, help="default: the CPUs / the most workers")
    ap.add_argument("--gpus-per-worker", type=float, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    import ray

    from langfeat.toy import build_model, build_saes

    cpus = args.cpus_per_worker or max(1.0, (os.cpu_count() or 1) // max(args.workers))
    tmp = Path(tempfile.mkdtemp(prefix="langfeat-bench-ray-"))
    texts = flores_texts(args.docs)
    (tmp / "data").mkdir()
    (tmp / "data" / "mul.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    build_model(tmp / "model", texts=texts[:400], n_layers=args.layers, d_model=args.d_model,
                d_mlp=4 * args.d_model, vocab_size=4096)
    build_saes(tmp / "saes", list(range(args.layers)), d_in=args.d_model, num_latents=args.latents, k=32)

    def config(name: str, **engine) -> IngestConfig:
        return IngestConfig(
            model=str(tmp / "model"), dataset=str(tmp / "data" / "{lang}.txt"), langs=["mul"],
            layers=[mlp_path("model", f"{{0..{args.layers - 1}}}")], local_sae_dir=str(tmp / "saes"),
            batch=args.batch, shard_docs=args.shard_docs, store=str(tmp / name), device=args.device, **engine,
        )

    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cpus))
    rows.append((f"local ({int(cpus)} torch thread(s))", *timed(config("local"))))
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    t_init = time.perf_counter() - t0
    for n in args.workers:
        cfg = config(f"ray-{n}", engine="ray", workers=n, cpus_per_worker=cpus, gpus_per_worker=args.gpus_per_worker)
        rows.append((f"ray, {n} worker(s) x {cpus:g} CPU", *timed(cfg)))
    ray.shutdown()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}; device {args.device}; "
          f"ray.init {t_init:.1f} s (not counted)", file=sys.stderr)
    print(f"toy Llama d={args.d_model}, {args.layers} layers, SAEs {args.latents} latents k=32; {args.docs} docs, "
          f"shards of {args.shard_docs}, batch {args.batch}")
    base = rows[0][2] / rows[0][1]
    for name, seconds, tokens, startup, steady in rows:
        rate = tokens / seconds
        line = f"  {name:34s} {rate:10,.0f} tok/s  ({seconds:6.1f} s, {tokens:,} tokens)  x{rate / base:.2f} vs local"
        if startup is not None:
            line += f"; first shard after {startup:.1f} s, then {steady:,.0f} tok/s (x{steady / base:.2f})"
        print(line)


if __name__ == "__main__":
    main()
