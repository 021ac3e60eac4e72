"""Ingestion against an independent per-document computation (forward hook + SparseCoder.encode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from hand import capture, fired
from typer.testing import CliRunner

from conftest import TOY_LAYERS, flores_lines
from langfeat.cli import app
from langfeat.ingest import IngestConfig, encode_texts, ingest, ingest_texts
from langfeat.store import open_store, writer
from langfeat.store.layout import LAYERED, Layout, arrow_schemas

# mixed scripts and lengths: Thai, Japanese, Hindi, English
TEXTS = (
    flores_lines("tha_Thai", 3) + flores_lines("jpn_Jpan", 2) + flores_lines("hin_Deva", 2)
    + flores_lines("eng_Latn", 3) + ["", "a"]
)
LAYERS = ["model.layers.{0..3}.mlp"]


def hand(model, tokenizer, saes, texts):
    """Per document, one at a time: hook MLP output and act_fn, SparseCoder.encode, keep act > 0 (float16)."""
    events, neurons, tokens = [], [], []
    for d, text in enumerate(texts):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        assert ids[0, 0].item() == tokenizer.bos_token_id
        tokens += [(d, p, int(t)) for p, t in enumerate(ids[0])]
        outs, fn = capture(model, ids, saes), capture(model, ids, saes, part="act_fn")
        for layer, sae in saes.items():
            events += [(d, p, layer, f, a) for p, f, a in fired(sae, outs[layer])]
            a = fn[layer]
            for p, n in zip(*np.nonzero((a > 0).numpy()), strict=True):
                neurons.append((d, int(p), layer, int(n), float(a[p, n])))
    cols = ["doc", "pos", "layer", "feature", "act"]
    ev = pl.DataFrame(events, schema=dict(zip(cols, [pl.Int32] * 4 + [pl.Float32], strict=True)), orient="row")
    nr = pl.DataFrame(neurons, schema=dict(zip(cols, [pl.Int32] * 4 + [pl.Float32], strict=True)), orient="row")
    tk = pl.DataFrame(tokens, schema={"doc": pl.Int32, "pos": pl.Int32, "token_id": pl.Int32}, orient="row")
    return ev.sort(["layer", "doc", "pos", "feature"]), nr, tk


@pytest.fixture(scope="module")
def expected(toy):
    return hand(*toy, [t for t in TEXTS if t])


def _same_events(got: pl.DataFrame, want: pl.DataFrame) -> None:
    keys = ["layer", "doc", "pos", "feature"]
    got, want = got.sort(keys), want.sort(keys)
    assert got.select(keys).equals(want.select(keys).cast(got.select(keys).schema))
    np.testing.assert_allclose(got["act"].to_numpy(), want["act"].to_numpy(), rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 4])
def test_encode_texts_equals_hand(toy, expected, batch):
    model, tokenizer, saes = toy
    texts = [t for t in TEXTS if t]
    events, tokens = encode_texts(texts, model, tokenizer, LAYERS, saes, batch=batch)
    _same_events(events, expected[0])
    assert tokens.sort(["doc", "pos"]).equals(expected[2])
    assert len(events) > 1000


def _store_tables(root: Path) -> dict[str, pl.DataFrame]:
    con = duckdb.connect()
    base = (root / "data").as_posix()
    out = {}
    for table in ("events", "docs", "tokens", "feature_counts", "neuron_counts", "neuron_docs"):
        sub = f"{table}/layer=*/*.parquet" if table in LAYERED else f"{table}/*.parquet"
        files = list((root / "data").glob("run_id=*/lang=*/" + sub))
        if files:
            q = f"SELECT * FROM read_parquet('{base}/run_id=*/lang=*/{sub}', hive_partitioning=true)"
            out[table] = con.sql(q).pl()
    return out


def _manifests(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (root / "runs").glob("*.json") if not p.name.startswith("_")]


def _write_txt(path: Path, texts: list[str]) -> None:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def ingested(toy, tmp_path_factory):
    """One run over rows [2, 12) of a .txt file (shards of 3 docs, batch 4, SAEs + neurons + neuron docs)."""
    model, tokenizer, _ = toy
    tmp = tmp_path_factory.mktemp("ing")
    lines = ["first line, skipped", "second, skipped", *TEXTS, "after the end"]
    _write_txt(tmp / "th.txt", lines)
    cfg = IngestConfig(
        model="toy", dataset=str(tmp / "{lang}.txt"), langs=["th"], layers=LAYERS, start=2, end=2 + len(TEXTS),
        local_sae_dir=str(tmp_path_factory.getbasetemp() / "toy_saes0"), neurons=True, neuron_docs=True, batch=4,
        shard_docs=3,
        store=str(tmp / "store"), device="cpu",
    )
    manifests = ingest(cfg, model=model, tokenizer=tokenizer, progress=False)
    return cfg, manifests, _store_tables(tmp / "store"), lines


def test_ingest_store_matches_hand(toy, ingested):
    model, tokenizer, saes = toy
    cfg, manifests, tables, lines = ingested
    (m,) = manifests
    assert m["status"] == "complete" and m["kind"] == "ingest" and m["lang"] == "th" and m["bos"] is True
    assert (m["start"], m["end"], m["shard_docs"], m["layers"], m["neurons"]) == (2, 14, 3, TOY_LAYERS, True)
    base = m["run_num"] << 40
    want_ev, want_nr, want_tok = hand(model, tokenizer, saes, TEXTS)
    # docs: exactly the slice, BOS counted
    docs = tables["docs"].sort("doc_id")
    assert docs["row"].to_list() == list(range(2, 14))
    assert docs["doc_id"].to_list() == [base + r for r in range(2, 14)]
    assert docs["text"].to_list() == lines[2:14]
    assert docs["n_tokens"].to_list() == want_tok.group_by("doc").len().sort("doc")["len"].to_list()
    assert m["n_docs"] == 12 and m["n_tokens"] == len(want_tok)
    assert set(docs["dataset"]) == {m["dataset"]} and m["dataset"].endswith("{lang}.txt")
    # tokens
    tok = tables["tokens"].with_columns(doc=(pl.col("doc_id") - base - 2).cast(pl.Int32))
    tok = tok.select("doc", "pos", "token_id")
    assert tok.sort(["doc", "pos"]).equals(want_tok)
    # events: same rows as the hand computation; sorted by (doc_id, pos, feature) inside each file
    ev = tables["events"].with_columns(
        doc=(pl.col("doc_id") - base - 2).cast(pl.Int32), layer=pl.col("layer").cast(pl.Int32)
    )
    _same_events(ev.select("doc", "pos", "layer", "feature", "act"), want_ev)
    assert (ev["act"] > 0).all()
    for path in Path(cfg.store).glob("data/*/*/events/layer=*/*.parquet"):
        part = pl.read_parquet(path)
        assert part.equals(part.sort(["doc_id", "pos", "feature"]))
    # feature_counts = a recount from the stored events and from the hand computation
    recount = (
        want_ev.group_by("layer", "feature").agg(
            tok_count=pl.len(), doc_count=pl.col("doc").n_unique(), act_sum=pl.col("act").cast(pl.Float64).sum(),
            act_max=pl.col("act").max(), act_min=pl.col("act").min(),
        ).sort("layer", "feature")
    )
    fc = tables["feature_counts"].sort("layer", "feature")
    counts = ["layer", "feature", "tok_count", "doc_count"]
    assert fc.select(counts).equals(recount.select(counts).cast(fc.select(counts).schema))
    np.testing.assert_allclose(fc["act_sum"], recount["act_sum"], rtol=1e-3)
    np.testing.assert_allclose(fc["act_max"], recount["act_max"], rtol=2e-3)
    store_recount = ev.group_by("layer", "feature").agg(
        tok_count=pl.len(), act_sum=pl.col("act").cast(pl.Float64).sum(), act_max=pl.col("act").max()
    ).sort("layer", "feature")
    assert store_recount["tok_count"].to_list() == fc["tok_count"].to_list()
    np.testing.assert_allclose(store_recount["act_sum"], fc["act_sum"], rtol=1e-9)
    assert store_recount["act_max"].to_list() == fc["act_max"].to_list()  # aggregates use the stored values
    # neuron_counts = hand aggregation of act_fn outputs > 0
    nh = want_nr.group_by("layer", "feature").agg(
        tok_count=pl.len(), doc_count=pl.col("doc").n_unique(), act_sum=pl.col("act").cast(pl.Float64).sum(),
        act_max=pl.col("act").max(), act_min=pl.col("act").min(),
    ).sort("layer", "feature")
    nc = tables["neuron_counts"].sort("layer", "neuron")
    assert nc["layer"].to_list() == nh["layer"].to_list() and nc["neuron"].to_list() == nh["feature"].to_list()
    assert nc["tok_count"].to_list() == nh["tok_count"].to_list()
    assert nc["doc_count"].to_list() == nh["doc_count"].to_list()
    np.testing.assert_allclose(nc["act_sum"], nh["act_sum"], rtol=1e-4)
    np.testing.assert_allclose(nc["act_max"], nh["act_max"], rtol=1e-4)
    np.testing.assert_allclose(nc["act_min"], nh["act_min"], rtol=1e-4, atol=1e-6)  # batched vs single matmuls
    # files follow db/tables.sql exactly (names and types)
    import pyarrow.parquet as pq

    for table in tables:
        sub = f"{table}/layer=*/*.parquet" if table in LAYERED else f"{table}/*.parquet"
        for path in Path(cfg.store).glob("data/*/*/" + sub):
            assert pq.read_schema(path).remove_metadata() == arrow_schemas()[table], (table, path)


def test_neuron_docs_match_hand(toy, ingested):
    """neuron_docs = per (document, layer, neuron) the count and the sum of the act_fn outputs > 0 of a plain hook,
    one text at a time; summed over documents they are neuron_counts."""
    model, tokenizer, saes = toy
    cfg, (m,), tables, _ = ingested
    assert m["neuron_docs"] is True and m["neurons"] is True
    _, want_nr, _ = hand(model, tokenizer, saes, TEXTS)
    want = want_nr.group_by("doc", "layer", "feature").agg(
        tok_count=pl.len(), act_sum=pl.col("act").cast(pl.Float64).sum()).sort("layer", "doc", "feature")
    got = tables["neuron_docs"].with_columns(doc=(pl.col("doc_id") - (m["run_num"] << 40) - 2).cast(pl.Int32),
                                             layer=pl.col("layer").cast(pl.Int32)).sort("layer", "doc", "neuron")
    assert got["layer"].to_list() == want["layer"].to_list()
    assert got["doc"].to_list() == want["doc"].to_list()
    assert got["neuron"].to_list() == want["feature"].to_list()
    assert got["tok_count"].to_list() == want["tok_count"].to_list()
    np.testing.assert_allclose(got["act_sum"], want["act_sum"], rtol=1e-4, atol=1e-6)
    assert (got["tok_count"] > 0).all() and got["doc"].n_unique() == len(TEXTS)  # "" is BOS alone
    # the per-run aggregates over exactly the same positions
    nc = tables["neuron_counts"].sort("layer", "neuron")
    per_unit = got.group_by("layer", "neuron").agg(pl.col("tok_count").sum(), doc_count=pl.len(),
                                                   act_sum=pl.col("act_sum").cast(pl.Float64).sum())
    per_unit = per_unit.sort("layer", "neuron")
    assert per_unit["tok_count"].to_list() == nc["tok_count"].to_list()
    assert per_unit["doc_count"].to_list() == nc["doc_count"].to_list()
    np.testing.assert_allclose(per_unit["act_sum"], nc["act_sum"], rtol=1e-5)
    for path in Path(cfg.store).glob("data/*/*/neuron_docs/layer=*/*.parquet"):
        part = pl.read_parquet(path)
        assert part.equals(part.sort(["doc_id", "neuron"]))
    with open_store(cfg.store) as st:  # the source view and the manifest column
        view = st.sql("SELECT layer, doc_id, neuron, tok_count FROM neuron_docs ORDER BY layer, doc_id, neuron")
        assert view["tok_count"].to_list() == got["tok_count"].to_list()
        assert st.sql("SELECT neuron_docs FROM runs")["neuron_docs"].to_list() == [True]


def test_neuron_docs_keep_run_ids_and_imply_neurons(toy, toy_sae_dir, tmp_path):
    """A run without neuron docs keeps the id it always had; --neuron-docs alone counts the neurons too and is
    a run of its own."""
    from langfeat.store.runs import IDENTITY_KEYS, run_id_for

    model, tokenizer, _ = toy
    record = {"model": "m", "dataset": "d", "config": "c", "layers": [0], "neurons": True}
    payload = json.dumps({k: record.get(k) for k in IDENTITY_KEYS}, sort_keys=True, default=str)
    import hashlib

    assert run_id_for(record) == hashlib.sha256(payload.encode()).hexdigest()[:12]
    assert run_id_for(dict(record, neuron_docs=False)) == run_id_for(record)
    assert run_id_for(dict(record, neuron_docs=True)) != run_id_for(record)
    _write_txt(tmp_path / "de.txt", flores_lines("deu_Latn", 3))
    cfg = IngestConfig(model="toy", dataset=str(tmp_path / "{lang}.txt"), langs=["de"], layers=["model.layers.1.mlp"],
                       neuron_docs=True, store=str(tmp_path / "s"), device="cpu")
    (m,) = ingest(cfg, model=model, tokenizer=tokenizer, progress=False)
    assert m["neurons"] is True and m["neuron_docs"] is True and m["neuron_layers"] == [1] and not m["sae_layers"]
    tables = _store_tables(tmp_path / "s")
    assert tables["events"].height == 0 and tables["neuron_docs"]["layer"].unique().to_list() == [1]
    assert tables["neuron_docs"]["tok_count"].sum() == tables["neuron_counts"]["tok_count"].sum()


def test_rerun_skips_and_overwrite_replaces(toy, ingested):
    model, tokenizer, _ = toy
    cfg, (m,), _, _ = ingested
    again = ingest(cfg, model=model, tokenizer=tokenizer, progress=False)
    assert again[0].get("skipped") and again[0]["run_id"] == m["run_id"]
    from dataclasses import replace

    over = ingest(replace(cfg, overwrite=True), model=model, tokenizer=tokenizer, progress=False)
    assert over[0]["run_id"] == m["run_id"] and not over[0].get("skipped")
    assert _store_tables(Path(cfg.store))["docs"].sort("row")["row"].to_list() == list(range(2, 14))


def test_resume_after_interruption_is_identical(toy, toy_sae_dir, tmp_path, monkeypatch):
    model, tokenizer, _ = toy
    texts = flores_lines("hin_Deva", 11)
    _write_txt(tmp_path / "hi.txt", texts)

    def cfg(store):
        return IngestConfig(
            model="toy", dataset=str(tmp_path / "{lang}.txt"), langs=["hi"], layers=LAYERS,
            local_sae_dir=str(toy_sae_dir), neurons=True, neuron_docs=True, batch=3, shard_docs=2,
            store=str(tmp_path / store),
            device="cpu",
        )

    ingest(cfg("clean"), model=model, tokenizer=tokenizer, progress=False)
    original = writer.write_shard
    calls = []

    def crash_after_three(work, lang, data):
        calls.append(data.shard)
        if len(calls) == 4:
            raise RuntimeError("simulated crash")
        return original(work, lang, data)

    monkeypatch.setattr("langfeat.ingest.write_shard", crash_after_three)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(cfg("crashed"), model=model, tokenizer=tokenizer, progress=False)
    layout = Layout(tmp_path / "crashed")
    (manifest,) = _manifests(layout.root)
    assert manifest["status"] == "failed" and not layout.run_data(manifest["run_id"]).exists()
    done = sorted(p.name for p in (layout.run_work(manifest["run_id"]) / "_partials").glob("*.json"))
    done_shards = sorted(int(name[6:11]) for name in done)
    # Shards 0-2 finished; 3 crashed; 4 may have been written by the second writer before the crash surfaced.
    assert done_shards[:3] == [0, 1, 2] and 3 not in done_shards and set(done_shards) <= {0, 1, 2, 4}
    def record(work, lang, data):
        calls.append(data.shard)
        return original(work, lang, data)

    monkeypatch.setattr("langfeat.ingest.write_shard", record)
    calls.clear()
    (resumed,) = ingest(cfg("crashed"), model=model, tokenizer=tokenizer, progress=False)
    assert calls == [k for k in range(6) if k not in done_shards]  # only the missing shards are redone
    assert resumed["status"] == "complete" and resumed["n_docs"] == 11
    a, b = _store_tables(tmp_path / "clean"), _store_tables(tmp_path / "crashed")
    assert a.keys() == b.keys()
    for table in a:
        keys = [c for c in a[table].columns if c not in ("act", "act_sum", "act_max", "act_min", "text")]
        assert a[table].sort(keys).equals(b[table].sort(keys)), table
    assert not layout.run_work(manifest["run_id"]).exists()


def test_ingest_texts_in_memory(toy, toy_sae_dir, tmp_path):
    model, tokenizer, saes = toy
    texts = flores_lines("rus_Cyrl", 4)
    cfg = IngestConfig(model="toy", dataset="memory", langs=[], layers=["model.layers.1.mlp"],
                       local_sae_dir=str(toy_sae_dir), store=str(tmp_path / "s"), device="cpu")
    m = ingest_texts(texts, "ru", "probe-set", cfg, model=model, tokenizer=tokenizer)
    assert m["dataset"] == "probe-set" and m["lang"] == "ru" and m["n_docs"] == 4 and m["layers"] == [1]
    got = _store_tables(tmp_path / "s")["events"]
    want, _, _ = hand(model, tokenizer, {1: saes[1]}, texts)
    assert len(got) == len(want) and set(got["dataset"]) == {"probe-set"}
    got = got.with_columns(doc=(pl.col("doc_id") - (m["run_num"] << 40)).cast(pl.Int32),
                           layer=pl.col("layer").cast(pl.Int32))
    _same_events(got.select("doc", "pos", "layer", "feature", "act"), want)


def _ingest_cli(args: list[str]):
    return CliRunner().invoke(app, ["ingest", *args])


def test_cli_happy_path(toy_model_dir, toy_sae_dir, tmp_path):
    _write_txt(tmp_path / "ja.txt", flores_lines("jpn_Jpan", 5))
    res = _ingest_cli([str(toy_model_dir), str(tmp_path / "{lang}.txt"), "--lang", "ja", "--layer",
                       "model.layers.{2..3}.mlp", "--local-sae-dir", str(toy_sae_dir), "--store", str(tmp_path / "s"),
                       "--device", "cpu", "--end", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    (m,) = _manifests(tmp_path / "s")
    assert m["n_docs"] == 3 and m["layers"] == [2, 3] and m["status"] == "complete"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown-language", "unknown language"),
        ("missing-config", "no file"),
        ("missing-column", "text column 'body'"),
        ("empty-file", "is empty"),
        ("no-module", "matches no module"),
        ("sae-width", "has width 16"),
        ("sae-missing-hookpoint", "has no layers.1.mlp/cfg.json"),
        ("no-sae", "no SAE given"),
    ],
)
def test_cli_bad_input_writes_nothing(toy_model_dir, toy_sae_dir, tmp_path, case, message):
    from langfeat.toy import build_saes

    _write_txt(tmp_path / "en.txt", ["hello world"])
    (tmp_path / "notalanguage.txt").write_text("x\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "en.jsonl").write_text('{"text": "hi"}\n')
    dataset, lang, extra = str(tmp_path / "{lang}.txt"), "en", ["--local-sae-dir", str(toy_sae_dir)]
    layer = "model.layers.{0..1}.mlp"
    if case == "unknown-language":
        lang = "notalanguage"
    elif case == "missing-config":
        lang = "de"
    elif case == "missing-column":
        dataset, extra = str(tmp_path / "{lang}.jsonl"), [*extra, "--text-column", "body"]
    elif case == "empty-file":
        dataset = str(tmp_path / "empty.txt")
    elif case == "no-module":
        layer = "model.layers.{7..8}.mlp"
    elif case == "sae-width":
        build_saes(tmp_path / "narrow", [0, 1], d_in=16)
        extra = ["--local-sae-dir", str(tmp_path / "narrow")]
    elif case == "sae-missing-hookpoint":
        build_saes(tmp_path / "partial", [0])
        extra = ["--local-sae-dir", str(tmp_path / "partial")]
    elif case == "no-sae":
        extra = []
    store = tmp_path / "store"
    res = _ingest_cli([str(toy_model_dir), dataset, "--lang", lang, "--layer", layer, "--store", str(store),
                       "--device", "cpu", "--no-progress", *extra])
    assert res.exit_code != 0
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert not store.exists() or not _manifests(store)
    assert not (store / "data").exists() or not any((store / "data").glob("run_id=*/lang=*/docs/*.parquet"))


READER = r"""
import sys, time, json, duckdb
from pathlib import Path
root = Path(sys.argv[1]); deadline = time.time() + float(sys.argv[2])
glob = (root / "data").as_posix() + "/run_id=*/lang=*/docs/*.parquet"
seen = {}
queries = 0
while time.time() < deadline:
    last = (root / "DONE").exists()  # one more query after the writer has finished
    q = f"SELECT run_id, count(*) FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY run_id"
    rows = duckdb.sql(q).fetchall()
    for run_id, n in rows:
        seen.setdefault(run_id, set()).add(n)
    queries += 1
    if last:
        break
print(json.dumps({"queries": queries, "seen": {k: sorted(v) for k, v in seen.items()}}))
"""


def test_concurrent_read_sees_only_complete_runs(toy_model_dir, toy_sae_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = tmp_path / "store"
    layout = Layout(store)
    placeholder = layout.placeholder("docs")
    placeholder.parent.mkdir(parents=True)
    pq.write_table(pa.table({f.name: pa.array([], f.type) for f in arrow_schemas()["docs"]}), placeholder)
    langs = {"th": "tha_Thai", "hi": "hin_Deva", "ja": "jpn_Jpan", "de": "deu_Latn"}
    for tag, code in langs.items():
        _write_txt(tmp_path / f"{tag}.txt", flores_lines(code, 20))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(store), "120"], stdout=subprocess.PIPE, text=True,
                              env=env)
    cmd = [sys.executable, "-c", "from langfeat.cli import app; app()", "ingest", str(toy_model_dir),
           str(tmp_path / "{lang}.txt"),
           *[x for tag in langs for x in ("--lang", tag)], "--layer", "model.layers.{0..3}.mlp",
           "--local-sae-dir", str(toy_sae_dir), "--store", str(store), "--device", "cpu", "--shard-docs", "2",
           "--batch", "2", "--no-progress"]
    writer_proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    (store / "DONE").touch()
    out, _ = reader.communicate(timeout=60)
    assert writer_proc.returncode == 0, writer_proc.stderr
    assert reader.returncode == 0
    result = json.loads(out)
    assert result["queries"] > 5
    assert len(result["seen"]) == len(langs)  # every committed run, each complete
    for run_id, counts in result["seen"].items():
        assert counts == [0] if run_id == "_schema" else counts == [20], (run_id, counts)
