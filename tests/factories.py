"""Test data written straight to the store layout: Parquet files with the schemas of db/tables.sql, complete (or
running / failed) runs through the run lifecycle, feature sets, and synthetic count stores with planted
language-specific units for the identification tests.

Every table here is written from plain Python / numpy values with pyarrow (not with the library's writers), so
what the store reads back can be compared with the values given.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from langfeat import langs
from langfeat.layers import mlp_path
from langfeat.store import ensure_store
from langfeat.store import runs as runs_mod
from langfeat.store.layout import Layout, arrow_schemas, doc_id

Event = tuple[int, int, int, float]                     # (doc index in the run, pos, feature, act)
CountRow = tuple[int, int, int, int, float, float, float]  # (layer, unit, tok, doc, act_sum, act_max, act_min)
COUNT_COLUMNS = ["tok_count", "doc_count", "act_sum", "act_max", "act_min"]
BOS = 1  # token id of BOS in runs built from texts (one token per character after it)


# ---------------------------------------------------------------------------------------------------------------
# files


def write_table(path: Path, table: str, columns: dict[str, Any]) -> None:
    """Write ``columns`` to ``path`` with the file schema of ``table`` (float16 columns through numpy)."""
    schema = arrow_schemas()[table]
    arrays = []
    for field in schema:
        values = columns[field.name]
        if field.type == pa.float16():
            arrays.append(pa.array(np.asarray(values, dtype=np.float16), type=pa.float16()))
        else:
            arrays.append(pa.array(values, type=field.type))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def count_rows(events: dict[int, list[Event]]) -> list[CountRow]:
    """The per-(layer, feature) aggregates of ``events[layer]``, computed in plain Python."""
    out = []
    for layer, evs in events.items():
        for feat in sorted({e[2] for e in evs}):
            acts = [e[3] for e in evs if e[2] == feat]
            out.append((layer, feat, len(acts), len({e[0] for e in evs if e[2] == feat}), sum(acts), max(acts),
                        min(acts)))
    return out


def _count_columns(rows: list[CountRow], unit: str) -> dict[str, list]:
    names = ["layer", unit, *COUNT_COLUMNS]
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------------------------
# runs


def run_record(lang: str, **fields: Any) -> dict[str, Any]:
    """The manifest record of an ingest run of ``lang``, as :class:`RunManifest` writes it (``fields`` override
    the defaults; ``kind`` is the run's origin)."""
    origin = fields.pop("kind", "ingest")
    values: dict[str, Any] = {
        "model": "toy", "sae_model": "toy-sae", "dataset": "flores", "split": "devtest", "config": lang,
        "lang": lang, "lang_name": langs.english_name(lang), "start": 0, "end": 0, "text_column": "text",
        "sae_layers": [], "neuron_layers": [], "shard_docs": 1024,
    }
    values.update(fields)
    known = {f.name for f in dataclasses.fields(runs_mod.RunManifest)}
    record = runs_mod.RunManifest(origin=origin, **{k: v for k, v in values.items() if k in known}).to_record()
    record.update({k: v for k, v in values.items() if k not in known})
    return record


Tables = dict[str, dict[str, Any]]


def write_run(layout: Layout, record: dict[str, Any], tables: Tables | Callable[[int], Tables], n_docs: int,
              n_tokens: int, status: str = "complete") -> dict[str, Any]:
    """Begin a run of ``record``, write ``tables`` (``{"docs": columns, "events/layer=1": columns, ...}``, or a
    function of the run number giving them) into its work folder, then commit it (``status='complete'``), fail
    it (``'failed'``) or leave it ``'running'``."""
    manifest, _ = runs_mod.begin_run(layout, record)
    if callable(tables):
        tables = tables(manifest["run_num"])
    work = layout.run_work(manifest["run_id"]) / f"lang={record['lang']}"
    for key, columns in tables.items():
        write_table(work / key / "part-0.parquet", key.split("/")[0], columns)
    if status == "complete":
        return runs_mod.commit_run(layout, manifest, n_docs=n_docs, n_tokens=n_tokens)
    if status == "failed":
        runs_mod.fail_run(layout, manifest, "boom")
        return dict(manifest, status="failed")
    runs_mod.release_run(layout, manifest["run_id"])  # left running by a writer that is gone
    return manifest


def add_run(
    layout: Layout, lang: str, dataset: str = "flores", texts: Sequence[str] | None = None,
    events: dict[int, list[Event]] | None = None, status: str = "complete", start: int = 0, neurons: bool = False,
    *, token_ids: Sequence[Sequence[int]] | None = None, neuron_counts: list[CountRow] | None = None,
    layers: list[int] | None = None, neuron_docs: dict[int, list[tuple[int, int, int, float]]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A run of documents with their tokens, SAE ``events[layer] = [(doc, pos, feature, act)]`` and the
    ``feature_counts`` aggregated from them.

    Documents are ``texts`` (tokens: BOS then one id per character, ``ord(c)``) or ``token_ids`` (texts "x").
    ``neurons=True`` stores the feature counts again as ``neuron_counts``; ``neuron_counts`` gives them
    explicitly. ``neuron_docs[layer] = [(doc, neuron, tok_count, act_sum)]`` stores per-document neuron values
    (the run is then one with neuron docs at those layers). ``layers`` defaults to the event layers; ``fields``
    override the run record (model, sae_model, …).
    """
    if token_ids is None:
        texts = list(texts or [])
        token_ids = [[BOS, *map(ord, t)] for t in texts]
    elif texts is None:
        texts = ["x"] * len(token_ids)
    events = events or {}
    if neurons and neuron_counts is None:
        neuron_counts = count_rows(events)
    if neuron_docs:
        fields = {"neuron_docs": True, "neuron_layers": sorted(neuron_docs), **fields}
    record = run_record(
        lang, dataset=dataset, start=start, end=start + len(texts),
        neurons=neuron_counts is not None or bool(neuron_docs),
        layers=layers if layers is not None else sorted(set(events) | set(neuron_docs or {})), **fields,
    )
    n_tok = [len(t) for t in token_ids]

    def tables(run_num: int) -> Tables:
        ids = [doc_id(run_num, start + i) for i in range(len(texts))]
        out = _run_tables(ids, dataset, start, list(texts), token_ids, events, neuron_counts)
        for layer, rows in (neuron_docs or {}).items():
            out[f"neuron_docs/layer={layer}"] = {
                "doc_id": [ids[r[0]] for r in rows], "neuron": [r[1] for r in rows], "tok_count": [r[2] for r in rows],
                "act_sum": [r[3] for r in rows],
            }
        return out

    return write_run(layout, record, tables, n_docs=len(texts), n_tokens=sum(n_tok), status=status)


def _run_tables(ids: list[int], dataset: str, start: int, texts: list[str], token_ids: Sequence[Sequence[int]],
                events: dict[int, list[Event]], neuron_counts: list[CountRow] | None) -> Tables:
    tok_rows = [(d, p, t) for d, toks in zip(ids, token_ids, strict=True) for p, t in enumerate(toks)]
    tables: Tables = {
        "docs": {"doc_id": ids, "dataset": [dataset] * len(ids), "row": [start + i for i in range(len(ids))],
                 "n_tokens": [len(t) for t in token_ids], "text": texts},
        "tokens": {"doc_id": [r[0] for r in tok_rows], "pos": [r[1] for r in tok_rows],
                   "token_id": [r[2] for r in tok_rows]},
    }
    for layer, evs in events.items():
        tables[f"events/layer={layer}"] = {
            "doc_id": [ids[e[0]] for e in evs], "pos": [e[1] for e in evs], "feature": [e[2] for e in evs],
            "act": [e[3] for e in evs], "dataset": [dataset] * len(evs),
        }
    if events:
        tables["feature_counts"] = _count_columns(count_rows(events), "feature")
    if neuron_counts is not None:
        tables["neuron_counts"] = _count_columns(neuron_counts, "neuron")
    return tables


# ---------------------------------------------------------------------------------------------------------------
# feature sets


def write_set(root: str | Path, name: str, rows: Sequence[tuple] | pl.DataFrame, kind: str = "sae",
              algorithm: str = "imported", params: dict[str, Any] | None = None) -> Path:
    """Feature set ``name``: ``rows`` of (lang, layer, feature[, act_min, act_max]) or a frame of feature_sets
    columns (missing ones null; algorithm / kind filled in when absent); ``params`` become params.json."""
    if isinstance(rows, pl.DataFrame):
        columns = rows.to_dict(as_series=False)
    else:
        names = ["lang", "layer", "feature", "act_min", "act_max"][: len(rows[0])]
        columns = {c: [r[i] for r in rows] for i, c in enumerate(names)}
    n = len(columns["lang"])
    columns.setdefault("algorithm", [algorithm] * n)
    columns.setdefault("kind", [kind] * n)
    for field in arrow_schemas()["feature_sets"]:
        columns.setdefault(field.name, [None] * n)
    folder = ensure_store(root).set_dir(name)
    write_table(folder / "features.parquet", "feature_sets", columns)
    if params is not None:
        (folder / "params.json").write_text(json.dumps(params), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# synthetic count stores (identification)

COUNT_TABLES = {"sae": ("feature_counts", "feature"), "neuron": ("neuron_counts", "neuron")}


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
    """Write one complete counts-only run per entry of ``counts`` (config = ``configs[i]`` or the language)."""
    layout = ensure_store(root)
    table, unit_col = COUNT_TABLES[kind]
    ids = []
    L = counts.tok[0].shape[0]
    for r, tag in enumerate(counts.langs):
        lang = langs.resolve(tag)
        record = run_record(
            lang.tag, model=model, sae_model=sae_model if kind == "sae" else None, neurons=kind == "neuron",
            dataset=counts.datasets[r], split="train", config=configs[r] if configs else tag,
            lang_name=lang.name, end=counts.n_doc[r], layers=list(range(L)),
            layer_paths=[mlp_path("model", i, kind == "neuron") for i in range(L)],
            sae_layers=list(range(L)) if kind == "sae" else [],
            neuron_layers=list(range(L)) if kind == "neuron" else [],
            shard_docs=64,
        )
        layer, unit = np.nonzero(counts.tok[r])
        columns = {"layer": layer, unit_col: unit, "tok_count": counts.tok[r][layer, unit],
                   "doc_count": counts.doc[r][layer, unit], "act_sum": counts.act_sum[r][layer, unit],
                   "act_max": counts.act_max[r][layer, unit], "act_min": counts.act_min[r][layer, unit]}
        manifest = write_run(layout, record, {table: columns}, n_docs=counts.n_doc[r], n_tokens=counts.n_tok[r])
        ids.append(manifest["run_id"])
    return ids


# ---------------------------------------------------------------------------------------------------------------
# reading CLI output


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in ``text``: one list of stripped cells per line drawn as ``│ … │``
    (a table nested in a panel keeps an empty first and last cell)."""
    rows = []
    for line in text.splitlines():
        s = line.strip()
        if len(s) > 1 and s[0] == s[-1] == "│":
            rows.append([c.strip() for c in s[1:-1].split("│")])
    return rows
