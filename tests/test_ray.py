"""The Ray engine writes the same store as the local engine: row for row, after a killed actor and after a killed
driver. One local Ray instance (2 CPUs) serves every test here; the workers are CPU actors on the toy model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest
import ray
import torch
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat.cli import app
from langfeat.errors import StoreError, UsageError
from langfeat.ingest import IngestConfig, ingest
from langfeat.store import writer
from langfeat.store.layout import LAYERED, TABLES, Layout

LAYERS = "model.layers.{0..3}.mlp"
LANGS = {"hi": "hin_Deva", "ja": "jpn_Jpan"}
N_DOCS = 7  # per language; shards of 2 documents: 4 shards per run, the last one short
TIMINGS = ("created_at", "finished_at")


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray instance for the whole test run (2 CPUs, a small object store, no dashboard)."""
    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray_corpus")
    for lang, code in LANGS.items():
        (folder / f"{lang}.txt").write_text("\n".join(flores_lines(code, N_DOCS)) + "\n", encoding="utf-8")
    return folder


def _config(corpus: Path, toy_model_dir: Path, toy_sae_dir: Path, store: Path, **engine) -> IngestConfig:
    return IngestConfig(
        model=str(toy_model_dir), dataset=str(corpus / "{lang}.txt"), langs=list(LANGS), layers=[LAYERS],
        local_sae_dir=str(toy_sae_dir), neurons=True, neuron_docs=True, batch=3, shard_docs=2, store=str(store),
        device="cpu", **engine,
    )


def _args(cfg: IngestConfig) -> list[str]:
    return ["ingest", cfg.model, cfg.dataset, "--lang", *cfg.langs, "--layer", LAYERS, "--local-sae-dir",
            cfg.local_sae_dir, "--neurons", "--neuron-docs", "--batch", "3", "--shard-docs", "2", "--store", cfg.store,
            "--device", "cpu", "--no-progress"]


def _tables(root: Path) -> dict[str, pl.DataFrame]:
    """Every store table, all columns, in a fixed row order."""
    con = duckdb.connect()
    out = {}
    for table in TABLES:
        sub = f"{table}/layer=*/*.parquet" if table in LAYERED else f"{table}/*.parquet"
        glob = f"{(root / 'data').as_posix()}/run_id=*/lang=*/{sub}"
        frame = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true)").pl()
        out[table] = frame.sort(frame.columns)
    return out


def _manifests(root: Path) -> dict[str, dict]:
    out = {}
    for path in (root / "runs").glob("[!_]*.json"):
        m = json.loads(path.read_text(encoding="utf-8"))
        out[m["lang"]] = {k: v for k, v in m.items() if k not in TIMINGS}
    return out


def _assert_same_store(got: Path, want: Path) -> None:
    a, b = _tables(got), _tables(want)
    for table in TABLES:
        assert len(b[table]) > 0 or (table == "neuron_counts" and not len(a[table])), table
        assert a[table].equals(b[table]), table
    assert _manifests(got) == _manifests(want)
    assert all(m["status"] == "complete" for m in _manifests(got).values())
    assert not any(Layout(got).work_dir.glob("*/lang=*"))  # nothing left staged


@pytest.fixture(scope="module")
def local_store(corpus, toy_model_dir, toy_sae_dir, tmp_path_factory) -> Path:
    """The single-process ingestion of the same command (1 torch thread, as in a 1-CPU Ray worker)."""
    store = tmp_path_factory.mktemp("ray_local") / "store"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ingest(_config(corpus, toy_model_dir, toy_sae_dir, store), progress=False)
    finally:
        torch.set_num_threads(threads)
    tables = _tables(store)
    assert len(tables["docs"]) == 2 * N_DOCS and len(tables["events"]) > 1000
    return store


def test_ray_store_equals_local(ray_address, corpus, toy_model_dir, toy_sae_dir, local_store, tmp_path):
    cfg = _config(corpus, toy_model_dir, toy_sae_dir, tmp_path / "store")
    res = CliRunner().invoke(app, [*_args(cfg), "--engine", "ray", "--workers", "2", "--cpus-per-worker", "1"])
    assert res.exit_code == 0, res.output
    _assert_same_store(tmp_path / "store", local_store)
    again = CliRunner().invoke(app, [*_args(cfg), "--engine", "ray"])  # complete runs: skipped, no pipeline
    assert again.exit_code == 0 and again.output.count("skipped (already complete)") == 2, again.output


def test_killed_actor_still_commits_identical_store(ray_address, corpus, toy_model_dir, toy_sae_dir, local_store,
                                                    tmp_path, monkeypatch):
    killed = tmp_path / "killed"
    # the first worker to finish writing shard 1's data files (its marker not yet written) is SIGKILLed
    monkeypatch.setenv("LANGFEAT_FAULT", f"shard-1:once:{killed}")
    cfg = _config(corpus, toy_model_dir, toy_sae_dir, tmp_path / "store", engine="ray", workers=2)
    manifests = ingest(cfg, progress=False)
    assert killed.exists()  # a worker did die mid-shard; Ray restarted it and retried the shard
    assert [m["status"] for m in manifests] == ["complete", "complete"]
    _assert_same_store(tmp_path / "store", local_store)


DRIVER = """
import sys
from langfeat.ingest import IngestConfig, ingest
store, dataset, model, saes, address = sys.argv[1:]
ingest(IngestConfig(model=model, dataset=dataset, langs=["hi", "ja"], layers=["model.layers.{0..3}.mlp"],
                    local_sae_dir=saes, neurons=True, neuron_docs=True, batch=3, shard_docs=2, store=store,
                    device="cpu", engine="ray", ray_address=address, workers=2), progress=False)
"""


def test_killed_driver_resumes_to_identical_store(ray_address, corpus, toy_model_dir, toy_sae_dir, local_store,
                                                  tmp_path):
    store = tmp_path / "store"
    cfg = _config(corpus, toy_model_dir, toy_sae_dir, store, engine="ray", workers=2)
    env = dict(os.environ, LANGFEAT_FAULT="ray-received")  # SIGKILL the driver once the first shard is done
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(store), cfg.dataset, cfg.model, cfg.local_sae_dir,
                           ray_address], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    layout = Layout(store)
    runs_left = {m["run_id"]: m for m in (json.loads(p.read_text()) for p in layout.runs_dir.glob("[!_]*.json"))}
    assert {m["status"] for m in runs_left.values()} == {"running"}  # killed: nothing committed, nothing visible
    assert not any(layout.data_dir.glob("run_id=[!_]*"))
    finished = {}  # staged files of the shards the killed driver's workers finished, by inode
    for run_id in runs_left:
        for shard in range(4):
            info = writer.shard_done(layout.run_work(run_id) / "_partials", shard)
            for rel in (info or {}).get("files", []):
                if rel.startswith("lang="):
                    finished[(run_id, rel)] = (layout.run_work(run_id) / rel).stat().st_ino
    assert finished, "the killed driver had received a finished shard"
    res = ingest(cfg, progress=False)
    assert [m["status"] for m in res] == ["complete", "complete"]
    _assert_same_store(store, local_store)
    for (run_id, rel), inode in finished.items():  # finished shards were kept, not redone
        assert (layout.run_data(run_id) / rel).stat().st_ino == inode, rel


def test_store_invisible_to_workers_is_a_clear_error(ray_address, corpus, toy_model_dir, toy_sae_dir, tmp_path,
                                                     monkeypatch):
    from langfeat import ingest_ray

    # the workers look for a probe the driver never wrote: what they see on a store folder they do not share
    monkeypatch.setattr(ingest_ray, "write_probe", lambda work: (str(tmp_path / "elsewhere"), "token"))
    cfg = replace(_config(corpus, toy_model_dir, toy_sae_dir, tmp_path / "store", engine="ray", workers=1),
                  langs=["hi"])
    with pytest.raises(StoreError, match=r"^the store .* is not visible to the Ray worker on host .*: put the store "
                                         r"on a filesystem every Ray node mounts") as err:
        ingest(cfg, progress=False)
    assert "\n" not in str(err.value)
    (m,) = _manifests(tmp_path / "store").values()
    assert m["status"] == "failed" and not any(Layout(tmp_path / "store").data_dir.glob("run_id=[!_]*"))


@pytest.mark.parametrize(("extra", "message"), [
    (["--workers", "2"], "--workers only apply to the Ray engine: add --engine ray"),
    (["--engine", "spark"], "unknown --engine 'spark': use one of local | ray"),
    (["--engine", "ray", "--workers", "0"], "--workers 0 is not positive"),
    (["--engine", "ray", "--cpus-per-worker", "0"], "--cpus-per-worker 0 is not positive"),
])
def test_engine_options_bad_input(extra, message, corpus, toy_model_dir, toy_sae_dir, tmp_path):
    cfg = _config(corpus, toy_model_dir, toy_sae_dir, tmp_path / "store")
    res = CliRunner().invoke(app, [*_args(cfg), *extra])
    assert res.exit_code == 2 and f"error: {message}" in res.output, res.output
    assert not (tmp_path / "store").exists()


def test_more_workers_than_the_cluster_holds(ray_address, corpus, toy_model_dir, toy_sae_dir, tmp_path):
    cfg = replace(_config(corpus, toy_model_dir, toy_sae_dir, tmp_path / "store", engine="ray", workers=3),
                  langs=["hi"])
    with pytest.raises(UsageError, match=r"^3 workers x 0 GPU, 1 CPU need 0 GPUs and 3 CPUs but the Ray cluster "
                                         r"has 0 GPUs and 2 CPUs: lower --workers"):
        ingest(cfg, progress=False)
