"""Benchmark: identification at the paper's scale from the count aggregates, against a dense torch implementation
written the way the paper computes it, and a full recount from raw events.

Synthetic data: 16 layers x 131,072 features x 15 languages, one run per language. Every feature fires in a
language with probability 0.6; p = tok_count / n_tokens is log-normal around 0.05 % (a few % at most), plus 70
planted language-specific features per language (full document coverage, 12-40 % of tokens). Events (the raw
table) are generated separately, in a temporary folder that is deleted afterwards.

    .venv/bin/python benchmarks/identify_scale.py [--events 500000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from langfeat import identify as ident
from langfeat import langs, stats
from langfeat.store import ensure_store, open_store, runs
from langfeat.store.layout import arrow_schemas, doc_id
from langfeat.store.results import to_arrow
from langfeat.store.writer import write_parquet_atomic

LANGS = ["en", "de", "fr", "it", "pt", "hi", "es", "th", "bg", "ru", "tr", "vi", "ja", "ko", "zh"]
N_LAYERS, N_FEAT = 16, 131_072


def make_counts(root: Path, seed: int = 0) -> list[str]:
    """One complete run per language with feature_counts for every feature that fired; the run ids."""
    rng = np.random.default_rng(seed)
    layout = ensure_store(root)
    ids = []
    for tag in LANGS:
        n_doc = int(rng.integers(997, 3000))
        n_tok = int(n_doc * rng.uniform(30, 80))
        fires = rng.random((N_LAYERS, N_FEAT)) < 0.6
        p = np.minimum(np.exp(rng.normal(math.log(5e-4), 1.3, size=(N_LAYERS, N_FEAT))), 0.05)
        tok = np.where(fires, np.maximum(rng.binomial(n_tok, p), 1), 0)
        doc = np.minimum(tok, np.maximum(1, rng.binomial(n_doc, np.minimum(p * 20, 1.0)))) * (tok > 0)
        planted = rng.choice(N_LAYERS * N_FEAT, 70, replace=False)
        tok.reshape(-1)[planted] = (n_tok * rng.uniform(0.12, 0.4, 70)).astype(np.int64)
        doc.reshape(-1)[planted] = n_doc
        layer, feat = np.nonzero(tok)
        t = tok[layer, feat]
        mean = rng.uniform(0.5, 4.0, len(t))
        frame = pl.DataFrame({
            "layer": layer.astype(np.int32), "feature": feat.astype(np.int32), "tok_count": t.astype(np.int64),
            "doc_count": doc[layer, feat].astype(np.int64), "act_sum": t * mean,
            "act_max": (mean * 2).astype(np.float32), "act_min": (mean / 3).astype(np.float32),
        })
        lang = langs.resolve(tag)
        record = {
            "kind": "import", "model": "bench-model", "sae_model": "bench-sae", "neurons": False,
            "dataset": "bench", "split": "train", "config": tag, "lang": lang.tag, "lang_name": lang.name,
            "start": 0, "end": n_doc, "template": None, "text_column": None, "layers": list(range(N_LAYERS)),
            "layer_paths": [f"model.layers.{i}.mlp" for i in range(N_LAYERS)], "sae_layers": list(range(N_LAYERS)),
            "neuron_layers": [], "dtype": "float32", "max_length": None, "bos": True, "shard_docs": None,
        }
        manifest, _ = runs.begin_run(layout, record)
        target = layout.run_work(manifest["run_id"]) / f"lang={lang.tag}" / "feature_counts" / "part-0.parquet"
        write_parquet_atomic(to_arrow(frame, "feature_counts"), target, compression="zstd")
        runs.commit_run(layout, manifest, n_docs=n_doc, n_tokens=n_tok)
        ids.append(manifest["run_id"])
    return ids


def dense_torch(st, ids: list[str], ratio: float, example_rate: float, hfl_rate: float) -> tuple[int, float, float]:
    """SAE-LAPE as the paper computes it: dense [L, F, langs] tensors, topk over all entropies, masks.
    Returns (language-specific features, load seconds, compute seconds)."""
    import torch

    t0 = time.perf_counter()
    tot = stats.language_totals(st, ids)
    order = tot["lang"].to_list()
    tok = torch.zeros(N_LAYERS, N_FEAT, len(order))
    ex = torch.zeros(N_LAYERS, N_FEAT, len(order))
    df = st.sql("SELECT lang, layer, unit, tok_count, doc_count FROM stat_units('sae', ?)", [ids])
    li = torch.from_numpy(df["lang"].replace_strict(order, list(range(len(order)))).to_numpy().astype(np.int64))
    la = torch.from_numpy(df["layer"].to_numpy().astype(np.int64))
    un = torch.from_numpy(df["unit"].to_numpy().astype(np.int64))
    tok.index_put_((la, un, li), torch.from_numpy(df["tok_count"].to_numpy().astype(np.float32)), accumulate=True)
    ex.index_put_((la, un, li), torch.from_numpy(df["doc_count"].to_numpy().astype(np.float32)), accumulate=True)
    n_tok = torch.tensor(tot["n_tokens"].to_list(), dtype=torch.float32)
    n_ex = torch.tensor(tot["n_docs"].to_list(), dtype=torch.float32)
    t1 = time.perf_counter()
    p = tok / n_tok
    q = p / p.sum(-1, keepdim=True)
    q[torch.isnan(q)] = 0
    logq = torch.where(q > 0, q.log(), torch.zeros_like(q))
    h = -(q * logq).sum(-1)
    ex_thr = (n_ex * example_rate).floor()
    tok_thr = (n_tok * hfl_rate).floor()
    keep = (ex >= ex_thr).any(-1) & (tok > tok_thr).any(-1)
    h[~keep] = float("inf")
    n_cand = int(keep.sum())
    flat = h.flatten()
    _, index = flat.topk(n_cand, largest=False)
    sel = p.reshape(-1, len(order))[index]  # [n, langs]
    m = sel.max(-1, keepdim=True).values
    assigned = sel >= ratio * m
    specific = assigned.sum(-1) == 1
    n_specific = int(specific.sum())
    t2 = time.perf_counter()
    return n_specific, t1 - t0, t2 - t1


def make_events(root: Path, n_events: int, seed: int = 1) -> list[str]:
    """Runs with raw events only (15 languages x 16 layers files), ~n_events in all; the run ids."""
    rng = np.random.default_rng(seed)
    layout = ensure_store(root)
    per_file = n_events // (len(LANGS) * N_LAYERS)
    schema = arrow_schemas()["events"]
    ids = []
    for tag in LANGS:
        lang = langs.resolve(tag)
        record = {
            "kind": "ingest", "model": "bench-model", "sae_model": "bench-sae", "neurons": False,
            "dataset": "bench-events", "split": "train", "config": tag, "lang": lang.tag, "lang_name": lang.name,
            "start": 0, "end": None, "template": None, "text_column": None, "layers": list(range(N_LAYERS)),
            "layer_paths": [], "sae_layers": list(range(N_LAYERS)), "neuron_layers": [], "dtype": "float16",
            "max_length": None, "bos": True, "shard_docs": None,
        }
        manifest, _ = runs.begin_run(layout, record)
        k = 32
        n_tokens = per_file // k
        doc_len = 48
        n_docs = max(1, n_tokens // doc_len)
        for layer in range(N_LAYERS):
            docs = np.repeat(np.arange(n_docs, dtype=np.int64), doc_len * k)[: n_tokens * k]
            pos = np.tile(np.repeat(np.arange(doc_len, dtype=np.int32), k), n_docs)[: n_tokens * k]
            feat = rng.integers(0, N_FEAT, size=len(docs), dtype=np.int32)
            act = rng.exponential(1.0, size=len(docs)).astype(np.float16)
            table = pa.Table.from_arrays([
                pa.array(doc_id(manifest["run_num"], 0) + docs), pa.array(pos), pa.array(feat), pa.array(act),
                pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(docs), np.int32)), pa.array(["bench"]))
                .cast(pa.string()),
            ], schema=schema)
            target = layout.run_work(manifest["run_id"]) / f"lang={lang.tag}" / "events" / f"layer={layer}" \
                / "part-0.parquet"
            write_parquet_atomic(table, target, compression="zstd", row_group_size=1 << 20)
        runs.commit_run(layout, manifest, n_docs=n_docs, n_tokens=n_tokens)
        ids.append(manifest["run_id"])
    return ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000_000, help="raw events for the recount (0: skip)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the store here instead of a temp dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="identify-bench-"))
    root = args.keep or tmp / "store"
    try:
        t = time.perf_counter()
        ids = make_counts(root)
        print(f"counts written in {time.perf_counter() - t:.1f} s")
        with open_store(root) as st:
            rows = st.sql("SELECT count(*) AS n FROM stat_units('sae', ?)", [ids])["n"][0]
        print(f"feature_counts rows: {rows:,} ({rows / (N_LAYERS * N_FEAT * len(LANGS)):.0%} of the dense grid)")
        timings = []
        for i in range(3):
            t = time.perf_counter()
            df = ident.identify(root, topk_threshold_ratio=0.5, lang_specific=True, layers=list(range(N_LAYERS)),
                                name="bench", overwrite=True)
            timings.append(time.perf_counter() - t)
            print(f"identify (open store, select runs, SQL, write set) run {i}: {timings[-1]:.2f} s, "
                  f"{df.height} features")
        with open_store(root) as st:
            t = time.perf_counter()
            cand = st.sql("SELECT count(DISTINCT (layer, unit)) AS n FROM sae_lape_candidates('sae', ?, "
                          "example_rate := 0.98, hfl_rate := 0.1)", [ids])["n"][0]
            print(f"candidates: {cand} ({time.perf_counter() - t:.2f} s)")
            t = time.perf_counter()
            n_lape = ident.compute(st, ids, ident.Params(algorithm="lape", kind="sae", layers=list(range(N_LAYERS)),
                                                         units_per_layer=N_FEAT)).height
            print(f"LAPE on the same counts (percentiles over 31.5 M values): {time.perf_counter() - t:.2f} s, "
                  f"{n_lape} memberships")
            n_dense, load_s, comp_s = dense_torch(st, ids, 0.5, 0.98, 0.1)
        best = min(timings)
        print(f"dense torch: load {load_s:.2f} s + compute {comp_s:.2f} s = {load_s + comp_s:.2f} s; "
              f"{n_dense} features (SQL: {df.height})")
        print(f"ratio dense torch (load+compute) / SQL identify: {(load_s + comp_s) / best:.2f}x; "
              f"compute only: {comp_s / best:.2f}x")
        if args.events:
            ev_root = tmp / "events"
            t = time.perf_counter()
            ev_ids = make_events(ev_root, args.events)
            gen = time.perf_counter() - t
            size = sum(f.stat().st_size for f in ev_root.rglob("*.parquet"))
            with open_store(ev_root) as st:
                n = st.sql("SELECT count(*) AS n FROM events")["n"][0]
                print(f"events: {n:,} in {gen:.0f} s, {size / 1e9:.2f} GB ({size / n:.2f} B/event)")
                t = time.perf_counter()
                st.con.execute(f"CREATE TEMP TABLE rc AS SELECT * FROM stat_units_recount({ev_ids!r})")
                rec = time.perf_counter() - t
                n_rows = st.con.sql("SELECT count(*) FROM rc").fetchall()[0][0]
            print(f"recount from raw events: {rec:.1f} s ({n / rec / 1e6:.1f} M events/s), {n_rows:,} count rows; "
                  f"ratio recount / identify-from-aggregates: {rec / best:.0f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
