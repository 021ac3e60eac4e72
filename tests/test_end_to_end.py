"""The whole pipeline through the CLI on the toy model, with no stand-ins: ingest → identify → ppl / generate /
classify / check on the stored set, export → import round trips, and identify on the paper's count files equal to
identify on the ingested runs they were written from."""

from __future__ import annotations

import json

import fasttext
import lape_reference as ref
import numpy as np
import polars as pl
import pytest
import torch
from hand import fired_positions, vote
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat import interventions as iv
from langfeat import langs, lid, stats
from langfeat.cli import app
from langfeat.experiments import ppl
from langfeat.models import load_model
from langfeat.store import open_store

CODES = ["eng_Latn", "rus_Cyrl", "tha_Thai"]
LAYERS = "model.layers.{1..2}.mlp"
IDENTIFY = ["--layer", LAYERS, "--topk-threshold-ratio", "0.5", "--example-rate", "0.5", "--hfl-rate", "0.05"]


def cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def pipeline(toy_model_dir, toy_sae_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    for code in CODES:
        (tmp / f"{code}.txt").write_text("\n".join(flores_lines(code, 12)) + "\n", encoding="utf-8")
    store = str(tmp / "store")
    langs = [x for code in CODES for x in ("--lang", code)]
    cli("ingest", str(toy_model_dir), str(tmp / "{lang}.txt"), *langs, "--layer", LAYERS, "--local-sae-dir",
        str(toy_sae_dir), "--neurons", "--batch", "5", "--device", "cpu", "--store", store, "--no-progress")
    cli("identify", "--store", store, *IDENTIFY, "--name", "e2e")
    return tmp, store


def test_identified_set_is_usable(pipeline):
    _, store = pipeline
    with open_store(store) as st:
        fs = stats.feature_set(st, "e2e")
        events = st.events().with_columns(pl.col("act").cast(pl.Float64))
        docs = st.docs()
    assert fs.height > 0 and set(fs["lang"]) <= {"en", "ru", "th"}
    assert (fs["act_max"] >= fs["act_min"]).all()
    # The set equals the numpy reference on dense counts recounted from the stored events (--layer 1..2, no
    # selection flags), with activation statistics pooled over the languages' events.
    order, layers = ["en", "ru", "th"], [1, 2]  # English, Russian, Thai
    tok = np.zeros((len(layers), 128, len(order)), np.int64)
    doc = np.zeros_like(tok)
    per = events.group_by("lang", "layer", "feature").agg(n=pl.len(), d=pl.col("doc_id").n_unique())
    for lang, layer, feature, n, d in per.iter_rows():
        tok[layers.index(layer), feature, order.index(lang)] = n
        doc[layers.index(layer), feature, order.index(lang)] = d
    n_tok = np.array([docs.filter(pl.col("lang") == t)["n_tokens"].sum() for t in order])
    n_doc = np.array([docs.filter(pl.col("lang") == t).height for t in order])
    want = ref.select(ref.sae_lape_assign(tok, doc, n_tok, n_doc, 0.5, 0.5, 0.05), len(order))
    assert fs.height == sum(len(v) for v in want.values())
    act = events.group_by("layer", "feature").agg(mx=pl.col("act").max(), mn=pl.col("act").min(),
                                                   avg=pl.col("act").mean())
    act = {(r["layer"], r["feature"]): r for r in act.iter_rows(named=True)}
    for i, tag in enumerate(order):
        mine = fs.filter(pl.col("lang") == tag).sort("rank")
        assert list(zip(mine["layer"], mine["feature"], strict=True)) == [(layers[m.layer], m.unit) for m in want[i]]
        np.testing.assert_allclose(mine["entropy"].to_numpy(), [m.entropy for m in want[i]], rtol=1e-9)
        np.testing.assert_allclose(mine["prob"].to_numpy(), [m.p for m in want[i]], rtol=1e-9)
        for r in mine.iter_rows(named=True):
            a = act[(r["layer"], r["feature"])]
            assert (r["act_max"], r["act_min"]) == (pytest.approx(a["mx"]), pytest.approx(a["mn"]))
            assert r["act_avg"] == pytest.approx(a["avg"], rel=1e-4)


def test_ppl_with_stored_set_equals_direct_hooks(pipeline, toy_model_dir, toy_sae_dir):
    tmp, store = pipeline
    with open_store(store) as st:
        fs = stats.feature_set(st, "e2e")
    lang = fs["lang"][0]
    code = {"en": "eng_Latn", "ru": "rus_Cyrl", "th": "tha_Thai"}[lang]
    cli("ppl", str(toy_model_dir), str(tmp / "{lang}.txt"), "--lang", code, "--end", "4",
        "--intervention-type", "sae-features", "--intervention-lang", lang, "--multiplier", "-1",
        "--feature-set", "e2e", "--local-sae-dir", str(toy_sae_dir), "--device", "cpu", "--store", store,
        "--name", "p1", "--format", "csv")
    with open_store(store) as st:
        rows = st.sql("SELECT * FROM ppl_results WHERE name = 'p1' AND int_lang = ? ORDER BY row", [lang])
    model, tok = load_model(str(toy_model_dir), device="cpu")
    specs = iv.layer_specs(model, None, fs)
    plan = iv.build("sae-features", fs, lang, specs, iv.load_saes(model, specs, fs, None, str(toy_sae_dir)),
                    multiplier=-1.0)
    direct = ppl.perplexities(model, tok, flores_lines(code, 4), plan)
    np.testing.assert_allclose(rows["ppl"].to_numpy(), direct["ppl"].to_numpy(), rtol=1e-5)
    base = ppl.perplexities(model, tok, flores_lines(code, 4))
    assert not np.allclose(rows["ppl"].to_numpy(), base["ppl"].to_numpy())


def test_generate_with_stored_set_is_judged_by_fasttext(pipeline, toy_model_dir, toy_sae_dir):
    _, store = pipeline
    with open_store(store) as st:
        fs = stats.feature_set(st, "e2e")
    lang = fs["lang"][0]
    cli("generate", str(toy_model_dir), "--lang", lang, "--multiplier", "0,2", "--times", "2",
        "--max-new-token", "8", "--feature-set", "e2e", "--local-sae-dir", str(toy_sae_dir), "--device", "cpu",
        "--store", store, "--name", "g1", "--format", "csv")
    with open_store(store) as st:
        rows = st.sql("SELECT * FROM generate_results WHERE name = 'g1' ORDER BY multiplier, sample")
    assert rows.height == 4
    assert rows.filter(pl.col("multiplier") == 2)["n_units"].to_list() == [fs.filter(pl.col("lang") == lang).height] * 2
    judged = rows.filter(pl.col("text").str.strip_chars() != "")
    assert judged["lid_lang"].null_count() == 0 and ((judged["lid_prob"] > 0) & (judged["lid_prob"] <= 1)).all()
    # each sample's judgement is the fastText model's own top label and probability (whitespace collapsed)
    model = fasttext.load_model(str(lid.default_model_path()))
    for r in rows.iter_rows(named=True):
        flat = " ".join(r["text"].split())
        if not flat:
            assert r["lid_lang"] is None and r["lid_prob"] is None
            continue
        (label,), (prob,) = model.predict(flat, k=1, threshold=0.0)
        code = label.removeprefix("__label__")
        try:
            code = langs.canonical(code)
        except langs.UnknownLanguageError:
            pass
        assert (r["lid_lang"], r["lid_prob"]) == (code, pytest.approx(float(prob), rel=1e-6))


def test_classify_and_check_with_stored_set(pipeline, toy, toy_model_dir, toy_sae_dir):
    tmp, store = pipeline
    langs = [x for code in CODES for x in ("--lang", code)]
    cli("classify", str(tmp / "{lang}.txt"), *langs, "--classifier-type", "sae-norm", "--feature-set", "e2e",
        "--model", str(toy_model_dir), "--local-sae-dir", str(toy_sae_dir), "--device", "cpu", "--store", store,
        "--name", "c1")
    with open_store(store) as st:
        n_docs = st.sql("SELECT count(*) AS n FROM docs")["n"][0]
        preds = st.view("classify_predictions", name="c1")
        acc = st.view("classify_metrics", name="c1")["accuracy"][0]
    assert preds.height == n_docs == 36
    assert acc == pytest.approx(float((preds["label"] == preds["pred"]).mean()))
    text = flores_lines("tha_Thai", 1)[0]
    res = cli("check", "--text", text, "--feature-set", "e2e", "--model", str(toy_model_dir), "--local-sae-dir",
              str(toy_sae_dir), "--device", "cpu", "--store", store, "--format", "json")
    out = json.loads(res.stdout)
    # Against plain hooks + SparseCoder.encode on the text: the set's features that fire, on which positions, a
    # vote per firing position for each language holding the feature, the single highest vote predicts.
    with open_store(store) as st:
        fs = stats.feature_set(st, "e2e")
    model, tokenizer, saes = toy
    (fired,), _ = fired_positions(model, tokenizer, {n: saes[n] for n in (1, 2)}, [text])
    want = {(r["lang"], r["layer"], r["feature"]): fired[(r["layer"], r["feature"])]
            for r in fs.iter_rows(named=True) if (r["layer"], r["feature"]) in fired}
    votes = {lang: sum(len(p) for (lg, _, _), p in want.items() if lg == lang) for lang in set(fs["lang"])}
    (item,) = out
    assert item["text"] == text
    assert {(f["lang"], f["layer"], f["feature"]): f["positions"] for f in item["features"]} == want
    assert want and item["scores"] == votes
    assert item["prediction"] == vote(votes)


def test_export_import_and_paper_count_files_roundtrip(pipeline, tmp_path):
    _, store = pipeline
    with open_store(store) as st:
        fs = stats.feature_set(st, "e2e")
        counts = st.sql("SELECT * FROM feature_counts ORDER BY run_id, layer, feature")
        runs = st.runs().filter(pl.col("status") == "complete")
    pt = tmp_path / "e2e.pt"
    cli("export-pt", "e2e", str(pt), "--store", store)
    cli("import-lape", str(pt), "--name", "e2e-back", "--store", store, "--no-runs")
    with open_store(store) as st:
        back = stats.feature_set(st, "e2e-back")
    key = ["lang", "layer", "feature"]
    assert back.select(key).sort(key).equals(fs.select(key).sort(key))

    # The paper's count files (dense [layers, units]) written from the ingested aggregates, imported into a new
    # store, give the same identification.
    n_layers, n_units = 3, 128
    for run in runs.iter_rows(named=True):
        c = counts.filter(pl.col("run_id") == run["run_id"])
        arrays = {k: torch.zeros(n_layers, n_units) for k in (
            "over_zero_token", "over_zero_example", "over_zero_total", "max_active_over_zero", "min_active_over_zero")}
        for r in c.iter_rows(named=True):
            for k, col in (("over_zero_token", "tok_count"), ("over_zero_example", "doc_count"),
                           ("over_zero_total", "act_sum"), ("max_active_over_zero", "act_max"),
                           ("min_active_over_zero", "act_min")):
                arrays[k][r["layer"], r["feature"]] = float(r[col])
        path = tmp_path / "counts" / "toy" / "flores" / f"{run['config']}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"num_examples": run["n_docs"], "num_tokens": run["n_tokens"], **arrays}, path)
    store2 = str(tmp_path / "store2")
    cli("import-counts", str(tmp_path / "counts"), "--kind", "sae", "--model", "toy", "--sae-model", "toy-saes",
        "--store", store2)
    cli("identify", "--store", store2, *IDENTIFY, "--name", "from-counts")
    with open_store(store2) as st:
        imported = stats.feature_set(st, "from-counts")
    assert imported.select(key).sort(key).equals(fs.select(key).sort(key))
    np.testing.assert_allclose(imported.sort(key)["entropy"].to_numpy(), fs.sort(key)["entropy"].to_numpy(),
                               rtol=1e-6)
