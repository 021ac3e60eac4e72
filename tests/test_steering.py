"""Steering measured: DiffMean vectors against hand hooks and numpy, DiffMean steering (α = 0 equals plain
generation, α ≠ 0 equals a hand hook), per-character fluency against an independent computation, the steering-score,
best-α and methods views against hand values, and the generate sweep / ppl with DiffMean end to end."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import polars as pl
import pytest
import torch
from factories import add_run
from hand import capture
from transformers import set_seed
from typer.testing import CliRunner

from langfeat import diffmean, features
from langfeat import interventions as iv
from langfeat.cli import app
from langfeat.experiments import generate as gen
from langfeat.experiments import ppl
from langfeat.models import load_model
from langfeat.options import GenerateOptions, PplOptions
from langfeat.store import ensure_store, open_store
from langfeat.store.results import write_result

TEXTS = {
    "en": ["The quick brown fox jumps over the lazy dog.", "A dog barks.", "Hello there"],
    "de": ["Der schnelle braune Fuchs springt über den faulen Hund.", "Ein Hund bellt."],
    "ru": ["Быстрая коричневая лиса прыгает через ленивую собаку.", "Собака лает.", "Привет", "Да"],
}
LAYERS = [1, 3]


@pytest.fixture(scope="module")
def loaded(toy_model_dir):
    return load_model(str(toy_model_dir), device="cpu")


@pytest.fixture(scope="module")
def dm_store(tmp_path_factory, toy_model_dir, loaded):
    """A store with identification runs of three languages (the toy tokenizer's ids) and DiffMean set ``dm``."""
    _, tok = loaded
    root = tmp_path_factory.mktemp("steer") / "store"
    layout = ensure_store(root)
    for lang, texts in TEXTS.items():
        ids = [tok(t)["input_ids"] for t in texts]
        add_run(layout, lang, texts=texts, token_ids=ids, events={0: [(0, 1, 5, 1.0)]}, sae_layers=[0, 1, 2, 3],
                model=str(toy_model_dir))
    name, norms = diffmean.make_diffmean(root, layers=["model.layers.{1,3}.mlp"], name="dm", batch=2, device="cpu")
    return root, name, norms


def hand_means(model, tok) -> dict[str, dict[int, np.ndarray]]:
    """Per language and layer: the mean MLP output over every position but BOS, one text at a time (float64)."""
    out = {}
    for lang, texts in TEXTS.items():
        rows = {layer: [] for layer in LAYERS}
        for text in texts:
            ids = tok(text)["input_ids"]
            assert ids[0] == tok.bos_token_id
            outs = capture(model, ids, LAYERS)
            for layer in LAYERS:
                rows[layer].append(outs[layer][1:].numpy().astype(np.float64))
        out[lang] = {layer: np.concatenate(rows[layer]).mean(0) for layer in LAYERS}
    return out


def test_diffmean_vectors_equal_hand_hooks_and_numpy(dm_store, loaded):
    root, name, norms = dm_store
    model, tok = loaded
    means = hand_means(model, tok)
    with open_store(root) as st:
        got = st.sql("SELECT lang, layer, dim, mean, other_mean, diff, n_tokens, n_docs FROM diffmean_vectors "
                     "WHERE name = ?", [name])
    assert sorted(set(got["lang"])) == ["de", "en", "ru"] and sorted(set(got["layer"])) == LAYERS
    for lang in TEXTS:
        others = [o for o in TEXTS if o != lang]
        n_tok = sum(len(tok(t)["input_ids"]) - 1 for t in TEXTS[lang])
        for layer in LAYERS:
            cell = got.filter((pl.col("lang") == lang) & (pl.col("layer") == layer)).sort("dim")
            want_diff = means[lang][layer] - np.mean([means[o][layer] for o in others], axis=0)
            np.testing.assert_allclose(cell["mean"].to_numpy(), means[lang][layer], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(cell["diff"].to_numpy(), want_diff, rtol=1e-5, atol=1e-6)
            assert set(cell["n_tokens"]) == {n_tok} and set(cell["n_docs"]) == {len(TEXTS[lang])}
            vec = diffmean.load_vectors(root, name, lang)[layer]
            np.testing.assert_allclose(vec.numpy(), want_diff, rtol=1e-5, atol=1e-6)
            row = norms.filter((pl.col("lang") == lang) & (pl.col("layer") == layer))
            assert row["diff_norm"][0] == pytest.approx(float(np.linalg.norm(want_diff)), rel=1e-5)
            assert row["d_model"][0] == 32


def test_diffmean_alpha_zero_equals_plain_generation(dm_store, loaded):
    root, name, _ = dm_store
    model, tok = loaded
    vecs = diffmean.load_vectors(root, name, "de")
    specs = iv.vector_layer_specs(model, None, {"de": vecs})
    zero = iv.diffmean_steering(vecs, "de", specs, 0.0)
    assert len(zero.hooks()) == 2  # the hooks are there, adding 0
    sampling = gen.Sampling(temperature=0.8, max_new_tokens=10)
    got = gen.generate_samples(model, tok, zero, "Der Hund", times=3, seed=3, sampling=sampling)
    prompt = gen.prompt_ids(tok, "Der Hund")
    for i in range(3):
        set_seed(3 + i)
        ids = torch.tensor([prompt])
        plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.8,
                               top_p=0.9, top_k=50, max_new_tokens=10, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id)
        new = plain[0, len(prompt):].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert got["token_ids"][i].to_list() == new
    assert len(set(map(tuple, got["token_ids"].to_list()))) > 1


def test_diffmean_steering_adds_alpha_times_the_vector(dm_store, loaded):
    root, name, _ = dm_store
    model, tok = loaded
    vecs = diffmean.load_vectors(root, name, "ru")
    plan = iv.diffmean_steering(vecs, "ru", iv.vector_layer_specs(model, None, {"ru": vecs}), 2.5)
    assert plan.intervention_type == "diffmean" and plan.n_units == 2
    ids = torch.tensor([tok("Hello there")["input_ids"]])
    with torch.no_grad(), plan.applied(model):
        got = model(ids).logits
    handles = [model.model.layers[n].mlp.register_forward_hook(lambda m, a, o, v=v: o + 2.5 * v)
               for n, v in vecs.items()]
    try:
        with torch.no_grad():
            want = model(ids).logits
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        plain = model(ids).logits
    assert torch.allclose(got, want, atol=1e-6) and not torch.allclose(got, plain, atol=1e-3)


def test_fluency_is_per_character_perplexity(loaded):
    model, tok = loaded
    texts = ["Der Hund bellt.", "", "素早い茶色の狐", "a", "The quick brown fox jumps over the lazy dog again."]
    chars, n_tgt, nll, cppl = gen.fluency(model, tok, texts, batch=2)
    for i, text in enumerate(texts):
        assert chars[i] == len(text)
        if not text:
            assert (nll[i], cppl[i]) == (None, None)
            continue
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        total = -sum(float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1))
        assert n_tgt[i] == len(ids) - 1
        assert nll[i] == pytest.approx(total, rel=1e-5)
        assert cppl[i] == pytest.approx(math.exp(total / len(text)), rel=1e-5)


def _rows(cells: list[tuple]) -> pl.DataFrame:
    """generate_results rows from (method, lang, α, lid_lang, text, char_ppl)."""
    df = pl.DataFrame(cells, schema=["method", "lang", "multiplier", "lid_lang", "text", "char_ppl"], orient="row")
    return df.with_columns(
        pl.lit("toy").alias("model"), pl.lit(False).alias("last_token"), pl.int_range(pl.len()).alias("sample"),
        pl.lit(0, dtype=pl.Int64).alias("seed"), pl.lit("").alias("prompt"), pl.lit(3).alias("n_new_tokens"),
        pl.lit(False).alias("stopped_eos"), pl.lit(1).alias("n_units"), pl.lit(0.9).alias("lid_prob"),
        pl.col("text").str.len_chars().alias("n_chars"),
    )


def test_steering_score_and_best_alpha_views_equal_hand_values(tmp_path):
    rows = _rows([
        # sae-features, de, α = 0: 1 of 4 in German; fluency (1/2 + 1/4 + 1/4 + 1/4) / 4 = 0.3125
        ("sae-features", "de", 0.0, "en", "ab", 2.0), ("sae-features", "de", 0.0, "de", "ab", 4.0),
        ("sae-features", "de", 0.0, "en", "ab", 4.0), ("sae-features", "de", 0.0, "en", "ab", 4.0),
        # α = 1: 3 of 4 (the empty continuation fails, fluency 0): fluency (1/2 + 1/2 + 1/4 + 0) / 4 = 0.3125
        ("sae-features", "de", 1.0, "de", "ab", 2.0), ("sae-features", "de", 1.0, "de", "ab", 2.0),
        ("sae-features", "de", 1.0, "de", "ab", 4.0), ("sae-features", "de", 1.0, None, "", None),
        # α = 2: all German, all fluency 1/8
        ("sae-features", "de", 2.0, "de", "ab", 8.0), ("sae-features", "de", 2.0, "de", "ab", 8.0),
        # α = -1 and α = 3 tie with α = 1 (same cells): the smallest |α| wins, then the smallest α
        ("sae-features", "de", -1.0, "de", "ab", 2.0), ("sae-features", "de", -1.0, "de", "ab", 2.0),
        ("sae-features", "de", -1.0, "de", "ab", 4.0), ("sae-features", "de", -1.0, None, "", None),
        # prompting, de: both German, fluency 1
        ("prompting", "de", 0.0, "de", "ab", 1.0), ("prompting", "de", 0.0, "de", "ab", 1.0),
        # diffmean, ru: nothing in Russian at α = 4 → score 0; α = 0 never scored (fluency missing)
        ("diffmean", "ru", 4.0, "en", "ab", 2.0), ("diffmean", "ru", 0.0, "ru", "ab", None),
    ])
    layout = ensure_store(tmp_path / "store")
    write_result(layout, gen.TABLE, "g", rows, {})
    with open_store(layout.root) as st:
        cells = {(r["method"], r["lang"], r["multiplier"]): r
                 for r in st.sql("SELECT * FROM generate_steering").iter_rows(named=True)}
        best = {(r["method"], r["lang"]): r for r in st.sql("SELECT * FROM generate_best_alpha").iter_rows(named=True)}
        methods = st.sql("SELECT * FROM methods_steering")
    c = cells[("sae-features", "de", 0.0)]
    assert (c["n"], c["n_target"], c["success_rate"], c["fluency_score"]) == (4, 1, 0.25, 0.3125)
    assert c["steering_score"] == pytest.approx(2 * 0.25 * 0.3125 / 0.5625)
    c = cells[("sae-features", "de", 1.0)]
    assert (c["n"], c["n_judged"], c["success_rate"], c["fluency_score"]) == (4, 3, 0.75, 0.3125)
    assert c["steering_score"] == pytest.approx(2 * 0.75 * 0.3125 / 1.0625)  # 0.4411…
    c = cells[("sae-features", "de", 2.0)]
    assert (c["success_rate"], c["fluency_score"]) == (1.0, 0.125)
    assert c["steering_score"] == pytest.approx(2 * 0.125 / 1.125)  # 0.2222…
    assert cells[("diffmean", "ru", 4.0)]["steering_score"] == 0.0
    assert cells[("diffmean", "ru", 0.0)]["fluency_score"] is None
    assert cells[("diffmean", "ru", 0.0)]["steering_score"] is None
    b = best[("sae-features", "de")]
    assert (b["best_alpha"], b["n_alphas"]) == (-1.0, 4)  # ties 1 and -1 at |α| = 1: the smaller α
    assert b["steering_score"] == pytest.approx(2 * 0.75 * 0.3125 / 1.0625)
    assert best[("diffmean", "ru")]["best_alpha"] == 4.0  # the only scored cell
    assert best[("prompting", "de")]["steering_score"] == 1.0
    assert methods.columns == ["method", "lang", "best_alpha", "success_rate", "fluency_score", "steering_score"]
    assert methods.rows() == [
        ("diffmean", "ru", 4.0, 0.0, 0.5, 0.0),
        ("prompting", "de", None, 1.0, 1.0, 1.0),
        ("sae-features", "de", -1.0, 0.75, 0.3125, pytest.approx(2 * 0.75 * 0.3125 / 1.0625)),
    ]


def test_methods_ppl_view_equals_hand_values(tmp_path):
    def result(intervention, source, multiplier, cells):
        """Baseline PPL 10 for every (lang, row); intervened PPL 10 + delta."""
        rows = []
        for int_lang, lang, deltas in cells:
            for r, d in enumerate(deltas):
                rows.append(("none", None, lang, r, 10.0, None))
                rows.append((intervention, int_lang, lang, r, 10.0 + d, source))
        df = pl.DataFrame(rows, schema=["intervention", "int_lang", "lang", "row", "ppl", "source"], orient="row")
        return df.unique(maintain_order=True).with_columns(
            pl.lit("toy").alias("model"), pl.lit("d").alias("dataset"), pl.lit("s").alias("split"),
            pl.col("lang").alias("config"), pl.lit(3).alias("n_targets"), pl.col("ppl").log().alias("nll"),
            pl.lit(1).alias("n_units"), pl.lit(multiplier, dtype=pl.Float64).alias("multiplier"))

    layout = ensure_store(tmp_path / "store")
    # rows en, de: en's diagonal (mean Δ 4) beats its off cell 1; de's diagonal 2 loses to 3
    write_result(layout, ppl.TABLE, "a", result("diffmean", "dm", -1.0, [
        ("en", "en", [3.0, 5.0]), ("en", "de", [1.0, 1.0]), ("de", "en", [3.0, 3.0]), ("de", "de", [2.0, 2.0])]), {})
    # an older result without source: labelled by its name; one row, diagonal the maximum
    write_result(layout, ppl.TABLE, "old", result("neuron", None, None, [
        ("en", "en", [6.0]), ("en", "de", [2.0])]).drop("source"), {})
    with open_store(layout.root) as st:
        got = st.sql("SELECT * FROM methods_ppl")
    assert got.columns == ["method", "n_rows", "n_diag_rowmax", "median_diag", "median_offdiag", "ratio"]
    assert got.rows() == [
        ("diffmean dm α=-1", 2, 1, 3.0, 2.0, 1.5),  # diagonal cells 4 and 2, off cells 1 and 3
        ("neuron old", 1, 1, 6.0, 2.0, 3.0),
    ]


def test_generate_sweep_stores_every_method(dm_store, toy_model_dir, toy_sae_dir, loaded, monkeypatch):
    root, name, _ = dm_store
    feats = pl.DataFrame({"lang": ["de", "ru"], "layer": [0, 2], "feature": [7, 11], "act_max": [3.0, 2.0]})
    monkeypatch.setattr(features, "load_feature_set", lambda store, source: feats)
    monkeypatch.setitem(sys.modules, "langfeat.lid", types.SimpleNamespace(
        identify=lambda texts, candidates=None: [("deu_Latn" if len(t) % 2 else "ru", 0.8) for t in texts]))
    args = ["generate", str(toy_model_dir), "--lang", "de,ru", "--multiplier", "0,1.5", "--times", "2",
            "--max-new-token", "5", "--seed", "4", "--method", "sae-features,diffmean,prompting", "--diffmean", name,
            "--feature-set", "toy", "--local-sae-dir", str(toy_sae_dir), "--device", "cpu", "--store", str(root),
            "--name", "sweep", "--no-progress", "--format", "csv"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with open_store(root) as st:
        rows = st.sql("SELECT * FROM generate_results WHERE name = 'sweep' ORDER BY lang, method, multiplier, sample")
        best = st.sql("SELECT * FROM generate_best_alpha WHERE name = 'sweep'")
    assert rows.height == 2 * (2 * 2 + 2 * 2 + 2)
    counts = dict(rows.group_by("method").len().iter_rows())
    assert counts == {"sae-features": 8, "diffmean": 8, "prompting": 4}
    prompting = rows.filter(pl.col("method") == "prompting")
    assert set(zip(prompting["lang"], prompting["prompt"], strict=True)) == {("de", "Answer in German.\n"),
                                                                 ("ru", "Answer in Russian.\n")}
    assert set(prompting["multiplier"]) == {0.0} and prompting["source"].null_count() == 4
    dm = rows.filter(pl.col("method") == "diffmean")
    assert set(dm["source"]) == {name} and set(dm.filter(pl.col("multiplier") != 0)["n_units"]) == {2}
    # α = 0 of every method and language: the same unsteered draws
    zero = rows.filter((pl.col("multiplier") == 0) & (pl.col("method") != "prompting"))
    assert zero.group_by("method", "lang").agg(pl.col("text")).select(pl.col("text").cast(pl.List(pl.String))) \
        .unique().height == 1
    # α ≠ 0 diffmean samples equal generate_samples under the stored vectors (seeded like the sweep)
    model, tok = loaded
    vecs = diffmean.load_vectors(root, name, "ru")
    plan = iv.diffmean_steering(vecs, "ru", iv.vector_layer_specs(model, None, {"ru": vecs}), 1.5)
    direct = gen.generate_samples(model, tok, plan, "", times=2, seed=4, sampling=gen.Sampling(max_new_tokens=5))
    got = dm.filter((pl.col("lang") == "ru") & (pl.col("multiplier") == 1.5)).sort("sample")
    assert got["text"].to_list() == direct["text"].to_list()
    # the stored fluency is the per-character perplexity of each text
    chars, _, _, cppl = gen.fluency(model, tok, rows["text"].to_list())
    assert rows["n_chars"].to_list() == chars
    # float32 logits: texts batched with other texts (other padding) differ in the last bits on some CPUs
    np.testing.assert_allclose(rows["char_ppl"].fill_null(np.nan).to_numpy(),
                               np.array([np.nan if x is None else x for x in cppl]), rtol=1e-5)
    assert set(zip(best["method"], best["lang"], strict=True)) == {
        (m, lang) for m in ("sae-features", "diffmean", "prompting") for lang in ("de", "ru")}
    rep = CliRunner().invoke(app, ["report", "generate", "sweep", "--scores", "--store", str(root)])
    assert rep.exit_code == 0, rep.output
    assert "best α per (method, language)" in rep.stdout


def test_ppl_with_diffmean_equals_a_hand_hook(dm_store, toy_model_dir, loaded, tmp_path):
    root, name, _ = dm_store
    model, tok = loaded
    (tmp_path / "en.txt").write_text("Hello there friend\nThe dog barks\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("Hallo mein Freund\nDer Hund bellt\n", encoding="utf-8")
    opts = PplOptions(model=str(toy_model_dir), dataset=str(tmp_path / "{lang}.txt"), langs=["en", "de"],
                      intervention_type="diffmean", intervention_langs=["all"], multiplier=-2.0, diffmean=name,
                      layers=["model.layers.3.mlp"], device="cpu", store=str(root), name="pdm")
    result, rows = ppl.run_ppl(opts)
    assert result == "pdm"
    assert sorted(set(rows["int_lang"].drop_nulls())) == ["de", "en", "ru"]
    assert set(rows.filter(pl.col("intervention") == "diffmean")["source"]) == {name}
    vec = diffmean.load_vectors(root, name, "de")[3]
    text = "Der Hund bellt"
    ids = tok(text)["input_ids"]
    handle = model.model.layers[3].mlp.register_forward_hook(lambda m, a, o: o - 2.0 * vec)
    try:
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    finally:
        handle.remove()
    want = math.exp(-np.mean([float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1)]))
    got = rows.filter((pl.col("int_lang") == "de") & (pl.col("lang") == "de") & (pl.col("row") == 1))["ppl"][0]
    assert got == pytest.approx(want, rel=1e-5)
    with open_store(root) as st:
        methods = st.sql("SELECT method, n_rows FROM methods_ppl")
    assert methods.rows() == [(f"diffmean {name} α=-2", 2)]  # ru was intervened but not evaluated


def test_generate_options_are_checked():
    base = dict(model="m", langs=["de"], multipliers=[0.0, 1.0])
    with pytest.raises(gen.UsageError, match="unknown --method"):
        gen.check_options(GenerateOptions(**base, methods=["steer"]))
    with pytest.raises(gen.UsageError, match="--diffmean NAME"):
        gen.check_options(GenerateOptions(**base, methods=["diffmean"]))
    with pytest.raises(gen.UsageError, match="add it to --method"):
        gen.check_options(GenerateOptions(**base, methods=["prompting"], diffmean="dm"))
    with pytest.raises(gen.UsageError, match=r"\{language\}"):
        gen.check_options(GenerateOptions(**base, methods=["prompting"], instruction="Answer."))
    gen.check_options(GenerateOptions(**base, methods=["diffmean", "prompting"], diffmean="dm"))  # no SAE needed
    assert gen.instructed_prompt("Réponds en {language}.", "fr", "Bonjour") == "Réponds en French.\nBonjour"
