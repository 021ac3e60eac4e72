"""`langfeat report html` in a real browser (Debian's chromium driven by Playwright): a store with every section
is rendered, loaded from disk, and every figure's marks and values are checked against the data written here."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from langfeat import html_report, langs
from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.formats import paper
from langfeat.store import ensure_store, runs
from langfeat.store.layout import arrow_schemas, doc_id
from langfeat.store.results import write_result

CHROMIUM = "/usr/bin/chromium"
AROUND = 2  # --window of the test pages


# ---------------------------------------------------------------------------------------------------------------
# a store with every section, written table by table


def _write(path: Path, table: str, columns: dict[str, list]) -> None:
    schema = arrow_schemas()[table]
    arrays = [
        pa.array(np.array(columns[f.name], np.float16)) if f.type == pa.float16() else pa.array(columns[f.name], f.type)
        for f in schema
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def _record(lang: str, model: str, n_docs: int) -> dict:
    return dict(
        kind="ingest", model=model, sae_model="toy-sae", neurons=False, dataset="flores", split="devtest",
        config=lang, lang=lang, lang_name=langs.english_name(lang), start=0, end=n_docs, template=None,
        text_column="text", layers=[0, 1, 2], layer_paths=[], dtype="float32", max_length=None, bos=True,
        shard_docs=64,
    )


def add_run(layout, lang: str, model: str, token_ids: list[list[int]],
            events: list[tuple[int, int, int, int, float]]) -> str:
    """A complete run of documents ``token_ids`` with SAE ``events`` (doc index, pos, layer, feature, act)."""
    manifest, _ = runs.begin_run(layout, _record(lang, model, len(token_ids)))
    work = layout.run_work(manifest["run_id"]) / f"lang={lang}"
    ids = [doc_id(manifest["run_num"], i) for i in range(len(token_ids))]
    _write(work / "docs" / "part-0.parquet", "docs", {
        "doc_id": ids, "dataset": ["flores"] * len(ids), "row": list(range(len(ids))),
        "n_tokens": [len(t) for t in token_ids], "text": ["x"] * len(ids),
    })
    rows = [(d, p, t) for d, toks in zip(ids, token_ids, strict=True) for p, t in enumerate(toks)]
    _write(work / "tokens" / "part-0.parquet", "tokens",
           {"doc_id": [r[0] for r in rows], "pos": [r[1] for r in rows], "token_id": [r[2] for r in rows]})
    counts = []
    for layer in sorted({e[2] for e in events}):
        evs = [e for e in events if e[2] == layer]
        _write(work / "events" / f"layer={layer}" / "part-0.parquet", "events", {
            "doc_id": [ids[e[0]] for e in evs], "pos": [e[1] for e in evs], "feature": [e[3] for e in evs],
            "act": [e[4] for e in evs], "dataset": ["flores"] * len(evs),
        })
        for feat in sorted({e[3] for e in evs}):
            acts = [e[4] for e in evs if e[3] == feat]
            counts.append((layer, feat, len(acts), len({e[0] for e in evs if e[3] == feat}), sum(acts), max(acts),
                           min(acts)))
    cols = ["layer", "feature", "tok_count", "doc_count", "act_sum", "act_max", "act_min"]
    _write(work / "feature_counts" / "part-0.parquet", "feature_counts",
           {c: [r[i] for r in counts] for i, c in enumerate(cols)})
    runs.commit_run(layout, manifest, n_docs=len(ids), n_tokens=len(rows))
    return manifest["run_id"]


# The feature sets: (lang, layer, feature, entropy, rank).
S1 = [("en", 1, 5, 0.5, 1), ("en", 2, 7, 0.7, 2), ("de", 1, 6, 0.3, 1),
      ("th", 0, 3, 0.2, 1), ("th", 1, 9, 0.9, 2), ("th", 1, 11, 0.6, 3)]
S1_PARAM_LANGS = ["en", "de", "th", "fr"]  # French was identified over but got no unit
N1 = [("en", 0, 40, 0.1, 1), ("en", 1, 41, 0.4, 2), ("de", 1, 42, 0.8, 1)]
EXPLANATION = "fires on <b>English</b> & 'quotes'"

# Classification results: name -> (classifier, labels, per-document scores).
FASTTEXT = ("fasttext", ["en", "en", "de", "de", "fr", "fr", "fr"], [
    {"en": 3, "de": 1, "fr": 0, "it": 0}, {"en": 1, "de": 2, "fr": 0, "it": 0}, {"en": 0, "de": 5, "fr": 1, "it": 0},
    {"en": 2, "de": 2, "fr": 1, "it": 0}, {"en": 0, "de": 0, "fr": 0.5, "it": 0},
    {"en": 0.7, "de": 0, "fr": 0.6, "it": 0}, {"en": 0, "de": 0, "fr": 0, "it": 9},
])
NEURON = ("neuron-count", ["en", "en", "de", "de"], [
    {"en": 5, "de": 1}, {"en": 1, "de": 4}, {"en": 0, "de": 2}, {"en": 1, "de": 3},
])
CLASSIFY = {"fasttext-hand": FASTTEXT, "neuron-hand": NEURON}

# Perplexities: (intervention, int_lang, lang, row, ppl).
PPL = [
    ("none", None, "en", 0, 10.0), ("none", None, "en", 1, 20.0), ("none", None, "de", 0, 30.0),
    ("none", None, "de", 1, 40.0),
    ("sae-features", "en", "en", 0, 15.0), ("sae-features", "en", "en", 1, 28.0),
    ("sae-features", "en", "de", 0, 31.0), ("sae-features", "en", "de", 1, 39.0),
    ("sae-features", "de", "en", 0, 11.0), ("sae-features", "de", "en", 1, 21.0),
    ("sae-features", "de", "de", 0, 45.0), ("sae-features", "de", "de", 1, 60.0),
    ("sae-features", "th", "en", 0, 12.0), ("sae-features", "th", "en", 1, 19.0),
]

# Generated samples: (lang, α, judged language).
# interpret result "int" on s1: (scorer, layer, feature, [(activating, prediction), ...])
INTERPRET = [("detection", 1, 5, [(True, True), (True, False), (False, False), (False, False)]),
             ("detection", 1, 9, [(True, True), (False, True)]),
             ("fuzz", 1, 5, [(True, True), (False, True), (True, None)]),
             ("fuzz", 1, 9, [(True, True), (False, False)])]
GENERATE = [("fr", 0.0, "en"), ("fr", 0.0, "fr"), ("fr", 0.3, "fr"), ("fr", 0.3, "fr"), ("fr", 0.3, "de"),
            ("fr", 0.3, None), ("en", 0.0, "en"), ("en", 0.0, "en"), ("en", -1.0, "de"), ("en", -1.0, "en")]


def hand_predict(scores: dict[str, float]) -> str:
    best = max(scores.values())
    top = [k for k, v in scores.items() if v == best]
    return top[0] if len(top) == 1 and best > 0 else "unknown"


def lang_sorted(tags) -> list[str]:
    known = sorted({t for t in tags if t != "unknown"}, key=langs.english_name)
    return known + (["unknown"] if "unknown" in tags else [])


@pytest.fixture(scope="module")
def full_store(tmp_path_factory, toy_model_dir) -> dict:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("html") / "store"
    layout = ensure_store(root)
    tok = AutoTokenizer.from_pretrained(toy_model_dir)
    en_ids = [tok("Hello world, this is a test.")["input_ids"], tok("Another sentence here, longer.")["input_ids"]]
    assert min(len(t) for t in en_ids) >= 5
    add_run(layout, "en", str(toy_model_dir), en_ids, [
        (0, 1, 1, 5, 2.0), (0, 2, 1, 5, 1.0), (1, 2, 1, 5, 3.5), (1, 3, 1, 5, 0.5), (1, 2, 1, 6, 9.0),
        (0, 3, 2, 7, 1.5),
    ])
    th_ids = [[1, 10, 11, 12, 13, 14], [1, 20, 21], [1, 30]]
    add_run(layout, "th", "unloadable-model", th_ids, [(0, 3, 1, 5, 1.0), (1, 1, 0, 3, 0.75)])
    add_run(layout, "de", "unloadable-model", [[1, 40, 41, 42]], [(0, 2, 1, 6, 0.25)])
    runs.begin_run(layout, _record("fr", "unloadable-model", 3))  # still running: listed, not counted

    def set_frame(rows, kind):
        return pl.DataFrame({
            "algorithm": "sae-lape" if kind == "sae" else "lape", "kind": kind, "lang": [r[0] for r in rows],
            "layer": [r[1] for r in rows], "feature": [r[2] for r in rows], "entropy": [r[3] for r in rows],
            "prob": 0.2, "act_max": 4.0, "rank": [r[4] for r in rows],
        })
    paper.write_feature_set(layout, "s1", set_frame(S1, "sae"), {"algorithm": "sae-lape", "langs": S1_PARAM_LANGS})
    paper.write_feature_set(layout, "n1", set_frame(N1, "neuron"), {"algorithm": "lape"})
    write_result(layout, "feature_explanations", "a", pl.DataFrame(
        {"layer": [1, 1], "feature": [5, 6], "explanation": [EXPLANATION, "first"], "source": "x"}))
    write_result(layout, "feature_explanations", "b", pl.DataFrame(
        {"layer": [1], "feature": [6], "explanation": ["second"], "source": "y"}))

    for name, (classifier, labels, score_rows) in CLASSIFY.items():
        cands = list(score_rows[0])
        write_result(layout, "classify_langs", name, pl.DataFrame({"lang": cands, "n_units": 0}))
        write_result(layout, "classify_units", name, pl.DataFrame(
            schema={"kind": pl.String, "lang": pl.String, "layer": pl.Int32, "feature": pl.Int32}))
        write_result(layout, "classify_scores", name, pl.DataFrame(
            [{"doc": i, "lang": k, "score": float(v)} for i, r in enumerate(score_rows) for k, v in r.items()]))
        write_result(layout, "classify_docs", name, pl.DataFrame({
            "classifier": classifier, "doc": list(range(len(labels))), "label": labels, "config": labels,
            "row": list(range(len(labels))), "text": [f"t{i}" for i in range(len(labels))],
        }))

    write_result(layout, "ppl_results", "steer", pl.DataFrame({
        "model": "toy", "dataset": "flores", "split": "devtest", "intervention": [r[0] for r in PPL],
        "int_lang": [r[1] for r in PPL], "lang": [r[2] for r in PPL], "config": [r[2] for r in PPL],
        "row": [r[3] for r in PPL], "n_targets": 5, "nll": [math.log(r[4]) for r in PPL],
        "ppl": [r[4] for r in PPL], "n_units": 2, "multiplier": -0.2,
    }, schema_overrides={"int_lang": pl.String}))

    write_result(layout, "generate_results", "gen", pl.DataFrame({
        "model": "toy", "lang": [g[0] for g in GENERATE], "multiplier": [g[1] for g in GENERATE],
        "last_token": False, "sample": list(range(len(GENERATE))), "seed": 0, "prompt": "", "text": "t",
        "n_new_tokens": 4, "stopped_eos": True, "n_units": 3, "lid_lang": [g[2] for g in GENERATE],
        "lid_prob": [None if g[2] is None else 0.9 for g in GENERATE],
    }, schema_overrides={"lid_lang": pl.String}))
    write_result(layout, "interpret_explanations", "int", pl.DataFrame({
        "feature_set": "s1", "layer": [1, 1], "feature": [5, 9], "explainer": "local:toy", "n_train": 3,
        "explanation": ["english words", "thai script"]}))
    write_result(layout, "interpret_predictions", "int", pl.DataFrame([
        {"scorer": sc, "layer": layer, "feature": f, "example": j, "quantile": None, "activating": a,
         "prediction": p, "prob": None}
        for sc, layer, f, answers in INTERPRET for j, (a, p) in enumerate(answers)],
        schema_overrides={"quantile": pl.Int32, "prediction": pl.Boolean, "prob": pl.Float64}))
    return {"root": root, "tok": tok, "en_ids": en_ids, "th_ids": th_ids}


# ---------------------------------------------------------------------------------------------------------------
# the browser


class Browser:
    """A chromium page per URL; any console error, page error or non-file request fails the test."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

    def load(self, path: Path):
        page = self.browser.new_page(viewport={"width": 1300, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: None if r.url.split(":", 1)[0] in ("file", "data", "blob")
                else problems.append(f"network request: {r.url}"))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')].every(d => d._fullLayout && "
            "d.querySelector('.main-svg'))", timeout=30_000,
        )
        page.problems = problems
        return page

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def figure(page, fid: str) -> dict:
    """What plotly drew in figure ``fid``: the traces' data and the SVG marks per kind."""
    return page.evaluate("""(fid) => {
        const gd = document.getElementById(fid);
        const count = (sel) => gd.querySelectorAll(sel).length;
        return {
            data: gd.data.map(t => ({type: t.type, name: t.name, x: t.x, y: t.y, z: t.z, median: t.median,
                                     q1: t.q1, q3: t.q3, lowerfence: t.lowerfence, upperfence: t.upperfence})),
            cells: count('.heatmaplayer text'), images: count('.heatmaplayer image'),
            bars: count('.barlayer .point path'), boxes: count('.boxlayer path.box'),
            points: count('.scatterlayer .points path.point'),
            width: gd.getBoundingClientRect().width, height: gd.getBoundingClientRect().height,
        };
    }""", fid)


# ---------------------------------------------------------------------------------------------------------------
# the tests


def test_full_store_renders_every_section(full_store, browser, tmp_path):
    out = tmp_path / "page"
    path = html_report.write_html_report(full_store["root"], out, top=5, contexts=3, window=AROUND)
    assert path == out / "index.html" and [p.name for p in out.iterdir()] == ["index.html"]  # no temp file left
    html = path.read_text(encoding="utf-8")
    assert "<script src" not in html and html.count("<script") >= 2  # plotly.js inlined, nothing fetched
    page = browser.load(path)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    shutil.copy(tmp_path / "report.png", out / "report.png")  # kept beside the page in the test's tmp dir

    assert page.eval_on_selector_all("section", "s => s.map(e => e.id)") == \
        ["runs", "features", "classify", "ppl", "generate", "methods", "interpret"]
    n_figures = page.locator(".js-plotly-plot").count()
    for i in range(n_figures):
        box = page.locator(".js-plotly-plot").nth(i).bounding_box()
        assert box["width"] > 300 and box["height"] > 200

    # Runs: every manifest, the running one included.
    statuses = page.eval_on_selector_all("#runs tbody tr", "rs => rs.map(r => r.children[1].textContent)")
    assert sorted(statuses) == ["complete", "complete", "complete", "running"]

    # Units per layer × language: the counts of the sets written above (French from the params, all zero).
    for i, (rows, extra) in enumerate([(N1, []), (S1, S1_PARAM_LANGS)]):  # report_sets lists n1, s1 by name
        fig = figure(page, f"fig-set-layers-{i}")
        tags = lang_sorted({r[0] for r in rows} | set(extra))
        layers = list(range(min(r[1] for r in rows), max(r[1] for r in rows) + 1))
        want = [[sum(1 for r in rows if r[0] == t and r[1] == n) for n in layers] for t in tags]
        assert fig["data"][0]["z"] == want
        assert fig["data"][0]["y"] == [langs.english_name(t) for t in tags]
        assert fig["data"][0]["x"] == layers
        assert fig["cells"] == len(tags) * len(layers) and fig["images"] == 1

    # Units per language: one bar per (set, language).
    fig = figure(page, "fig-set-langs")
    assert fig["bars"] == 2 + 4
    s1 = next(t for t in fig["data"] if t["name"] == "s1")
    assert dict(zip(s1["x"], s1["y"], strict=True)) == {
        langs.english_name(t): sum(1 for r in S1 if r[0] == t) for t in S1_PARAM_LANGS}

    # Entropy: one box per (set, language with units), medians as numpy computes them.
    fig = figure(page, "fig-set-entropy")
    assert fig["boxes"] == 2 + 3
    for trace, rows in ((fig["data"][0], N1), (fig["data"][1], S1)):
        tags = lang_sorted({r[0] for r in rows})
        assert trace["x"] == [langs.english_name(t) for t in tags]
        ents = [[r[3] for r in rows if r[0] == t] for t in tags]
        for key, fn in (("lowerfence", np.min), ("q1", lambda e: np.percentile(e, 25)), ("median", np.median),
                        ("q3", lambda e: np.percentile(e, 75)), ("upperfence", np.max)):
            assert trace[key] == pytest.approx([float(fn(e)) for e in ents]), key

    # The feature table: top contexts of 1:5 by activation (one per document), tokens shaded by activation.
    row = page.locator('details[data-set="s1"] tr[data-unit="1:5"]')
    assert row.locator("td.explanation").inner_text() == EXPLANATION  # escaped text, not markup
    assert row.locator("td.explanation b").count() == 0
    ctx = row.locator(".ctx")
    assert ctx.count() == 3
    assert ctx.nth(0).locator(".tok.max").get_attribute("data-act") == "3.5"
    assert ctx.nth(1).locator(".tok.max").get_attribute("data-act") == "2"
    assert ctx.nth(2).locator(".tok.max").get_attribute("data-act") == "1"
    ids = full_store["en_ids"][1][: 2 + AROUND + 1]  # document 1 around position 2
    toks = ctx.nth(0).locator(".tok")
    assert toks.count() == len(ids)
    assert "".join(toks.all_inner_texts()) == full_store["tok"].decode(ids)
    acts = [toks.nth(i).get_attribute("data-act") for i in range(len(ids))]
    assert acts == ["0", "0", "3.5", "0.5", "0"]
    colours = [toks.nth(i).evaluate("e => getComputedStyle(e).backgroundColor") for i in range(len(ids))]
    rgba = [[float(v) for v in c[c.index("(") + 1:-1].split(",")] for c in colours]
    assert [c[3] if len(c) == 4 else 1.0 for c in rgba] == pytest.approx([0, 0, 1, 0.5 / 3.5, 0], abs=0.006)
    assert [c[:3] for c in rgba if len(c) == 3 or c[3] > 0] == [[255, 127, 14]] * 2
    th_tokens = ctx.nth(2).locator(".tok").all_inner_texts()  # the Thai run's model has no tokenizer: ids
    assert [t.strip() for t in th_tokens] == [f"[{i}]" for i in full_store["th_ids"][0][1:6]]
    row6 = page.locator('details[data-set="s1"] tr[data-unit="1:6"]')
    assert row6.locator("td.explanation").inner_text() == "first"  # the first import name wins
    assert row6.locator(".ctx").count() == 2  # English (9.0), then German (0.25)
    assert page.locator('details[data-set="s1"] tr[data-unit="1:9"] .empty').inner_text() == "no events stored"
    assert page.locator('details[data-set="s1"] tbody tr').count() == len(S1)
    assert page.locator('details[data-set="n1"] tbody tr .ctx').count() == 0

    # Classification: accuracy / macro F1 bars, and each confusion matrix cell by cell.
    fig = figure(page, "fig-classify-metrics")
    assert fig["bars"] == 2 * len(CLASSIFY)
    acc = {}
    for i, (name, (_c, labels, score_rows)) in enumerate(sorted(CLASSIFY.items())):
        preds = [hand_predict(s) for s in score_rows]
        acc[name] = sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels)
        fig = figure(page, f"fig-confusion-{i}")
        rows, cols = lang_sorted(set(labels)), lang_sorted(set(labels) | set(preds))
        counts = Counter(zip(labels, preds, strict=True))
        assert fig["data"][0]["z"] == [[counts.get((r, c), 0) for c in cols] for r in rows]
        assert fig["data"][0]["x"] == [c if c == "unknown" else langs.english_name(c) for c in cols]
        assert fig["cells"] == len(rows) * len(cols)
    bars = figure(page, "fig-classify-metrics")["data"][0]
    assert dict(zip(bars["x"], bars["y"], strict=True)) == pytest.approx(acc)
    assert acc == pytest.approx({"fasttext-hand": 3 / 7, "neuron-hand": 3 / 4})

    # Methods: the non-fastText result with its accuracy; fastText scored other texts, so no paired accuracy.
    cells = page.eval_on_selector_all('#methods [data-section="methods_lid"] tbody tr',
                                      "rs => rs.map(r => [...r.children].map(c => c.textContent))")
    head = page.eval_on_selector_all('#methods [data-section="methods_lid"] thead th',
                                     "hs => hs.map(h => h.textContent)")
    assert head == ["method", "classifier", "feature_set", "dataset", "n_docs", "accuracy", "fasttext_accuracy"]
    assert cells == [["features + neuron-count", "neuron-count", "", "", "4", "0.75", ""]]
    assert figure(page, "fig-methods-lid")["data"][0]["y"] == [0.75]
    assert page.locator('#methods [data-section="methods_steering"]').count() == 0

    # ΔPPL: mean(PPL_int − PPL_base) per cell, paired by row; Thai was intervened on but not evaluated.
    base = {(r[2], r[3]): r[4] for r in PPL if r[0] == "none"}
    cells: dict[tuple[str, str], list[float]] = {}
    for _i, int_lang, lang, row_, ppl in (r for r in PPL if r[0] != "none"):
        cells.setdefault((int_lang, lang), []).append(ppl - base[(lang, row_)])
    fig = figure(page, "fig-ppl-0")
    rows, cols = lang_sorted({k[0] for k in cells}), lang_sorted({k[1] for k in cells})
    want = [[float(np.mean(cells[(r, c)])) if (r, c) in cells else None for c in cols] for r in rows]
    got = fig["data"][0]["z"]
    assert [[v is None for v in r] for r in got] == [[v is None for v in r] for r in want]
    assert [v for r in got for v in r if v is not None] == pytest.approx([v for r in want for v in r if v is not None])
    assert fig["cells"] == len(cells)
    summary = page.locator("#ppl table").first
    assert "diag_median" in summary.inner_text()

    # Switch rate by α: n_target / judged for α ≥ 0, n_away / judged for α < 0.
    fig = figure(page, "fig-generate-0")
    assert fig["points"] == len({(g[0], g[1]) for g in GENERATE})
    for trace in fig["data"]:
        tag = langs.canonical(trace["name"])
        for alpha, rate in zip(trace["x"], trace["y"], strict=True):
            judged = [g[2] for g in GENERATE if g[0] == tag and g[1] == alpha and g[2] is not None]
            hits = sum((j == tag) if alpha >= 0 else (j != tag) for j in judged)
            assert rate == pytest.approx(hits / len(judged))
    assert [t["name"] for t in fig["data"]] == ["English", "French"]

    # Auto-interpretation: mean accuracy per language (s1: feature 5 is English, 9 Thai) and scorer, by hand.
    fig = figure(page, "fig-interpret-0")
    assert fig["data"][0]["x"] == ["detection", "fuzz"] and fig["data"][0]["y"] == ["English", "Thai"]
    def acc(answers):
        answered = [(a, p) for a, p in answers if p is not None]
        return sum(a == p for a, p in answered) / len(answered)
    by = {(f, sc): acc(ans) for sc, _, f, ans in INTERPRET}
    assert fig["data"][0]["z"] == [[by[(5, "detection")], by[(5, "fuzz")]], [by[(9, "detection")], by[(9, "fuzz")]]]
    assert fig["data"][0]["z"] == [[0.75, 0.5], [0.5, 1.0]]

    assert n_figures == 2 + 1 + 1 + 1 + len(CLASSIFY) + 1 + 1 + 1 + 1  # ... interpret, the methods' LID bars
    assert page.problems == []
    page.close()


def test_empty_store_omits_every_section(tmp_path, browser):
    ensure_store(tmp_path / "empty")
    path = html_report.write_html_report(tmp_path / "empty")
    assert path == tmp_path / "empty" / "report" / "index.html"
    assert "plotly" not in path.read_text(encoding="utf-8").lower()  # no figure, no plotly.js
    page = browser.load(path)
    page.screenshot(path=str(tmp_path / "empty.png"), full_page=True)
    assert page.locator("section").count() == 0 and page.locator(".js-plotly-plot").count() == 0
    assert page.locator("#empty-store").is_visible()
    assert page.problems == []
    page.close()


def test_only_some_sections(tmp_path, browser):
    """A store with generation results only: that section alone, its figure complete."""
    layout = ensure_store(tmp_path / "store")
    write_result(layout, "generate_results", "g", pl.DataFrame({
        "model": "toy", "lang": "de", "multiplier": [0.0, 0.5], "last_token": True, "sample": [0, 0], "seed": 0,
        "prompt": "", "text": "t", "n_new_tokens": 4, "stopped_eos": False, "n_units": 3, "lid_lang": ["en", "de"],
        "lid_prob": 0.8,
    }))
    page = browser.load(html_report.write_html_report(layout.root, tmp_path / "out"))
    assert page.eval_on_selector_all("section", "s => s.map(e => e.id)") == ["generate"]
    fig = figure(page, "fig-generate-0")
    assert fig["points"] == 2 and fig["data"][0]["y"] == [0.0, 1.0]
    assert fig["data"][0]["name"] == "German (last token)"
    assert page.problems == []
    page.close()


def test_failed_render_leaves_nothing(full_store, tmp_path, monkeypatch):
    out = tmp_path / "out"
    html_report.write_html_report(full_store["root"], out, contexts=0)
    before = (out / "index.html").read_text(encoding="utf-8")

    def boom(context):
        raise RuntimeError("render failed")
    monkeypatch.setattr(html_report, "_render", boom)
    with pytest.raises(RuntimeError):
        html_report.write_html_report(full_store["root"], out)
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert (out / "index.html").read_text(encoding="utf-8") == before
    with pytest.raises(UsageError, match="--top must be"):
        html_report.write_html_report(full_store["root"], out, top=-1)


def test_cli(full_store, tmp_path, monkeypatch):
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url))
    runner = CliRunner()
    res = runner.invoke(app, ["report", "html", "--store", str(full_store["root"]), "--out", str(tmp_path / "o"),
                              "--contexts", "1", "--open"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "o" / "index.html")
    assert opened == [(tmp_path / "o" / "index.html").as_uri()]
    assert (tmp_path / "o" / "index.html").stat().st_size > 1_000_000  # plotly.js inlined

    res = runner.invoke(app, ["report", "html", "--store", str(tmp_path / "nowhere")])
    assert res.exit_code == 2
    assert res.stderr.strip().startswith("error: no langfeat store at") and len(res.stderr.strip().splitlines()) == 1

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub"):
        res = runner.invoke(app, ["report", "html", "--store", str(full_store["root"]), "--out", str(bad)])
        assert res.exit_code == 2
        err = res.stderr.strip()
        assert err.startswith("error: cannot write the report to") and "--out" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "x"
