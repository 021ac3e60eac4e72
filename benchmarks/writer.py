"""Writer throughput: synthetic SAE events of real shape through the real shard writer (``write_shard``), CPU only.

    .venv/bin/python benchmarks/writer.py [--docs 1024] [--layers 4] [--k 32] [--latents 131072] [--repeat 3]

A shard is what ingestion hands the writer: per layer, one chunk per length-bucketed batch (batch-local doc
index, pos, feature sorted within each token, float16 act > 0). Every measurement writes whole shards (events,
docs, tokens, partials, marker) to a temporary folder. Reported per configuration:

- ``workers`` writer processes, each writing its own shards with one writer thread (the pool a host runs, one per
  core): events/s in all, and per core = events / CPU-seconds of the writing processes (not wall time, so a busy
  machine does not hide the cost; wall rates are printed beside it);
- one process, its layer files on ``threads`` writer threads (pyarrow and numpy release the GIL);
- the split of one thread's time between ordering events by document and Parquet encoding + compression;
- bytes per stored event.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_shard(n_docs: int, layers: int, k: int, latents: int, batch: int, seed: int = 0):
    """A ``ShardData`` shaped like ingestion's: SAE events of ``k`` latents per token per layer."""
    from langfeat.activations import plan_batches
    from langfeat.store.writer import ShardData

    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 91, n_docs)
    events: dict[int, list] = {layer: [] for layer in range(layers)}
    for idx in plan_batches(lengths.tolist(), batch):
        idx = np.asarray(idx, np.int32)
        n_rows = int(lengths[idx].sum())
        row_doc = np.repeat(idx, lengths[idx])
        row_pos = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths[idx]])
        for layer in range(layers):
            feature = np.sort(rng.integers(0, latents, (n_rows, k), dtype=np.int32), axis=1)
            # activations with bf16 precision (as from a bf16 encoder), converted to float16 like the encoder's output
            bits = rng.gamma(2.0, 1.5, (n_rows, k)).astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
            act = bits.view(np.float32).astype(np.float16)
            keep = rng.random((n_rows, k)) > 0.02  # a few top-k slots are zero: not events
            r, c = np.nonzero(keep)
            events[layer].append((row_doc[r], row_pos[r], feature[r, c], act[r, c]))
    token_ids = [rng.integers(0, 50_000, n).tolist() for n in lengths]
    return ShardData(
        shard=0, dataset="/data/flores/{lang}.devtest.gz", base_doc_id=3 << 40,
        rows=np.arange(n_docs, dtype=np.int64), n_tokens=lengths.astype(np.int32),
        texts=[f"document {i} " * 20 for i in range(n_docs)], token_ids=token_ids, events=events,
    )


def n_events(data) -> int:
    return sum(len(c[0]) for chunks in data.events.values() for c in chunks)


def _write(data, out: Path, shard: int) -> None:
    from langfeat.store.writer import write_shard

    data.shard = shard
    write_shard(out, "xx", data)


def _worker(args: tuple) -> tuple[float, float, int]:
    """One writer process (one thread): write ``repeat`` shards; return (wall s, CPU s, events)."""
    n_docs, layers, k, latents, batch, repeat, seed, barrier_path = args
    os.environ["LANGFEAT_WRITE_THREADS"] = "1"
    data = synthetic_shard(n_docs, layers, k, latents, batch, seed)
    out = Path(tempfile.mkdtemp(prefix="langfeat-writer-"))
    _write(data, out / "warm", 0)
    while not Path(barrier_path).exists():  # start together
        time.sleep(0.01)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(repeat):
        _write(data, out / str(i), i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(out, ignore_errors=True)
    return wall, cpu, n_events(data) * repeat


def processes(workers: int, cfg: tuple, repeat: int) -> tuple[float, float, float]:
    """Events/s in all (wall), and per core (events / CPU s, and events / wall s / workers)."""
    barrier = Path(tempfile.mkdtemp(prefix="langfeat-barrier-")) / "go"
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        res = pool.map_async(_worker, [(*cfg, repeat, seed, str(barrier)) for seed in range(workers)])
        time.sleep(0.5)
        while not res.ready():
            barrier.touch()
            res.wait(0.1)
        out = res.get()
    wall = max(r[0] for r in out)
    events = sum(r[2] for r in out)
    cpu = sum(r[1] for r in out)
    return events / wall, events / cpu, events / wall / workers


def threads(n_threads: int, data, repeat: int) -> tuple[float, float]:
    """One process writing its layer files on ``n_threads`` threads: events/s (wall) and events per CPU s."""
    import langfeat.store.writer as writer

    writer.WRITE_THREADS = n_threads
    writer._POOL = None
    out = Path(tempfile.mkdtemp(prefix="langfeat-writer-"))
    _write(data, out / "warm", 0)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(repeat):
        _write(data, out / str(i), i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(out, ignore_errors=True)
    return n_events(data) * repeat / wall, n_events(data) * repeat / cpu


def split(data) -> tuple[float, float, float]:
    """CPU seconds of one thread: ordering all layers' events by document, building + writing the Parquet files;
    and the events files' bytes per event."""
    from langfeat.store.writer import doc_segments, events_table, gather_segments, write_events

    out = Path(tempfile.mkdtemp(prefix="langfeat-writer-"))
    doc_ids = data.base_doc_id + data.rows
    t_order = t_write = 0.0
    size = 0
    for layer, chunks in sorted(data.events.items()):
        c0 = time.process_time()
        seg_doc, seg_chunk, start, length = doc_segments([c[0] for c in chunks])
        cols = [np.repeat(doc_ids[seg_doc], length)] + [
            gather_segments([c[j] for c in chunks], seg_chunk, start, length, dt)
            for j, dt in ((1, np.int32), (2, np.int32), (3, np.float16))
        ]
        c1 = time.process_time()
        path = out / f"{layer}.parquet"
        write_events(path, events_table(*cols, data.dataset))
        c2 = time.process_time()
        t_order += c1 - c0
        t_write += c2 - c1
        size += path.stat().st_size
    shutil.rmtree(out, ignore_errors=True)
    return t_order, t_write, size / n_events(data)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="writer throughput (CPU)")
    ap.add_argument("--docs", type=int, default=1024, help="documents per shard")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--latents", type=int, default=131072)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="shards written per measurement")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    cfg = (args.docs, args.layers, args.k, args.latents, args.batch)
    data = synthetic_shard(*cfg)
    ev = n_events(data)
    import pyarrow

    print(f"machine: {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), pyarrow {pyarrow.__version__}; "
          f"shard: {args.docs} docs, {int(data.n_tokens.sum()):,} tokens, {args.layers} layers x k={args.k}, "
          f"{ev:,} events", file=sys.stderr)
    t_order, t_write, bpe = split(data)
    print(f"one thread, CPU time: order {ev / t_order / 1e6:7.2f} M events/s, Parquet {ev / t_write / 1e6:7.2f} M "
          f"events/s, both {ev / (t_order + t_write) / 1e6:6.2f} M events/s; {bpe:.3f} B/event")
    for w in args.workers:
        total, per_cpu, per_wall = processes(w, cfg, args.repeat)
        print(f"{w} writer process(es): {total / 1e6:7.2f} M events/s in all; per core {per_cpu / 1e6:6.2f} M "
              f"events/s (CPU time), {per_wall / 1e6:6.2f} M events/s (wall)")
    for t in args.workers:
        wall, per_cpu = threads(t, data, args.repeat)
        print(f"1 process, {t} writer thread(s): {wall / 1e6:7.2f} M events/s; {per_cpu / 1e6:6.2f} M events per "
              "CPU-second")


if __name__ == "__main__":
    main()
