"""The neuron probe (classify --classifier-type neuron-probe) on planted per-document neuron values: its training
matrix against plain Python, the planted neurons recovered, the SQL scores of held-out runs equal to numpy
X·Wᵀ + b from the stored coefficients, training documents never scored, and the errors."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from factories import add_run
from typer.testing import CliRunner

from langfeat import data
from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.experiments import probe
from langfeat.experiments.classify import ClassifyOptions, classify
from langfeat.store import ensure_store, open_store

LANGS = ["en", "de", "fr"]
PLANTED = {"en": (0, 3), "de": (0, 5), "fr": (1, 2)}  # (layer, neuron) active on many tokens only in that language
N_NEURONS, N_TRAIN, N_EVAL = 8, 8, 4

NeuronDocs = dict[int, list[tuple[int, int, int, float]]]


def _neuron_docs(rng: np.random.Generator, lang: str, n_tokens: list[int]) -> NeuronDocs:
    """Per layer, (doc, neuron, tok_count, act_sum): every neuron of both layers is active on 1–2 tokens of every
    document (dense, like SiLU/GELU neurons), the language's planted neuron on most of its tokens."""
    out: NeuronDocs = {0: [], 1: []}
    for d, n in enumerate(n_tokens):
        for layer in (0, 1):
            for neuron in range(N_NEURONS):
                count = n - 1 if PLANTED[lang] == (layer, neuron) else int(rng.integers(1, 3))
                out[layer].append((d, neuron, count, float(np.float32(count * (0.2 + rng.random())))))
    return out


def _counts(nd: NeuronDocs) -> list[tuple[int, int, int, int, float, float, float]]:
    """neuron_counts rows consistent with the documents: tokens, documents and act_sum summed; act_max / act_min
    = twice / half the largest / smallest per-document mean output."""
    out = []
    for layer, rows in nd.items():
        for neuron in sorted({r[1] for r in rows}):
            mine = [r for r in rows if r[1] == neuron]
            means = [a / c for _d, _n, c, a in mine]
            out.append((layer, neuron, sum(r[2] for r in mine), len(mine), sum(r[3] for r in mine),
                        2 * max(means), min(means) / 2))
    return out


def _build(root, eval_role: str = "eval", neuron_docs: bool = True) -> dict:
    rng = np.random.default_rng(11)
    layout = ensure_store(root / "store")
    (root / "eval").mkdir(parents=True, exist_ok=True)
    values: dict = {}
    for lang in LANGS:
        texts = [f"{lang} training text {i}" for i in range(N_TRAIN)]
        nd = _neuron_docs(rng, lang, [len(t) + 1 for t in texts])  # the factory's tokens: BOS + one per character
        add_run(layout, lang, dataset="synth", texts=texts, neuron_docs=nd if neuron_docs else None,
                layers=[0, 1], neurons=True, neuron_counts=[] if not neuron_docs else _counts(nd), sae_model=None,
                **({} if neuron_docs else {"neuron_layers": [0, 1]}))
        values[("train", lang)] = (nd, [len(t) + 1 for t in texts])
        (root / "eval" / f"{lang}.txt").write_text("\n".join(f"{lang} held-out {i}" for i in range(N_EVAL)) + "\n",
                                                   encoding="utf-8")
        src = data.open_source(str(root / "eval" / "{lang}.txt"), lang, "test", 0, None, None, None)
        lengths = [len(t) + 1 for t in src.texts()]
        nd = _neuron_docs(rng, lang, lengths)
        add_run(layout, lang, dataset=src.dataset, texts=src.texts(), neuron_docs=nd, layers=[0, 1], neurons=True,
                split=src.split, config=src.config, template=src.template, max_length=None, dtype="float32",
                role=eval_role, sae_model=None)
        values[("eval", lang)] = (nd, lengths)
    return {"root": root, "store": root / "store", "dataset": str(root / "eval" / "{lang}.txt"), "values": values}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("neuron_probe"))


def _opts(w, **kw) -> ClassifyOptions:
    return ClassifyOptions(dataset=w["dataset"], langs=LANGS, classifier="neuron-probe", store=str(w["store"]), **kw)


def _x(nd: NeuronDocs, lengths: list[int], value: str) -> dict[int, dict[tuple[int, int], float]]:
    """doc -> (layer, neuron) -> ln(1 + tok_count), act_sum / n_tokens or 1, in plain Python."""
    out: dict[int, dict[tuple[int, int], float]] = {}
    for layer, rows in nd.items():
        for d, neuron, count, act_sum in rows:
            x = math.log1p(count) if value == "count" else act_sum / lengths[d] if value == "mean" else 1.0
            out.setdefault(d, {})[(layer, neuron)] = x
    return out


@pytest.mark.parametrize("value", ["count", "mean", "binary"])
def test_training_matrix_is_the_neuron_docs(world, value):
    with open_store(world["store"]) as st:
        train = st.sql("SELECT run_id FROM runs WHERE role = 'identify'")["run_id"].to_list()
        x, y, langs_, units, doc_ids = probe.matrix("neuron", st, train, [0, 1], value, None)
        docs = st.sql('SELECT doc_id, lang, "row" FROM docs WHERE list_contains(?, run_id)', [train])
    assert langs_ == ["en", "fr", "de"] and x.shape == (len(LANGS) * N_TRAIN, 2 * N_NEURONS)
    assert units == [(layer, n) for layer in (0, 1) for n in range(N_NEURONS)]
    row_of = dict(zip(docs["doc_id"].to_list(), docs["row"].to_list(), strict=True))
    lang_of = dict(zip(docs["doc_id"].to_list(), docs["lang"].to_list(), strict=True))
    dense = x.toarray()
    for i, doc_id in enumerate(doc_ids.tolist()):
        nd, lengths = world["values"][("train", lang_of[doc_id])]
        want = _x(nd, lengths, value)[row_of[doc_id]]
        assert {units[j]: dense[i, j] for j in range(len(units))} == pytest.approx(want, rel=1e-6)
        assert langs_[y[i]] == lang_of[doc_id]


def test_neuron_probe_recovers_planted_neurons_and_scores_held_out_runs_in_sql(world):
    for k, value in ((None, "count"), (1, "count"), (None, "mean"), (2, "mean")):
        name = classify(_opts(world, max_features_per_language=k, probe_value=value, name=f"np-{k}-{value}"))
        with open_store(world["store"]) as st:
            fs = st.sql("SELECT algorithm, kind, lang, layer, feature, rank FROM feature_sets WHERE name = ?", [name])
            units = st.sql("SELECT kind, lang, layer, feature, weight, value FROM classify_units WHERE name = ?",
                           [name])
            cand = st.sql("SELECT lang, bias FROM classify_langs WHERE name = ?", [name])
            votes = st.sql('SELECT d.run_id, d.doc_id, d."row", d.label, v.lang, v.score FROM classify_votes v '
                           "JOIN classify_docs d USING (name, doc) WHERE name = ?", [name])
            metrics = st.sql("SELECT accuracy, n_docs FROM classify_metrics WHERE name = ?", [name])
            method = st.sql("SELECT method FROM methods_lid WHERE name = ?", [name]).item()
            train_docs = set(st.sql("SELECT doc_id FROM docs JOIN runs USING (run_id) WHERE role = 'identify'")
                             ["doc_id"].to_list())
            eval_runs = set(st.sql("SELECT run_id FROM runs WHERE role = 'eval'")["run_id"].to_list())
        assert set(fs["algorithm"]) == {"neuron-probe"} and set(fs["kind"]) == {"neuron"} and method == "neuron-probe"
        top = {r["lang"]: (r["layer"], r["feature"]) for r in fs.filter(pl.col("rank") == 1).iter_rows(named=True)}
        assert top == PLANTED, (k, value)
        if k == 1:
            assert sorted(zip(units["lang"], units["layer"], units["feature"], strict=True)) == sorted(
                (lang, *u) for lang, u in PLANTED.items())
        assert set(units["kind"]) == {"neuron"} and set(units["value"]) == {value}
        # numpy: X (the planted eval values) · Wᵀ + b with W, b the stored coefficients
        lang_order = cand["lang"].to_list()
        unit_list = sorted({(r[2], r[3]) for r in units.iter_rows()})
        col = {u: j for j, u in enumerate(unit_list)}
        w = np.zeros((len(lang_order), len(unit_list)))
        for _kind, lang, layer, feature, weight, _v in units.iter_rows():
            w[lang_order.index(lang), col[(layer, feature)]] = weight
        b = cand["bias"].to_numpy()
        assert set(votes["run_id"]) == eval_runs and not set(votes["doc_id"].to_list()) & train_docs
        for label in LANGS:
            nd, lengths = world["values"][("eval", label)]
            xs = _x(nd, lengths, value)
            x = np.array([[xs[row].get(u, 0.0) for u in unit_list] for row in range(N_EVAL)])
            want = x @ w.T + b
            mine = votes.filter(pl.col("label") == label)
            for _run, _doc, row, _label, lang, score in mine.iter_rows():
                assert score == pytest.approx(want[row, lang_order.index(lang)], rel=1e-6, abs=1e-9)
            assert mine.height == N_EVAL * len(lang_order)
        assert metrics.row(0) == (1.0, len(LANGS) * N_EVAL)


def test_neuron_probe_refuses_training_documents(tmp_path):
    w = _build(tmp_path, eval_role="identify")  # the evaluated texts' runs are identification runs too
    with pytest.raises(UsageError, match="training run"):
        classify(_opts(w, name="leak"))
    assert not (w["store"] / "results" / "classify_docs" / "name=leak").exists()
    name = classify(_opts(w, name="ok", train_configs=[f"synth:{lang}" for lang in LANGS]))
    with open_store(w["store"]) as st:
        assert st.sql("SELECT accuracy FROM classify_metrics WHERE name = ?", [name]).item() == 1.0


def test_neuron_probe_needs_runs_with_neuron_docs(tmp_path):
    w = _build(tmp_path, neuron_docs=False)  # identification runs with neuron counts, no neuron docs
    with pytest.raises(UsageError, match="ingest --neuron-docs"):
        classify(_opts(w, name="none"))
    res = CliRunner().invoke(app, ["classify", w["dataset"], "--lang", *LANGS, "--classifier-type", "neuron-probe",
                                   "--store", str(w["store"]), "--no-progress"])
    assert res.exit_code == 2 and "ingest --neuron-docs" in res.output and "Traceback" not in res.output
    assert not (w["store"] / "results" / "classify_docs" / "name=none").exists()


def test_neuron_probe_values(world):
    assert probe.check_value(None, "neuron") == "count" and probe.check_value(None, "sae") == "count"
    with pytest.raises(UsageError, match="does not apply to neurons"):
        classify(_opts(world, probe_value="max", name="bad"))


def test_neuron_probe_set_carries_the_pooled_neuron_statistics(world):
    """The neuron-probe set can steer (neuron scaling reads act_max): each neuron's act_max / act_min / act_avg /
    prob are its neuron_counts pooled over the training runs (max, min, Σ act_sum / Σ tok_count, Σ tok_count /
    the runs' tokens), recomputed here from the stored rows."""
    name = classify(_opts(world, name="np-stats"))
    with open_store(world["store"]) as st:
        fs = st.sql("SELECT layer, feature, act_max, act_min, act_avg, prob FROM feature_sets WHERE name = ?", [name])
        train = st.sql("SELECT run_id, n_tokens FROM runs WHERE role = 'identify'")
        counts = st.sql("SELECT * FROM neuron_counts WHERE list_contains(?, run_id)", [train["run_id"].to_list()])
    total = int(train["n_tokens"].sum())
    pooled = counts.group_by("layer", "neuron").agg(
        pl.col("act_max").max(), pl.col("act_min").min(), (pl.col("act_sum").sum() / pl.col("tok_count").sum())
        .alias("act_avg"), (pl.col("tok_count").sum() / total).alias("prob"))
    want = {(r["layer"], r["neuron"]): r for r in pooled.iter_rows(named=True)}
    assert fs.height > 0
    for r in fs.iter_rows(named=True):
        w = want[(r["layer"], r["feature"])]
        assert r["act_max"] == pytest.approx(w["act_max"], rel=1e-6)
        assert r["act_min"] == pytest.approx(w["act_min"], rel=1e-6)
        assert r["act_avg"] == pytest.approx(w["act_avg"], rel=1e-6)
        assert r["prob"] == pytest.approx(w["prob"], rel=1e-12)
