"""The paper's own command lines (its shell scripts, as typed: space-separated multi-value flags, bash-expanded
``model.layers.{0..N}.mlp``, the paper's value spellings and defaults), adapted only in model, SAE and dataset
names, run through the CLI on the toy model; each is checked against langfeat's own spelling of the same job."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import DATA, TOY_LAYERS, flores_lines
from langfeat.cli import app
from langfeat.store import open_store

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared FLORES data not available")

CODES = ["eng_Latn", "rus_Cyrl", "tha_Thai"]
LAYERS = [f"model.layers.{n}.mlp" for n in TOY_LAYERS]  # bash's expansion of model.layers.{0..3}.mlp


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.fixture(scope="module")
def paper(toy_model_dir, toy_sae_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    for code in CODES:
        (tmp / f"{code}.txt").write_text("\n".join(flores_lines(code, 12)) + "\n", encoding="utf-8")
    env = {"model": str(toy_model_dir), "saes": str(toy_sae_dir), "data": str(tmp / "{lang}.txt"),
           "store": str(tmp / "store"), "tmp": tmp}
    # collect_sae_features.sh: activations_to_sae_features.py MODEL DATASET --split train --lang ... --layer
    # model.layers.{0..15}.mlp --sae-model ... --batch 500 --start 0 --end 1000
    cli("ingest", env["model"], env["data"], "--split", "train", "--lang", *CODES, "--layer", *LAYERS,
        "--local-sae-dir", env["saes"], "--batch", "500", "--start", "0", "--end", "12", "--neurons",
        "--device", "cpu", "--store", env["store"], "--no-progress")
    # identify_sae_lape_all.sh (the output path flags become --name / --export-pt)
    cli("identify", "--model", env["model"], "--layer", *LAYERS, "--dataset-configs",
        f"{env['data']}:{{{','.join(CODES)}}}", "--topk-threshold-ratio", "0.5",
        "--example-rate", "0.5", "--hfl-rate", "0.05", "--algorithm", "sae_lape", "--lang-specific",
        "--name", "lape_all", "--export-pt", str(tmp / "lape_all.pt"), "--store", env["store"])
    return env


def test_ingest_runs_and_identify_match_langfeat_spelling(paper):
    cli("identify", "--layer", "model.layers.{0..3}.mlp", "--topk-threshold-ratio", "0.5", "--example-rate", "0.5",
        "--hfl-rate", "0.05", "--algorithm", "sae-lape", "--lang-specific", "--name", "ours", "--store",
        paper["store"])
    with open_store(paper["store"]) as st:
        runs = st.sql("SELECT lang, n_docs, layers FROM runs ORDER BY lang")
        sets = st.sql("SELECT name, lang, layer, feature FROM feature_sets ORDER BY name, lang, layer, feature")
    assert runs["n_docs"].to_list() == [12, 12, 12]
    assert all(list(x) == TOY_LAYERS for x in runs["layers"].to_list())
    paper_set = sets.filter(pl.col("name") == "lape_all").drop("name")
    assert paper_set.height > 0
    assert paper_set.equals(sets.filter(pl.col("name") == "ours").drop("name"))


def test_ppl_paper_lines(paper):
    common = [paper["model"], paper["data"], "--split", "devtest", "--lang", *CODES, "--start", "0", "--end", "4",
              "--device", "cpu", "--store", paper["store"], "--no-progress"]
    # sae_features_intervene_ppl_all.sh (decoder rows come from the SAEs, so the SAE folder is named)
    cli("ppl", *common, "--layer", *LAYERS, "--intervention-type", "sae-features", "--intervention-lang", "eng_Latn",
        "--multiplier", "-0.2", "--lape-result-path", str(paper["tmp"] / "lape_all.pt"),
        "--lape-value-type", "final_indice_global_max_active", "--local-sae-dir", paper["saes"], "--name", "p1")
    # the same without --multiplier: the paper's default α = −1
    cli("ppl", *common, "--layer", *LAYERS, "--intervention-type", "sae-features", "--intervention-lang", "eng_Latn",
        "--lape-result-path", str(paper["tmp"] / "lape_all.pt"), "--local-sae-dir", paper["saes"], "--name", "p2")
    # langfeat's spelling of p1
    cli("ppl", *common[:4], "--lang", "eng_Latn,rus_Cyrl,tha_Thai", *common[8:], "--layer", "model.layers.{0..3}.mlp",
        "--intervention-type", "sae-features", "--intervention-lang", "eng_Latn", "--multiplier", "-0.2",
        "--feature-set", "lape_all", "--lape-value-type", "max", "--local-sae-dir", paper["saes"], "--name", "p3")
    with open_store(paper["store"]) as st:
        rows = st.sql("SELECT name, intervention, multiplier, lang, row, ppl FROM ppl_results "
                      "WHERE intervention <> 'none' ORDER BY name, lang, row")
    p1, p2, p3 = (rows.filter(pl.col("name") == n).drop("name") for n in ("p1", "p2", "p3"))
    assert p1.height == 12 and set(p1["multiplier"]) == {-0.2} and set(p2["multiplier"]) == {-1.0}
    assert p1.equals(p3)
    assert not p1["ppl"].equals(p2["ppl"])
    # params.json is the options dataclass as stored, with the values resolved while running
    from langfeat.options import PplOptions, field_names
    from langfeat.store import Layout

    params = json.loads((Layout(paper["store"]).result_dir("ppl_results", "p1") / "params.json").read_text())
    assert set(params) == (field_names(PplOptions) - {"store"}) | {"configs", "seconds"}
    assert (params["multiplier"], params["lape_value_type"], params["layers"], params["intervention_langs"],
            params["langs"], params["name"]) == (-0.2, "max", TOY_LAYERS, ["en"], ["en", "ru", "th"], "p1")


def test_classify_and_check_paper_lines(paper):
    pt = str(paper["tmp"] / "lape_all.pt")
    for clf in ("sae-min-max", "sae-count"):  # classify.sh ① and ②
        cli("classify", paper["data"], "--split", "test", "--lang", *CODES, "--start", "0", "--end", "12",
            "--model", paper["model"], "--layer", *LAYERS, "--local-sae-dir", paper["saes"], "--batch", "500",
            "--lape-result-path", pt, "--classifier-type", clf, "--name", f"c-{clf}", "--store", paper["store"],
            "--device", "cpu", "--no-progress")
    with open_store(paper["store"]) as st:
        got = st.sql("SELECT DISTINCT name, classifier FROM classify_docs ORDER BY name")
    assert got.rows() == [("c-sae-count", "sae-count"), ("c-sae-min-max", "sae-min-max")]
    cli("classify", paper["data"], "--lang", ",".join(CODES), "--end", "12", "--feature-set", "lape_all",
        "--name", "ours", "--store", paper["store"])
    with open_store(paper["store"]) as st:
        pred = st.sql("SELECT name, label, \"row\", pred FROM classify_predictions "
                      "WHERE name IN ('c-sae-count', 'ours') ORDER BY name, label, \"row\"")
    as_paper, ours_pred = (pred.filter(pl.col("name") == n).drop("name") for n in ("c-sae-count", "ours"))
    assert as_paper.height == 36 and as_paper.equals(ours_pred)
    # check_active_features.sh: --classifier-type count, two texts after one --text
    texts = [flores_lines("eng_Latn", 13)[12], flores_lines("tha_Thai", 13)[12]]
    base = ["check", "--model", paper["model"], "--local-sae-dir", paper["saes"], "--lape-result-path", pt,
            "--store", paper["store"], "--device", "cpu", "--format", "json"]
    as_paper = json.loads(cli(*base, "--layer", *LAYERS, "--batch", "500", "--classifier-type", "count",
                              "--text", *texts))
    ours = json.loads(cli(*base, "--classifier-type", "sae-count", "--text", texts[0], "--text", texts[1]))
    assert [r["text"] for r in as_paper] == texts
    assert as_paper == ours


def test_generate_paper_line(paper):
    # text_generation_all.sh, shortened: --in-path is the LAPE file; without --multiplier α = 1 (the paper's)
    common = [paper["model"], "--in-path", str(paper["tmp"] / "lape_all.pt"), "--max-new-token", "3", "--times", "2",
              "--seed", "0", "--local-sae-dir", paper["saes"], "--store", paper["store"], "--device", "cpu",
              "--no-progress", "--no-judge"]
    with open_store(paper["store"]) as st:
        lang = st.sql("SELECT lang FROM feature_sets WHERE name = 'lape_all' ORDER BY lang LIMIT 1")["lang"][0]
    cli("generate", *common, "--layer", *LAYERS, "--multiplier", "0.4", "--lang", lang, "--name", "g1")
    cli("generate", *common, "--lang", lang, "--name", "g2")
    with open_store(paper["store"]) as st:
        rows = st.sql("SELECT name, multiplier, sample, max(n_units) AS n FROM generate_results "
                      "GROUP BY ALL ORDER BY name, sample")
    assert rows.rows() == [("g1", 0.4, 0, rows["n"][0]), ("g1", 0.4, 1, rows["n"][0]),
                           ("g2", 1.0, 0, rows["n"][0]), ("g2", 1.0, 1, rows["n"][0])]
    assert rows["n"][0] > 0


def test_train_sae_sparsify_names(toy_model_dir, tmp_path):
    # train_sae.sh passes sparsify's own names: --expansion_factor --k --batch_size --hookpoints --ctx_len
    data = tmp_path / "en.txt"
    data.write_text("\n".join(flores_lines("eng_Latn", 40)) + "\n", encoding="utf-8")
    out = tmp_path / "saes"
    cli("train-sae", str(toy_model_dir), str(data), "--expansion_factor", "2", "--k", "4", "--batch_size", "2",
        "--ctx_len", "16", "--hookpoints", "layers.1.mlp", "--init_seeds", "0", "--lr", "1e-3", "--out-dir",
        str(out), "--device", "cpu", "--no-progress")
    cfg = json.loads((out / "layers.1.mlp" / "cfg.json").read_text())
    assert (cfg["num_latents"], cfg["k"], cfg["d_in"]) == (64, 4, 32)
