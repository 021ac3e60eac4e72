"""Identification on a store ingested from the toy model: aggregates equal a recount from raw events, the
result equals the reference on those recounts, and the `langfeat identify` CLI end to end."""

from __future__ import annotations

import csv

import lape_reference as ref
import numpy as np
import polars as pl
import pytest
from factories import table_rows
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat import identify as ident
from langfeat import stats
from langfeat.cli import app
from langfeat.formats.paper import safe_load
from langfeat.ingest import IngestConfig, ingest
from langfeat.store import open_store

CODES = ["eng_Latn", "tha_Thai", "rus_Cyrl"]
LAYERS = [1, 2]


@pytest.fixture(scope="module")
def toy_store(toy_model_dir, toy_sae_dir, tmp_path_factory):
    from langfeat.models import load_model

    tmp = tmp_path_factory.mktemp("ident_store")
    for code in CODES:
        (tmp / f"{code}.txt").write_text("\n".join(flores_lines(code, 10)) + "\n", encoding="utf-8")
    model, tokenizer = load_model(str(toy_model_dir), None, "float32", "cpu")
    cfg = IngestConfig(
        model=str(toy_model_dir), dataset=str(tmp / "{lang}.txt"), langs=CODES, layers=["model.layers.{1..2}.mlp"],
        local_sae_dir=str(toy_sae_dir), neurons=True, batch=8, store=str(tmp / "store"), device="cpu",
    )
    manifests = ingest(cfg, model=model, tokenizer=tokenizer, progress=False)
    return tmp / "store", [m["run_id"] for m in manifests]


def test_aggregates_equal_recount_from_events(toy_store):
    root, ids = toy_store
    with open_store(root) as st:
        agg = st.sql("SELECT * FROM stat_units('sae', ?) ORDER BY run_id, layer, unit", [ids])
        raw = st.sql("SELECT * FROM stat_units_recount(?) ORDER BY run_id, layer, unit", [ids])
    assert agg.height == raw.height > 100
    assert agg.select("run_id", "lang", "layer", "unit", "tok_count", "doc_count").equals(
        raw.select("run_id", "lang", "layer", "unit", "tok_count", "doc_count"))
    assert np.allclose(agg["act_sum"].to_numpy(), raw["act_sum"].to_numpy(), rtol=1e-9)
    assert agg["act_max"].equals(raw["act_max"]) and agg["act_min"].equals(raw["act_min"])


def _dense(frame: pl.DataFrame, order: list[str], n_units: int) -> tuple[np.ndarray, np.ndarray]:
    tok = np.zeros((len(LAYERS), n_units, len(order)), np.int64)
    doc = np.zeros_like(tok)
    for r in frame.iter_rows(named=True):
        i, a = order.index(r["lang"]), LAYERS.index(r["layer"])
        tok[a, r["unit"], i] += r["tok_count"]
        doc[a, r["unit"], i] += r["doc_count"]
    return tok, doc


@pytest.mark.parametrize("sel", [{}, {"lang_specific": True}, {"top": 2, "top_by_frequency": True}])
def test_identify_equals_reference_on_recounted_events(toy_store, sel):
    root, ids = toy_store
    with open_store(root) as st:
        raw = st.sql("SELECT * FROM stat_units_recount(?)", [ids])
        tot = stats.language_totals(st, ids)
        got = ident.compute(st, ids, ident.Params(topk_threshold_ratio=0.5, example_rate=0.5, hfl_rate=0.05,
                                                  layers=LAYERS, **sel))
    order = tot["lang"].to_list()
    assert order == ["en", "ru", "th"]  # English, Russian, Thai
    tok, doc = _dense(raw, order, 128)
    members = ref.sae_lape_assign(tok, doc, tot["n_tokens"].to_numpy(), tot["n_docs"].to_numpy(), 0.5, 0.5, 0.05)
    want = ref.select(members, len(order), **sel)
    remap = {i: layer for i, layer in enumerate(LAYERS)}
    assert got.height == sum(len(v) for v in want.values()) > 0
    for i, tag in enumerate(order):
        mine = got.filter(pl.col("lang") == tag).sort("rank")
        assert list(zip(mine["layer"], mine["feature"], strict=True)) == [(remap[m.layer], m.unit) for m in want[i]]
        assert np.allclose(mine["entropy"].to_numpy(), [m.entropy for m in want[i]], atol=1e-9)
        assert np.allclose(mine["prob"].to_numpy(), [m.p for m in want[i]], atol=1e-9)


def _cli(args: list[str]):
    return CliRunner().invoke(app, ["identify", *args])


def test_cli_identify_exports_and_errors(toy_store, tmp_path):
    root, _ = toy_store
    base = ["--store", str(root), "--layer", "model.layers.{1..2}.mlp", "--topk-threshold-ratio", "0.5",
            "--example-rate", "0.5", "--hfl-rate", "0.05", "--lang-specific"]
    res = _cli([*base, "--dataset-configs", "*:{eng_Latn,tha_Thai}", "--name", "bad"])
    assert res.exit_code == 2 and "match no complete run" in res.output and "tha_Thai" in res.output
    out_csv, out_pt = tmp_path / "set.csv", tmp_path / "set.pt"
    res = _cli([*base, "--algorithm", "sae_lape", "--export-csv", str(out_csv), "--export-pt", str(out_pt)])
    assert res.exit_code == 0, res.output
    name = "sae-lape-r0.5-x0.5-hfl0.05-specific"
    assert f"feature set {name}" in res.output and "candidates" in res.output
    with open_store(root) as st:
        stored = stats.feature_set(st, name)
        raw = st.sql("SELECT * FROM stat_units_recount(?)", [st.runs()["run_id"].to_list()])
        docs = st.docs()
    # the summary: per language docs, tokens, units and the entropy range, then the totals line, by hand
    order = ["en", "ru", "th"]
    tok, doc = _dense(raw, order, 128)
    n_tok = [docs.filter(pl.col("lang") == t)["n_tokens"].sum() for t in order]
    n_doc = [docs.filter(pl.col("lang") == t).height for t in order]
    members = ref.sae_lape_assign(tok, doc, np.array(n_tok), np.array(n_doc), 0.5, 0.5, 0.05)
    want_rows = []
    for tag, name_, nd, nt in zip(order, ["English", "Russian", "Thai"], n_doc, n_tok, strict=True):
        ent = sorted(stored.filter(pl.col("lang") == tag)["entropy"].to_list())
        med = float(np.median(ent)) if ent else None
        cells = [f"{x:.3f}" if x is not None else "" for x in (ent[0] if ent else None, med, ent[-1] if ent else None)]
        want_rows.append([tag, name_, str(nd), str(nt), str(len(ent)), *cells])
    assert table_rows(res.stdout) == want_rows
    n_units = stored.select("layer", "feature").unique().height
    line = (f"algorithm sae-lape (sae); {n_units} units, {stored.height} (language, unit) memberships; "
            f"{len({(m.layer, m.unit) for m in members})} candidates; entropy {stored['entropy'].min():.4f} – "
            f"{stored['entropy'].max():.4f}; 3 runs, layers 1-2")
    assert line in res.stdout.splitlines()
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["lang"], int(r["layer"]), int(r["feature"])) for r in rows] == list(
        zip(stored["lang"], stored["layer"], stored["feature"], strict=True))
    pt = safe_load(out_pt)
    assert pt["sorted_lang"] == ["English", "Russian", "Thai"]
    n_pt = sum(len(t) for per_lang in pt["final_indice"] for t in per_lang)
    assert n_pt == stored.height > 0
    again = _cli(base)
    assert again.exit_code == 2 and "already exists" in again.output
    assert _cli([*base, "--overwrite"]).exit_code == 0


def test_cli_identify_neuron_lape(toy_store):
    root, _ = toy_store
    res = _cli(["--store", str(root), "--algorithm", "lape", "--layer", "model.layers.{1..2}.mlp",
                "--top-rate", "0.05", "--name", "neurons"])
    assert res.exit_code == 0, res.output
    with open_store(root) as st:
        df = stats.feature_set(st, "neurons")
        want = ident.compute(st, st.runs()["run_id"].to_list(), ident.Params(
            algorithm="lape", kind="neuron", top_rate=0.05, layers=LAYERS, units_per_layer=64))
    assert set(df["kind"]) == {"neuron"} and set(df["algorithm"]) == {"lape"}
    assert sorted(zip(df["lang"], df["layer"], df["feature"], strict=True)) == sorted(
        zip(want["lang"], want["layer"], want["feature"], strict=True))
    assert "64 units per layer" in res.output
    # against the numpy LAPE on the stored neuron counts (dense, 64 neurons per layer), paper defaults
    with open_store(root) as st:
        counts = st.neuron_counts().rename({"neuron": "unit"})
        docs = st.docs()
    order = ["en", "ru", "th"]
    tok, _ = _dense(counts, order, 64)
    n_tok = np.array([docs.filter(pl.col("lang") == t)["n_tokens"].sum() for t in order])
    ref_sel = ref.select(ref.lape_assign(tok, n_tok, 0.95, 0.05, 0.95), len(order))
    for i, tag in enumerate(order):
        mine = df.filter(pl.col("lang") == tag).sort("rank")
        assert list(zip(mine["layer"], mine["feature"], strict=True)) == [(LAYERS[m.layer], m.unit)
                                                                         for m in ref_sel[i]]
        np.testing.assert_allclose(mine["entropy"].to_numpy(), [m.entropy for m in ref_sel[i]], rtol=1e-9)
    assert df.height == sum(len(v) for v in ref_sel.values()) > 0
    line = (f"algorithm lape (neuron); {df.select('layer', 'feature').unique().height} units, {df.height} "
            f"(language, unit) memberships; 64 units per layer; entropy {df['entropy'].min():.4f} – "
            f"{df['entropy'].max():.4f}; 3 runs, layers 1-2")
    assert line in res.stdout.splitlines()
