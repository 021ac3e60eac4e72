"""`langfeat demo` end to end on the toy model with tiny sizes: the SAE quality numbers against a hand computation,
the own-vs-other view against a Polars recount from the stored events, the summary against the store, and a
resume that does no work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from langfeat import corpus
from langfeat.cli import app
from langfeat.demo import (
    CLASSIFIERS,
    DENSE_RATE,
    DIFFMEAN_SET,
    NEURON_SET,
    NU_SET,
    NU_TOP,
    PPL_METHOD_RUNS,
    PPL_RUNS,
    PROBE_RESULTS,
    SAE_SET,
    SWEEP_RESULT,
    DemoConfig,
    run_demo,
)
from langfeat.errors import UsageError
from langfeat.models import load_model
from langfeat.store import open_store

LANGS = ("en", "de", "ru")


def tiny(store: Path, model: Path) -> DemoConfig:
    return DemoConfig(
        store=str(store), model=str(model), langs=LANGS, layers=(1, 2), num_latents=64, k=4, train_docs=3,
        ctx_len=32, train_batch=4, fvu_docs=3, identify_docs=8, eval_docs=5, max_length=40, batch=4,
        ppl_langs=("en", "de", "ru"), ppl_docs=2, generate_langs=LANGS, generate_times=2, generate_tokens=4,
        sweep_multipliers=(0.0, 1.5), sweep_times=2, sweep_tokens=4, diffmean_docs=3,
        check_texts=("hello world", "guten Tag"),
        device="cpu", dtype="float32",
    )


@pytest.fixture(scope="module")
def demo(toy_model_dir, tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("demo") / "demo-store", toy_model_dir)
    return cfg, run_demo(cfg)


def test_every_step_ran_and_the_summary_reads_the_store(demo):
    cfg, s = demo
    assert s.ran == ["train", "sae_stats", "ingest", "ingest_train", "identify", "classify", "nu_probe", "ppl",
                     "generate", "steer", "ppl_methods", "check"]
    assert s.config.dtype == "float32"
    assert s.report.is_file() and s.report.name == "index.html"
    assert Path(cfg.sae_dir).name == "demo-store-saes"
    with open_store(cfg.store) as st:
        fs = st.feature_sets()
        runs = st.runs()
    want = fs.group_by("lang").agg(sae=(pl.col("name") == SAE_SET).sum(), neurons=(pl.col("name") == NEURON_SET)
                                   .sum()).sort("lang")
    assert s.features.select("lang", "sae", "neurons").to_dicts() == want.cast({"sae": pl.Int64, "neurons": pl.Int64}
                                                                                  ).to_dicts()
    assert s.lid["name"].to_list() == [f"demo-{c}" for c in CLASSIFIERS]
    n_eval = sum(min(5, len(corpus.texts("udhr", "all", lang))) for lang in LANGS)
    assert s.lid["n_docs"].to_list() == [n_eval] * len(CLASSIFIERS)
    ident = runs.filter(pl.col("dataset") == corpus.PLAN["identify"])
    assert sorted(ident["lang"].to_list()) == sorted(LANGS) and set(ident["n_docs"].to_list()) == {8}
    extra = runs.filter(pl.col("dataset") == corpus.PLAN["train"])  # the SAE probes' extra text: SAE features only
    assert sorted(extra["lang"].to_list()) == sorted(LANGS) and set(extra["n_docs"].to_list()) == {3}
    assert not extra["neurons"].any() and set(runs["dtype"].to_list()) == {"float32"}
    assert s.switch.height == len(set(s.features.filter(pl.col("sae") > 0)["lang"])) * 2
    assert [c["text"] for c in s.check] == list(cfg.check_texts)
    for row in s.check:  # by the SAE-LAPE vote and by the probe (scored in test_check against a hand model)
        assert set(row) == {"text", "prediction", "probe_prediction", "n_features"}
        assert {row["prediction"], row["probe_prediction"]} <= {*LANGS, "unknown"}


def test_nu_and_probe_steps(demo):
    cfg, s = demo
    with open_store(cfg.store) as st:
        nu = st.feature_sets(NU_SET)
        runs = st.runs()
        identify_runs = set(runs.filter(pl.col("dataset") == corpus.PLAN["identify"])["run_id"].to_list())
        train_runs = set(runs.filter(pl.col("dataset") == corpus.PLAN["train"])["run_id"].to_list())
        probe_params = [json.loads(p) for p in st.sql(
            "SELECT params::VARCHAR AS p FROM feature_set_params WHERE list_contains(?, name)", [list(PROBE_RESULTS)]
        )["p"].to_list()]
        sizes = st.sql("SELECT name, lang, count(*) AS n FROM feature_sets WHERE list_contains(?, name) "
                       "GROUP BY ALL", [list(PROBE_RESULTS)])
        fasttext = st.sql("SELECT accuracy FROM classify_metrics WHERE name = 'demo-fasttext'").item()
        scored = st.sql("SELECT DISTINCT run_id FROM classify_docs WHERE list_contains(?, name)",
                        [list(PROBE_RESULTS)])["run_id"].to_list()
        params = json.loads(st.sql("SELECT params::VARCHAR AS p FROM feature_set_params WHERE name = ?",
                                   [NU_SET])["p"][0])
    assert set(params["runs"]) == identify_runs and set(nu["algorithm"]) == {"nu"}
    per_lang = nu.group_by("lang").agg(pl.len(), pl.col("score").min(), pl.col("rank").max())
    assert all(n <= NU_TOP and r == n and m > 0 for n, m, r in per_lang.select("len", "score", "rank").iter_rows())
    assert sizes.filter(pl.col("name") == "demo-sae-probe-k2")["n"].max() <= 2
    assert scored and not set(scored) & (identify_runs | train_runs)  # scored on the held-out UDHR runs only
    # the SAE probes train on both synthetic splits; ν (above) on the identification split alone
    assert len(probe_params) == len(PROBE_RESULTS)
    assert all(set(p["train_runs"]) == identify_runs | train_runs for p in probe_params)
    rows = {r["feature_set"]: r for r in s.methods_lid.iter_rows(named=True)}
    n_eval = sum(min(5, len(corpus.texts("udhr", "all", lang))) for lang in LANGS)
    for name in PROBE_RESULTS:
        assert rows[name]["method"] == "sae-probe" and rows[name]["n_docs"] == n_eval
        assert rows[name]["fasttext_accuracy"] == pytest.approx(fasttext)  # fastText on exactly these texts


def test_every_method_has_a_delta_ppl_matrix(demo):
    """ppl and ppl_methods: one ΔPPL result per method (SAE-LAPE steering and ablation, LAPE neurons, ν features,
    probe features, DiffMean), each over the ΔPPL languages the method covers, summarised by methods_ppl."""
    cfg, _ = demo
    names = {**PPL_RUNS, **PPL_METHOD_RUNS}
    with open_store(cfg.store) as st:
        got = st.sql("SELECT name, intervention, source, multiplier, list(DISTINCT int_lang ORDER BY int_lang) AS i, "
                     "list(DISTINCT lang ORDER BY lang) AS e FROM ppl_results WHERE int_lang IS NOT NULL "
                     "GROUP BY ALL ORDER BY name")
        summary = st.sql("SELECT method, n_rows FROM methods_ppl")
    assert set(got["name"]) == set(names)
    for r in got.iter_rows(named=True):
        kind, source, multiplier, _value = names[r["name"]]
        assert (r["intervention"], r["source"]) == (kind, source)
        if kind in ("sae-ablate", "diffmean"):
            assert r["multiplier"] == multiplier
        assert r["e"] == sorted(cfg.ppl_langs) and set(r["i"]) <= set(cfg.ppl_langs)
    assert summary.height == len(names) and summary["n_rows"].min() >= 1


def test_neuron_probe_step(demo):
    """The identification runs hold neuron docs; the neuron probe is trained on them and scored on the UDHR runs
    only, beside fastText on the same texts."""
    from langfeat.demo import NEURON_PROBE_RESULT

    cfg, s = demo
    with open_store(cfg.store) as st:
        ident = st.runs().filter(pl.col("dataset") == corpus.PLAN["identify"])
        kinds = st.sql("SELECT DISTINCT algorithm, kind FROM feature_sets WHERE name = ?", [NEURON_PROBE_RESULT])
        scored = st.sql("SELECT DISTINCT run_id FROM classify_docs WHERE name = ?", [NEURON_PROBE_RESULT])
    assert ident["neuron_docs"].all() and kinds.rows() == [("neuron-probe", "neuron")]
    assert scored.height and not set(scored["run_id"]) & set(ident["run_id"])
    row = s.methods_lid.filter(pl.col("feature_set") == NEURON_PROBE_RESULT).row(0, named=True)
    assert row["method"] == "neuron-probe" and row["fasttext_accuracy"] is not None


def test_own_vs_other_view_equals_a_recount_from_events(demo):
    cfg, s = demo
    with open_store(cfg.store) as st:
        params = json.loads(st.sql("SELECT params::VARCHAR AS p FROM feature_set_params WHERE name = ?",
                                   [SAE_SET])["p"][0])
        run_ids = params["runs"]
        events = st.events().filter(pl.col("run_id").is_in(run_ids))
        docs = st.docs().filter(pl.col("run_id").is_in(run_ids))
        fs = st.feature_sets(SAE_SET)
    tokens = dict(docs.group_by("lang").agg(pl.col("n_tokens").sum()).iter_rows())
    got = {r["lang"]: r for r in s.own_vs_other.iter_rows(named=True)}
    assert set(got) == set(fs["lang"].to_list())
    for lang in got:
        units = fs.filter(pl.col("lang") == lang).select("layer", "feature")
        fired = events.join(units, on=["layer", "feature"]).group_by("lang").len()
        rate = {t: dict(fired.iter_rows()).get(t, 0) / n for t, n in tokens.items()}
        others = {t: r for t, r in rate.items() if t != lang}
        top = max(others, key=others.get)
        assert got[lang]["n_units"] == units.height
        assert got[lang]["own_rate"] == pytest.approx(rate[lang], rel=1e-12)
        assert got[lang]["top_other_rate"] == pytest.approx(others[top], rel=1e-12)
        if list(others.values()).count(others[top]) == 1:
            assert got[lang]["top_other_lang"] == top
        if others[top] > 0:
            assert got[lang]["ratio"] == pytest.approx(rate[lang] / others[top], rel=1e-12)


def test_steer_step_stores_vectors_ppl_and_a_scored_sweep(demo):
    cfg, s = demo
    with open_store(cfg.store) as st:
        norms = st.sql("SELECT lang, layer, n_langs, n_docs FROM diffmean_norms WHERE name = ?", [DIFFMEAN_SET])
        sweep = st.sql("SELECT * FROM generate_results WHERE name = ?", [SWEEP_RESULT])
        best = st.sql("SELECT method, lang, best_alpha, success_rate, fluency_score, steering_score, n_alphas "
                      "FROM generate_best_alpha WHERE name = ? ORDER BY lang, method", [SWEEP_RESULT])
        sae_langs = set(st.sql("SELECT DISTINCT lang FROM feature_sets WHERE name = ?", [SAE_SET])["lang"])
    assert sorted(set(norms["lang"])) == sorted(LANGS) and sorted(set(norms["layer"])) == list(cfg.layers)
    assert set(norms["n_langs"]) == {len(LANGS)} and set(norms["n_docs"]) == {cfg.diffmean_docs}
    targets = [lang for lang in cfg.generate_langs if lang in sae_langs]
    # per language: two steering methods × each α, plus prompting once; every sample judged and scored
    assert sweep.height == len(targets) * (2 * len(cfg.sweep_multipliers) + 1) * cfg.sweep_times
    assert sweep["char_ppl"].null_count() == sweep.filter(pl.col("n_chars") == 0).height
    assert s.steering.equals(best) and s.steering.height == 3 * len(targets)
    assert set(s.methods_ppl["method"]) == {"sae-features demo-sae α=-0.2", "sae-ablate demo-sae α=-1",
                                            "neuron demo-neurons value=0", "sae-features demo-nu α=-0.2",
                                            "sae-features demo-sae-probe α=-0.2", "diffmean demo-diffmean α=-1"}
    assert s.methods_ppl.columns == ["method", "n_rows", "n_diag_rowmax", "median_diag", "median_offdiag", "ratio"]


def test_sae_stats_equal_a_hand_computation(demo):
    from sparsify import SparseCoder

    cfg, s = demo
    model, tokenizer = load_model(cfg.model, device="cpu")
    texts = [t for row in zip(*[corpus.texts("synthetic", "eval", lang)[:cfg.fvu_docs] for lang in LANGS],
                              strict=True) for t in row]
    captured: dict[int, list[np.ndarray]] = {layer: [] for layer in cfg.layers}
    hooks = [model.model.layers[layer].mlp.register_forward_hook(
        lambda _m, _i, out, layer=layer: captured[layer].append(out[0].detach().numpy().astype(np.float64)))
        for layer in cfg.layers]
    try:
        with torch.no_grad():
            for text in texts:  # one text at a time: no padding at all
                ids = tokenizer(text, truncation=True, max_length=cfg.max_length)["input_ids"]
                model(input_ids=torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    for stat in s.sae_stats:
        x = np.concatenate([a[1:] for a in captured[stat.layer]])  # the BOS position left out, as in the demo
        sae = SparseCoder.load_from_disk(Path(cfg.sae_dir) / f"layers.{stat.layer}.mlp", device="cpu")
        enc = sae.encode(torch.tensor(x, dtype=torch.float32))
        recon = sae.decode(enc.top_acts, enc.top_indices).detach().numpy().astype(np.float64)
        fvu = ((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        counts = np.zeros(64, np.int64)
        idx, act = enc.top_indices.numpy(), enc.top_acts.detach().numpy()
        for row_i, row_a in zip(idx, act, strict=True):
            counts[row_i[row_a > 0]] += 1
        assert stat.heldout_tokens == x.shape[0]
        assert stat.fvu == pytest.approx(fvu, rel=1e-3)
        assert stat.dead == int((counts == 0).sum())
        assert stat.dense == int((counts > DENSE_RATE * x.shape[0]).sum())
        assert (stat.num_latents, stat.k) == (64, 4)
        assert stat.train_tokens > 0 and stat.train_tokens % cfg.ctx_len == 0


def test_a_second_run_does_no_work_and_gives_the_same_summary(demo):
    cfg, first = demo
    files = {p: p.stat().st_mtime_ns for p in Path(cfg.store).rglob("*.parquet")}
    files.update({p: p.stat().st_mtime_ns for p in Path(cfg.sae_dir).rglob("*") if p.is_file()})
    again = run_demo(cfg)
    assert again.ran == []
    assert again.skipped == ["train", "sae_stats", "ingest", "ingest_train", "identify", "classify", "nu_probe", "ppl",
                             "generate", "steer", "ppl_methods", "check"]
    assert {p: p.stat().st_mtime_ns for p in files} == files
    for attr in ("features", "own_vs_other", "lid", "ppl", "switch", "steering", "methods_ppl", "methods_lid"):
        assert getattr(again, attr).equals(getattr(first, attr)), attr
    assert again.sae_stats == first.sae_stats and again.check == first.check


def test_bad_sizes_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="--k 0 is not positive"):
        DemoConfig(k=0).check()
    with pytest.raises(UsageError, match="unknown demo language"):
        DemoConfig(ppl_langs=("xx",)).check()
    res = CliRunner().invoke(app, ["demo", "--store", str(tmp_path / "s"), "--num-latents", "8", "--k", "16"])
    assert res.exit_code == 2 and "error: --k 16 exceeds --num-latents 8" in res.output
    assert not (tmp_path / "s").exists()
