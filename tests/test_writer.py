"""The shard writer against an independent computation: events of length-bucketed batches come out as one
stable sort of all events by document, with the file schema and a constant ``dataset`` column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from langfeat.store.layout import arrow_schemas
from langfeat.store.writer import EVENT_ROW_GROUP, ShardData, _constant_strings, write_shard


def _chunks(rng, batches: list[list[int]], tokens: np.ndarray):
    """Per batch: (batch-local doc index, pos, feature, act) with a few events per token, docs non-decreasing."""
    out = []
    for idx in batches:
        doc = np.repeat(np.asarray(idx, np.int32), tokens[idx] * 3)
        pos = np.concatenate([np.repeat(np.arange(n, dtype=np.int32), 3) for n in tokens[idx]])
        feature = rng.integers(0, 1000, len(doc)).astype(np.int32)
        act = (rng.random(len(doc)) + 0.01).astype(np.float16)
        out.append((doc, pos, feature, act))
    return out


def test_events_are_a_stable_sort_by_document(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 9, 12)
    # documents interleaved over batches, document 5 split over two batches (its events keep batch order)
    batches = [[1, 4, 5, 9], [0, 2, 7], [3, 5, 6, 8, 10, 11]]
    chunks = _chunks(rng, batches, tokens)
    data = ShardData(shard=2, dataset="data/{lang}.txt", base_doc_id=7 << 40, rows=np.arange(100, 112),
                     n_tokens=tokens.astype(np.int32), texts=[f"t{i}" for i in range(12)],
                     token_ids=[list(range(n)) for n in tokens], events={4: chunks, 6: []})
    info = write_shard(tmp_path, "xx", data)
    assert info["n_docs"] == 12 and "lang=xx/events/layer=6/part-00002.parquet" in info["files"]
    table = pq.read_table(tmp_path / "lang=xx" / "events" / "layer=4" / "part-00002.parquet")
    assert table.schema == arrow_schemas()["events"]
    doc = np.concatenate([c[0] for c in chunks])
    order = np.argsort(doc, kind="stable")
    assert np.array_equal(table["doc_id"].to_numpy(), (7 << 40) + 100 + doc[order].astype(np.int64))
    for j, name in ((1, "pos"), (2, "feature"), (3, "act")):
        assert np.array_equal(table[name].to_numpy(), np.concatenate([c[j] for c in chunks])[order])
    assert table["dataset"].unique().to_pylist() == ["data/{lang}.txt"]
    empty = pq.read_table(tmp_path / "lang=xx" / "events" / "layer=6" / "part-00002.parquet")
    assert empty.num_rows == 0 and empty.schema == arrow_schemas()["events"]


def test_constant_strings_over_several_row_groups():
    n = 2 * EVENT_ROW_GROUP + 5
    arr = _constant_strings("dåta", n)
    assert len(arr) == n and arr.type == pa.string() and arr.null_count == 0
    assert arr.unique().to_pylist() == ["dåta"]
    assert pc.all(pc.equal(arr, "dåta")).as_py()
    assert _constant_strings("x", 0).to_pylist() == [] and _constant_strings("", 3).to_pylist() == ["", "", ""]
