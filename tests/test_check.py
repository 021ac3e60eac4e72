"""`langfeat check`: fired features and tokens against a hand forward hook + SparseCoder.encode; explanations."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from factories import write_set
from hand import fired_positions, vote
from typer.testing import CliRunner

from conftest import TOY_LAYERS, flores_lines
from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.experiments.check import (
    CheckOptions,
    ProbeWeights,
    check,
    check_texts,
    import_explanations,
    read_explanations,
    token_pieces,
)
from langfeat.experiments.classify import select_units
from langfeat.store import ensure_store
from langfeat.store.results import write_result

TEXTS = [flores_lines("eng_Latn", 1)[0], flores_lines("tha_Thai", 1)[0], "ok"]


@pytest.fixture(scope="module")
def case(toy):
    hand, ids = fired_positions(*toy, TEXTS)
    en = sorted(hand[0], key=lambda k: (-len(hand[0][k]), k))[:2]
    th = [k for k in sorted(hand[1], key=lambda k: (-len(hand[1][k]), k)) if k not in en][:2]
    silent = next((layer, f) for layer in TOY_LAYERS for f in range(128)
                  if all((layer, f) not in h for h in hand))
    rows = [("en", *k) for k in en] + [("th", *k) for k in th] + [("ja", *silent)]
    features = pl.DataFrame(rows, orient="row", schema=["lang", "layer", "feature"]).with_columns(
        algorithm=pl.lit("imported"), kind=pl.lit("sae"))
    return {"hand": hand, "ids": ids, "features": features, "rows": rows, "silent": silent}


def test_fired_features_and_tokens_equal_hand_hooks(toy, case):
    model, tokenizer, saes = toy
    result = check_texts(TEXTS, model, tokenizer, select_units(case["features"], "sae"), saes, batch=2)
    for doc, fired in enumerate(case["hand"]):
        pieces, _ = token_pieces(tokenizer, case["ids"][doc])
        want = {}
        for lang, layer, feature in case["rows"]:
            if (layer, feature) in fired:
                want[(lang, layer, feature)] = fired[(layer, feature)]
        got = result.fired.filter(pl.col("doc") == doc)
        assert {(r["lang"], r["layer"], r["feature"]): r["positions"] for r in got.iter_rows(named=True)} == want
        for r in got.iter_rows(named=True):
            assert r["tokens"] == [pieces[p] for p in r["positions"]] and r["n_fired"] == len(r["positions"])
        votes = {lang: sum(len(p) for (lg, _, _), p in want.items() if lg == lang) for lang in ("en", "th", "ja")}
        scores = dict(result.scores.filter(pl.col("doc") == doc).select("lang", "score").iter_rows())
        assert scores == votes
        assert result.predictions.filter(pl.col("doc") == doc)["pred"][0] == vote(votes)
    assert case["silent"] not in set(result.fired.select("layer", "feature").iter_rows())


def test_token_pieces_rebuild_the_text(toy):
    _, tokenizer, _ = toy
    for text in [*TEXTS, flores_lines("jpn_Jpan", 1)[0], "emoji 🙂 ok"]:
        ids = tokenizer(text)["input_ids"]
        pieces, groups = token_pieces(tokenizer, ids)
        assert len(pieces) == len(groups) == len(ids)
        joined = "".join(p for i, p in enumerate(pieces) if i + 1 == len(groups) or groups[i + 1] != groups[i])
        assert joined == tokenizer.decode(ids)
        assert groups == sorted(groups)


def test_check_with_store_set_and_explanations(toy, case, toy_model_dir, toy_sae_dir, tmp_path):
    store = tmp_path / "store"
    write_set(store, "S", case["features"])
    expl = tmp_path / "explanations"
    expl.mkdir()
    (_, l0, f0), (_, l1, f1) = case["rows"][0], case["rows"][2]
    (expl / f"layers.{l0}.mlp_latent{f0}.txt").write_text(json.dumps("English function words"), encoding="utf-8")
    (expl / f"layers.{l1}.mlp_latent{f1}.txt").write_text("Thai vowel marks\n", encoding="utf-8")
    (expl / "notes.txt").write_text("ignored", encoding="utf-8")
    assert import_explanations(str(store), expl, "delphi") == 2
    result = check(CheckOptions(texts=TEXTS[:2], model=str(toy_model_dir), feature_set="S",
                                local_sae_dir=str(toy_sae_dir), store=str(store), device="cpu"))
    expl_by_key = {(r["layer"], r["feature"]): r["explanation"] for r in result.fired.iter_rows(named=True)}
    want = {(l0, f0): "English function words", (l1, f1): "Thai vowel marks"}
    for key, text in expl_by_key.items():
        assert text == want.get(key)
    runner = CliRunner()
    res = runner.invoke(app, ["check", "--text", TEXTS[0], "--text", TEXTS[1], "--model", str(toy_model_dir),
                              "--feature-set", "S", "--local-sae-dir", str(toy_sae_dir), "--store", str(store),
                              "--device", "cpu", "--format", "json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert [p["text"] for p in payload] == TEXTS[:2]
    for doc, item in enumerate(payload):
        assert item["prediction"] == result.predictions["pred"][doc]
        got = {(f["lang"], f["layer"], f["feature"]): f["positions"] for f in item["features"]}
        want_doc = {(r["lang"], r["layer"], r["feature"]): r["positions"]
                    for r in result.fired.filter(pl.col("doc") == doc).iter_rows(named=True)}
        assert got == want_doc
    res = runner.invoke(app, ["check", "--text", "x", "--model", str(toy_model_dir), "--feature-set", "S",
                              "--store", str(store)])
    assert res.exit_code == 2 and "--sae-model" in res.output


def test_explanation_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="is not a folder"):
        read_explanations(tmp_path / "missing")
    with pytest.raises(UsageError, match=r"no layers\.N\.mlp_latent"):
        read_explanations(tmp_path)


def _probe(case) -> ProbeWeights:
    """A hand-made sae-probe model over the case's features: signed weights, counts, one intercept per language."""
    unit = [r[1:] for r in case["rows"]]  # (layer, feature): en, en, th, th, silent
    rows = [("en", *unit[0], 0.8), ("en", *unit[2], -0.5), ("th", *unit[2], 1.3), ("th", *unit[3], 0.4),
            ("ja", *case["silent"], 2.0)]
    units = pl.DataFrame(rows, orient="row", schema={"lang": pl.String, "layer": pl.Int32, "feature": pl.Int32,
                                                     "weight": pl.Float64}).with_columns(value=pl.lit("count"))
    langs = pl.DataFrame({"lang": ["en", "th", "ja"], "n_units": [2, 2, 1], "bias": [0.1, -0.2, -1.5]},
                         schema={"lang": pl.String, "n_units": pl.Int32, "bias": pl.Float64})
    return ProbeWeights(units, langs)


def _hand_probe_scores(case, probe: ProbeWeights) -> list[dict[str, float]]:
    """bias + Σ weight · ln(1 + firings in the text), per text and language, from the hand hooks."""
    bias = dict(probe.langs.select("lang", "bias").iter_rows())
    out = []
    for fired in case["hand"]:
        scores = dict(bias)
        for lang, layer, feature, weight, _ in probe.units.iter_rows():
            scores[lang] += weight * math.log1p(len(fired.get((layer, feature), [])))
        out.append(scores)
    return out


def test_check_sae_probe_scores_equal_hand_linear_model(toy, case):
    model, tokenizer, saes = toy
    probe = _probe(case)
    shown = select_units(case["features"], "sae")
    result = check_texts(TEXTS, model, tokenizer, shown, saes, "sae-probe", batch=2, probe=probe)
    for doc, want in enumerate(_hand_probe_scores(case, probe)):
        got = dict(result.scores.filter(pl.col("doc") == doc).select("lang", "score").iter_rows())
        assert got == pytest.approx(want, abs=1e-9)
        assert result.predictions.filter(pl.col("doc") == doc)["pred"][0] == max(want, key=want.get)
    with pytest.raises(UsageError, match="only it does"):
        check_texts(TEXTS, model, tokenizer, shown, saes, "sae-count", probe=probe)
    with pytest.raises(UsageError, match="layers without an SAE"):
        check_texts(TEXTS, model, tokenizer, shown, {TOY_LAYERS[0]: saes[TOY_LAYERS[0]]}, "sae-probe",
                    probe=probe)


def test_check_sae_probe_reads_the_stored_result(toy, case, toy_model_dir, toy_sae_dir, tmp_path):
    store = tmp_path / "store"
    probe = _probe(case)
    positive = probe.units.filter(pl.col("weight") > 0)
    write_set(store, "P", positive.select("lang", "layer", "feature").with_columns(
        algorithm=pl.lit("sae-probe"), kind=pl.lit("sae")))
    layout = ensure_store(store)
    units = probe.units.select(pl.lit("sae").alias("kind"), "lang", "layer", "feature",
                               pl.lit(None, pl.Float32).alias("act_min"), pl.lit(None, pl.Float32).alias("act_max"),
                               "weight", "value")
    write_result(layout, "classify_units", "P", units)
    write_result(layout, "classify_langs", "P", probe.langs)
    write_set(store, "V", case["features"])  # a vote set: no probe result of that name
    result = check(CheckOptions(texts=TEXTS, model=str(toy_model_dir), feature_set="P", classifier="sae-probe",
                                local_sae_dir=str(toy_sae_dir), store=str(store), device="cpu"))
    hand = _hand_probe_scores(case, probe)
    assert result.predictions.sort("doc")["pred"].to_list() == [max(h, key=h.get) for h in hand]
    assert set(result.fired["feature"].to_list()) <= set(positive["feature"].to_list())
    runner = CliRunner()
    base = ["check", "--text", TEXTS[0], "--model", str(toy_model_dir), "--local-sae-dir", str(toy_sae_dir),
            "--store", str(store), "--device", "cpu", "--classifier-type", "sae-probe"]
    res = runner.invoke(app, [*base, "--feature-set", "P", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["scores"] == pytest.approx(hand[0], abs=1e-9)
    res = runner.invoke(app, [*base, "--feature-set", "V"])
    assert res.exit_code == 2 and "is not a sparse probe's" in res.output
    res = runner.invoke(app, [*base, "--feature-set", "P", "--layer", f"model.layers.{TOY_LAYERS[0]}.mlp"])
    assert res.exit_code == 2 and "--layer leaves out" in res.output
