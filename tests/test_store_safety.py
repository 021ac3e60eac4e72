"""Reading is safe: read-only stores, `langfeat sql` cannot write, exports stream, corrupt files are named,
`langfeat verify [--repair]`, evaluation runs stay out of identification."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from factories import add_run
from test_store import DE_EVENTS, EN_EVENTS
from typer.testing import CliRunner

from langfeat import stats
from langfeat.cli import app
from langfeat.errors import StoreError, UsageError
from langfeat.store import ensure_store, open_store, refresh_catalog
from langfeat.store import runs as runs_mod
from langfeat.store.layout import Layout
from langfeat.store.verify import verify_store

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(res, text: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], res.stderr
    assert "Traceback" not in res.output
    return lines[0]


@pytest.fixture()
def store(tmp_path) -> tuple[Layout, dict]:
    layout = ensure_store(tmp_path / "store")
    made = {
        "en": add_run(layout, "en", "flores", ["hello", "a b", "xyzw"], EN_EVENTS),
        "de": add_run(layout, "de", "flores", ["Hallo", "ja"], DE_EVENTS, start=10, neurons=True),
        "th": add_run(layout, "th", "flores", ["สวัสดี"], {0: [(0, 0, 1, 1.0)]}, status="running"),
    }
    refresh_catalog(layout.root)
    return layout, made


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path of the tree with its size and mtime (ns): equal snapshots = nothing written."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ---------------------------------------------------------------------------------------------------------------
# reads don't write; read-only stores


def test_reading_writes_nothing(store):
    layout, _ = store
    before = snapshot(layout.root)
    for args in (["sql", "SELECT count(*) FROM events"], ["runs"], ["views"], ["sql", "SELECT * FROM runs", "-f",
                                                                              "json"]):
        assert invoke(*args, "--store", str(layout.root)).exit_code == 0
    # a stale catalog is not rewritten by readers
    (layout.root / "catalog.duckdb").unlink()
    before = snapshot(layout.root)
    with open_store(layout.root) as st:
        assert st.sql("SELECT count(*) AS n FROM docs")["n"][0] == 5
    assert invoke("runs", "--store", str(layout.root)).exit_code == 0
    assert snapshot(layout.root) == before


def _can_bind_read_only() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / / && mount -o remount,ro,bind / /"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_bind_read_only(), reason="needs root and mount namespaces for a read-only bind mount")
def test_read_only_filesystem(store):
    """As root chmod is ignored, so the store is bind-mounted read-only in a private mount namespace."""
    layout, made = store
    (layout.root / "catalog.duckdb").unlink()  # stale or missing catalog: readers must not try to write one
    py = textwrap.dedent("""
        import sys
        from langfeat.cli import app
        sys.argv = ["langfeat", *sys.argv[1:]]
        app()
    """)
    root = str(layout.root)
    script = (f"mount --bind {root} {root} && mount -o remount,ro,bind {root} {root} && touch {root}/probe 2>/dev/null"
              f" && echo WRITABLE; {sys.executable} -c '{py}' sql 'SELECT lang, count(*) AS n FROM docs GROUP BY lang "
              f"ORDER BY lang' -f csv --store {root} && {sys.executable} -c '{py}' runs -f csv --store {root}"
              f" && {sys.executable} -c '{py}' verify --store {root} -f csv")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "WRITABLE" not in res.stdout
    assert res.returncode == 0, res.stderr  # verify too: the interrupted th run is only a warning
    out = res.stdout.splitlines()
    assert out[:3] == ["lang,n", "de,2", "en,3"]
    assert sum(line.startswith(made["th"]["run_id"]) and ",interrupted," in line for line in out) == 1


# ---------------------------------------------------------------------------------------------------------------
# `langfeat sql` is read-only


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("COPY (SELECT * FROM docs) TO '{out}'", "COPY"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("DROP VIEW docs", "DROP"),
        ("ATTACH '{out}' AS other", "ATTACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD json", "LOAD"),
        ("SET threads = 1", "SET"),
        ("PRAGMA threads = 1", "SET"),
        ("EXPORT DATABASE '{out}'", "EXPORT"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'", "COPY"),
        ("CALL pragma_version()", "CALL"),
    ],
)
def test_sql_refuses_writes(store, tmp_path, query, kind):
    layout, _ = store
    out = tmp_path / "written"
    before = snapshot(layout.root)
    res = invoke("sql", query.format(out=out), "--store", str(layout.root))
    line = one_line_error(res, f"`langfeat sql` is read-only: {kind} statements are refused")
    assert "--output" in line
    assert not out.exists() and snapshot(layout.root) == before


def test_sql_one_statement_and_locked_settings(store):
    layout, _ = store
    one_line_error(invoke("sql", "SELECT 1; DROP VIEW docs", "--store", str(layout.root)),
                   "runs exactly one statement, got 2")
    import duckdb

    with open_store(layout.root) as st:
        assert st.read_only_sql("SELECT count(*) AS n FROM docs")["n"][0] == 5
        with pytest.raises(duckdb.Error, match="locked"):  # after a read-only query the configuration is locked
            st.con.execute("SET threads = 1")
        assert st.read_only_sql("SELECT 1").height == 1
    for q in ("EXPLAIN SELECT * FROM docs", "DESCRIBE docs", "SUMMARIZE docs", "WITH a AS (SELECT 1 AS x) FROM a",
              "SHOW TABLES", "VALUES (1)"):
        assert invoke("sql", q, "--store", str(layout.root), "-f", "csv").exit_code == 0, q


# ---------------------------------------------------------------------------------------------------------------
# exports stream


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_streams_batches_and_equals_materialised(store, tmp_path, monkeypatch, fmt):
    """The csv/json/parquet path reads record batches and never materialises the result as one frame."""
    from langfeat.store.database import Store

    layout, _ = store
    query = "SELECT * FROM events ORDER BY run_id, layer, doc_id, pos, feature"
    with open_store(layout.root) as st:
        expected = st.sql(query)
    import pyarrow as pa

    seen: list[int] = []
    real_stream = Store.stream

    def small_batches(self, q, batch_rows=65_536):
        reader = real_stream(self, q, batch_rows=2)

        def counted():
            for batch in reader:
                seen.append(batch.num_rows)
                yield batch

        return pa.RecordBatchReader.from_batches(reader.schema, counted())

    monkeypatch.setattr(Store, "stream", small_batches)
    monkeypatch.setattr(Store, "sql", lambda *a, **k: pytest.fail("materialised the export"))
    out = tmp_path / f"e.{fmt}"
    res = invoke("sql", query, "--store", str(layout.root), "-f", fmt, "-o", str(out))
    assert res.exit_code == 0, res.output
    assert seen == [2, 2, 2, 2, 1]  # 9 events in batches of 2
    got = {"csv": lambda: pl.read_csv(out, schema=expected.schema), "parquet": lambda: pl.read_parquet(out),
           "json": lambda: pl.DataFrame(json.loads(out.read_text()), schema=expected.schema)}[fmt]()
    assert got.equals(expected)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_to_stdout_and_empty_results(store):
    layout, _ = store
    res = invoke("sql", "SELECT lang, layers FROM runs WHERE false", "--store", str(layout.root), "-f", "csv")
    assert res.exit_code == 0 and res.stdout == "lang,layers\n"
    res = invoke("sql", "SELECT 1 AS a WHERE false", "--store", str(layout.root), "-f", "json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    res = invoke("sql", "SELECT x AS a FROM range(3) t(x)", "--store", str(layout.root), "-f", "json")
    assert json.loads(res.stdout) == [{"a": 0}, {"a": 1}, {"a": 2}]
    one_line_error(invoke("sql", "SELECT 1", "--store", str(layout.root), "-f", "csv", "-o",
                          str(layout.root / "nope" / "x.csv")), "does not exist")


STREAM = r"""
import resource, sys
from langfeat.cli import app
sys.argv = ["langfeat", "sql", sys.argv[2], "--store", sys.argv[1], "-f", "csv", "-o", sys.argv[3]]
try:
    app()
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_export_memory_bounded(tmp_path):
    """Peak RSS exporting 4 M rows as CSV stays within 150 MB of exporting 1 row (materialising needs ~1 GB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    layout = ensure_store(tmp_path / "s")
    query = "SELECT x AS doc_id, x % 97 AS feature, 'some text to make rows wide' AS t FROM range({n}) r(x)"
    peaks = []
    for n in (1, 4_000_000):
        out = tmp_path / f"out{n}.csv"
        res = subprocess.run([sys.executable, "-c", STREAM, str(layout.root), query.format(n=n), str(out)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        peaks.append(int(res.stdout.strip().splitlines()[-1]) / 1024)  # MB
        assert sum(1 for _ in open(out)) == n + 1
    assert peaks[1] - peaks[0] < 150, peaks


# ---------------------------------------------------------------------------------------------------------------
# corrupt files are named; the rest of the store stays usable


def _first_run(made: dict) -> str:
    """The complete run whose id sorts first (its files come first in every glob)."""
    return min(made["en"]["run_id"], made["de"]["run_id"])


def test_truncated_parquet_is_named_with_the_fix(store):
    layout, made = store
    bad = _first_run(made)
    lang = "en" if bad == made["en"]["run_id"] else "de"
    good = made["de" if lang == "en" else "en"]["run_id"]
    path = layout.run_data(bad) / f"lang={lang}" / "docs" / "part-0.parquet"
    path.write_bytes(path.read_bytes()[:40])
    rel = path.relative_to(layout.root).as_posix()
    line = one_line_error(invoke("sql", "SELECT count(*) FROM docs", "--store", str(layout.root)),
                          f"store file {rel} is corrupt")
    assert f"`langfeat rm {bad}`" in line and "fix that SQL file" not in line
    # the rest still works: other runs' data, runs, views, other tables
    res = invoke("sql", f"SELECT count(*) AS n FROM docs WHERE run_id = '{good}'", "--store", str(layout.root), "-f",
                 "csv")
    assert res.exit_code == 0 and res.stdout.splitlines()[1] in ("2", "3")
    assert invoke("runs", "--store", str(layout.root)).exit_code == 0
    assert invoke("sql", "SELECT count(*) FROM events", "--store", str(layout.root)).exit_code == 0
    problems, _ = verify_store(layout.root)
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.path, p.fix) for p in errors] == [(rel, f"remove the run with `langfeat rm {bad}` and ingest it again")]
    assert invoke("rm", bad, "--store", str(layout.root)).exit_code == 0
    assert [p for p in verify_store(layout.root)[0] if p.severity == "error"] == []


def test_truncated_manifest_is_skipped_and_named(store):
    layout, made = store
    mpath = layout.manifest(made["de"]["run_id"])
    mpath.write_text(mpath.read_text()[:50])
    with open_store(layout.root) as st:
        assert sorted(st.runs()["lang"].to_list()) == ["en", "th"]
        assert st.sql("SELECT DISTINCT lang FROM docs")["lang"].to_list() == ["en"]  # de's data is hidden too
    res = invoke("runs", "--store", str(layout.root), "-f", "csv")
    assert res.exit_code == 0 and made["de"]["run_id"] not in res.stdout
    (err,) = [p for p in verify_store(layout.root)[0] if p.severity == "error"]
    de = made["de"]["run_id"]
    assert err.path == f"runs/{de}.json" and err.fix.startswith(f"`langfeat rm {de}`")
    with pytest.raises(StoreError, match=f"is corrupt .*`langfeat rm {made['de']['run_id']}`"):
        runs_mod.read_manifest(layout, made["de"]["run_id"])
    assert invoke("rm", made["de"]["run_id"], "--store", str(layout.root)).exit_code == 0
    assert not mpath.exists() and not layout.run_data(made["de"]["run_id"]).exists()


# ---------------------------------------------------------------------------------------------------------------
# verify / --repair


def test_verify_clean_and_leftovers_repaired(store):
    layout, made = store
    root = layout.root
    res = invoke("verify", "--store", str(root), "-f", "csv")
    assert res.exit_code == 0, res.output  # the interrupted th run is a warning
    rows = pl.read_csv(io.StringIO(res.stdout))
    assert rows.select("severity", "path").rows() == [("warning", f"runs/{made['th']['run_id']}.json")]
    dead = "99999999"  # above any pid: a process that is gone
    leftovers = {
        f".catalog-{dead}-abcd1234.duckdb": "file", f".catalog-{dead}-abcd1234.duckdb.wal": "file",
        f"sets/.tmp-myset.{dead}.abcd1234": "dir", f"data/.trash-run_id=x.{dead}.0123abcd": "dir",
        f"runs/.{made['en']['run_id']}.json.{dead}.12345678.tmp": "file", f"_work/{made['en']['run_id']}": "dir",
        f"runs/{made['de']['run_id']}.lock": "file",
    }
    busy = "sets/.tmp-other.1.abcd1234"  # pid 1 is alive: a write in progress, not a leftover
    for rel, kind in {**leftovers, busy: "dir"}.items():
        p = root / rel
        if kind == "dir":
            (p / "x").mkdir(parents=True)
            (p / "x" / "part-0.parquet").write_bytes(b"junk")
        else:
            p.write_bytes(b"junk")
    data_before = {k: v for k, v in snapshot(root).items() if k.startswith(("data/run_id=", "sets/name=", "results/"))}
    res = invoke("verify", "--store", str(root), "-f", "csv")
    assert res.exit_code == 1
    found = pl.read_csv(io.StringIO(res.stdout)).filter(pl.col("severity") == "leftover")["path"].to_list()
    assert sorted(found) == sorted(leftovers)
    res = invoke("verify", "--repair", "--store", str(root), "-f", "csv")
    assert res.exit_code == 0, res.output
    assert sorted(line.removeprefix("removed ") for line in res.stderr.splitlines() if line.startswith("removed")
                  ) == sorted(leftovers)
    assert not any((root / rel).exists() for rel in leftovers)
    assert {k: v for k, v in snapshot(root).items() if k in data_before} == data_before  # never data
    assert (root / busy).is_dir()
    shutil.rmtree(root / busy)
    assert invoke("verify", "--store", str(root)).exit_code == 0


def test_verify_finds_row_count_mismatch_and_orphan_data(store):
    layout, made = store
    import pyarrow.parquet as pq

    en = made["en"]["run_id"]
    path = layout.run_data(en) / "lang=en" / "docs" / "part-0.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 2), path)  # a readable file with a row missing
    shutil.copytree(layout.run_data(made["de"]["run_id"]), layout.data_dir / "run_id=feedbeef0000")
    errors = [(p.path, p.problem) for p in verify_store(layout.root)[0] if p.severity == "error"]
    assert errors == [
        (f"data/run_id={en}/lang=en/docs/part-0.parquet", "2 rows, the commit recorded 3"),
        (f"data/run_id={en}", "2 rows in docs, manifest n_docs says 3"),
        ("data/run_id=feedbeef0000", "data without a manifest (invisible to every view)"),
    ]
    assert invoke("rm", "feedbeef0000", "--store", str(layout.root)).exit_code == 0
    assert not (layout.data_dir / "run_id=feedbeef0000").exists()


# ---------------------------------------------------------------------------------------------------------------
# evaluation runs never feed identification unless asked


def _set_role(layout: Layout, run_id: str, role: str | None) -> None:
    path = layout.manifest(run_id)
    m = json.loads(path.read_text())
    if role is None:
        m.pop("role", None)
    else:
        m["role"] = role
    path.write_text(json.dumps(m))


def test_eval_runs_excluded_from_identify(tmp_path):
    layout = ensure_store(tmp_path / "s")
    en = add_run(layout, "en", "flores", ["hello", "a b", "xyzw"], EN_EVENTS, sae_layers=[0, 2])["run_id"]
    de = add_run(layout, "de", "flores", ["Hallo", "ja"], DE_EVENTS, sae_layers=[0, 2])["run_id"]
    th = add_run(layout, "th", "flores", ["x"], {0: [(0, 0, 1, 1.0)]}, status="running", sae_layers=[0])["run_id"]

    def selected(**kw) -> list[str]:
        return sorted(stats.select_runs(layout.root, **kw)["run_id"].to_list())

    _set_role(layout, en, None)  # a manifest from before roles: an identification run
    with open_store(layout.root) as st:
        assert dict(st.runs().select("run_id", "role").iter_rows())[en] == "identify"
    assert selected() == sorted([de, en])
    _set_role(layout, de, "eval")
    assert selected() == [en]
    assert selected(role="eval") == [de]
    assert selected(role=None) == sorted([de, en])
    assert selected(runs=[de[:6]]) == [de]  # explicit selection: any role
    _set_role(layout, en, "eval")
    with pytest.raises(UsageError, match=r"are all evaluation runs .*--role eval"):
        stats.select_runs(layout.root)
    with pytest.raises(UsageError, match="is not complete"):
        stats.select_runs(layout.root, runs=[th])


def test_classify_ingests_eval_runs(monkeypatch, tmp_path):
    """classify's own ingestion records role 'eval'; a later plain ingest of the same texts promotes it."""
    import langfeat.ingest as ingest_mod
    from langfeat.experiments import classify

    seen = []
    monkeypatch.setattr(classify, "load_model", lambda *a, **k: (object(), object()))
    monkeypatch.setattr(classify, "base_prefix", lambda model: "model")
    monkeypatch.setattr(ingest_mod, "ingest", lambda config, *a, **k: seen.append(config) or [{"run_id": "r"}])
    opts = classify.ClassifyOptions(dataset="d", langs=["en"], model="m", sae_model="s", store=str(tmp_path / "s"))
    source = type("S", (), {"dataset": "d", "config": "en", "split": "train", "start": 0, "end": None,
                            "template": None, "lang": type("L", (), {"tag": "en"})()})()
    assert classify.ensure_runs(opts, [source], [0], log=lambda _: None) == [{"run_id": "r"}]
    assert [c.role for c in seen] == ["eval"]
    # begin_run: an eval run ingested again as an identification run becomes one
    layout = Layout(tmp_path / "s")
    m = add_run(layout, "en", "flores", ["hi"], {0: [(0, 0, 1, 1.0)]})
    _set_role(layout, m["run_id"], "eval")
    record = {k: m[k] for k in runs_mod.IDENTITY_KEYS if k in m}
    again, done = runs_mod.begin_run(layout, dict(record, role="identify"))
    assert done and again["role"] == "identify" and runs_mod.read_manifest(layout, m["run_id"])["role"] == "identify"
