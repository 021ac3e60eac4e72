"""Run lifecycle under real processes: one writer per run, kills at every stage, SIGTERM, a full disk.

Ingestions run the CLI in subprocesses on the toy model; ``$LANGFEAT_FAULT`` (see ``runs.fault_point``) kills a
writer (SIGKILL) or holds it (``POINT:sleep:S``) at a named point. Every resumed store is compared row for row
with an uninterrupted one.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat.cli import app
from langfeat.errors import StoreError
from langfeat.store import open_store
from langfeat.store import runs as runs_mod
from langfeat.store.layout import Layout
from langfeat.store.verify import verify_store

N_DOCS = 7  # shards of 2 documents: 4 shards, the last one short
REPO = Path(__file__).resolve().parents[1]
TABLES = ("docs", "tokens", "events", "feature_counts", "neuron_counts", "neuron_docs")
SORT = {"docs": ["doc_id"], "tokens": ["doc_id", "pos"], "events": ["layer", "doc_id", "pos", "feature"],
        "feature_counts": ["layer", "feature"], "neuron_counts": ["layer", "neuron"],
        "neuron_docs": ["layer", "doc_id", "neuron"]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for tag, code in (("hi", "hin_Deva"), ("th", "tha_Thai")):
        (folder / f"{tag}.txt").write_text("\n".join(flores_lines(code, N_DOCS)) + "\n", encoding="utf-8")
    return folder


def ingest_args(toy_model_dir: Path, toy_sae_dir: Path, corpus: Path, store: Path, lang: str = "hi") -> list[str]:
    return ["ingest", str(toy_model_dir), str(corpus / "{lang}.txt"), "--lang", lang, "--layer",
            "model.layers.{0..3}.mlp", "--local-sae-dir", str(toy_sae_dir), "--neurons", "--neuron-docs", "--store",
            str(store), "--device", "cpu", "--shard-docs", "2", "--batch", "2", "--no-progress"]


def start(args: list[str], fault: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop(runs_mod.FAULT_ENV, None)
    if fault:
        env[runs_mod.FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-c", "from langfeat.cli import app; app()", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(args: list[str], fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = start(args, fault)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def tables(root: Path) -> dict[str, pl.DataFrame]:
    """Every data view of the store, sorted (the comparison unit of 'identical stores')."""
    with open_store(root) as st:
        return {t: st.sql(f"SELECT * FROM {t}").sort(SORT[t]) for t in TABLES}


def manifests(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*.json")) if not p.name.startswith("_")]


def same_store(a: Path, b: Path) -> None:
    ta, tb = tables(a), tables(b)
    for table in TABLES:
        assert ta[table].height > 0, table
        assert ta[table].equals(tb[table]), table
    strip = ("created_at", "finished_at", "source_path", "error")
    (ma,), (mb,) = manifests(a), manifests(b)
    assert {k: v for k, v in ma.items() if k not in strip} == {k: v for k, v in mb.items() if k not in strip}


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def live_lock(root: Path) -> bool:
    layout = Layout(root)
    return any(runs_mod.is_live(layout, p.name[:-5]) for p in layout.runs_dir.glob("*.lock"))


@pytest.fixture(scope="module")
def reference(toy_model_dir, toy_sae_dir, corpus, tmp_path_factory) -> Path:
    """An uninterrupted ingestion of hi."""
    store = tmp_path_factory.mktemp("ref") / "store"
    res = run_cli(ingest_args(toy_model_dir, toy_sae_dir, corpus, store))
    assert res.returncode == 0, res.stderr
    (m,) = manifests(store)
    assert m["status"] == "complete" and m["n_docs"] == N_DOCS and m["n_rows"]["docs"] == N_DOCS
    return store


# ---------------------------------------------------------------------------------------------------------------
# SIGKILL at every stage, then resume


@pytest.mark.parametrize("point", ["begin-owned", "begin", "shard-1", "commit", "commit-renamed", "commit-done"])
def test_kill_resume_identical(toy_model_dir, toy_sae_dir, corpus, reference, tmp_path, point):
    store = tmp_path / "store"
    args = ingest_args(toy_model_dir, toy_sae_dir, corpus, store)
    killed = run_cli(args, fault=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    layout = Layout(store)
    if point == "begin-owned":  # killed before the manifest was written: no run at all, only its lock file
        assert manifests(store) == []
        with open_store(store) as st:
            assert st.runs().height == 0 and st.sql("SELECT count(*) AS n FROM docs")["n"][0] == 0
        assert run_cli(args).returncode == 0
        same_store(reference, store)
        assert verify_store(store)[0] == []
        return
    (m,) = manifests(store)
    with open_store(store) as st:  # what a reader sees after the kill
        docs = st.sql("SELECT count(*) AS n FROM docs")["n"][0]
        status = st.runs()["status"].to_list()
    if point == "commit-done":
        assert m["status"] == "complete" and status == ["complete"] and docs == N_DOCS
        assert layout.run_work(m["run_id"]).exists()  # staging left behind: a leftover, not data
        problems, _ = verify_store(store)
        assert sorted((p.severity, p.path) for p in problems) == [
            ("leftover", f"_work/{m['run_id']}"), ("leftover", f"runs/{m['run_id']}.lock")]
    else:
        # data is visible exactly when the manifest says complete: here neither (even with data/ in place)
        assert m["status"] == "running" and status == ["running"] and docs == 0
        assert layout.run_data(m["run_id"]).exists() == (point == "commit-renamed")
        listed = CliRunner().invoke(app, ["runs", "--store", str(store), "-f", "csv"])
        assert listed.exit_code == 0 and pl.read_csv(listed.stdout.encode())["status"].to_list() == ["interrupted"]
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    if point == "commit-done":
        assert "already complete" in resumed.stderr
        # the rerun took the run's lock over (and removed its file); the staging is left for --repair
        assert verify_store(store, repair=True)[1] == [f"_work/{m['run_id']}"]
    same_store(reference, store)
    assert verify_store(store)[0] == []
    assert not list(store.rglob("*.tmp")) and not list(store.rglob(".trash-*"))


# ---------------------------------------------------------------------------------------------------------------
# one writer per run; different runs in parallel


def test_second_writer_of_a_run_stops_then_waits(toy_model_dir, toy_sae_dir, corpus, reference, tmp_path):
    store = tmp_path / "store"
    args = ingest_args(toy_model_dir, toy_sae_dir, corpus, store)
    first = start(args, fault="begin:sleep:300")  # holds the run until it is stopped
    wait_for(lambda: live_lock(store) and manifests(store))
    # the run is live: `runs` says running, not interrupted
    listed = CliRunner().invoke(app, ["runs", "--store", str(store), "-f", "csv"])
    assert pl.read_csv(listed.stdout.encode())["status"].to_list() == ["running"]
    second, third = start(args), start([*args, "--wait"])
    _, err = second.communicate(timeout=300)
    assert first.poll() is None and second.returncode == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: run ") and f"by pid {first.pid} on host " in lines[0]
    assert "--wait" in lines[0] and "Traceback" not in err
    assert manifests(store)[0]["status"] == "running"  # the second writer touched nothing
    time.sleep(2)
    first.send_signal(signal.SIGTERM)  # the owner stops; the waiting writer takes the run over and resumes it
    assert first.wait(timeout=120) == 143
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0 and "error" not in err, err
    same_store(reference, store)


def test_rm_refuses_a_live_run(toy_model_dir, toy_sae_dir, corpus, tmp_path):
    store = tmp_path / "store"
    first = start(ingest_args(toy_model_dir, toy_sae_dir, corpus, store), fault="begin:sleep:4")
    wait_for(lambda: live_lock(store) and manifests(store))
    (m,) = manifests(store)
    res = CliRunner().invoke(app, ["rm", m["run_id"], "--store", str(store)])
    assert res.exit_code == 2 and "is being written by pid" in res.stderr
    assert first.wait(timeout=120) == 0
    assert manifests(store)[0]["status"] == "complete"


def test_different_runs_in_parallel(toy_model_dir, toy_sae_dir, corpus, reference, tmp_path):
    store = tmp_path / "store"
    procs = [start(ingest_args(toy_model_dir, toy_sae_dir, corpus, store, lang), fault="begin:sleep:2")
             for lang in ("hi", "th")]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ms = manifests(store)
    assert sorted(m["run_num"] for m in ms) == [1, 2] and {m["status"] for m in ms} == {"complete"}
    with open_store(store) as st:
        per_lang = dict(st.sql("SELECT lang, count(*) AS n FROM docs GROUP BY lang").iter_rows())
        assert per_lang == {"hi": N_DOCS, "th": N_DOCS}
        ref = tables(reference)
        hi = st.sql("SELECT * FROM events WHERE lang = 'hi'").sort(SORT["events"])
        # doc ids carry the run number; everything else equals the lone run's events
        assert hi.drop("doc_id", "run_id").equals(ref["events"].drop("doc_id", "run_id"))
    assert verify_store(store)[0] == []


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM like SIGINT


def test_sigterm_fails_cleanly_and_resumes(toy_model_dir, toy_sae_dir, corpus, reference, tmp_path):
    store = tmp_path / "store"
    args = ingest_args(toy_model_dir, toy_sae_dir, corpus, store)
    proc = start(args, fault="begin:sleep:60")
    wait_for(lambda: live_lock(store) and manifests(store))  # begun: owned and its manifest written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "interrupted by SIGTERM: rerun the same command to resume"
    assert "Traceback" not in err
    (m,) = manifests(store)
    assert m["status"] == "failed" and m["error"] == "interrupted by SIGTERM: rerun the same command to resume"
    assert not live_lock(store)
    assert run_cli(args).returncode == 0
    same_store(reference, store)


# ---------------------------------------------------------------------------------------------------------------
# a full disk


def test_full_disk_one_line_error_then_identical_resume(toy_model_dir, toy_sae_dir, corpus, reference, tmp_path,
                                                        monkeypatch):
    import pyarrow.parquet as pq

    store = tmp_path / "store"
    args = ingest_args(toy_model_dir, toy_sae_dir, corpus, store)
    real = pq.write_table
    calls = []

    def full_disk(table, where, *a, **kw):
        if "_work" in Path(where).parts:
            calls.append(where)
        if len(calls) >= 9:  # shard 0 fits (8 files: 4 layers, docs, tokens, 2 partials), then the disk is full
            Path(where).write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *a, **kw)

    monkeypatch.setattr(pq, "write_table", full_disk)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the device writing ")
    assert "Traceback" not in res.output
    assert "rerun the same command to resume" in lines[0]
    (m,) = manifests(store)
    assert m["status"] == "failed" and not list(store.rglob("*.tmp"))
    monkeypatch.setattr(pq, "write_table", real)
    assert CliRunner().invoke(app, args).exit_code == 0
    same_store(reference, store)


def test_commit_refuses_staged_data_that_is_not_all_there(tmp_path):
    from factories import add_run

    layout = Layout(tmp_path / "s")
    m = add_run(layout, "en", "flores", ["hello", "a b"], {0: [(0, 0, 5, 1.5)]}, status="running")
    runs_mod.acquire_run(layout, m["run_id"])
    with pytest.raises(StoreError, match="the staged files hold 2 docs / 10 tokens but 3 docs / 6 tokens"):
        runs_mod.commit_run(layout, m, expect_docs=3, n_docs=3, n_tokens=6)
    assert manifests(layout.root)[0]["status"] == "running" and not layout.run_data(m["run_id"]).exists()
    runs_mod.release_run(layout, m["run_id"])
