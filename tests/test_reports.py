"""Reports: exact numbers on a small synthetic store (runs, events, tokens, counts, a feature set) and the CLI."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import factories
import polars as pl
import pytest
from factories import table_rows
from typer.testing import CliRunner

from langfeat import reports
from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.store import ensure_store
from langfeat.store.layout import doc_id

LAYER, FEAT = 1, 5


def add_run(layout, lang: str, model: str, token_ids: list[list[int]], events: list[tuple[int, int, int, float]],
            sae: bool = True) -> dict:
    """A complete run of documents ``token_ids`` with SAE ``events`` (doc index, pos, feature, act) at LAYER, or
    (``sae=False``) a neuron-only run where unit FEAT of LAYER fires on every token."""
    if sae:
        return factories.add_run(layout, lang, token_ids=token_ids, events={LAYER: events}, model=model,
                                 layers=[0, 1, 2])
    n = sum(len(t) for t in token_ids)
    return factories.add_run(layout, lang, token_ids=token_ids, model=model, sae_model=None, layers=[0, 1, 2],
                             neuron_counts=[(LAYER, FEAT, n, len(token_ids), n * 0.5, 0.5, 0.5)])


@pytest.fixture
def store(tmp_path, toy_model_dir) -> dict:
    from transformers import AutoTokenizer

    layout = ensure_store(tmp_path / "store")
    tok = AutoTokenizer.from_pretrained(toy_model_dir)
    en_ids = [tok("Hello world, this is a test.")["input_ids"], tok("Another sentence here.")["input_ids"]]
    en = add_run(layout, "en", str(toy_model_dir), en_ids,
                 [(0, 1, FEAT, 2.0), (1, 2, FEAT, 3.5), (1, 2, 6, 9.0), (0, 0, 6, 1.0)])
    th_ids = [[1, 10, 11, 12, 13, 14], [1, 20, 21], [1, 30]]
    th = add_run(layout, "th", "unloadable-model", th_ids, [(0, 3, FEAT, 1.0), (2, 1, 6, 0.5)])
    de = add_run(layout, "de", "unloadable-model", [[1, 40, 41, 42]], [(0, 2, 6, 0.25)])
    neuron = add_run(layout, "fr", "unloadable-model", [[1, 50, 51]], [], sae=False)
    factories.write_set(layout.root, "s1", pl.DataFrame({
        "algorithm": "sae-lape", "kind": "sae", "lang": ["en", "en", "th", "th", "th"],
        "layer": [1, 2, 1, 0, 1], "feature": [5, 7, 5, 3, 9], "entropy": [0.5, 0.7, 0.2, 0.4, 0.9],
        "prob": [0.1, 0.2, 0.3, 0.4, 0.5], "rank": [1, 2, 1, 2, 3],
    }), params={"algorithm": "sae-lape", "langs": ["en", "de", "th"], "created_at": "2025-01-02T03:04:05+00:00",
                "top_rate": 0.01})
    return {"root": layout.root, "en": en, "th": th, "de": de, "fr": neuron, "tok": tok, "en_ids": en_ids,
            "th_ids": th_ids}


def test_sets_report(store):
    df = reports.sets_report(store["root"])
    assert df.row(0, named=True) == {
        "name": "s1", "algorithm": "sae-lape", "kind": "sae", "features": 4, "memberships": 5, "languages": 2,
        "layers": "0-2", "created": "2025-01-02 03:04", "params": "langs=[3] top_rate=0.01",
    }
    assert df.height == 1


def test_features_report(store):
    df = reports.features_report(store["root"], "s1")
    assert df.columns == ["lang", "lang_name", "n", "L0", "L1", "L2", "entropy_min", "entropy_median", "entropy_max"]
    assert df.select("lang", "lang_name", "n", "L0", "L1", "L2").rows() == [
        ("en", "English", 2, 0, 1, 1), ("de", "German", 0, 0, 0, 0), ("th", "Thai", 3, 1, 2, 0),
        ("all", "all", 5, 1, 3, 1),
    ]
    assert df["entropy_min"].to_list() == pytest.approx([0.5, None, 0.2, 0.2])
    assert df["entropy_median"].to_list() == pytest.approx([0.6, None, 0.4, 0.5])
    assert df["entropy_max"].to_list() == pytest.approx([0.7, None, 0.9, 0.9])
    with pytest.raises(UsageError, match="no feature set named 'zz'"):
        reports.features_report(store["root"], "zz")


def test_languages_report(store):
    df = reports.languages_report(store["root"])
    en_tokens = sum(len(t) for t in store["en_ids"])
    assert df.select("lang", "run_id", "units", "docs", "tokens").rows() == [
        ("en", store["en"]["run_id"], "toy-sae", 2, en_tokens),
        ("fr", store["fr"]["run_id"], "neurons", 1, 3),
        ("de", store["de"]["run_id"], "toy-sae", 1, 4),
        ("th", store["th"]["run_id"], "toy-sae", 3, 11),
    ]
    assert df["tokens_per_doc"].to_list() == [round(en_tokens / 2, 1), 3.0, 4.0, round(11 / 3, 1)]
    totals = reports.language_totals_report(store["root"])
    assert totals.select("lang", "runs", "docs", "tokens").rows() == [
        ("en", 1, 2, en_tokens), ("fr", 1, 1, 3), ("de", 1, 1, 4), ("th", 1, 3, 11)]


def test_feature_report_numbers(store):
    rep = reports.feature_report(store["root"], f"{LAYER}:{FEAT}", top=3, window=1)
    en_tokens = sum(len(t) for t in store["en_ids"])
    assert rep.langs.select("lang", "runs", "docs", "tokens", "tok_count", "doc_count").rows() == [
        ("en", 1, 2, en_tokens, 2, 2), ("de", 1, 1, 4, 0, 0), ("th", 1, 3, 11, 1, 1),
    ]  # the neuron-only fr run does not count for an SAE feature
    p = [2 / en_tokens, 0.0, 1 / 11]
    assert rep.langs["p"].to_list() == pytest.approx(p)
    assert rep.langs["coverage"].to_list() == pytest.approx([1.0, 0.0, 1 / 3])
    q = [x / sum(p) for x in p]
    assert rep.langs["q"].to_list() == pytest.approx(q)
    assert rep.entropy == pytest.approx(-sum(x * math.log(x) for x in q if x > 0))
    assert rep.langs["act_mean"].to_list()[0] == pytest.approx(2.75)
    assert rep.langs["act_max"].to_list() == [3.5, None, 1.0]
    assert rep.sets.select("name", "lang", "rank", "entropy").rows() == [("s1", "en", 1, 0.5), ("s1", "th", 1, 0.2)]
    # top contexts: by act, window of 1 token; en decoded with its run's tokenizer, th as token ids
    ctx = rep.contexts
    assert ctx.select("lang", "pos", "act").rows() == [("en", 2, 3.5), ("en", 1, 2.0), ("th", 3, 1.0)]
    tok, ids = store["tok"], store["en_ids"]
    assert ctx.row(0, named=True)["left"] == tok.decode(ids[1][1:2])
    assert ctx.row(0, named=True)["token"] == tok.decode(ids[1][2:3])
    assert ctx.row(0, named=True)["right"] == tok.decode(ids[1][3:4])
    assert ctx.row(1, named=True)["left"] == tok.decode(ids[0][0:1])
    assert ctx.select("left", "token", "right").row(2) == ("[11]", "[12]", "[13]")
    assert rep.decoded is False  # one run had no loadable tokenizer


def test_feature_report_filters_and_neurons(store):
    rep = reports.feature_report(store["root"], (LAYER, FEAT), run=[store["th"]["run_id"][:6]], window=0)
    assert rep.langs["lang"].to_list() == ["th"] and rep.entropy == 0.0
    assert rep.contexts.select("left", "token", "right").rows() == [("", "[12]", "")]
    with pytest.raises(UsageError, match=r"has SAE feature counts at layer 1 \(layers there: none\)"):
        reports.feature_report(store["root"], "1:5", model=str(Path(store["root"]).parent / "nope"))
    with pytest.raises(UsageError, match=r"at layer 9 \(layers there: 0-2\)"):
        reports.feature_report(store["root"], "9:5")
    with pytest.raises(UsageError, match=r"unit 1:4000 never fired in the 3 selected runs"):
        reports.feature_report(store["root"], "1:4000")
    rep = reports.feature_report(store["root"], "1:5", kind="neuron")
    assert rep.langs.select("lang", "tok_count", "p", "coverage").rows() == [("fr", 3, 1.0, 1.0)]
    assert rep.contexts.height == 0
    with pytest.raises(UsageError, match="LAYER:FEATURE"):
        reports.feature_report(store["root"], "1-5")


def test_cli_reports(store):
    runner = CliRunner()
    root = str(store["root"])
    en_tokens = sum(len(t) for t in store["en_ids"])
    res = runner.invoke(app, ["sets", "--store", root, "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1].startswith("s1,sae-lape,sae,4,5,2,0-2,")
    res = runner.invoke(app, ["report", "features", "s1", "--store", root])
    assert res.exit_code == 0, res.output
    assert "Thai" in res.stdout and "all" in res.stdout
    assert table_rows(res.stdout) == [
        ["en", "English", "2", "0", "1", "1", "0.5", "0.6", "0.7"],
        ["de", "German", "0", "0", "0", "0", "", "", ""],
        ["th", "Thai", "3", "1", "2", "0", "0.2", "0.4", "0.9"],
        ["all", "all", "5", "1", "3", "1", "0.2", "0.5", "0.9"],
    ]
    res = runner.invoke(app, ["report", "features", "s1", "--store", root, "--format", "json"])
    assert res.exit_code == 0 and '"lang":"all"' in res.stdout
    names = ["lang", "lang_name", "n", "L0", "L1", "L2", "entropy_min", "entropy_median", "entropy_max"]
    assert json.loads(res.stdout) == [dict(zip(names, row, strict=True)) for row in [
        ("en", "English", 2, 0, 1, 1, 0.5, 0.6, 0.7), ("de", "German", 0, 0, 0, 0, None, None, None),
        ("th", "Thai", 3, 1, 2, 0, 0.2, 0.4, 0.9), ("all", "all", 5, 1, 3, 1, 0.2, 0.5, 0.9)]]
    res = runner.invoke(app, ["report", "languages", "--store", root])
    assert res.exit_code == 0 and "totals per language" in res.stdout
    totals = res.stdout[res.stdout.index("totals per language"):]
    assert table_rows(totals) == [
        ["en", "English", "1", "2", str(en_tokens), f"{en_tokens / 2:g}"], ["fr", "French", "1", "1", "3", "3"],
        ["de", "German", "1", "1", "4", "4"], ["th", "Thai", "1", "3", "11", "3.7"],
    ]
    res = runner.invoke(app, ["report", "feature", "1:5", "--store", root, "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "sae 1:5" in res.stdout and "top activations" in res.stdout and "s1" in res.stdout
    p = [2 / en_tokens, 0.0, 1 / 11]
    entropy = -sum(x / sum(p) * math.log(x / sum(p)) for x in p if x > 0)
    assert f"sae 1:5  entropy {entropy:.3g}  over 3 run(s)" in res.stdout.splitlines()[0]
    cells = [[c for c in row if c] for row in table_rows(res.stdout)]
    assert [c for c in cells if c[0] == "s1"] == [["s1", "sae-lape", "en", "1", "0.5", "0.1"],
                                                  ["s1", "sae-lape", "th", "1", "0.2", "0.3"]]
    en_docs = [doc_id(store["en"]["run_num"], i) for i in range(2)]
    contexts = [c for c in cells if c[1:2] == ["en"] and c[2:3] in ([str(d)] for d in en_docs)]
    assert [c[:4] for c in contexts] == [["3.5", "en", str(en_docs[1]), "2"], ["2", "en", str(en_docs[0]), "1"]]
    tok, ids = store["tok"], store["en_ids"]
    for (_, _, _, pos, shown), doc in zip(contexts, (ids[1], ids[0]), strict=True):
        pos = int(pos)
        text = tok.decode(doc[max(0, pos - 8):pos]) + tok.decode(doc[pos:pos + 1]) + tok.decode(doc[pos + 1:pos + 9])
        assert len(shown) >= 10 and text.startswith(shown)  # the context column, cut to the terminal width
    res = runner.invoke(app, ["report", "feature", "1:5", "--store", root, "--format", "csv"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("lang,lang_name,runs,docs,tokens")
    csv = pl.read_csv(io.StringIO(res.stdout))
    assert csv.select("lang", "lang_name", "runs", "docs", "tokens", "tok_count", "doc_count").rows() == [
        ("en", "English", 1, 2, en_tokens, 2, 2), ("de", "German", 1, 1, 4, 0, 0), ("th", "Thai", 1, 3, 11, 1, 1)]
    assert csv["p"].to_list() == pytest.approx(p)
    assert csv["coverage"].to_list() == pytest.approx([1.0, 0.0, 1 / 3])
    assert csv["q"].to_list() == pytest.approx([x / sum(p) for x in p])
    assert csv["act_max"].to_list() == [3.5, None, 1.0] and csv["act_mean"].to_list()[0] == pytest.approx(2.75)
    res = runner.invoke(app, ["report", "feature", "x", "--store", root])
    assert res.exit_code == 2 and "LAYER:FEATURE" in res.output
