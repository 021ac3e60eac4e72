"""Per-sentence perplexity (batched vs one at a time, against a hand computation) and the ΔPPL views."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl
import pytest
import torch

from conftest import DATA, flores_lines
from langfeat import interventions as iv
from langfeat.errors import UsageError
from langfeat.experiments import ppl
from langfeat.models import load_model
from langfeat.store.catalog import connect_views
from langfeat.store.layout import Layout
from langfeat.store.results import write_result

PPL_QUERIES = [
    "db/74_ppl_results.sql", "queries/ppl/10_ppl_summary.sql", "queries/ppl/20_ppl_delta.sql",
    "queries/ppl/21_ppl_delta_long.sql", "queries/ppl/30_ppl_rowmax.sql", "queries/ppl/31_ppl_delta_summary.sql",
]


@pytest.fixture(scope="module")
def loaded(toy_model_dir):
    return load_model(str(toy_model_dir), device="cpu")


def sentences() -> list[str]:
    if DATA.exists():
        return flores_lines("eng_Latn", 4) + flores_lines("deu_Latn", 3) + ["Hi", "x"]
    return ["The quick brown fox jumps over the lazy dog.", "Der Hund", "Hi", "x", "A much longer sentence " * 5]


def test_ppl_matches_hand_computation(loaded):
    model, tok = loaded
    texts = sentences()
    got = ppl.perplexities(model, tok, texts, batch_size=4)
    for text, row in zip(texts, got.iter_rows(named=True), strict=True):
        ids = tok(text, return_tensors="pt")["input_ids"]
        assert ids[0, 0] == tok.bos_token_id
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double()
        logp = torch.log_softmax(logits[:-1], -1).gather(1, ids[0, 1:, None])
        assert row["n_targets"] == ids.shape[1] - 1
        assert row["nll"] == pytest.approx(float(-logp.mean()), rel=1e-5)
        assert row["ppl"] == pytest.approx(math.exp(float(-logp.mean())), rel=1e-5)


def test_batched_equals_one_at_a_time(loaded):
    model, tok = loaded
    texts = sentences()
    ids = ppl.encode_texts(tok, texts)
    assert len({len(i) for i in ids}) > 2  # different lengths, so batches are padded
    one = ppl.perplexities(model, tok, texts, batch_size=1)
    for b in (3, 16):
        batched = ppl.perplexities(model, tok, texts, batch_size=b)
        assert batched["n_targets"].to_list() == one["n_targets"].to_list()
        np.testing.assert_allclose(batched["nll"].to_numpy(), one["nll"].to_numpy(), rtol=1e-5)


def test_encode_adds_bos_once_and_truncates(loaded):
    _, tok = loaded
    ids = ppl.encode_texts(tok, ["Der Hund", ""], max_length=3)
    assert ids[0][0] == tok.bos_token_id and ids[0][1] != tok.bos_token_id and len(ids[0]) == 3
    assert ids[1] == [tok.bos_token_id]


def views(root) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the ppl views over the store at ``root``."""
    return connect_views(root, PPL_QUERIES)


def test_sweep_and_delta_views_match_hand_computation(loaded, tmp_path):
    model, tok = loaded
    feats = pl.DataFrame({"lang": ["en", "en", "de", "ru"], "layer": [1, 2, 1, 3], "feature": [3, 9, 4, 20],
                          "act_max": [2.0, 4.0, 8.0, 6.0]})
    specs = iv.layer_specs(model, None, feats)
    plans = [iv.build("neuron", feats, lang, specs, neuron_method="scaling", multiplier=-3.0)
             for lang in ppl.intervention_langs(["all"], feats)]
    assert [p.lang for p in plans] == ["en", "de", "ru"]  # English, German, Russian: sorted by English name
    texts = sentences()
    sets = [ppl.EvalSet("en", "eng_Latn", list(range(10, 14)), texts[:4]),
            ppl.EvalSet("de", "deu_Latn", [0, 1, 2], texts[4:7])]
    for s in sets:
        s.ids = ppl.encode_texts(tok, s.texts)
    rows = ppl.sweep(model, sets, plans, batch_size=2)
    assert rows.height == 4 * 7
    base = rows.filter(pl.col("intervention") == "none")
    assert base["int_lang"].null_count() == 7
    # Each intervened run equals a separate call with the same intervention.
    de_on_en = rows.filter((pl.col("int_lang") == "de") & (pl.col("lang") == "en"))
    direct = ppl.perplexities(model, tok, texts[:4], plans[1], batch_size=4)
    np.testing.assert_allclose(de_on_en["ppl"].to_numpy(), direct["ppl"].to_numpy(), rtol=1e-6)

    layout = Layout(tmp_path / "store")
    stored = rows.with_columns(pl.lit("toy").alias("model"), pl.lit("flores").alias("dataset"),
                               pl.lit("devtest").alias("split"), pl.lit(-3.0).alias("multiplier"))
    write_result(layout, ppl.TABLE, "sweep", stored, {"x": 1})
    write_result(layout, ppl.TABLE, "other", stored.with_columns(pl.col("ppl") * 2, pl.col("nll") + 1), {})
    con = views(layout.root)
    got = con.sql("SELECT * FROM ppl_delta WHERE name = 'sweep' ORDER BY int_lang, lang").pl()

    # Hand computation of the paired statistics.
    b = dict(zip(zip(base["lang"], base["row"], strict=True), base["ppl"], strict=True))
    expect = {}
    for r in rows.filter(pl.col("intervention") != "none").iter_rows(named=True):
        expect.setdefault((r["int_lang"], r["lang"]), []).append((r["ppl"], b[(r["lang"], r["row"])]))
    assert got.height == len(expect) == 6
    for cell in got.iter_rows(named=True):
        pairs = expect[(cell["int_lang"], cell["lang"])]
        assert cell["n_pairs"] == len(pairs)
        assert cell["is_diag"] == (cell["int_lang"] == cell["lang"])
        assert cell["mean_delta"] == pytest.approx(sum(i - o for i, o in pairs) / len(pairs), rel=1e-9)
        assert cell["median_ratio"] == pytest.approx(float(np.median([i / o for i, o in pairs])), rel=1e-9)
        assert cell["mean_log_ratio"] == pytest.approx(
            sum(math.log(i) - math.log(o) for i, o in pairs) / len(pairs), rel=1e-6, abs=1e-12)
        assert cell["base_mean_ppl"] == pytest.approx(sum(o for _, o in pairs) / len(pairs), rel=1e-9)

    # Row maxima and the diagonal / off-diagonal summary, by hand from the cells.
    md = {(c["int_lang"], c["lang"]): c["mean_delta"] for c in got.iter_rows(named=True)}
    rowmax = con.sql("SELECT int_lang, diag, max_off, diag_is_max FROM ppl_rowmax "
                     "WHERE name = 'sweep' AND metric = 'mean_delta' ORDER BY int_lang").pl()
    assert rowmax["int_lang"].to_list() == ["de", "en"]  # ru was not evaluated: no diagonal
    for r in rowmax.iter_rows(named=True):
        off = max(v for (i, e), v in md.items() if i == r["int_lang"] and e != i)
        assert r["diag"] == pytest.approx(md[(r["int_lang"], r["int_lang"])])
        assert r["max_off"] == pytest.approx(off)
        assert r["diag_is_max"] == (md[(r["int_lang"], r["int_lang"])] >= off)
    summary = con.sql("SELECT * FROM ppl_delta_summary WHERE name = 'sweep' AND metric = 'mean_delta'").pl()
    diag = [v for (i, e), v in md.items() if i == e]
    off = [v for (i, e), v in md.items() if i != e]
    assert summary["diag_median"][0] == pytest.approx(float(np.median(diag)))
    assert summary["off_median"][0] == pytest.approx(float(np.median(off)))
    assert summary["rowmax"][0] == sum(rowmax["diag_is_max"]) and summary["n_rows"][0] == 2
    # Results of another name never pair with this one's baseline; means per name are separate.
    other = con.sql("SELECT mean_ppl FROM ppl_summary WHERE name = 'other' AND intervention = 'none' "
                    "AND lang = 'en'").pl()["mean_ppl"][0]
    assert other == pytest.approx(2 * float(base.filter(pl.col("lang") == "en")["ppl"].mean()))


def test_intervention_langs_and_options(loaded):
    feats = pl.DataFrame({"lang": ["ja", "de"], "layer": [0, 0], "feature": [1, 2]})
    assert ppl.intervention_langs(["all"], feats) == ["de", "ja"]
    assert ppl.intervention_langs(["jpn_Jpan,German", "de"], feats) == ["ja", "de"]
    with pytest.raises(UsageError, match="no units for fr"):
        ppl.intervention_langs(["fr"], feats)
    opts = ppl.PplOptions(model="m", dataset="d", langs=["en"], intervention_type="sae-features",
                          intervention_langs=["de"], feature_set="s", local_sae_dir="x")
    with pytest.raises(UsageError, match="--multiplier"):
        ppl.check_options(opts)
    opts.multiplier = -0.2
    ppl.check_options(opts)
    opts.lape_result_path = "f.pt"
    with pytest.raises(UsageError, match="exactly one"):
        ppl.check_options(opts)


@pytest.mark.skipif(not DATA.exists(), reason="shared FLORES data not available")
def test_cli_sweep_stores_results_and_reports(toy_model_dir, toy_sae_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from langfeat.cli import app
    from langfeat.store import open_store

    feats = pl.DataFrame({"lang": ["en", "en", "de"], "layer": [1, 2, 1], "feature": [3, 9, 4],
                          "act_max": [2.0, 4.0, 8.0], "act_min": [0.5, 0.5, 0.5], "act_avg": [1.0, 1.0, 1.0]})
    monkeypatch.setattr(iv, "load_features", lambda store, fs, path: feats)
    store = tmp_path / "store"
    pattern = str(DATA / "flores200_devtest" / "{lang}.devtest.gz")
    args = ["ppl", str(toy_model_dir), pattern, "--lang", "eng_Latn,deu_Latn", "--end", "5",
            "--intervention-type", "sae-features", "--intervention-lang", "all", "--multiplier", "-2",
            "--feature-set", "toy", "--local-sae-dir", str(toy_sae_dir), "--batch", "3", "--device", "cpu",
            "--store", str(store), "--name", "sweep1", "--format", "csv"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    st = open_store(store)
    rows = st.sql("SELECT * FROM ppl_results WHERE name = 'sweep1'")
    assert rows.height == 3 * 2 * 5  # (baseline, en, de) × 2 languages × 5 sentences
    assert sorted(set(rows["row"])) == [0, 1, 2, 3, 4]
    # Stored values equal a direct computation on the same sentences.
    model, tok = load_model(str(toy_model_dir), device="cpu")
    specs = iv.layer_specs(model, None, feats)
    saes = iv.load_saes(model, specs, feats, None, str(toy_sae_dir))
    plan = iv.build("sae-features", feats, "de", specs, saes, multiplier=-2.0)
    direct = ppl.perplexities(model, tok, flores_lines("eng_Latn", 5), plan)
    got = rows.filter((pl.col("int_lang") == "de") & (pl.col("lang") == "en")).sort("row")
    np.testing.assert_allclose(got["ppl"].to_numpy(), direct["ppl"].to_numpy(), rtol=1e-5)
    assert "mean_delta" in res.stdout.splitlines()[0]  # the CSV summary on stdout

    rep = CliRunner().invoke(app, ["report", "ppl", "sweep1", "--store", str(store), "--format", "csv"])
    assert rep.exit_code == 0, rep.output
    header, *lines = rep.stdout.strip().splitlines()
    assert header == "int_lang,en,de" and [x.split(",")[0] for x in lines] == ["en", "de"]  # English name order
    cell = float(lines[1].split(",")[2])  # de intervened, de evaluated
    expect = st.sql("SELECT mean_delta FROM ppl_delta WHERE name = 'sweep1' AND int_lang = 'de' AND lang = 'de'")
    assert cell == pytest.approx(expect["mean_delta"][0], rel=1e-9)
    listing = CliRunner().invoke(app, ["report", "ppl", "--store", str(store), "--format", "csv"])
    assert "sweep1" in listing.stdout

    bad = CliRunner().invoke(app, ["ppl", str(toy_model_dir), pattern, "--lang", "eng_Latn",
                                   "--intervention-type", "sae-features", "--intervention-lang", "fr",
                                   "--multiplier", "1", "--feature-set", "toy", "--local-sae-dir", str(toy_sae_dir),
                                   "--store", str(store)])
    assert bad.exit_code == 2 and "no units for fr" in bad.output
