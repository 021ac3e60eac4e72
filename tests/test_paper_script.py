"""``ingest/paper_sae_lape.sh`` itself, run by bash on the toy model and local FLORES text (only its model, SAE and
dataset names replaced through the environment): 32 runs, every paper set, the paper's .pt files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import DATA, flores_lines
from langfeat.store import open_store

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared FLORES data not available")

SCRIPT = Path(__file__).resolve().parents[1] / "ingest" / "paper_sae_lape.sh"
ROWS = 8
# the paper's XNLI / PAWS-X codes, given FLORES-200 text (cmn_Hans is FLORES-200's zho_Hans)
FLORES = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "hi": "hin_Deva", "es": "spa_Latn",
          "th": "tha_Thai", "bg": "bul_Cyrl", "ru": "rus_Cyrl", "tr": "tur_Latn", "vi": "vie_Latn",
          "ja": "jpn_Jpan", "ko": "kor_Hang", "zh": "zho_Hans", "it": "ita_Latn", "pt": "por_Latn"}
XNLI = ["en", "de", "fr", "hi", "es", "th", "bg", "ru", "tr", "vi"]
PAWSX = ["en", "de", "fr", "es", "ja", "ko", "zh"]
FLORES_PLUS = ["eng_Latn", "deu_Latn", "fra_Latn", "ita_Latn", "por_Latn", "hin_Deva", "spa_Latn", "tha_Thai",
               "bul_Cyrl", "rus_Cyrl", "tur_Latn", "vie_Latn", "jpn_Jpan", "kor_Hang", "cmn_Hans"]
SETS = ["lape_all", "lape_neuron", "lape_shared_2", "lape_shared_3", "lape_top_10_by_entropy",
        "lape_top_10_by_freq", "lape_top_1_per_layer_by_entropy", "lape_top_1_per_layer_by_freq"]


def _files(folder: Path, codes: list[str], block: int) -> str:
    """``<folder>/{lang}.txt`` with rows [block·ROWS, (block+1)·ROWS) of each language's FLORES text."""
    folder.mkdir()
    for code in codes:
        source = FLORES.get(code, "zho_Hans" if code == "cmn_Hans" else code)
        lines = flores_lines(source, 3 * ROWS)[block * ROWS:(block + 1) * ROWS]
        (folder / f"{code}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder / "{lang}.txt")


def test_paper_script_runs_as_written(toy_model_dir, toy_sae_dir, tmp_path):
    store = tmp_path / "store"
    env = dict(
        os.environ, LANGFEAT_STORE=str(store), MODEL=str(toy_model_dir), LOCAL_SAE_DIR=str(toy_sae_dir),
        LAYERS="model.layers.{0..3}.mlp", XNLI_DATA=_files(tmp_path / "xnli", XNLI, 0),
        PAWSX_DATA=_files(tmp_path / "pawsx", PAWSX, 1), FLORES_DATA=_files(tmp_path / "flores", FLORES_PLUS, 2),
        ROWS=str(ROWS), FLORES_ROWS=str(ROWS), UNITS_PER_LAYER="8", SHARED_COUNTS="2 3", OUT=str(tmp_path / "pt"),
        LANGFEAT_ARGS="--device cpu --no-progress",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    done = subprocess.run(["bash", str(SCRIPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    with open_store(store) as st:
        runs = st.sql("SELECT dataset, config, lang, n_docs, status FROM runs ORDER BY dataset, config")
        sets = st.sql("SELECT name FROM feature_set_params ORDER BY name")["name"].to_list()
        params = st.sql("SELECT name, params FROM feature_set_params WHERE name = 'lape_all'")
        langs = st.sql("SELECT DISTINCT lang FROM feature_sets WHERE name = 'lape_all'")
        neuron_units = st.sql("SELECT count(*) AS n FROM feature_sets WHERE name = 'lape_neuron'")["n"][0]
    assert runs.height == 32 and set(runs["status"]) == {"complete"} and set(runs["n_docs"]) == {ROWS}
    assert runs["lang"].n_unique() == 15  # 32 dataset configs merged per language
    assert sets == SETS
    assert params.height == 1
    assert set(langs["lang"]) <= set(runs["lang"])
    assert sorted(p.name for p in (tmp_path / "pt").iterdir()) == sorted(f"{s}.pt" for s in SETS)
    pt = torch.load(tmp_path / "pt" / "lape_all.pt", weights_only=True)
    assert len(pt["sorted_lang"]) == len(pt["final_indice"]) == 15  # every language present, as the paper's files
    neuron = torch.load(tmp_path / "pt" / "lape_neuron.pt", weights_only=True)  # empty on the toy: still 15 entries
    n_neurons = sum(int(t.numel()) for per_lang in neuron["final_indice"] for t in per_lang)
    assert len(neuron["sorted_lang"]) == 15 and n_neurons == neuron_units
    assert "lape_all" in done.stdout  # the closing `langfeat sets` / `report features lape_all`
