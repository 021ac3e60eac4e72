"""The paper's file formats: count files → import runs, LAPE result files ↔ feature sets, safe loading."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from factories import write_set
from typer.testing import CliRunner

from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.formats import paper
from langfeat.store import ensure_store, open_store

L, U = 3, 24  # layers, units of the synthetic count files


def synthetic_counts(seed: int, n_docs: int = 9, n_tokens: int = 57) -> dict[str, np.ndarray]:
    """Count arrays with the paper's invariants: example ≤ token counts, max ≥ min, zeros where never fired."""
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, 6, (L, U)) * (rng.random((L, U)) < 0.6)
    ex = np.minimum(tok, rng.integers(1, n_docs + 1, (L, U)))
    mn = np.round(rng.uniform(0.01, 1.0, (L, U)), 3) * (tok > 0)
    mx = mn + np.round(rng.uniform(0.0, 3.0, (L, U)), 3) * (tok > 0)
    total = tok * (mn + mx) / 2
    return {
        "over_zero_token": tok.astype(np.float32), "over_zero_example": ex.astype(np.float32),
        "over_zero_total": total.astype(np.float32), "max_active_over_zero": mx.astype(np.float32),
        "min_active_over_zero": mn.astype(np.float32),
    }


def save_counts(path: Path, arrays: dict[str, np.ndarray], sparse: bool, n_docs: int = 9, n_tokens: int = 57) -> None:
    data: dict = {"num_examples": n_docs, "num_tokens": n_tokens}
    for key, arr in arrays.items():
        t = torch.tensor(arr)
        data[key] = t.to_sparse() if sparse else t
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)


@pytest.fixture
def count_dir(tmp_path: Path) -> tuple[Path, dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Three count files: dense en and sparse de under facebook/xnli/, sparse tha_Thai under flores/."""
    root = tmp_path / "counts"
    src = {}
    for i, (ds, lang, sparse) in enumerate(
        [("facebook/xnli", "en", False), ("facebook/xnli", "de", True), ("flores", "tha_Thai", True)]
    ):
        src[(ds, lang)] = synthetic_counts(i)
        save_counts(root / ds / f"{lang}.pt", src[(ds, lang)], sparse, n_docs=9 + i, n_tokens=57 + i)
    return root, src


def test_sparse_count_file_loads_with_weights_only(count_dir):
    root, src = count_dir
    data = torch.load(root / "facebook/xnli/de.pt", weights_only=True)
    assert data["over_zero_token"].is_sparse
    np.testing.assert_array_equal(data["over_zero_token"].to_dense().numpy(), src[("facebook/xnli", "de")][
        "over_zero_token"])
    counts = paper.read_counts(root / "facebook/xnli/de.pt", "facebook/xnli")
    assert counts.num_examples == 10 and counts.num_tokens == 58 and counts.n_layers == L


def test_import_counts_round_trip(count_dir, tmp_path):
    root, src = count_dir
    store = tmp_path / "store"
    out = paper.import_counts(root, "sae", "toy-model", sae_model="toy-sae", store=store)
    assert out["status"].to_list() == ["imported"] * 3
    assert sorted(zip(out["dataset"], out["config"], out["lang"], strict=True)) == [
        ("facebook/xnli", "de", "de"), ("facebook/xnli", "en", "en"), ("flores", "tha_Thai", "th"),
    ]
    with open_store(store) as st:
        runs = st.runs()
        for (ds, config), arrays in src.items():
            run = runs.filter((pl.col("dataset") == ds) & (pl.col("config") == config)).row(0, named=True)
            i = list(src).index((ds, config))
            assert (run["kind"], run["status"], run["model"], run["sae_model"]) == (
                "import", "complete", "toy-model", "toy-sae")
            assert (run["n_docs"], run["n_tokens"], list(run["layers"]), run["neurons"]) == (
                9 + i, 57 + i, list(range(L)), False)
            fc = st.feature_counts(run_id=run["run_id"]).sort("layer", "feature")
            layer, unit = np.nonzero(arrays["over_zero_token"] > 0)  # row-major: sorted by (layer, unit)
            assert fc["layer"].to_list() == layer.tolist() and fc["feature"].to_list() == unit.tolist()
            np.testing.assert_array_equal(fc["tok_count"].to_numpy(), arrays["over_zero_token"][layer, unit])
            np.testing.assert_array_equal(fc["doc_count"].to_numpy(), arrays["over_zero_example"][layer, unit])
            np.testing.assert_array_equal(fc["act_sum"].to_numpy().astype(np.float32),
                                          arrays["over_zero_total"][layer, unit])
            np.testing.assert_array_equal(fc["act_max"].to_numpy(), arrays["max_active_over_zero"][layer, unit])
            np.testing.assert_array_equal(fc["act_min"].to_numpy(), arrays["min_active_over_zero"][layer, unit])
        assert st.neuron_counts().height == 0
    again = paper.import_counts(root, "sae", "toy-model", sae_model="toy-sae", store=store)
    assert again["status"].to_list() == ["exists"] * 3
    assert again["run_id"].to_list() == out["run_id"].to_list()
    forced = paper.import_counts(root, "sae", "toy-model", sae_model="toy-sae", store=store, overwrite=True)
    assert forced["status"].to_list() == ["imported"] * 3
    with open_store(store) as st:
        assert st.runs().height == 3


def test_import_counts_neurons(count_dir, tmp_path):
    root, src = count_dir
    store = tmp_path / "store"
    paper.import_counts(root, "neuron", "toy-model", store=store)
    with open_store(store) as st:
        run = st.runs(config="en").row(0, named=True)
        assert run["sae_model"] is None and run["neurons"] is True
        nc = st.neuron_counts(run_id=run["run_id"]).sort("layer", "neuron")
        tok = src[("facebook/xnli", "en")]["over_zero_token"]
        assert nc["tok_count"].sum() == tok.sum() and nc.height == int((tok > 0).sum())
        assert st.feature_counts().height == 0


def test_import_counts_bad_input_writes_nothing(count_dir, tmp_path):
    root, _ = count_dir
    store = tmp_path / "store"
    with pytest.raises(UsageError, match="--sae-model"):
        paper.import_counts(root, "sae", "m", store=store)
    with pytest.raises(UsageError, match="unknown --kind"):
        paper.import_counts(root, "features", "m", store=store)
    torch.save({"num_examples": 1, "num_tokens": 2, "over_zero_token": torch.zeros(2, 3)}, root / "flores" / "fr.pt")
    with pytest.raises(UsageError, match="lacks over_zero_example") as err:
        paper.import_counts(root, "sae", "m", sae_model="s", store=store)
    assert "\n" not in str(err.value)
    assert not (store / "runs").exists()  # checked before anything was written
    (root / "flores" / "fr.pt").unlink()
    save_counts(root / "flores" / "qqqzzz.pt", synthetic_counts(5), sparse=False)
    with pytest.raises(UsageError, match="not a language"):
        paper.import_counts(root, "sae", "m", sae_model="s", store=store)
    with pytest.raises(UsageError, match="no directory"):
        paper.import_counts(tmp_path / "missing", "sae", "m", sae_model="s", store=store)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no \.pt files"):
        paper.import_counts(tmp_path / "empty", "sae", "m", sae_model="s", store=store)


class Custom:  # a class a safe loader must refuse
    pass


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "lape_bad.pt"
    torch.save({"final_indice": [], "sorted_lang": [], "x": Custom()}, path)
    with pytest.raises(UsageError) as err:
        paper.safe_load(path)
    msg = str(err.value)
    assert "\n" not in msg and "Custom" in msg and "unsafe" in msg
    res = CliRunner().invoke(app, ["import-lape", str(path), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert "error:" in res.output and "unsafe pickle" in res.output
    assert not (tmp_path / "s" / "sets").exists()


# ---------------------------------------------------------------------------------------------------------------
# LAPE result files

NAMES = ["English", "German", "Thai"]  # sorted_lang


def paper_lape_file(path: Path, shifted: bool, with_info: bool = True, with_counts: bool = True) -> dict:
    """A LAPE result file as the paper writes it; German has no features (so ``shifted`` drops its entry)."""
    n_layers, width = 2, 10
    tok = torch.zeros(n_layers, width, 3)
    tok[0, 1] = torch.tensor([5.0, 0.0, 1.0])
    tok[1, 3] = torch.tensor([0.0, 0.0, 7.0])
    tok[1, 4] = torch.tensor([2.0, 2.0, 6.0])
    tok[1, 9] = torch.tensor([1.0, 1.0, 1.0])  # fired, not selected
    ex = (tok > 0).float() * 2
    empty_l, empty_f = torch.tensor([], dtype=torch.long), torch.tensor([])
    en = ([torch.tensor([1]), empty_l], [torch.tensor([2.5]), empty_f])
    de = ([empty_l, empty_l], [empty_f, empty_f])
    th = ([empty_l, torch.tensor([3, 4])], [empty_f, torch.tensor([3.0, 1.5])])
    entries = [en, th] if shifted else [en, de, th]
    data = {
        "final_indice": [e[0] for e in entries],
        "final_indice_global_max_active": [e[1] for e in entries],
        "final_indice_global_min_active": [[x / 10 for x in e[1]] for e in entries],
        "final_indice_global_avg_active": [[x / 2 for x in e[1]] for e in entries],
        "sorted_lang": NAMES,
        "num_examples": torch.tensor([3, 4, 5]),
        "num_tokens": torch.tensor([10, 20, 30]),
    }
    if with_counts:
        data["over_zero_token"] = tok.to_sparse()
        data["over_zero_example"] = ex.to_sparse()
    if with_info:  # the paper's selected_probs come in entropy order: misaligned with indicies
        data["features_info"] = {
            "English": {"indicies": [(0, 1)], "selected_probs": [0.5], "entropies": [0.3]},
            "Thai": {"indicies": [(1, 3), (1, 4)], "selected_probs": [0.2, 0.2333], "entropies": [0.0, 1.0]},
        }
    torch.save(data, path)
    return data


def test_read_paper_lape_with_shift_aligns_through_features_info(tmp_path):
    path = tmp_path / "lape_shared_2.pt"
    paper_lape_file(path, shifted=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = paper.read_lape(path)
    assert [type(w.message) for w in caught] == [paper.LapeAlignmentWarning]
    assert "German" in str(caught[0].message)
    rows = df.select("name", "algorithm", "kind", "lang", "layer", "feature", "rank").rows()
    assert rows == [
        ("lape_shared_2", "imported", "sae", "en", 0, 1, 1),
        ("lape_shared_2", "imported", "sae", "th", 1, 3, 1),
        ("lape_shared_2", "imported", "sae", "th", 1, 4, 2),
    ]
    # p recomputed from the counts (the file's selected_probs are swapped), entropy from features_info
    assert df["prob"].to_list() == pytest.approx([5 / 10, 7 / 30, 6 / 30])
    assert df["entropy"].to_list() == pytest.approx([0.3, 0.0, 1.0])
    assert df["act_max"].to_list() == pytest.approx([2.5, 3.0, 1.5])
    assert df["act_min"].to_list() == pytest.approx([0.25, 0.3, 0.15])
    assert df["act_avg"].to_list() == pytest.approx([1.25, 1.5, 0.75])


def test_read_paper_lape_without_shift_or_counts(tmp_path):
    path = tmp_path / "lape_all.pt"
    paper_lape_file(path, shifted=False, with_counts=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aligned by position: no warning
        df = paper.read_lape(path)
    assert df["lang"].to_list() == ["en", "th", "th"]
    assert df["prob"].null_count() == 3  # no counts inside and the file's probabilities cannot be trusted
    # no features_info either: entropy from the counts when present, else null
    paper_lape_file(path, shifted=False, with_info=False)
    df = paper.read_lape(path)
    q = np.array([[5 / 10, 0.0, 1 / 30], [0.0, 0.0, 7 / 30], [2 / 10, 2 / 20, 6 / 30]])  # tok / num_tokens
    q = q / q.sum(axis=1, keepdims=True)
    expected = [-sum(x * math.log(x) for x in row if x > 0) for row in q]
    assert df["entropy"].to_list() == pytest.approx(expected)


def test_shifted_file_without_features_info_is_refused(tmp_path):
    path = tmp_path / "lape_x.pt"
    paper_lape_file(path, shifted=True, with_info=False)
    with pytest.raises(UsageError, match="shift bug") as err:
        paper.read_lape(path)
    assert "\n" not in str(err.value)


def test_import_lape_writes_set_and_runs(tmp_path):
    path = tmp_path / "lape_shared_2.pt"
    data = paper_lape_file(path, shifted=True)
    store = tmp_path / "store"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", paper.LapeAlignmentWarning)
        features, runs = paper.import_lape(path, name="paper2", store=store, model="m", sae_model="s")
    assert runs["config"].to_list() == NAMES and runs["lang"].to_list() == ["en", "de", "th"]
    assert runs["docs"].to_list() == [3, 4, 5] and runs["tokens"].to_list() == [10, 20, 30]
    tok, ex = data["over_zero_token"].to_dense(), data["over_zero_example"].to_dense()
    with open_store(store) as st:
        stored = st.feature_sets(name="paper2").sort("lang", "rank")
        assert stored.drop("name").equals(features.drop("name").sort("lang", "rank"))
        for i, run_id in enumerate(runs["run_id"]):
            fc = st.feature_counts(run_id=run_id).sort("layer", "feature")
            layer, unit = np.nonzero(tok[:, :, i].numpy() > 0)
            assert list(zip(fc["layer"], fc["feature"], strict=True)) == list(zip(layer, unit, strict=True))
            assert fc["tok_count"].to_list() == tok[layer, unit, i].long().tolist()
            assert fc["doc_count"].to_list() == ex[layer, unit, i].long().tolist()
        # pooled over the languages, the stored activation statistics give the file's global values back
        pooled = st.sql(
            "SELECT layer, feature, max(act_max) AS mx, min(act_min) AS mn, sum(act_sum) / sum(tok_count) AS avg "
            "FROM feature_counts WHERE run_id IN (SELECT run_id FROM runs WHERE dataset = 'lape_shared_2.pt') "
            "AND NOT isnan(act_max) GROUP BY ALL ORDER BY ALL"
        )
        assert pooled.select("layer", "feature").rows() == [(0, 1), (1, 3), (1, 4)]
        assert pooled["mx"].to_list() == pytest.approx([2.5, 3.0, 1.5])
        assert pooled["mn"].to_list() == pytest.approx([0.25, 0.3, 0.15])
        assert pooled["avg"].to_list() == pytest.approx([1.25, 1.5, 0.75])
        params = st.sql("SELECT params FROM feature_set_params WHERE name = 'paper2'")["params"][0]
        assert '"aligned_through_features_info": true' in params
        assert json.loads(params)["aligned_through_features_info"] is True
    with pytest.raises(UsageError, match="already exists"):
        paper.import_lape(path, name="paper2", store=store)


# ---------------------------------------------------------------------------------------------------------------
# export


def make_set(store: Path, name: str = "myset") -> pl.DataFrame:
    """A stored sae feature set over en/de/th/ja where German has no features (params list all four)."""
    df = pl.DataFrame({
        "algorithm": "sae-lape", "kind": "sae",
        "lang": ["th", "th", "th", "en", "ja"],
        "layer": [3, 0, 3, 1, 2],
        "feature": [100, 7, 5, 64, 9],
        "entropy": [0.1, 0.2, 0.9, 0.5, None],
        "prob": [0.31, 0.12, 0.55, 0.9, 0.4],
        "act_max": [3.0, 2.0, 1.0, 4.0, 5.0],
        "act_min": [0.1, 0.2, 0.3, 0.4, 0.5],
        "act_avg": [1.0, 1.1, 0.6, 2.0, 2.5],
        "rank": [1, 2, 3, 1, 1],
    })
    params = {"algorithm": "sae-lape", "langs": ["en", "de", "th", "ja"], "layers": 4,
              "num_examples": {"en": 5, "de": 6, "th": 7, "ja": 8}, "num_tokens": {"en": 50, "de": 60, "th": 70,
                                                                                   "ja": 80}}
    write_set(store, name, df, params=params)
    return df


def test_export_pt_paper_schema(tmp_path, toy_sae_dir):
    store = tmp_path / "store"
    make_set(store)
    out = paper.export_pt(store, "myset", tmp_path / "out" / "myset.pt", local_sae_dir=toy_sae_dir)
    data = torch.load(out, weights_only=True)
    assert set(data) == {
        "final_indice", "final_indice_global_max_active", "final_indice_global_min_active",
        "final_indice_global_avg_active", "sorted_lang", "num_examples", "num_tokens", "features_info",
        "sae_features", "langfeat",
    }
    assert data["sorted_lang"] == ["English", "German", "Japanese", "Thai"]
    assert data["num_examples"].tolist() == [5, 6, 8, 7] and data["num_tokens"].tolist() == [50, 60, 80, 70]
    assert data["num_examples"].dtype == torch.long
    fi = data["final_indice"]
    assert len(fi) == 4 and all(len(entry) == 4 for entry in fi)  # one entry per language, 4 layers each
    assert [[t.tolist() for t in entry] for entry in fi] == [
        [[], [64], [], []], [[], [], [], []], [[], [], [9], []], [[7], [], [], [5, 100]],
    ]
    assert fi[1][0].dtype == torch.long
    assert [t.tolist() for t in data["final_indice_global_max_active"][3]] == [[2.0], [], [], [1.0, 3.0]]
    # features_info: rank order, probabilities and entropies aligned with their features
    th = data["features_info"]["Thai"]
    assert th["indicies"] == [(3, 100), (0, 7), (3, 5)]
    assert th["selected_probs"] == pytest.approx([0.31, 0.12, 0.55])
    assert th["entropies"] == pytest.approx([0.1, 0.2, 0.9])
    assert data["features_info"]["German"] == {"indicies": [], "selected_probs": [], "entropies": []}
    assert math.isnan(data["features_info"]["Japanese"]["entropies"][0])
    # decoder rows of the toy SAE
    from langfeat.models import load_sae

    w3 = load_sae("layers.3.mlp", local_sae_dir=toy_sae_dir).W_dec.detach()
    assert torch.equal(data["sae_features"][3][3], w3[[5, 100]])
    assert data["sae_features"][3][3].shape == (2, 32) and data["sae_features"][1][0].shape == (0, 32)


def test_export_then_import_reproduces_the_set(tmp_path):
    store = tmp_path / "store"
    src = make_set(store)
    path = paper.export_pt(store, "myset", tmp_path / "myset.pt")
    assert "sae_features" not in torch.load(path, weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = paper.read_lape(path)
    assert back["name"].unique().to_list() == ["myset"]
    cols = ["lang", "layer", "feature", "entropy", "prob", "act_max", "act_min", "act_avg", "rank"]
    expected = paper._set_frame(src, "imported", "sae").select(cols).sort("lang", "rank")
    assert back.select(cols).sort("lang", "rank").equals(expected)
    _, runs = paper.import_lape(path, name="again", store=store)
    assert runs.height == 0  # an export holds no counts
    with open_store(store) as st:
        assert st.feature_sets(name="again").select(cols).sort("lang", "rank").equals(expected)
    # a second export of the import keeps the languages (German included) and totals
    data = torch.load(paper.export_pt(store, "again", tmp_path / "again.pt"), weights_only=True)
    assert data["sorted_lang"] == ["English", "German", "Japanese", "Thai"]
    assert data["num_tokens"].tolist() == [50, 60, 80, 70]


def test_export_unknown_set(tmp_path):
    ensure_store(tmp_path / "store")
    with pytest.raises(UsageError, match="no feature set named 'nope'"):
        paper.export_pt(tmp_path / "store", "nope", tmp_path / "x.pt")


def test_cli_import_and_export(count_dir, tmp_path):
    root, _ = count_dir
    store = str(tmp_path / "store")
    runner = CliRunner()
    res = runner.invoke(app, ["import-counts", str(root), "--model", "m", "--sae-model", "s", "--store", store,
                              "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "run_id,dataset,config,lang,docs,tokens,units,status"
    assert sorted(line.split(",")[2] for line in res.stdout.splitlines()[1:]) == ["de", "en", "tha_Thai"]
    res = runner.invoke(app, ["import-counts", str(root), "--model", "m", "--store", store])
    assert res.exit_code == 2 and "--sae-model" in res.output
    lape = tmp_path / "lape_shared_2.pt"
    paper_lape_file(lape, shifted=True)
    res = runner.invoke(app, ["import-lape", str(lape), "--name", "p2", "--store", store])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "German" in res.output
    assert [line for line in res.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: lape_shared_2.pt: final_indice has 2 lists for 3 languages (the paper's shift bug); aligned "
        "through features_info, no features for: German"]
    res = runner.invoke(app, ["export-pt", "p2", str(tmp_path / "p2.pt"), "--store", store])
    assert res.exit_code == 0, res.output
    data = torch.load(tmp_path / "p2.pt", weights_only=True)
    assert data["sorted_lang"] == NAMES and [len(x) for x in data["final_indice"]] == [2, 2, 2]
    assert data["features_info"]["Thai"]["selected_probs"] == pytest.approx([7 / 30, 6 / 30])
