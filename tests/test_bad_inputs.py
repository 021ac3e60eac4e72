"""Bad input, table-driven: every case exits non-zero with ONE line `error: <problem>: <fix>`, prints no
traceback, and leaves the store (and any output path) exactly as it was."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from langfeat.cli import app
from langfeat.experiments import classify as _classify  # noqa: F401  (imported once, outside the timed cases)
from langfeat.ingest import IngestConfig, ingest
from langfeat.store import ensure_store

LAYERS = "model.layers.{0..1}.mlp"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (any write shows)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, toy_model_dir, toy_sae_dir):
    """A real store (two languages ingested with SAE features and neurons, one identified set) and input files."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    (tmp / "en.txt").write_text("the cat sat on the mat\nhello there friend\na dog barks\n", encoding="utf-8")
    (tmp / "de.txt").write_text("die Katze sitzt\nhallo mein Freund\nein Hund bellt\n", encoding="utf-8")
    (tmp / "blank.txt").write_text("\n   \n\t\n", encoding="utf-8")
    (tmp / "two.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    torch.save({"anything": 1}, tmp / "notlape.pt")
    counts = tmp / "counts"
    counts.mkdir()
    torch.save({"x": torch.zeros(2)}, counts / "xnli_en.pt")
    with open(tmp / "evil.pt", "wb") as fh:  # a pickle that would run code if loaded without weights_only
        pickle.dump(os.system, fh)
    (tmp / "afile").write_text("x", encoding="utf-8")
    store = tmp / "store"
    ensure_store(store)
    ingest(IngestConfig(model=str(toy_model_dir), dataset=str(tmp / "{lang}.txt"), langs=["en", "de"],
                        layers=[LAYERS], local_sae_dir=str(toy_sae_dir), neurons=True, device="cpu",
                        store=str(store)), progress=False)
    res = CliRunner().invoke(app, ["identify", "--store", str(store), "--example-rate", "0.1", "--hfl-rate", "0.01",
                                   "--name", "s1"])
    assert res.exit_code == 0, res.output
    return {"tmp": tmp, "store": store, "model": str(toy_model_dir), "saes": str(toy_sae_dir)}


def _ingest(w, *extra: str, data: str = "{lang}.txt", lang: str = "en") -> list[str]:
    return ["ingest", w["model"], str(w["tmp"] / data), "--lang", lang, "--layer", LAYERS, "--store", str(w["store"]),
            "--device", "cpu", "--no-progress", *extra]


def _sql(w, query: str, *extra: str) -> list[str]:
    return ["sql", query, "--store", str(w["store"]), *extra]


# (case id, argv builder, a fragment the one-line message must contain)
CASES = [
    ("ingest-missing-model", lambda w: ["ingest", str(w["tmp"] / "nope"), str(w["tmp"] / "{lang}.txt"), "--lang",
                                        "en", "--neurons", "--store", str(w["store"]), "--device", "cpu"],
     "cannot load model"),
    ("ingest-missing-file", lambda w: _ingest(w, "--neurons", data="missing-{lang}.txt"), "no file"),
    ("ingest-unknown-language", lambda w: _ingest(w, "--neurons", lang="qqq-nonsense"), "language"),
    ("ingest-bad-layer-pattern", lambda w: [*_ingest(w, "--neurons")[:5], "--layer", "model.layers.{0..",
                                            "--store", str(w["store"]), "--device", "cpu"], "layer"),
    ("ingest-layer-no-module", lambda w: [*_ingest(w, "--neurons")[:5], "--layer", "model.nope.3.mlp",
                                          "--store", str(w["store"]), "--device", "cpu"], "--layer"),
    ("ingest-no-units", lambda w: _ingest(w), "--neurons"),
    ("ingest-two-sae-sources", lambda w: _ingest(w, "--local-sae-dir", w["saes"], "--sae-model", "x/y"),
     "--local-sae-dir"),
    ("ingest-device-tpu", lambda w: _ingest(w, "--neurons", "--device", "tpu"), "--device"),
    ("ingest-bad-dtype", lambda w: _ingest(w, "--neurons", "--dtype", "float8"), "--dtype"),
    ("ingest-sae-folder-lacks-layer", lambda w: [*_ingest(w)[:5], "--layer", "model.layers.{0..5}.mlp",
                                                 "--local-sae-dir", w["saes"], "--store", str(w["store"]),
                                                 "--device", "cpu"], "layer"),
    ("ingest-all-blank", lambda w: _ingest(w, "--neurons", data="blank.txt", lang="fr"), "blank"),
    ("ingest-empty-slice", lambda w: _ingest(w, "--neurons", "--start", "50"), "--start"),
    ("ingest-missing-column", lambda w: _ingest(w, "--neurons", "--text-column", "zzz", data="two.csv"), "zzz"),
    ("ingest-unknown-option", lambda w: _ingest(w, "--neurons", "--bogus"), "--bogus"),
    ("ingest-paper-output-flag", lambda w: _ingest(w, "--neurons", "--out-dir", str(w["tmp"] / "o")), "--out-dir"),
    ("sql-syntax", lambda w: _sql(w, "SELEC 1"), "SQL"),
    ("sql-copy-to-file", lambda w: _sql(w, f"COPY (SELECT 1) TO '{w['tmp'] / 'copied.csv'}'"), "read-only"),
    ("sql-create-table", lambda w: _sql(w, "CREATE TABLE t AS SELECT 1"), "read-only"),
    ("sql-drop-view", lambda w: _sql(w, "DROP VIEW events"), "read-only"),
    ("sql-attach", lambda w: _sql(w, f"ATTACH '{w['tmp'] / 'other.duckdb'}' AS o"), "read-only"),
    ("sql-install", lambda w: _sql(w, "INSTALL httpfs"), "read-only"),
    ("sql-set", lambda w: _sql(w, "SET threads = 1"), "read-only"),
    ("sql-two-statements", lambda w: _sql(w, "SELECT 1; SELECT 2"), "one"),
    ("sql-output-missing-dir", lambda w: _sql(w, "SELECT 1", "-f", "csv", "-o", str(w["tmp"] / "nodir" / "x.csv")),
     "nodir"),
    ("sql-parquet-to-stdout", lambda w: _sql(w, "SELECT 1", "-f", "parquet"), "--output"),
    ("sql-no-store", lambda w: ["sql", "SELECT 1", "--store", str(w["tmp"] / "nostore")], "no langfeat store"),
    ("sql-store-is-file", lambda w: ["sql", "SELECT 1", "--store", str(w["tmp"] / "afile")], "file"),
    ("runs-unknown-status", lambda w: ["runs", "--status", "bogus", "--store", str(w["store"])], "--status"),
    ("rm-unknown-run", lambda w: ["rm", "zzzzzz", "--store", str(w["store"])], "langfeat runs"),
    ("identify-bad-algorithm", lambda w: ["identify", "--algorithm", "bogus", "--store", str(w["store"])],
     "--algorithm"),
    ("identify-ratio-out-of-range", lambda w: ["identify", "--topk-threshold-ratio", "2", "--store", str(w["store"])],
     "ratio"),
    ("identify-bad-name", lambda w: ["identify", "--name", "a/b", "--store", str(w["store"])], "name"),
    ("identify-name-exists", lambda w: ["identify", "--name", "s1", "--store", str(w["store"])], "--overwrite"),
    ("identify-not-a-number", lambda w: ["identify", "--example-rate", "abc", "--store", str(w["store"])],
     "--example-rate"),
    ("report-unknown-set", lambda w: ["report", "features", "nope", "--store", str(w["store"])], "langfeat sets"),
    ("report-bad-unit", lambda w: ["report", "feature", "1-5", "--store", str(w["store"])], "LAYER:FEATURE"),
    ("report-layer-out-of-range", lambda w: ["report", "feature", "9:1", "--store", str(w["store"])], "layer 9"),
    ("report-unit-never-fired", lambda w: ["report", "feature", "0:100000", "--store", str(w["store"])],
     "never fired"),
    ("import-counts-not-counts", lambda w: ["import-counts", str(w["tmp"] / "counts"), "--kind", "neuron",
                                            "--model", "m", "--store", str(w["store"])], "count"),
    ("import-lape-not-lape", lambda w: ["import-lape", str(w["tmp"] / "notlape.pt"), "--store", str(w["store"])],
     "LAPE"),
    ("import-lape-untrusted-pickle", lambda w: ["import-lape", str(w["tmp"] / "evil.pt"), "--store", str(w["store"])],
     "pt"),
    ("export-unknown-set", lambda w: ["export-pt", "nope", str(w["tmp"] / "out.pt"), "--store", str(w["store"])],
     "langfeat sets"),
    ("classify-no-feature-source", lambda w: ["classify", str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                              "--store", str(w["store"])], "--feature-set"),
    ("classify-two-feature-sources", lambda w: ["classify", str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                                "--feature-set", "s1", "--lape-result-path",
                                                str(w["tmp"] / "notlape.pt"), "--store", str(w["store"])],
     "exactly one"),
    ("ppl-bad-intervention", lambda w: ["ppl", w["model"], str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                        "--intervention-type", "bogus", "--store", str(w["store"]),
                                        "--device", "cpu"], "--intervention-type"),
    ("generate-unknown-language", lambda w: ["generate", w["model"], "--lang", "qqq-nonsense", "--feature-set", "s1",
                                             "--local-sae-dir", w["saes"], "--store", str(w["store"]),
                                             "--device", "cpu"], "language"),
    ("generate-unknown-method", lambda w: ["generate", w["model"], "--lang", "en", "--method", "steer",
                                           "--store", str(w["store"]), "--device", "cpu"], "--method"),
    ("generate-diffmean-without-set", lambda w: ["generate", w["model"], "--lang", "en", "--method", "diffmean",
                                                 "--store", str(w["store"]), "--device", "cpu"], "--diffmean"),
    ("generate-unknown-diffmean-set", lambda w: ["generate", w["model"], "--lang", "en", "--method", "diffmean",
                                                 "--diffmean", "nope", "--store", str(w["store"]),
                                                 "--device", "cpu"], "identify --algorithm diffmean"),
    ("generate-instruction-without-language", lambda w: ["generate", w["model"], "--lang", "en", "--method",
                                                         "prompting", "--instruction", "Answer.", "--store",
                                                         str(w["store"]), "--device", "cpu"], "{language}"),
    ("ppl-diffmean-without-set", lambda w: ["ppl", w["model"], str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                            "--intervention-type", "diffmean", "--intervention-lang", "en", "-a", "1",
                                            "--store", str(w["store"]), "--device", "cpu"], "--diffmean"),
    ("ppl-diffmean-without-multiplier", lambda w: ["ppl", w["model"], str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                                   "--intervention-type", "diffmean", "--intervention-lang", "en",
                                                   "--diffmean", "dm", "--store", str(w["store"]),
                                                   "--device", "cpu"], "--multiplier"),
    ("identify-diffmean-neuron-layer", lambda w: ["identify", "--algorithm", "diffmean", "--layer",
                                                  "model.layers.0.mlp.act_fn", "--store", str(w["store"])],
     "act_fn"),
    ("report-unknown-diffmean-set", lambda w: ["report", "diffmean", "nope", "--store", str(w["store"])],
     "langfeat report diffmean"),
    ("check-no-text", lambda w: ["check", "--model", w["model"], "--feature-set", "s1", "--local-sae-dir", w["saes"],
                                 "--store", str(w["store"]), "--device", "cpu"], "--text"),
    ("html-out-is-file", lambda w: ["report", "html", "--store", str(w["store"]), "--out", str(w["tmp"] / "afile")],
     "afile"),
    ("report-missing-argument", lambda w: ["report", "feature", "--store", str(w["store"])], "--help"),
    ("compare-unknown-set", lambda w: ["report", "compare", "s1", "nope", "--store", str(w["store"])],
     "langfeat sets"),
    ("probe-k-zero", lambda w: ["classify", str(w["tmp"] / "{lang}.txt"), "--lang", "en", "--classifier-type",
                                "sae-probe", "--max-features-per-language", "0", "--store", str(w["store"])],
     "--max-features-per-language"),
    ("probe-k-not-a-number", lambda w: ["classify", str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                        "--classifier-type", "sae-probe", "--max-features-per-language", "few",
                                        "--store", str(w["store"])], "--max-features-per-language"),
    ("probe-with-feature-set", lambda w: ["classify", str(w["tmp"] / "{lang}.txt"), "--lang", "en",
                                          "--classifier-type", "sae-probe", "--feature-set", "s1",
                                          "--store", str(w["store"])], "--feature-set"),
    ("probe-bad-value", lambda w: ["classify", str(w["tmp"] / "{lang}.txt"), "--lang", "en", "--classifier-type",
                                   "sae-probe", "--probe-value", "mean", "--store", str(w["store"])],
     "--probe-value"),
    ("identify-nu-lang-specific", lambda w: ["identify", "--algorithm", "nu", "--lang-specific",
                                             "--store", str(w["store"])], "--algorithm nu"),
    ("methods-unknown-section", lambda w: ["report", "methods", "--section", "bogus", "--store", str(w["store"])],
     "--section"),
]


def test_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, case, argv, fragment):
    before = snapshot(world["tmp"])
    res = CliRunner().invoke(app, argv(world))
    out = res.output
    assert res.exit_code not in (0, None), f"{case}: exit 0\n{out}"
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{case}: {res.exception!r}"
    assert "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if ln.strip() and "Triton" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: not one error line:\n{out}"
    assert fragment.lower() in lines[0].lower(), f"{case}: {lines[0]!r} lacks {fragment!r}"
    assert snapshot(world["tmp"]) == before, f"{case}: files changed"
