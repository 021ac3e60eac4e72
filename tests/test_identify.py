"""SAE-LAPE / LAPE in SQL against the independent numpy reference, on random counts with planted units."""

from __future__ import annotations

import itertools
import math

import lape_reference as ref
import numpy as np
import polars as pl
import pytest
from factories import random_counts, write_store

from langfeat import identify as ident
from langfeat import stats
from langfeat.errors import UsageError
from langfeat.store import open_store

# Two datasets for en/de (merged per language), one for the rest; 'vi' has no planted units.
RUN_LANGS = ["en", "de", "fr", "th", "vi", "en", "de"]
DATASETS = ["xnli", "xnli", "xnli", "xnli", "xnli", "flores", "flores"]
CONFIGS = ["en", "de", "fr", "th", "vi", "eng_Latn", "deu_Latn"]


@pytest.fixture(scope="module")
def sae_store(tmp_path_factory):
    counts = random_counts(7, RUN_LANGS, n_layers=3, n_units=60, datasets=DATASETS, silent="vi")
    root = tmp_path_factory.mktemp("ident") / "store"
    ids = write_store(root, counts, configs=CONFIGS)
    st = open_store(root)
    yield st, counts, ids
    st.close()


@pytest.fixture(scope="module")
def neuron_store(tmp_path_factory):
    counts = random_counts(11, ["en", "fr", "ja", "ko"], n_layers=4, n_units=50, planted=4)
    root = tmp_path_factory.mktemp("ident_n") / "store"
    ids = write_store(root, counts, kind="neuron", sae_model=None)
    st = open_store(root)
    yield st, counts, ids
    st.close()


def _check(got: pl.DataFrame, want: dict[int, list[ref.Member]], order: list[str], act: tuple | None = None):
    """Exact (lang, layer, unit) lists in order; entropy / prob within 1e-9; pooled activation statistics."""
    for i, tag in enumerate(order):
        mine = got.filter(pl.col("lang") == tag).sort("rank")
        exp = want[i]
        assert mine["rank"].to_list() == list(range(1, len(exp) + 1))
        assert list(zip(mine["layer"], mine["feature"], strict=True)) == [(m.layer, m.unit) for m in exp], tag
        for row, m in zip(mine.iter_rows(named=True), exp, strict=True):
            assert ref.is_close(row["entropy"], m.entropy) and ref.is_close(row["prob"], m.p)
            assert row.get("n_assigned", m.n_assigned) == m.n_assigned
            if act is not None:
                gmax, gmin, gavg = act
                assert row["act_max"] == pytest.approx(gmax[m.layer, m.unit], rel=1e-6)
                assert row["act_min"] == pytest.approx(gmin[m.layer, m.unit], rel=1e-6)
                assert row["act_avg"] == pytest.approx(gavg[m.layer, m.unit], rel=1e-6)
    assert set(got["lang"].to_list()) <= set(order)


SELECTIONS = [
    {},
    {"lang_specific": True},
    {"lang_shared": True, "shared_count": 2},
    {"lang_shared": True, "shared_count": 3},
    {"lang_specific": True, "top": 3},
    {"lang_specific": True, "top": 1, "top_per_layer": True},
    {"lang_specific": True, "top": 2, "top_by_frequency": True},
    {"lang_specific": True, "top": 1, "top_per_layer": True, "top_by_frequency": True},
    {"top": 4, "top_by_frequency": True, "entropy_threshold": 0.9},
    {"lang_specific": True, "entropy_threshold": 0.5},
    {"top_by_frequency": True},
]


@pytest.mark.parametrize(("ratio", "example_rate", "hfl_rate"),
                         [(0.8, 0.98, 0.1), (0.5, 0.98, 0.1), (0.3, 0.85, 0.05), (1.0, 0.0, 0.2)])
@pytest.mark.parametrize("sel", SELECTIONS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()) or "all")
def test_sae_lape_matches_reference(sae_store, ratio, example_rate, hfl_rate, sel):
    st, counts, ids = sae_store
    order, m, n_tok, n_doc = counts.merged()
    p = ident.Params(topk_threshold_ratio=ratio, example_rate=example_rate, hfl_rate=hfl_rate, layers=[0, 1, 2],
                     **sel)
    got = ident.compute(st, ids, p)
    members = ref.sae_lape_assign(m["tok"], m["doc"], n_tok, n_doc, ratio, example_rate, hfl_rate)
    want = ref.select(members, len(order), **sel)
    _check(got, want, order, ref.pooled(m["act_sum"], m["act_max"], m["act_min"], m["tok"]))


def test_planted_units_found_and_silent_language_empty(sae_store):
    st, _, ids = sae_store
    got = ident.compute(st, ids, ident.Params(topk_threshold_ratio=0.5, lang_specific=True, layers=[0, 1, 2]))
    per = dict(got.group_by("lang").len().iter_rows())
    assert "vi" not in per and all(per.get(t, 0) >= 3 for t in ("en", "de", "fr", "th"))
    shared = ident.compute(st, ids, ident.Params(topk_threshold_ratio=0.5, lang_shared=True, layers=[0, 1, 2]))
    assert shared.height > 0 and shared.height % 2 == 0
    # ties: copied units have equal entropy, ordered by (layer, unit)
    ent = got.sort("lang", "rank")
    for _, g in ent.group_by("lang"):
        keys = [(round(e, 12), la, f) for e, la, f in zip(g["entropy"], g["layer"], g["feature"], strict=True)]
        assert keys == sorted(keys)


def test_ties_present(sae_store):
    """The data really holds units with identical count vectors (so the tie order is exercised)."""
    _, counts, _ = sae_store
    _, m, _, _ = counts.merged()
    flat = m["tok"].reshape(-1, m["tok"].shape[-1])
    assert len({tuple(r) for r in flat if r.any()}) < int((flat.sum(1) > 0).sum())


@pytest.mark.parametrize(("filter_rate", "top_rate", "bar"),
                         [(0.95, 0.01, 0.95), (0.95, 0.05, 0.95), (0.9, 0.1, 0.8), (0.5, 0.2, 0.97), (0.99, 0.3, 0.9)])
@pytest.mark.parametrize("sel", [{}, {"lang_specific": True}, {"top": 2, "top_by_frequency": True}],
                         ids=["all", "specific", "top2freq"])
def test_lape_matches_reference(neuron_store, filter_rate, top_rate, bar, sel):
    st, counts, ids = neuron_store
    order, m, n_tok, _ = counts.merged()
    L, U = m["tok"].shape[:2]
    p = ident.Params(algorithm="lape", kind="neuron", filter_rate=filter_rate, top_rate=top_rate,
                     activation_bar_ratio=bar, units_per_layer=U, layers=list(range(L)), **sel)
    got = ident.compute(st, ids, p)
    members = ref.lape_assign(m["tok"], n_tok, filter_rate, top_rate, bar)
    want = ref.select(members, len(order), **sel)
    _check(got, want, order, ref.pooled(m["act_sum"], m["act_max"], m["act_min"], m["tok"]))
    assert got.height > 0 or not members


def test_lape_units_inferred_and_layer_subset(neuron_store):
    st, counts, ids = neuron_store
    order, m, n_tok, _ = counts.merged()
    # units per layer inferred from the largest unit index seen (every unit index up to U-1 fires somewhere)
    U = int(np.nonzero(m["tok"].sum(axis=(0, 2)))[0].max()) + 1
    sub = m["tok"][[1, 3]]
    got = ident.compute(st, ids, ident.Params(algorithm="lape", kind="neuron", top_rate=0.1, layers=[1, 3]))
    want = ref.select(ref.lape_assign(sub, n_tok, 0.95, 0.1, 0.95), len(order))
    remap = {0: 1, 1: 3}
    want = {i: [ref.Member(x.lang, remap[x.layer], x.unit, x.entropy, x.p, x.n_assigned) for x in v
                if x.unit < U] for i, v in want.items()}
    _check(got, want, order)


def test_unit_stats_match_hand(sae_store):
    st, counts, ids = sae_store
    order, m, n_tok, n_doc = counts.merged()
    df = stats.unit_stats(st, ids, kind="sae")
    assert df.height == int((m["tok"] > 0).sum())
    h = ref.entropy(ref.probabilities(m["tok"], n_tok))
    gmax, gmin, gavg = ref.pooled(m["act_sum"], m["act_max"], m["act_min"], m["tok"])
    for row in df.sample(200, seed=1).iter_rows(named=True):
        i, a, b = order.index(row["lang"]), row["layer"], row["unit"]
        assert row["tok_count"] == m["tok"][a, b, i] and row["doc_count"] == m["doc"][a, b, i]
        assert (row["n_docs"], row["n_tokens"]) == (n_doc[i], n_tok[i])
        assert ref.is_close(row["p"], m["tok"][a, b, i] / n_tok[i])
        assert ref.is_close(row["coverage"], m["doc"][a, b, i] / n_doc[i])
        p = m["tok"][a, b] / n_tok
        assert ref.is_close(row["q"], p[i] / p.sum()) and ref.is_close(row["entropy"], h[a, b])
        assert ref.is_close(row["act_sum"], m["act_sum"][a, b, i])
        assert ref.is_close(row["act_mean"], m["act_sum"][a, b, i] / m["tok"][a, b, i])
        assert row["act_max"] == pytest.approx(m["act_max"][a, b, i], rel=1e-6)
        assert row["act_min"] == pytest.approx(m["act_min"][a, b, i], rel=1e-6)
        assert row["unit_act_max"] == pytest.approx(gmax[a, b], rel=1e-6)
        assert row["unit_act_min"] == pytest.approx(gmin[a, b], rel=1e-6)
        assert ref.is_close(row["unit_act_avg"], gavg[a, b])
        assert row["n_langs"] == int((m["tok"][a, b] > 0).sum())


def test_language_totals_merge_datasets_by_hand(sae_store):
    st, counts, ids = sae_store
    tot = stats.language_totals(st, ids)
    assert tot["lang"].to_list() == ["en", "fr", "de", "th", "vi"]  # English, French, German, Thai, Vietnamese
    for row in tot.iter_rows(named=True):
        runs = [r for r, t in enumerate(counts.langs) if t == row["lang"]]
        assert row["n_docs"] == sum(counts.n_doc[r] for r in runs)
        assert row["n_tokens"] == sum(counts.n_tok[r] for r in runs)
        assert row["runs"] == len(runs)
    # one feature: its merged en counts are the two datasets' sums, act_max the max, act_min the min
    df = stats.unit_stats(st, ids, kind="sae").filter(pl.col("lang") == "en")
    en = [r for r, t in enumerate(counts.langs) if t == "en"]
    both = [(a, b) for a, b in itertools.product(range(3), range(60))
            if all(counts.tok[r][a, b] > 0 for r in en)][:20]
    for a, b in both:
        row = df.filter((pl.col("layer") == a) & (pl.col("unit") == b)).row(0, named=True)
        assert row["tok_count"] == sum(int(counts.tok[r][a, b]) for r in en)
        assert row["doc_count"] == sum(int(counts.doc[r][a, b]) for r in en)
        assert row["act_max"] == pytest.approx(max(counts.act_max[r][a, b] for r in en), rel=1e-6)
        assert row["act_min"] == pytest.approx(min(counts.act_min[r][a, b] for r in en), rel=1e-6)


def test_select_runs_by_dataset_configs(sae_store):
    st, _, ids = sae_store
    runs = stats.select_runs(st, dataset_configs=["xnli:{en,de}", "flores:eng_Latn"])
    assert sorted(zip(runs["dataset"], runs["config"], strict=True)) == [
        ("flores", "eng_Latn"), ("xnli", "de"), ("xnli", "en")]
    assert runs["lang"].to_list() == ["en", "en", "de"]  # by English name
    all_runs = stats.select_runs(st, model="toy-model", sae_model="toy-sae", layers=[0, 2])
    assert sorted(all_runs["run_id"]) == sorted(ids)
    with pytest.raises(UsageError, match=r"xnli:xx match no complete run.*the store has: flores:deu_Latn"):
        stats.select_runs(st, dataset_configs=["xnli:{en,xx}"])
    with pytest.raises(UsageError, match="no complete run of model 'other'"):
        stats.select_runs(st, model="other")
    with pytest.raises(UsageError, match="no complete run with SAE 'x'"):
        stats.select_runs(st, sae_model="x")
    with pytest.raises(UsageError, match="layers"):
        stats.select_runs(st, dataset_configs="xnli:en", layers=[5])
    with pytest.raises(UsageError, match="no complete run with neuron counts"):
        stats.select_runs(st, kind="neuron")
    with pytest.raises(UsageError, match="DATASET:CONFIG"):
        stats.select_runs(st, dataset_configs="no-colon")


def test_identify_subset_merges_like_sum(sae_store, tmp_path):
    """Identifying over xnli:en + flores:eng_Latn equals identifying over one run holding their sums."""
    st, counts, _ = sae_store
    got = ident.identify(st, dataset_configs=["xnli:{en,de,fr}", "flores:{eng_Latn,deu_Latn}"], layers=[0, 1, 2],
                         topk_threshold_ratio=0.5, save=False)
    order, m, n_tok, n_doc = counts.merged()
    keep = [order.index(t) for t in ("en", "fr", "de")]
    members = ref.sae_lape_assign(m["tok"][..., keep], m["doc"][..., keep], n_tok[keep], n_doc[keep], 0.5)
    want = ref.select(members, 3)
    _check(got, want, ["en", "fr", "de"])


def test_identify_saves_set_and_params(sae_store):
    st, counts, ids = sae_store
    df = ident.identify(st, topk_threshold_ratio=0.5, lang_specific=True, layers="model.layers.{0..2}.mlp")
    assert df["name"].unique().to_list() == ["sae-lape-r0.5-specific"]
    stored = stats.feature_set(st, "sae-lape-r0.5-specific")
    assert stored.drop("name").sort("lang", "rank").equals(df.drop("name").sort("lang", "rank"))
    assert set(stored["algorithm"]) == {"sae-lape"} and set(stored["kind"]) == {"sae"}
    table, params = ident.summary(st, "sae-lape-r0.5-specific")
    assert params["runs"] == sorted(params["runs"], key=params["runs"].index) and set(params["runs"]) == set(ids)
    assert params["langs"] == ["en", "fr", "de", "th", "vi"] and params["topk_threshold_ratio"] == 0.5
    assert params["num_tokens"]["en"] == counts.n_tok[0] + counts.n_tok[5]
    assert table.filter(pl.col("lang") == "vi")["n"].to_list() == [0]  # present with zero features
    assert params["candidates"] >= df.select("layer", "feature").unique().height
    # the summary's numbers against an independent computation: candidates from the reference, per-language
    # counts and entropy ranges from the set itself, totals from the runs' counts
    order, m, n_tok, n_doc = counts.merged()
    members = ref.sae_lape_assign(m["tok"][:3], m["doc"][:3], n_tok, n_doc, 0.5)
    assert params["candidates"] == len({(x.layer, x.unit) for x in members})
    assert table["lang"].to_list() == ["en", "fr", "de", "th", "vi"]  # English, French, German, Thai, Vietnamese
    for row in table.iter_rows(named=True):
        i = order.index(row["lang"])
        assert (row["docs"], row["tokens"]) == (n_doc[i], n_tok[i])
        ents = sorted(df.filter(pl.col("lang") == row["lang"])["entropy"].to_list())
        assert row["n"] == len(ents)
        if ents:
            assert (row["entropy_min"], row["entropy_max"]) == (ents[0], ents[-1])
            assert row["entropy_median"] == pytest.approx(float(np.median(ents)), rel=1e-12)
        else:
            assert row["entropy_min"] is None
    with pytest.raises(UsageError, match="already exists"):
        ident.identify(st, topk_threshold_ratio=0.5, lang_specific=True)
    again = ident.identify(st, topk_threshold_ratio=0.5, lang_specific=True, overwrite=True)
    assert again.height == df.height


def test_bad_parameters(sae_store):
    st, _, _ = sae_store
    for kw, msg in [({"topk_threshold_ratio": 0.0}, "> 0"), ({"example_rate": 1.5}, "between 0 and 1"),
                    ({"lang_specific": True, "lang_shared": True}, "exclude"), ({"top": -1}, "--top"),
                    ({"algorithm": "nope"}, "unknown --algorithm"), ({"name": "a/b"}, "bad name"),
                    ({"layers": ["model.layers.{0..1}.mlp", "model.layers.2.mlp.act_fn"]}, "mixes")]:
        with pytest.raises(UsageError, match=msg):
            ident.identify(st, save=False, **kw)


def test_names_and_layer_kinds():
    assert ident.default_name(ident.Params(topk_threshold_ratio=0.8, lang_specific=True)) == "sae-lape-r0.8-specific"
    assert ident.default_name(ident.Params(topk_threshold_ratio=0.5, lang_shared=True, shared_count=3, top=10,
                                           top_by_frequency=True)) == "sae-lape-r0.5-shared3-top10-freq"
    assert ident.default_name(ident.Params(algorithm="lape", kind="neuron")) == "lape"
    assert ident.resolve_layers("model.layers.{0..2}.mlp", "sae_lape") == ([0, 1, 2], "sae")
    assert ident.resolve_layers("model.layers.{0..2}.mlp", "lape") == ([0, 1, 2], "neuron")
    assert ident.resolve_layers(["model.layers.3.mlp.act_fn"], "sae-lape") == ([3], "neuron")
    assert ident.normalise_algorithm("SAE_LAPE") == "sae-lape"
    assert math.isclose(ref.entropy(np.array([0.5, 0.5, 0.0])), math.log(2))
