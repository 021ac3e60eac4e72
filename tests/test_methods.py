"""The methods beyond the paper against independent computations: the sparse probe (sae-probe) on planted features,
evaluated on held-out runs only; ν (Deng et al.) against numpy; the set comparison against hand counts; and the
methods report."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from factories import add_run, random_counts, write_set, write_store
from typer.testing import CliRunner

from langfeat import data
from langfeat import identify as ident
from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.experiments import probe
from langfeat.experiments.classify import ClassifyOptions, classify
from langfeat.experiments.methods import compare_sets, methods
from langfeat.store import ensure_store, open_store
from langfeat.store.results import write_result

LANGS = ["en", "de", "fr"]
PLANTED = {"en": (0, 10), "de": (0, 11), "fr": (1, 12)}  # (layer, feature) that fires only in that language
N_TRAIN, N_EVAL = 8, 4


def _events(rng: np.random.Generator, lang: str, n_docs: int) -> dict[int, list[tuple[int, int, int, float]]]:
    """Per layer, (doc, pos, feature, act): the language's planted feature on 1–3 tokens, plus noise features 0–4
    firing in every language at random."""
    out: dict[int, dict[tuple[int, int, int], float]] = {0: {}, 1: {}}
    layer, feat = PLANTED[lang]
    for d in range(n_docs):
        for pos in range(1, 1 + int(rng.integers(1, 4))):
            out[layer][(d, pos, feat)] = float(np.float16(1.0 + rng.random()))
        for pos in range(1, 6):
            noise = int(rng.integers(0, 5))
            out[int(rng.integers(0, 2))][(d, pos, noise)] = float(np.float16(0.5 + rng.random()))
    return {lay: sorted((*k, v) for k, v in evs.items()) for lay, evs in out.items()}


def _build(root, eval_role: str = "eval"):
    rng = np.random.default_rng(7)
    layout = ensure_store(root / "store")
    (root / "eval").mkdir(parents=True, exist_ok=True)
    events = {}
    for lang in LANGS:
        ev = _events(rng, lang, N_TRAIN)
        add_run(layout, lang, dataset="synth", texts=[f"{lang} {i}" for i in range(N_TRAIN)], events=ev,
                layers=[0, 1], sae_layers=[0, 1])
        events[("train", lang)] = ev
        (root / "eval" / f"{lang}.txt").write_text("\n".join(f"{lang} eval {i}" for i in range(N_EVAL)) + "\n",
                                                   encoding="utf-8")
        src = data.open_source(str(root / "eval" / "{lang}.txt"), lang, "test", 0, None, None, None)
        ev = _events(rng, lang, N_EVAL)
        add_run(layout, lang, dataset=src.dataset, texts=src.texts(), events=ev, layers=[0, 1], sae_layers=[0, 1],
                split=src.split, config=src.config, template=src.template, max_length=None, dtype="float32",
                role=eval_role)
        events[("eval", lang)] = ev
    return {"root": root, "store": root / "store", "dataset": str(root / "eval" / "{lang}.txt"), "events": events}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("probe"))


def _opts(w, **kw) -> ClassifyOptions:
    return ClassifyOptions(dataset=w["dataset"], langs=LANGS, classifier="sae-probe", store=str(w["store"]), **kw)


def _doc_values(events, value: str) -> dict[int, dict[tuple[int, int], float]]:
    """doc index -> (layer, feature) -> 1, ln(1 + firings) or the largest activation, in plain Python."""
    n: dict[int, dict[tuple[int, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    for layer, evs in events.items():
        for d, _pos, feat, act in evs:
            n[d][(layer, feat)].append(act)
    def val(a: list[float]) -> float:
        return 1.0 if value == "binary" else math.log1p(len(a)) if value == "count" else max(a)

    return {d: {u: val(a) for u, a in units.items()} for d, units in n.items()}


def test_training_matrix_is_the_events_per_document(world):
    with open_store(world["store"]) as st:
        train = st.sql("SELECT run_id, lang FROM runs WHERE role = 'identify'")
        x, y, langs_, units, doc_ids = probe.training_matrix(st, train["run_id"].to_list(), [0, 1], "max", None)
        docs = st.sql("SELECT doc_id, lang, \"row\" FROM docs WHERE list_contains(?, run_id)",
                      [train["run_id"].to_list()])
    assert langs_ == ["en", "fr", "de"]  # by English name: English, French, German
    row_of = dict(zip(docs["doc_id"].to_list(), docs["row"].to_list(), strict=True))
    lang_of = dict(zip(docs["doc_id"].to_list(), docs["lang"].to_list(), strict=True))
    dense = x.toarray()
    for i, doc_id in enumerate(doc_ids.tolist()):
        want = _doc_values(world["events"][("train", lang_of[doc_id])], "max")[row_of[doc_id]]
        got = {units[j]: dense[i, j] for j in np.nonzero(dense[i])[0]}
        assert got == pytest.approx(want, rel=1e-6)
        assert langs_[y[i]] == lang_of[doc_id]


@pytest.mark.parametrize("size,stride", [(3, 2), (2, None), (1, 1)])
def test_training_windows_are_the_events_per_window(world, size, stride):
    """--probe-window W (stride S, default W // 2): one example per window [j·S, j·S + W) holding an event, each
    with ln(1 + its firings in that window) per unit, in (language, document, window) order."""
    step = stride or max(1, size // 2)
    with open_store(world["store"]) as st:
        train = st.sql("SELECT run_id FROM runs WHERE role = 'identify'")["run_id"].to_list()
        x, y, langs_, units, doc_ids = probe.training_matrix(st, train, [0, 1], "count", None, size, stride)
        docs = st.sql("SELECT doc_id, lang, \"row\" FROM docs WHERE list_contains(?, run_id)", [train])
    row_of = dict(zip(docs["doc_id"].to_list(), docs["row"].to_list(), strict=True))
    lang_of = dict(zip(docs["doc_id"].to_list(), docs["lang"].to_list(), strict=True))
    want: dict[int, dict[int, dict[tuple[int, int], int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for doc_id in sorted(row_of):
        for layer, evs in world["events"][("train", lang_of[doc_id])].items():
            for d, pos, feat, _act in evs:
                if d == row_of[doc_id]:
                    for j in range(0, pos // step + 1):
                        if j * step <= pos < j * step + size:
                            want[doc_id][j][(layer, feat)] += 1
    expected = [(doc_id, {u: math.log1p(n) for u, n in want[doc_id][j].items()})
                for lang in sorted(langs_) for doc_id in sorted(d for d in want if lang_of[d] == lang)
                for j in sorted(want[doc_id])]
    dense = x.toarray()
    got = [(int(doc_ids[i]), {units[j]: dense[i, j] for j in np.nonzero(dense[i])[0]}) for i in range(len(doc_ids))]
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, g), (_, e) in zip(got, expected, strict=True):
        assert g == pytest.approx(e, rel=1e-12)
    assert [langs_[k] for k in y] == [lang_of[d] for d, _ in expected]


@pytest.mark.parametrize("k", [1, 2])
def test_k_sparse_training_matrix_keeps_each_languages_first_k_columns(world, k):
    """With k, the rows are still every training window, and the columns are the union over languages of the k
    units of largest (mean over the language's windows − mean over the others'), computed here in numpy from the
    full matrix; their values are the full matrix's."""
    with open_store(world["store"]) as st:
        train = st.sql("SELECT run_id FROM runs WHERE role = 'identify'")["run_id"].to_list()
        full, y, langs_, units, doc_ids = probe.training_matrix(st, train, [0, 1], "count", None, 2, None)
        xk, yk, langs_k, units_k, doc_ids_k = probe.training_matrix(st, train, [0, 1], "count", k, 2, None)
    assert doc_ids_k.tolist() == doc_ids.tolist() and yk.tolist() == y.tolist() and langs_k == langs_
    dense = full.toarray()
    chosen = set()
    for li in range(len(langs_)):
        diff = dense[y == li].mean(axis=0) - dense[y != li].mean(axis=0)
        fired = np.nonzero(dense[y == li].any(axis=0))[0]
        order = sorted(fired, key=lambda j: (-round(diff[j], 9), units[j]))
        chosen |= {units[j] for j in order[:k]}
    assert units_k == sorted(chosen)
    cols = [units.index(u) for u in units_k]
    assert np.array_equal(xk.toarray(), dense[:, cols])


def test_probe_window_options_are_checked():
    assert probe.check_window(None, None) == (None, None)
    assert probe.check_window(32, 8) == (32, 8)
    for size, stride in ((0, None), (-3, None), (8, 0), (None, 4)):
        with pytest.raises(UsageError, match="--probe-"):
            probe.check_window(size, stride)


def test_probe_set_carries_the_training_runs_activation_statistics(world):
    """The stored probe set can steer: act_max / act_min / act_avg / prob of each unit pooled over the training
    runs' events (probe_unit_stats), equal to the planted events' own numbers."""
    name = classify(_opts(world, probe_window=2, name="probe-windowed"))
    pooled: dict[tuple[int, int], list[float]] = defaultdict(list)
    n_tokens = 0
    with open_store(world["store"]) as st:
        fs = st.sql("SELECT lang, layer, feature, act_max, act_min, act_avg, prob, rank FROM feature_sets "
                    "WHERE name = ?", [name])
        n_tokens = int(st.sql("SELECT sum(n_tokens) FROM runs WHERE role = 'identify'").item())
        metrics = st.sql("SELECT accuracy FROM classify_metrics WHERE name = ?", [name]).item()
    for lang in LANGS:
        for layer, evs in world["events"][("train", lang)].items():
            for _d, _pos, feat, act in evs:
                pooled[(layer, feat)].append(act)
    assert fs.height > 0 and metrics == 1.0
    top = {r["lang"]: (r["layer"], r["feature"]) for r in fs.filter(pl.col("rank") == 1).iter_rows(named=True)}
    assert top == PLANTED
    for r in fs.iter_rows(named=True):
        acts = pooled[(r["layer"], r["feature"])]
        assert r["act_max"] == pytest.approx(max(acts), rel=1e-6)
        assert r["act_min"] == pytest.approx(min(acts), rel=1e-6)
        assert r["act_avg"] == pytest.approx(sum(acts) / len(acts), rel=1e-5)
        assert r["prob"] == pytest.approx(len(acts) / n_tokens, rel=1e-12)


def test_probe_recovers_planted_features_and_scores_held_out_runs_in_sql(world):
    for k, value in ((None, "binary"), (1, "count"), (None, "count"), (2, "max")):
        name = classify(_opts(world, max_features_per_language=k, probe_value=value, name=f"probe-{k}-{value}"))
        with open_store(world["store"]) as st:
            fs = st.sql("SELECT lang, layer, feature, score, rank FROM feature_sets WHERE name = ?", [name])
            top = {r["lang"]: (r["layer"], r["feature"]) for r in fs.filter(pl.col("rank") == 1).iter_rows(named=True)}
            assert top == PLANTED
            if k == 1:  # one feature per language kept: exactly the planted ones
                assert sorted(zip(fs["lang"], fs["layer"], fs["feature"], strict=True)) == sorted(
                    (lang, *u) for lang, u in PLANTED.items())
            units = st.sql("SELECT lang, layer, feature, weight, value FROM classify_units WHERE name = ?", [name])
            bias = dict(st.sql("SELECT lang, bias FROM classify_langs WHERE name = ?", [name]).iter_rows())
            votes = st.sql("SELECT d.run_id, d.doc_id, d.\"row\", d.label, v.lang, v.score FROM classify_votes v "
                           "JOIN classify_docs d USING (name, doc) WHERE name = ?", [name])
            metrics = st.sql("SELECT accuracy, n_docs FROM classify_metrics WHERE name = ?", [name])
            train_docs = set(st.sql("SELECT doc_id FROM docs JOIN runs USING (run_id) WHERE role = 'identify'")
                             ["doc_id"].to_list())
            eval_runs = set(st.sql("SELECT run_id FROM runs WHERE role = 'eval'")["run_id"].to_list())
        assert set(units["value"]) == {value}
        weights = {(r[0], r[1], r[2]): r[3] for r in units.iter_rows()}
        # held out: every scored document comes from an evaluation run, none is a training document
        assert set(votes["run_id"]) == eval_runs
        assert not set(votes["doc_id"].to_list()) & train_docs
        # the SQL score equals bias + Σ w · ln(1 + firings), computed here from the planted events
        for run_id, doc_id, row, label, lang, score in votes.iter_rows():
            x = _doc_values(world["events"][("eval", label)], value)[row]
            want = bias[lang] + sum(w * x.get((lay, f), 0.0) for (g, lay, f), w in weights.items() if g == lang)
            assert score == pytest.approx(want, rel=1e-9, abs=1e-12), (run_id, doc_id)
        assert metrics.row(0) == (1.0, len(LANGS) * N_EVAL)


def test_probe_refuses_training_documents(tmp_path):
    w = _build(tmp_path, eval_role="identify")  # the evaluated texts' runs are identification runs too
    with pytest.raises(UsageError, match="training run"):
        classify(_opts(w, name="leak"))
    assert not (w["store"] / "results" / "classify_docs" / "name=leak").exists()
    # narrowing the training runs to the other source makes it a held-out evaluation again
    name = classify(_opts(w, name="ok", train_configs=[f"synth:{lang}" for lang in LANGS]))
    with open_store(w["store"]) as st:
        assert st.sql("SELECT accuracy FROM classify_metrics WHERE name = ?", [name]).item() == 1.0


def test_probe_train_configs_errors_name_that_option(world):
    with pytest.raises(UsageError, match=r"^--train-configs nosuch:en match no complete run"):
        classify(_opts(world, name="nomatch", train_configs=["nosuch:en"]))
    with pytest.raises(UsageError, match=r"^bad --train-configs entry 'nosuch'"):
        classify(_opts(world, name="nomatch", train_configs=["nosuch"]))


def test_probe_never_replaces_another_set(world):
    write_set(world["store"], "taken", [("en", 0, 1)])
    with pytest.raises(UsageError, match="pick another --name"):
        classify(_opts(world, name="taken"))
    with open_store(world["store"]) as st:
        assert st.sql("SELECT algorithm FROM feature_sets WHERE name = 'taken'")["algorithm"].to_list() == ["imported"]


def test_parse_k():
    assert probe.parse_k("all") is None and probe.parse_k(None) is None and probe.parse_k("5") == 5
    for bad in ("0", "-1", "x"):
        with pytest.raises(UsageError, match="--max-features-per-language"):
            probe.parse_k(bad)



def test_balanced_class_weights_are_n_over_languages_times_n_language():
    y = np.array([0, 0, 0, 1, 2, 2])  # 6 examples, 3 languages of 3, 1 and 2 examples
    assert probe.class_weights(y, 3, "balanced").tolist() == pytest.approx([6 / 9] * 3 + [6 / 3] + [6 / 6] * 2)
    assert probe.class_weights(y, 3, "none").tolist() == [1.0] * 6
    # a language without examples does not count among the languages
    assert probe.class_weights(np.array([0, 0, 2]), 3, "balanced").tolist() == pytest.approx([3 / 4, 3 / 4, 3 / 2])
    with pytest.raises(UsageError, match="--probe-class-weight"):
        probe.class_weights(y, 3, "equal")


def test_balanced_fit_is_sklearns_balanced_class_weight():
    """The probe's per-example weights reproduce scikit-learn's own class_weight='balanced' (the same fit), and
    differ from the unweighted fit on imbalanced data."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], [60, 15, 5])
    x = rng.poisson(0.4, size=(len(y), 12)).astype(np.float64)
    x[np.arange(len(y)), y] += 2.0  # feature c marks language c, the rest is noise
    units, names = [(0, j) for j in range(12)], ["de", "en", "fr"]
    got = probe.fit(sparse.csr_matrix(x), y, names, units, "count", c=0.5, max_iter=300)
    ref = LogisticRegression(l1_ratio=1.0, solver="saga", C=0.5, max_iter=300, tol=1e-3, random_state=0,
                             class_weight="balanced").fit(sparse.csr_matrix(x), y)
    np.testing.assert_allclose(got.coef, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.intercept, ref.intercept_, rtol=1e-10, atol=1e-12)
    plain = probe.fit(sparse.csr_matrix(x), y, names, units, "count", c=0.5, max_iter=300, class_weight="none")
    ref_plain = LogisticRegression(l1_ratio=1.0, solver="saga", C=0.5, max_iter=300, tol=1e-3,
                                   random_state=0).fit(sparse.csr_matrix(x), y)
    np.testing.assert_allclose(plain.coef, ref_plain.coef_, rtol=1e-10, atol=1e-12)
    assert not np.allclose(plain.coef, got.coef)  # the weights change the fit on imbalanced data


def test_probe_class_weight_is_checked_and_recorded(world):
    with pytest.raises(UsageError, match="--probe-class-weight"):
        classify(_opts(world, probe_class_weight="equal", name="bad-weight"))
    assert not (world["store"] / "results" / "classify_docs" / "name=bad-weight").exists()
    name = classify(_opts(world, probe_class_weight="none", name="unweighted"))
    params = json.loads((world["store"] / "results" / "classify_docs" / f"name={name}" / "params.json").read_text())
    assert (params["probe_class_weight"], params["probe_c"]) == ("none", 1.0)


# ---------------------------------------------------------------------------------------------------------------
# ν


def _nu_reference(counts, top: int | None) -> set[tuple[str, int, int, int, float]]:
    order, m, n_tok, _ = counts.merged()
    mu = m["act_sum"] / n_tok  # [L, U, langs]: mean activation per token, 0 where the unit never fired
    n = len(order)
    out = set()
    for li, lang in enumerate(order):
        nu = mu[..., li] - (mu.sum(-1) - mu[..., li]) / (n - 1)
        cand = [(float(nu[lay, u]), lay, u) for lay in range(nu.shape[0]) for u in range(nu.shape[1])
                if nu[lay, u] > 0 and m["tok"][lay, u, li] > 0]
        cand.sort(key=lambda t: (-t[0], t[1], t[2]))
        for rank, (v, lay, u) in enumerate(cand[: top or None], start=1):
            out.add((lang, lay, u, rank, v))
    return out


@pytest.mark.parametrize("top", [None, 3])
def test_nu_equals_numpy(tmp_path, top):
    counts = random_counts(3, ["en", "de", "th", "en"], n_layers=2, n_units=30)
    write_store(tmp_path / "s", counts)
    name, df = ident.identify_named(str(tmp_path / "s"), algorithm="nu", top=top, layers=[0, 1])
    assert name == ("nu" if top is None else "nu-top3") and set(df["algorithm"]) == {"nu"}
    got = {(r["lang"], r["layer"], r["feature"], r["rank"], r["score"]) for r in df.iter_rows(named=True)}
    want = _nu_reference(counts, top)
    assert {g[:4] for g in got} == {w[:4] for w in want}
    scores = {g[:4]: g[4] for g in got}
    for w in want:
        assert scores[w[:4]] == pytest.approx(w[4], rel=1e-9, abs=1e-12)
    with open_store(tmp_path / "s") as st:
        stored = st.sql("SELECT lang, layer, feature, rank, score FROM feature_sets WHERE name = ?", [name])
    assert stored.height == len(want)


def test_nu_needs_two_languages(tmp_path):
    write_store(tmp_path / "s", random_counts(1, ["en"], n_layers=1, n_units=10))
    with pytest.raises(UsageError, match="two languages"):
        ident.identify_named(str(tmp_path / "s"), algorithm="nu", layers=[0])


# ---------------------------------------------------------------------------------------------------------------
# comparing sets


def test_compare_sets_counts_overlap_and_jaccard(tmp_path):
    root = tmp_path / "s"
    a = [("en", 0, 1), ("en", 0, 2), ("en", 1, 5), ("de", 0, 3)]
    b = [("en", 0, 2), ("en", 1, 5), ("en", 1, 6), ("fr", 0, 9), ("de", 1, 3)]
    write_set(root, "A", a)
    write_set(root, "B", b)
    with open_store(root) as st:
        got = compare_sets(st, "A", "B")
        with pytest.raises(UsageError, match="langfeat sets"):
            compare_sets(st, "A", "nope")
    rows = {(r["lang"], r["layer"]): (r["n_a"], r["n_b"], r["n_both"], r["jaccard"]) for r in got.iter_rows(named=True)}
    assert rows == {
        ("en", 0): (2, 1, 1, 1 / 2), ("en", 1): (1, 2, 1, 1 / 2), ("en", None): (3, 3, 2, 2 / 4),
        ("de", 0): (1, 0, 0, 0.0), ("de", 1): (0, 1, 0, 0.0), ("de", None): (1, 1, 0, 0.0),
        ("fr", 0): (0, 1, 0, 0.0), ("fr", None): (0, 1, 0, 0.0),
        (None, None): (4, 5, 2, 2 / 7),
    }
    assert got["lang"].to_list()[:3] == ["en", "en", "en"] and got["lang"].to_list()[-1] is None


# ---------------------------------------------------------------------------------------------------------------
# the methods report


def test_methods_report_lists_probe_beside_fasttext_on_the_same_texts(world):
    name = classify(_opts(world, name="probe-report"))
    with open_store(world["store"]) as st:
        docs = st.sql("SELECT doc, label, config, \"row\", text FROM classify_docs WHERE name = ? ORDER BY doc",
                      [name])
    # a fastText result over the same documents: wrong on the first 3 of 12 (accuracy 0.75)
    layout = ensure_store(world["store"])
    wrong = {0, 1, 2}
    pred = {d: label if d not in wrong else LANGS[(LANGS.index(label) + 1) % len(LANGS)]
            for d, label in zip(docs["doc"], docs["label"], strict=True)}
    scores = pl.DataFrame([(d, lang, 1.0 if lang == pred[d] else 0.0) for d in pred for lang in LANGS],
                          orient="row", schema={"doc": pl.Int32, "lang": pl.String, "score": pl.Float64})
    ft_docs = docs.with_columns(classifier=pl.lit("fasttext"), run_id=pl.lit(None, pl.String),
                                doc_id=pl.lit(None, pl.Int64))
    write_result(layout, "classify_scores", "ft", scores)
    write_result(layout, "classify_langs", "ft", pl.DataFrame({"lang": LANGS, "n_units": [0, 0, 0]}))
    write_result(layout, "classify_units", "ft", pl.DataFrame(schema={"kind": pl.String, "lang": pl.String,
                                                                      "layer": pl.Int32, "feature": pl.Int32}))
    write_result(layout, "classify_docs", "ft", ft_docs)
    with open_store(world["store"]) as st:
        ft_acc = st.sql("SELECT accuracy FROM classify_metrics WHERE name = 'ft'").item()
        assert ft_acc == 0.75
        frames = methods(st)
    assert list(frames) == ["methods_lid"]  # no steering / ΔPPL results: those sections are left out
    lid = frames["methods_lid"].filter(pl.col("feature_set") == name)
    assert lid.select("method", "classifier", "dataset", "n_docs", "accuracy", "fasttext_accuracy").row(0) == (
        "sae-probe", "sae-probe", world["dataset"], 12, 1.0, pytest.approx(ft_acc))
    res = CliRunner().invoke(app, ["report", "methods", "--store", str(world["store"])])
    assert res.exit_code == 0, res.output
    assert "methods_lid" in res.stdout and "methods_ppl" not in res.stdout and "methods_steering" not in res.stdout
    res = CliRunner().invoke(app, ["report", "methods", "--section", "methods_lid", "-f", "csv",
                                   "--store", str(world["store"])])
    assert res.exit_code == 0, res.output
    out = pl.read_csv(res.stdout.encode()).filter(pl.col("feature_set") == name)
    assert out.select("method", "n_docs", "accuracy", "fasttext_accuracy").row(0) == ("sae-probe", 12, 1.0, 0.75)


def test_k_sparse_ranking_ignores_summation_noise():
    """Two units whose mean differences differ only by float rounding (0.3 vs 0.1 + 0.2) rank by (layer,
    feature), not by the noise: probe_mean_diff rounds the difference before ranking."""
    from pathlib import Path

    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE docs AS SELECT * FROM (VALUES ('r1', 'en', 1::BIGINT), ('r2', 'de', 2::BIGINT)) "
                "t(run_id, lang, doc_id)")
    con.execute("CREATE TABLE cells AS SELECT * FROM (VALUES ('en', 1::BIGINT, 0, 5, 0.3::DOUBLE), "
                "('en', 1::BIGINT, 0, 7, 0.1::DOUBLE + 0.2::DOUBLE), ('de', 2::BIGINT, 0, 9, 1.0::DOUBLE)) "
                "t(lang, doc_id, layer, feature, x)")
    assert con.execute("SELECT 0.1::DOUBLE + 0.2::DOUBLE > 0.3::DOUBLE").fetchone()[0]  # the noise is there
    con.execute("CREATE MACRO probe_doc_units(run_ids, layers := NULL, value := 'binary', window_size := NULL, "
                "window_stride := NULL) AS TABLE SELECT lang, doc_id, 0::BIGINT AS win, layer, feature, x FROM cells")
    con.execute("CREATE MACRO probe_doc_neurons(run_ids, layers := NULL, value := 'count') AS TABLE "
                "SELECT lang, doc_id, layer, feature, x FROM cells WHERE false")
    sql = Path(__file__).parents[1] / "queries" / "classify" / "05_probe_mean_diff.sql"
    con.execute(sql.read_text())
    got = con.sql("SELECT layer, feature, rank FROM probe_mean_diff(['r1', 'r2']) WHERE lang = 'en' "
                  "ORDER BY rank").fetchall()
    assert got == [(0, 5, 1), (0, 7, 2)]
