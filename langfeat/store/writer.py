"""Parquet writing for ingestion: atomic shard files, per-shard aggregate partials and their compaction.

Every file is written to a hidden temporary name and renamed into place, so a file that exists is complete.
A shard is done when its marker ``_partials/shard-<k>.json`` exists (written last, after its data files and
its aggregate partials); the partials live in ``_work/<run_id>/_partials/``, outside the ``lang=<L>`` folder
that commit publishes, and are compacted into ``feature_counts`` / ``neuron_counts`` at the end.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from langfeat.store.atomic import write_atomic
from langfeat.store.layout import arrow_schemas
from langfeat.store.runs import fault_point

EVENT_ROW_GROUP = 1 << 20


def host_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


WRITE_THREADS = int(os.environ.get("LANGFEAT_WRITE_THREADS", "0")) or host_cores()  # layer files written at once
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
# Parquet settings of the events files (chosen by benchmarks/ingest_cpu.py; see benchmarks/RESULTS.md).
EVENT_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": ["dataset"],  # act stays PLAIN: DuckDB reads BYTE_STREAM_SPLIT only for 4/8-byte types
    "column_encoding": {
        "doc_id": "DELTA_BINARY_PACKED",
        "pos": "DELTA_BINARY_PACKED",
        "feature": "BYTE_STREAM_SPLIT",
    },
    "write_statistics": ["doc_id", "pos"],
}
TABLE_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3}
# Parquet settings of the neuron_docs files (sorted by doc_id, neuron; see benchmarks/neuron_docs.py).
NEURON_DOC_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": ["tok_count"],
    "column_encoding": {
        "doc_id": "DELTA_BINARY_PACKED", "neuron": "DELTA_BINARY_PACKED", "act_sum": "BYTE_STREAM_SPLIT",
    },
    "write_statistics": ["doc_id"],
}
PARTIAL_SCHEMA = pa.schema(
    [
        ("layer", pa.int32()), ("unit", pa.int32()), ("tok_count", pa.int64()), ("doc_count", pa.int64()),
        ("act_sum", pa.float64()), ("act_max", pa.float32()), ("act_min", pa.float32()),
    ]
)
KINDS = {"sae": ("feature_counts", "feature"), "neuron": ("neuron_counts", "neuron")}
# The per-unit aggregates (over positive activations) and the value each starts from: its merge's identity.
AGGREGATES: dict[str, tuple[str, float]] = {
    "tok_count": ("int64", 0), "doc_count": ("int64", 0), "act_sum": ("float64", 0.0),
    "act_max": ("float32", -np.inf), "act_min": ("float32", np.inf),
}


def empty_aggregates(n: int) -> dict[str, np.ndarray]:
    """The :data:`AGGREGATES` of ``n`` units before anything was seen."""
    return {col: np.full(n, init, dtype) for col, (dtype, init) in AGGREGATES.items()}


def token_rows(token_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token-id lists as long columns: document index (int64), position (int32) and token id (int32)."""
    lengths = np.asarray([len(t) for t in token_ids], dtype=np.int64)
    doc = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    pos = np.concatenate([np.arange(k, dtype=np.int32) for k in lengths]) if len(lengths) else np.zeros(0, np.int32)
    flat = np.fromiter((t for ids in token_ids for t in ids), dtype=np.int32, count=int(lengths.sum()))
    return doc, pos, flat


def write_parquet_atomic(table: pa.Table, path: Path, **options: Any) -> None:
    """Write ``table`` to ``path`` through a hidden temporary file and a rename."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, **options))


def _constant_strings(value: str, n: int) -> pa.Array | pa.ChunkedArray:
    """``n`` copies of ``value`` as strings, built from raw buffers (no per-row work).

    One chunk of up to :data:`EVENT_ROW_GROUP` rows is built and repeated, so memory stays bounded and the
    int32 offsets cannot overflow; the chunk boundaries fall on row-group boundaries of the events files.
    """
    raw = value.encode("utf-8")

    def chunk(m: int) -> pa.Array:
        offsets = (np.arange(m + 1, dtype=np.int64) * len(raw)).astype(np.int32)
        return pa.Array.from_buffers(pa.string(), m, [None, pa.py_buffer(offsets), pa.py_buffer(raw * m)])

    if n <= EVENT_ROW_GROUP:
        return chunk(n)
    full, rest = divmod(n, EVENT_ROW_GROUP)
    block = chunk(EVENT_ROW_GROUP)
    return pa.chunked_array([block] * full + ([chunk(rest)] if rest else []), pa.string())


def events_table(doc_id: np.ndarray, pos: np.ndarray, feature: np.ndarray, act: np.ndarray, dataset: str) -> pa.Table:
    """An events table in the file schema (act as float16)."""
    schema = arrow_schemas()["events"]
    return pa.table(
        [
            pa.array(doc_id, pa.int64()), pa.array(pos, pa.int32()), pa.array(feature, pa.int32()),
            pa.array(act.astype(np.float16, copy=False), pa.float16()), _constant_strings(dataset, len(doc_id)),
        ],
        schema=schema,
    )


def write_events(path: Path, table: pa.Table) -> None:
    write_parquet_atomic(table, path, row_group_size=EVENT_ROW_GROUP, **EVENT_OPTIONS)


def doc_segments(docs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The runs of equal document index in ``docs`` (one array per batch), in stable document order.

    Returns (document, batch, start, length) per run. Each array is non-decreasing, so a document's events are
    contiguous runs; laying the runs out in this order equals a stable sort of the concatenation by document,
    at the cost of copying contiguous slices instead of gathering every event.
    """
    seg_doc, seg_chunk, seg_start, seg_len = [], [], [], []
    for i, d in enumerate(docs):
        n = len(d)
        if n:
            starts = np.concatenate([[0], np.flatnonzero(d[1:] != d[:-1]) + 1])
            seg_doc.append(d[starts])
            seg_chunk.append(np.full(len(starts), i, np.int64))
            seg_start.append(starts)
            seg_len.append(np.diff(np.append(starts, n)))
    if not seg_doc:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    sd = np.concatenate(seg_doc)
    by_doc = np.argsort(sd, kind="stable")
    return (sd[by_doc], np.concatenate(seg_chunk)[by_doc], np.concatenate(seg_start)[by_doc],
            np.concatenate(seg_len)[by_doc])


def gather_segments(columns: Sequence[np.ndarray], chunk: np.ndarray, start: np.ndarray, length: np.ndarray,
                    dtype: np.dtype) -> np.ndarray:
    """The slices ``columns[chunk][start:start + length]`` laid end to end (one copy, no per-event index)."""
    out = np.empty(int(length.sum()), dtype)
    at = 0
    for c, s, n in zip(chunk.tolist(), start.tolist(), length.tolist(), strict=True):
        out[at : at + n] = columns[c][s : s + n]
        at += n
    return out


@dataclass
class ShardData:
    """Everything one shard writes. Event ``doc`` indices are shard-relative (index into ``rows``)."""

    shard: int
    dataset: str
    base_doc_id: int  # doc_id of row 0 (run_num << 40)
    rows: np.ndarray  # absolute source rows, one per document
    n_tokens: np.ndarray  # tokens per document, BOS included
    texts: list[str]
    token_ids: list[list[int]]
    events: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    # layer -> per batch (doc, neuron, tok_count, act_sum), each batch sorted by (doc, neuron); runs with neuron docs
    neuron_docs: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    stats: dict[tuple[str, int], dict[str, np.ndarray]] = field(default_factory=dict)


def writer_pool() -> ThreadPoolExecutor:
    """The process-wide pool that writes layer files (:data:`WRITE_THREADS` threads, created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="langfeat-writer")
        return _POOL


def shard_marker(partials: Path, shard: int) -> Path:
    return partials / f"shard-{shard:05d}.json"


def shard_done(partials: Path, shard: int) -> dict[str, Any] | None:
    """The marker of a finished shard whose files all exist, else None."""
    marker = shard_marker(partials, shard)
    if not marker.exists():
        return None
    info = json.loads(marker.read_text(encoding="utf-8"))
    root = partials.parent
    if all((root / f).exists() for f in info.get("files", [])):
        return info
    return None


def write_shard(work: Path, lang: str, data: ShardData) -> dict[str, Any]:
    """Write one shard's events, neuron docs, docs, tokens and partials, then its marker; return the marker."""
    lang_dir = work / f"lang={lang}"
    partials = work / "_partials"
    name = f"part-{data.shard:05d}.parquet"
    files: list[Path] = []
    doc_ids = data.base_doc_id + data.rows.astype(np.int64)
    def write_layer(layer: int, chunks: list) -> Path:
        # batches are length-ordered; within a batch a document's events are contiguous and sorted (pos, feature)
        seg_doc, seg_chunk, start, length = doc_segments([c[0] for c in chunks])
        doc = np.repeat(doc_ids[seg_doc], length)
        pos = gather_segments([c[1] for c in chunks], seg_chunk, start, length, np.int32)
        feature = gather_segments([c[2] for c in chunks], seg_chunk, start, length, np.int32)
        act = gather_segments([c[3] for c in chunks], seg_chunk, start, length, np.float16)
        path = lang_dir / "events" / f"layer={layer}" / name
        write_events(path, events_table(doc, pos, feature, act, data.dataset))
        return path

    def write_neuron_layer(layer: int, chunks: list) -> Path:
        seg_doc, seg_chunk, start, length = doc_segments([c[0] for c in chunks])
        cols = [pa.array(np.repeat(doc_ids[seg_doc], length), pa.int64())]
        for i, dtype in ((1, np.int32), (2, np.int32), (3, np.float32)):
            cols.append(pa.array(gather_segments([c[i] for c in chunks], seg_chunk, start, length, dtype)))
        path = lang_dir / "neuron_docs" / f"layer={layer}" / name
        write_parquet_atomic(pa.table(cols, schema=arrow_schemas()["neuron_docs"]), path, **NEURON_DOC_OPTIONS)
        return path

    # Layers are independent files: order + encode + compress them in parallel (numpy and pyarrow release the GIL)
    # on one pool shared by every shard being written, sized to the host's cores.
    items = [(write_layer, *item) for item in sorted(data.events.items())]
    items += [(write_neuron_layer, *item) for item in sorted(data.neuron_docs.items())]
    if len(items) > 1 and WRITE_THREADS > 1:
        files.extend(writer_pool().map(lambda item: item[0](*item[1:]), items))
    else:
        files.extend(fn(layer, chunks) for fn, layer, chunks in items)
    n = len(data.rows)
    docs = pa.table(
        [
            pa.array(doc_ids, pa.int64()), _constant_strings(data.dataset, n), pa.array(data.rows, pa.int64()),
            pa.array(data.n_tokens, pa.int32()), pa.array(data.texts, pa.string()),
        ],
        schema=arrow_schemas()["docs"],
    )
    path = lang_dir / "docs" / name
    write_parquet_atomic(docs, path, **TABLE_OPTIONS)
    files.append(path)
    row, pos, flat = token_rows(data.token_ids)
    tokens = pa.table(
        [pa.array(doc_ids[row], pa.int64()), pa.array(pos, pa.int32()), pa.array(flat, pa.int32())],
        schema=arrow_schemas()["tokens"],
    )
    path = lang_dir / "tokens" / name
    write_parquet_atomic(
        tokens, path, column_encoding={"doc_id": "DELTA_BINARY_PACKED", "pos": "DELTA_BINARY_PACKED"},
        use_dictionary=False, **TABLE_OPTIONS,
    )
    files.append(path)
    for kind in KINDS:
        keys = sorted(k for k in data.stats if k[0] == kind)
        if not keys:
            continue
        cols = {c: [] for c in PARTIAL_SCHEMA.names}
        for key in keys:
            part = data.stats[key]
            cols["layer"].append(np.full(len(part["unit"]), key[1], np.int32))
            for c in PARTIAL_SCHEMA.names[1:]:
                cols[c].append(part[c])
        table = pa.table([np.concatenate(cols[c]) for c in PARTIAL_SCHEMA.names], schema=PARTIAL_SCHEMA)
        path = partials / f"shard-{data.shard:05d}.{kind}.parquet"
        write_parquet_atomic(table, path, **TABLE_OPTIONS)
        files.append(path)
    info = {
        "shard": data.shard, "n_docs": int(n), "n_tokens": int(data.n_tokens.sum()),
        "files": [p.relative_to(work).as_posix() for p in files],
    }
    text = json.dumps(info)
    fault_point(f"shard-{data.shard}")  # data written, marker not yet: the rerun redoes this shard
    write_atomic(shard_marker(partials, data.shard), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return info


def compact_partials(work: Path, lang: str, shards: Sequence[int], dims: Mapping[tuple[str, int], int]) -> None:
    """Fold every shard's partials into ``feature_counts`` / ``neuron_counts`` (sorted by layer, unit).

    Memory is one dense accumulator per (kind, layer) of ``dims[(kind, layer)]`` units, whatever the size of
    the run.
    """
    partials = work / "_partials"
    for kind, (table_name, unit_name) in KINDS.items():
        keys = sorted(k for k in dims if k[0] == kind)
        if not keys:
            continue
        acc = {k: empty_aggregates(dims[k]) for k in keys}
        for shard in shards:
            path = partials / f"shard-{shard:05d}.{kind}.parquet"
            if not path.exists():
                continue
            part = pq.read_table(path)
            layer_col = part["layer"].to_numpy()
            for key in keys:
                sel = layer_col == key[1]
                if not sel.any():
                    continue
                unit = part["unit"].to_numpy()[sel]
                a = acc[key]
                np.add.at(a["tok_count"], unit, part["tok_count"].to_numpy()[sel])
                np.add.at(a["doc_count"], unit, part["doc_count"].to_numpy()[sel])
                np.add.at(a["act_sum"], unit, part["act_sum"].to_numpy()[sel])
                np.maximum.at(a["act_max"], unit, part["act_max"].to_numpy()[sel])
                np.minimum.at(a["act_min"], unit, part["act_min"].to_numpy()[sel])
        cols: dict[str, list[np.ndarray]] = {c: [] for c in ("layer", "unit", *next(iter(acc.values())))}
        for key in keys:
            a = acc[key]
            unit = np.flatnonzero(a["tok_count"] > 0).astype(np.int32)
            cols["layer"].append(np.full(len(unit), key[1], np.int32))
            cols["unit"].append(unit)
            for c, values in a.items():
                cols[c].append(values[unit])
        schema = arrow_schemas()[table_name]
        arrays = [np.concatenate(cols["unit" if f.name == unit_name else f.name]) for f in schema]
        table = pa.table([pa.array(a, f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema)
        write_parquet_atomic(table, work / f"lang={lang}" / table_name / "part-0.parquet", **TABLE_OPTIONS)
