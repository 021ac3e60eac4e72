"""The shipped corpus: files, splits, the CLI dataset name, and agreement with the original sources."""

from __future__ import annotations

import gzip
import importlib.util
import re
from fnmatch import fnmatch
from pathlib import Path

import polars as pl
import pytest
import tomllib

from conftest import DATA
from langfeat import corpus, data
from langfeat.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "langfeat" / "corpus" / "data"
PAPER_LANGS = "en de fr it pt hi es th bg ru tr vi ja ko zh".split()
# Segments per language, as built (a change of the shipped files must show up here).
COUNTS = {
    "synthetic": dict(zip(PAPER_LANGS, [189, 201, 316, 133, 149, 275, 245, 402, 117, 474, 271, 241, 167, 142, 207],
                          strict=True)),
    "udhr": dict(zip(PAPER_LANGS, [60, 59, 59, 60, 58, 60, 59, 58, 59, 59, 60, 60, 58, 60, 58], strict=True)),
}
UDHR_TSV = dict(zip(PAPER_LANGS, "eng_Latn deu_Latn fra_Latn ita_Latn por_Latn hin_Deva spa_Latn tha_Thai "
                    "bul_Cyrl rus_Cyrl tur_Latn vie_Latn jpn_Jpan kor_Hang zho_Hans".split(), strict=True))


def lines(source: str, lang: str) -> list[str]:
    """The shipped file, read directly."""
    with gzip.open(FILES / source / f"{lang}.txt.gz", "rt", encoding="utf-8") as fh:
        return fh.read().rstrip("\n").split("\n")


def test_every_paper_language_in_every_source_within_a_megabyte():
    assert corpus.sources() == ["synthetic", "udhr"]
    assert sorted(PAPER_LANGS) == sorted(corpus.LANGUAGES)
    for source in corpus.sources():
        assert corpus.languages(source) == list(corpus.LANGUAGES)
        assert {lang: len(lines(source, lang)) for lang in PAPER_LANGS} == COUNTS[source]
        assert (FILES / source / "NOTICE.md").is_file()
    assert (FILES / "synthetic" / "LICENSE").read_text().startswith("Copyright 2025 electroglyph")
    assert sum(p.stat().st_size for p in FILES.rglob("*")) <= 1_000_000


def test_splits_disjoint_complete_deterministic_with_expected_counts():
    for source in corpus.sources():
        for lang in PAPER_LANGS:
            raw = lines(source, lang)
            n = len(raw)
            got = {split: corpus.texts(source, split, lang) for split in ("train", "identify", "eval", "all")}
            # position p is train for p % 10 in 0..5, identify for 6..8, eval for 9
            want = {
                "train": [raw[p] for p in range(n) if p % 10 < 6],
                "identify": [raw[p] for p in range(n) if 6 <= p % 10 < 9],
                "eval": [raw[p] for p in range(n) if p % 10 == 9],
                "all": raw,
            }
            assert got == want
            assert len(got["train"]) == (n // 10) * 6 + min(n % 10, 6)
            assert len(got["identify"]) == (n // 10) * 3 + max(0, min(n % 10, 9) - 6)
            assert len(got["eval"]) == n // 10 and len(got["eval"]) >= 5
            idx = {s: set(corpus.split_indices(n, s)) for s in ("train", "identify", "eval")}
            assert not (idx["train"] & idx["identify"]) and not (idx["train"] & idx["eval"])
            assert not (idx["identify"] & idx["eval"])
            assert idx["train"] | idx["identify"] | idx["eval"] == set(range(n))
    corpus._segments.cache_clear()
    assert corpus.texts("udhr", "train", "English")[0].startswith("Whereas recognition of the inherent dignity")
    assert corpus.texts("udhr", "train", "eng_Latn") == corpus.texts("udhr", "train", "en")


def test_plan_evaluates_on_another_source_than_identification():
    parsed = {step: corpus.parse(name) for step, name in corpus.PLAN.items()}
    assert parsed["identify"][0] != parsed["eval"][0]
    assert parsed["train"][0] == parsed["identify"][0] and parsed["train"][1] != parsed["identify"][1]
    assert corpus.SOURCES[parsed["identify"][0]].synthetic and not corpus.SOURCES[parsed["eval"][0]].synthetic


def test_open_source_reads_corpus_splits():
    src = data.open_source("langfeat:corpus/synthetic/identify", "deu_Latn", split="ignored", start=2, end=7)
    assert src.dataset == "langfeat:corpus/synthetic/identify" and src.split == "identify"
    assert (src.lang.tag, src.config, src.start, src.end, src.template) == ("de", "deu_Latn", 2, 7, "{text}")
    assert src.texts() == corpus.texts("synthetic", "identify", "de")[2:7]
    assert Path(src.path) == FILES / "synthetic" / "de.txt.gz"
    full = data.open_source("langfeat:corpus/udhr/all/{lang}", "zh")
    assert full.texts() == lines("udhr", "zh") and full.end == COUNTS["udhr"]["zh"]
    rows, texts = data.load_texts("langfeat:corpus/udhr/eval", "th", template="[{text}]")
    assert texts == [f"[{t}]" for t in corpus.texts("udhr", "eval", "th")] and rows == range(len(texts))


def test_cli_ingests_a_corpus_split(toy_model_dir, toy_sae_dir, tmp_path):
    from typer.testing import CliRunner

    from langfeat.cli import app
    from langfeat.store import open_store

    res = CliRunner().invoke(app, [
        "ingest", str(toy_model_dir), "langfeat:corpus/udhr/eval", "--lang", "ko", "--lang", "Thai", "--layer",
        "model.layers.1.mlp", "--local-sae-dir", str(toy_sae_dir), "--store", str(tmp_path / "s"), "--device", "cpu",
        "--no-progress",
    ])
    assert res.exit_code == 0, res.output
    with open_store(tmp_path / "s") as st:
        runs = st.runs(status="complete").sort("lang")
        docs = st.docs()
    assert runs.select("dataset", "split", "lang", "n_docs").rows() == [
        ("langfeat:corpus/udhr/eval", "eval", "ko", 6), ("langfeat:corpus/udhr/eval", "eval", "th", 5)]
    assert runs["source_path"].to_list() == [str(FILES / "udhr" / "ko.txt.gz"), str(FILES / "udhr" / "th.txt.gz")]
    assert docs.filter(pl.col("lang") == "th").sort("doc_id")["text"].to_list() == corpus.texts("udhr", "eval", "th")


@pytest.mark.parametrize(("dataset", "lang", "message"), [
    ("langfeat:corpus/wiki/train", "en", "unknown corpus source 'wiki'"),
    ("langfeat:corpus/udhr/dev", "en", "unknown corpus split 'dev'"),
    ("langfeat:corpus/udhr", "en", "bad corpus dataset"),
    ("langfeat:corpus/udhr/eval", "sw", "has no language 'sw'"),
    ("langfeat:corpus/udhr/eval", "xx-nonsense", "unknown language"),
])
def test_bad_corpus_names_are_one_line_errors(dataset, lang, message):
    with pytest.raises(UsageError, match=message) as err:
        data.open_source(dataset, lang)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="selects no rows"):
        data.open_source("langfeat:corpus/udhr/eval", "en", start=50)


def test_wheel_package_data_covers_every_shipped_file():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # package -> its folder relative to langfeat/corpus, for every listed package at or below langfeat.corpus
    folders = {pkg: pkg.removeprefix("langfeat.corpus").lstrip(".").replace(".", "/") for pkg in cfg["packages"]
               if pkg == "langfeat.corpus" or pkg.startswith("langfeat.corpus.")}
    shipped = [p.relative_to(FILES.parent).as_posix() for p in FILES.rglob("*") if p.is_file()]
    assert len(shipped) == 2 * 15 + 3

    def covered(path: str) -> bool:
        for pkg, folder in folders.items():
            rel = path.removeprefix(f"{folder}/") if folder else path
            if (not folder or path.startswith(f"{folder}/")) and any(
                    fnmatch(rel, pat) for pat in cfg["package-data"].get(pkg, [])):
                return True
        return False

    assert [f for f in shipped if not covered(f)] == []


@pytest.mark.skipif(not (DATA / "udhr").exists(), reason="needs shared/data/udhr")
def test_udhr_matches_the_source_tsv():
    for lang, stem in UDHR_TSV.items():
        rows = (DATA / "udhr" / f"{stem}.tsv").read_text(encoding="utf-8").splitlines()
        assert rows[0] == "id\ttext"
        want = [" ".join(text.split()) for seg, text in (r.split("\t", 1) for r in rows[1:])
                if seg != "title" and not seg.endswith(".title0")]
        assert lines("udhr", lang) == want, lang


def _dataset_build_data() -> Path | None:
    spec = importlib.util.find_spec("dataset_build")
    return Path(next(iter(spec.submodule_search_locations))) / "data" if spec else None


@pytest.mark.skipif(_dataset_build_data() is None, reason="needs dataset-build (make install installs it)")
def test_synthetic_matches_dataset_build_and_rebuilds_byte_identical(tmp_path):
    from langfeat.corpus import build

    src = _dataset_build_data()
    n_headings = 0
    codes = dict(zip(PAPER_LANGS, "eng deu fra ita por hin spa tha bul rus tur vie jpn kor zho".split(), strict=True))
    for lang, code in codes.items():
        raw = (src / code / f"{code}.txt").read_text(encoding="utf-8").split("\n")
        body = [" ".join(r.replace("*", "").split()) for r in raw[1:]]  # source lines, emphasis marks dropped
        shipped = lines("synthetic", lang)
        assert " ".join(raw[0].split()) not in shipped  # the generator's reply line is gone
        assert not [s for s in shipped if s.startswith("#") or "*" in s or len(s) < 12]
        if lang != "th":  # no plain-text headings: short lines end a sentence
            assert all(len(s) >= 100 or s.rstrip("\"”»）)'’」』")[-1] in ".!?。！？।…:;" for s in shipped), lang
        it = iter(body)  # every shipped paragraph ends a source line, in source order
        assert all(any(line.endswith(s) for line in it) for s in shipped), lang
        headings = [r for r in raw[1:] if r.startswith("#")]
        assert not {" ".join(h.lstrip("#").replace("*", "").split()) for h in headings} & set(shipped)
        n_headings += len(headings)
    assert n_headings >= 70  # markdown headings in de fr it es th ru tr
    if (DATA / "udhr").exists():
        build.build(DATA / "udhr", src, tmp_path)
        rebuilt = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
        assert rebuilt == sorted(p.relative_to(FILES) for p in FILES.rglob("*") if p.is_file())
        for rel in rebuilt:
            assert (tmp_path / rel).read_bytes() == (FILES / rel).read_bytes(), rel
    assert re.fullmatch(r"\d+\.\d+\.\d+", importlib.metadata.version("dataset-build"))
