"""Steered generation: α = 0 equals plain generation, KV-cache steering equals full re-runs, switch-rate view."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from transformers import set_seed

from langfeat import interventions as iv
from langfeat.errors import UsageError
from langfeat.experiments import generate as gen
from langfeat.models import load_model
from langfeat.store.catalog import connect_views
from langfeat.store.layout import Layout
from langfeat.store.results import write_result

PROMPT = "Le renard brun"


@pytest.fixture(scope="module")
def loaded(toy_model_dir):
    return load_model(str(toy_model_dir), device="cpu")


@pytest.fixture(scope="module")
def steer_setup(loaded, toy_sae_dir):
    model, _ = loaded
    feats = pl.DataFrame({"lang": ["fr", "fr", "fr"], "layer": [0, 1, 3], "feature": [7, 40, 99],
                          "act_max": [3.0, 2.0, 4.0]})
    specs = iv.layer_specs(model, None, feats)
    saes = iv.load_saes(model, specs, feats, None, str(toy_sae_dir))
    return feats, specs, saes


def hand_vectors(feats, saes, alpha):
    """s_N = α Σ gmax_f W_dec[f], per layer, written out."""
    out = {}
    for r in feats.iter_rows(named=True):
        w = saes[r["layer"]].W_dec.detach()
        out[r["layer"]] = out.get(r["layer"], torch.zeros(32)) + alpha * r["act_max"] * w[r["feature"]]
    return out


def rerun_logits(model, ids, vectors, first_steered):
    """Logits of the full sequence with s_N added at positions >= first_steered (no cache, by hand)."""
    def hook(vec):
        def f(mod, inp, out):
            out = out.clone()
            out[:, first_steered:] += vec
            return out
        return f

    handles = [model.model.layers[n].mlp.register_forward_hook(hook(v)) for n, v in vectors.items()]
    try:
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0]
    finally:
        for h in handles:
            h.remove()


def test_alpha_zero_equals_plain_generate(loaded, steer_setup):
    model, tok = loaded
    feats, specs, saes = steer_setup
    sampling = gen.Sampling(temperature=0.6, top_p=0.9, top_k=50, max_new_tokens=12)
    zero = iv.build("sae-features", feats, "fr", specs, saes, multiplier=0.0)
    got = gen.generate_samples(model, tok, zero, "", times=3, seed=5, sampling=sampling)
    assert got["seed"].to_list() == [5, 6, 7]
    for i in range(3):
        set_seed(5 + i)
        ids = torch.tensor([[tok.bos_token_id]])
        plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                               temperature=0.6, top_p=0.9, top_k=50, max_new_tokens=12,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = plain[0, 1:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert got["token_ids"][i].to_list() == new
        assert got["text"][i] == tok.decode(new, skip_special_tokens=True)
    # Sampling really is random across seeds (so the equality above is not trivial).
    assert len(set(map(tuple, got["token_ids"].to_list()))) > 1


@pytest.mark.parametrize("last_token", [False, True])
def test_kv_cache_steering_equals_full_rerun(loaded, steer_setup, last_token):
    model, tok = loaded
    feats, specs, saes = steer_setup
    alpha = 0.8
    plan = iv.build("sae-features", feats, "fr", specs, saes, multiplier=alpha, last_token_only=last_token)
    prompt = gen.prompt_ids(tok, PROMPT)
    assert len(prompt) > 2
    with plan.applied(model), torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=tok.pad_token_id,
                             eos_token_id=None)
    seq = out.sequences[0].tolist()
    step_logits = torch.stack([lg[0] for lg in out.logits])  # [8, V]
    # all tokens: steering at every position; last token: from the last prompt position on.
    first = len(prompt) - 1 if last_token else 0
    ref = rerun_logits(model, seq[:-1], hand_vectors(feats, saes, alpha), first)[len(prompt) - 1 :]
    assert torch.allclose(step_logits, ref, atol=1e-4)
    # The other mode's re-run differs: the two modes are not the same computation for a multi-token prompt.
    other = rerun_logits(model, seq[:-1], hand_vectors(feats, saes, alpha), len(prompt) - 1 if not last_token else 0)
    assert not torch.allclose(step_logits, other[len(prompt) - 1 :], atol=1e-3)
    # generate_samples (greedy) produces the same tokens.
    got = gen.generate_samples(model, tok, plan, PROMPT, times=1, sampling=gen.Sampling(do_sample=False,
                               max_new_tokens=8))
    tail = seq[len(prompt) :]
    if tok.eos_token_id in tail:
        tail = tail[: tail.index(tok.eos_token_id)]
    assert got["token_ids"][0].to_list() == tail


def test_all_token_mode_equals_paper_rerun_loop(loaded, steer_setup):
    """The paper's loop — re-run the whole sequence with steering everywhere, take one token — gives the same text."""
    model, tok = loaded
    feats, specs, saes = steer_setup
    plan = iv.build("sae-features", feats, "fr", specs, saes, multiplier=0.5)
    vecs = hand_vectors(feats, saes, 0.5)
    ids = gen.prompt_ids(tok, PROMPT)
    for _ in range(6):
        ids.append(int(rerun_logits(model, ids, vecs, 0)[-1].argmax()))
    got = gen.generate_samples(model, tok, plan, PROMPT, sampling=gen.Sampling(do_sample=False, max_new_tokens=6))
    assert got["token_ids"][0].to_list() == ids[len(gen.prompt_ids(tok, PROMPT)) :]


def test_batched_samples_share_the_batch_seed(loaded):
    model, tok = loaded
    s = gen.Sampling(max_new_tokens=5)
    got = gen.generate_samples(model, tok, None, "", times=5, seed=1, sampling=s, batch=2)
    assert got["sample"].to_list() == [0, 1, 2, 3, 4]
    assert got["seed"].to_list() == [1, 1, 3, 3, 5]
    again = gen.generate_samples(model, tok, None, "", times=5, seed=1, sampling=s, batch=2)
    assert got["token_ids"].to_list() == again["token_ids"].to_list()


def test_switch_view_matches_hand_counts(tmp_path):
    rows = pl.DataFrame({
        "lang": ["fr"] * 6 + ["en"] * 4,
        "multiplier": [0.0, 0.0, 0.3, 0.3, 0.3, 0.3, 0.0, 0.0, -1.0, -1.0],
        "sample": [0, 1, 0, 1, 2, 3, 0, 1, 0, 1],
        "lid_lang": ["en", "fr", "fr", "fr", "de", None, "en", "en", "de", "en"],
        "lid_prob": [0.9, 0.6, 0.8, 0.4, 0.7, None, 0.95, 0.9, 0.5, 0.8],
    }).with_columns(
        pl.lit("toy").alias("model"), pl.lit(False).alias("last_token"), pl.lit(0, dtype=pl.Int64).alias("seed"),
        pl.lit("").alias("prompt"), pl.lit("t").alias("text"), pl.lit(4).alias("n_new_tokens"),
        pl.lit(True).alias("stopped_eos"), pl.lit(3).alias("n_units"),
    )
    layout = Layout(tmp_path / "store")
    write_result(layout, gen.TABLE, "g1", rows, {})
    con = connect_views(layout.root, ["db/75_generate_results.sql", "queries/generate/20_generate_switch.sql"])
    got = {(r["lang"], r["multiplier"]): r for r in con.sql("SELECT * FROM generate_switch").pl().iter_rows(named=True)}
    fr = got[("fr", 0.3)]
    assert (fr["n"], fr["n_judged"], fr["n_target"], fr["n_away"], fr["n_switched"]) == (4, 3, 2, 1, 2)
    assert fr["switch_rate"] == pytest.approx(2 / 3) and fr["base_target_rate"] == pytest.approx(1 / 2)
    assert fr["target_mean_prob"] == pytest.approx(0.6)
    en = got[("en", -1.0)]  # negative α: switching away from the language counts
    assert (en["n_switched"], en["switch_rate"], en["target_rate"], en["base_target_rate"]) == (1, 0.5, 0.5, 1.0)
    assert got[("en", 0.0)]["n_switched"] == 2  # α = 0 counts the target language, like positive α


def test_options_are_checked():
    base = dict(model="m", langs=["fr"], multipliers=[0.4], local_sae_dir="x")
    with pytest.raises(UsageError, match="exactly one"):
        gen.check_options(gen.GenerateOptions(**base))
    gen.check_options(gen.GenerateOptions(**base, feature_set="s"))
    gen.check_options(gen.GenerateOptions(model="m", langs=["fr"], multipliers=[0.0]))  # baseline needs no set
    with pytest.raises(UsageError, match="--top-p"):
        gen.check_options(gen.GenerateOptions(**base, feature_set="s", sampling=gen.Sampling(top_p=0)))


def test_cli_generate_stores_judged_samples(toy_model_dir, toy_sae_dir, tmp_path, monkeypatch):
    """End to end with a stand-in identifier (the fastText judge is tested with langfeat.lid)."""
    import sys
    import types

    from typer.testing import CliRunner

    from langfeat.cli import app
    from langfeat.store import open_store

    feats = pl.DataFrame({"lang": ["fr", "ru"], "layer": [0, 2], "feature": [7, 11], "act_max": [3.0, 2.0]})
    monkeypatch.setattr(iv, "load_features", lambda store, fs, path: feats)
    seen = []

    def identify(texts, candidates=None):
        seen.extend(texts)
        return [("fra_Latn" if len(t) % 2 else "en", 0.75) for t in texts]

    monkeypatch.setitem(sys.modules, "langfeat.lid", types.SimpleNamespace(identify=identify))
    store = tmp_path / "store"
    args = ["generate", str(toy_model_dir), "--lang", "all", "--multiplier", "0,1.5", "--times", "3",
            "--max-new-token", "6", "--seed", "7", "--feature-set", "toy", "--local-sae-dir", str(toy_sae_dir),
            "--device", "cpu", "--store", str(store), "--name", "g", "--format", "csv"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = open_store(store).sql("SELECT * FROM generate_results ORDER BY lang, multiplier, sample")
    assert rows.height == 2 * 2 * 3
    assert rows["seed"].to_list()[:3] == [7, 8, 9] and rows["prompt"].to_list()[0] == ""
    assert rows.filter(pl.col("multiplier") == 0)["n_units"].to_list() == [0] * 6
    assert set(rows.filter(pl.col("multiplier") == 1.5)["n_units"]) == {1}
    for r in rows.iter_rows(named=True):
        flat = " ".join(r["text"].split())
        assert r["lid_lang"] == (None if not flat else "fr" if len(flat) % 2 else "en")
    # The α = 0 samples of both languages are the same unsteered draws (same seeds, no hooks).
    base = rows.filter(pl.col("multiplier") == 0)
    texts = {lang: base.filter(pl.col("lang") == lang)["text"].to_list() for lang in ("fr", "ru")}
    assert texts["fr"] == texts["ru"]
    header = res.stdout.splitlines()[0].split(",")
    assert header[:3] == ["lang", "multiplier", "last_token"] and "switch_rate" in header
    rep = CliRunner().invoke(app, ["report", "generate", "g", "--store", str(store), "--samples", "1"])
    assert rep.exit_code == 0, rep.output
    assert "switch_rate by α" in rep.stdout
