"""Synthetic count stores for the identification tests and benchmarks: random sparse counts with planted
language-specific and shared units, written as complete runs (``feature_counts`` / ``neuron_counts``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from langfeat import langs
from langfeat.layers import mlp_path
from langfeat.store import ensure_store, runs
from langfeat.store.results import to_arrow
from langfeat.store.writer import write_parquet_atomic

TABLES = {"sae": ("feature_counts", "feature"), "neuron": ("neuron_counts", "neuron")}


@dataclass
class Counts:
    """Dense per-run counts ``[run][L, U, ...]`` and the per-language sums the algorithms see."""

    langs: list[str]                 # language tag per run
    datasets: list[str]              # dataset per run
    tok: list[np.ndarray]            # [L, U] int per run
    doc: list[np.ndarray]
    act_sum: list[np.ndarray]
    act_max: list[np.ndarray]
    act_min: list[np.ndarray]
    n_tok: list[int]
    n_doc: list[int]

    def merged(self) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Languages by English name, and summed/combined arrays [L, U, n_lang] and totals [n_lang]."""
        order = sorted(set(self.langs), key=langs.sort_key)
        L, U = self.tok[0].shape
        out = {k: np.zeros((L, U, len(order))) for k in ("tok", "doc", "act_sum")}
        out["act_max"] = np.full((L, U, len(order)), -np.inf)
        out["act_min"] = np.full((L, U, len(order)), np.inf)
        n_tok = np.zeros(len(order), np.int64)
        n_doc = np.zeros(len(order), np.int64)
        for r, tag in enumerate(self.langs):
            i = order.index(tag)
            out["tok"][..., i] += self.tok[r]
            out["doc"][..., i] += self.doc[r]
            out["act_sum"][..., i] += self.act_sum[r]
            fired = self.tok[r] > 0
            out["act_max"][..., i] = np.where(fired, np.maximum(out["act_max"][..., i], self.act_max[r]),
                                              out["act_max"][..., i])
            out["act_min"][..., i] = np.where(fired, np.minimum(out["act_min"][..., i], self.act_min[r]),
                                              out["act_min"][..., i])
            n_tok[i] += self.n_tok[r]
            n_doc[i] += self.n_doc[r]
        out["tok"] = out["tok"].astype(np.int64)
        out["doc"] = out["doc"].astype(np.int64)
        return order, out, n_tok, n_doc


def random_counts(
    seed: int, run_langs: list[str], n_layers: int = 3, n_units: int = 60, datasets: list[str] | None = None,
    planted: int = 6, ties: int = 3, silent: str | None = None,
) -> Counts:
    """Sparse random counts: most units fire on a few % of tokens; ``planted`` units per language of high
    frequency and full document coverage, plus a few shared by two languages; ``ties`` units copied onto others
    (identical entropy and p); the language ``silent`` gets no planted unit (it can end with zero features)."""
    rng = np.random.default_rng(seed)
    datasets = datasets or ["synth"] * len(run_langs)
    L, U = n_layers, n_units
    c = Counts(list(run_langs), list(datasets), [], [], [], [], [], [], [])
    distinct = sorted(set(run_langs))
    special = {tag: rng.choice(L * U, size=planted, replace=False) for tag in distinct if tag != silent}
    shared = rng.choice(L * U, size=max(2, planted // 2), replace=False)
    pair = [t for t in distinct if t != silent][:2]
    src = rng.choice(L * U, size=ties, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(L * U), src), size=ties, replace=False)
    for tag in run_langs:
        n_doc = int(rng.integers(20, 40))
        n_tok = int(n_doc * rng.integers(8, 20))
        rate = rng.exponential(0.03, size=(L, U)) * (rng.random((L, U)) < 0.7)
        tok = rng.binomial(n_tok, np.minimum(rate, 1.0)).astype(np.int64)
        doc = np.minimum(tok, rng.binomial(n_doc, np.minimum(rate * 8, 1.0))).astype(np.int64)
        doc = np.where(tok > 0, np.maximum(doc, 1), 0)
        flat_t, flat_d = tok.reshape(-1), doc.reshape(-1)
        for idx in special.get(tag, []):
            flat_t[idx] = int(n_tok * rng.uniform(0.12, 0.5))
            flat_d[idx] = n_doc if rng.random() < 0.8 else int(n_doc * 0.9)
        if tag in pair:
            for idx in shared:
                flat_t[idx] = int(n_tok * rng.uniform(0.3, 0.35))
                flat_d[idx] = n_doc
        flat_t[dst] = flat_t[src]
        flat_d[dst] = flat_d[src]
        fired = tok > 0
        mean = rng.uniform(0.5, 3.0, size=(L, U))
        act_sum = np.where(fired, tok * mean, 0.0)
        act_max = np.where(fired, np.round(mean * rng.uniform(1.0, 3.0, size=(L, U)), 3), 0.0)
        act_min = np.where(fired, np.round(mean * rng.uniform(0.05, 1.0, size=(L, U)), 3), 0.0)
        for arr, lst in ((tok, c.tok), (doc, c.doc), (act_sum, c.act_sum), (act_max, c.act_max),
                         (act_min, c.act_min)):
            lst.append(arr)
        c.n_tok.append(n_tok)
        c.n_doc.append(n_doc)
    return c


def write_store(root: Path, counts: Counts, kind: str = "sae", model: str = "toy-model",
                sae_model: str | None = "toy-sae", configs: list[str] | None = None) -> list[str]:
    """Write one complete run per entry of ``counts`` (config = ``configs[i]`` or the language); run ids."""
    layout = ensure_store(root)
    table, unit_col = TABLES[kind]
    ids = []
    L = counts.tok[0].shape[0]
    for r, tag in enumerate(counts.langs):
        config = configs[r] if configs else tag
        lang = langs.resolve(tag)
        record = runs.RunManifest(
            origin="ingest", model=model, sae_model=sae_model if kind == "sae" else None,
            neurons=kind == "neuron", dataset=counts.datasets[r], split="train", config=config,
            lang=lang.tag, lang_name=lang.name, start=0, end=counts.n_doc[r], text_column="text",
            layers=list(range(L)), layer_paths=[mlp_path("model", i, kind == "neuron") for i in range(L)],
            sae_layers=list(range(L)) if kind == "sae" else [],
            neuron_layers=list(range(L)) if kind == "neuron" else [], shard_docs=64,
        )
        manifest, _ = runs.begin_run(layout, record)
        layer, unit = np.nonzero(counts.tok[r])
        frame = pl.DataFrame({
            "layer": layer.astype(np.int32), unit_col: unit.astype(np.int32),
            "tok_count": counts.tok[r][layer, unit], "doc_count": counts.doc[r][layer, unit],
            "act_sum": counts.act_sum[r][layer, unit], "act_max": counts.act_max[r][layer, unit],
            "act_min": counts.act_min[r][layer, unit],
        })
        target = layout.run_work(manifest["run_id"]) / f"lang={lang.tag}" / table / "part-0.parquet"
        write_parquet_atomic(to_arrow(frame, table), target)
        runs.commit_run(layout, manifest, n_docs=counts.n_doc[r], n_tokens=counts.n_tok[r])
        ids.append(manifest["run_id"])
    return ids
