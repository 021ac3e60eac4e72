"""The store: placeholders, the raw views, Store methods, catalog.duckdb (no model needed: files written here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from factories import add_run, write_set, write_table

import langfeat
from langfeat import store as store_mod
from langfeat.errors import StoreError, UsageError
from langfeat.store import Store, ensure_store, open_store, refresh_catalog
from langfeat.store import runs as runs_mod
from langfeat.store.layout import Layout, arrow_schemas, doc_id

RAW_VIEWS = [
    "runs", "docs", "tokens", "events", "feature_counts", "neuron_counts", "languages", "feature_sets",
    "feature_set_params",
]


EN_EVENTS = {0: [(0, 0, 5, 1.5), (0, 1, 7, 0.25), (1, 0, 5, 2.0), (2, 3, 9, 0.5)], 2: [(1, 2, 3, 4.0)]}
DE_EVENTS = {0: [(0, 0, 5, 1.0), (1, 1, 5, 3.0)], 2: [(0, 1, 3, 0.125), (1, 1, 4, 0.75)]}


@pytest.fixture()
def populated(tmp_path):
    """A store with complete runs en (3 docs) and de (2 docs, neurons too), a running th and a failed en run."""
    layout = ensure_store(tmp_path / "store")
    en = add_run(layout, "en", "flores", ["hello", "a b", "xyzw"], EN_EVENTS)
    de = add_run(layout, "de", "flores", ["Hallo", "ja"], DE_EVENTS, start=10, neurons=True)
    th = add_run(layout, "th", "flores", ["สวัสดี"], {0: [(0, 0, 1, 1.0)]}, status="running")
    bad = add_run(layout, "en", "ntrex", ["zz"], {0: [(0, 0, 1, 1.0)]}, status="failed")
    return layout, {"en": en, "de": de, "th": th, "bad": bad}


def test_ensure_store_placeholders_idempotent(tmp_path):
    layout = ensure_store(tmp_path / "s")
    schemas = arrow_schemas()
    assert {"events", "docs", "tokens", "feature_counts", "neuron_counts", "feature_sets"} <= set(schemas)
    stamps = {}
    for table, schema in schemas.items():
        path = layout.placeholder(table)
        assert pq.read_metadata(path).num_rows == 0
        assert pq.read_schema(path).remove_metadata().equals(schema)
        stamps[table] = path.stat().st_mtime_ns
    ensure_store(tmp_path / "s")
    assert {t: layout.placeholder(t).stat().st_mtime_ns for t in schemas} == stamps
    assert runs_mod.all_manifests(layout) == []  # the runs placeholder is no manifest
    assert not [p for p in layout.root.rglob("*.tmp")]


def test_stale_placeholder_rewritten(tmp_path):
    layout = ensure_store(tmp_path / "s")
    bad = pa.schema([pa.field("x", pa.int32())])
    pq.write_table(bad.empty_table(), layout.placeholder("docs"))
    with open_store(layout.root) as store:
        assert store.columns("docs") == {
            "run_id": "VARCHAR", "doc_id": "BIGINT", "dataset": "VARCHAR", "lang": "VARCHAR", "row": "BIGINT",
            "n_tokens": "INTEGER", "text": "VARCHAR",
        }
    assert pq.read_schema(layout.placeholder("docs")).remove_metadata().equals(arrow_schemas()["docs"])


def test_empty_store_every_view_has_zero_rows(tmp_path):
    with open_store(tmp_path / "s", create=True) as store:
        views = store.views()
        assert set(RAW_VIEWS) <= set(views)
        for view in views:
            assert store.sql(f'SELECT count(*) AS n FROM "{view}"')["n"][0] == 0, view
        assert store.runs().columns[:4] == ["run_id", "run_num", "kind", "status"]


def test_runs_view_lists_every_status(populated):
    layout, made = populated
    with open_store(layout.root) as store:
        runs = store.runs()
        assert runs["run_id"].to_list() == [made[k]["run_id"] for k in ("en", "de", "th", "bad")]
        assert runs["run_num"].to_list() == [1, 2, 3, 4]
        assert runs["status"].to_list() == ["complete", "complete", "running", "failed"]
        assert runs["n_docs"].to_list() == [3, 2, None, None]
        assert runs["n_tokens"].to_list() == [6 + 4 + 5, 6 + 3, None, None]
        assert runs["layers"].to_list() == [[0, 2], [0, 2], [0], [0]]
        assert runs["error"].to_list() == [None, None, None, "boom"]
        assert runs["end"].to_list() == [3, 12, 1, 1]
        assert runs.schema["created_at"] == pl.Datetime("us", "UTC")
        versions = json.loads(runs["versions"][0])
        assert versions["duckdb"] == duckdb.__version__
        for col in ("run_id", "model", "sae_model", "dataset", "split", "config", "start", "end", "template",
                    "layers", "dtype", "created_at", "status", "versions", "lang", "lang_name", "neurons", "bos"):
            assert col in runs.columns
        assert store.runs(status="complete")["lang"].to_list() == ["en", "de"]


def test_docs_tokens_only_complete_runs(populated):
    layout, made = populated
    with open_store(layout.root) as store:
        docs = store.sql("SELECT * FROM docs ORDER BY doc_id")
        en, de = made["en"]["run_num"], made["de"]["run_num"]
        assert docs["doc_id"].to_list() == [doc_id(en, 0), doc_id(en, 1), doc_id(en, 2), doc_id(de, 10),
                                            doc_id(de, 11)]
        assert docs["lang"].to_list() == ["en", "en", "en", "de", "de"]
        assert docs["run_id"].to_list() == [made["en"]["run_id"]] * 3 + [made["de"]["run_id"]] * 2
        assert docs["row"].to_list() == [0, 1, 2, 10, 11]
        assert docs["text"].to_list() == ["hello", "a b", "xyzw", "Hallo", "ja"]
        assert docs.columns[:7] == ["run_id", "doc_id", "dataset", "lang", "row", "n_tokens", "text"]
        # tokens: per doc, n_tokens rows; the text of doc 0 rebuilt from its token ids
        per_doc = store.sql("SELECT doc_id, count(*) AS n FROM tokens GROUP BY doc_id ORDER BY doc_id")
        assert per_doc["n"].to_list() == docs["n_tokens"].to_list()
        ids = store.tokens(doc_id=doc_id(en, 0)).sort("pos")["token_id"].to_list()
        assert ids[0] == 1 and "".join(map(chr, ids[1:])) == "hello"
        # nothing of the running or the failed run is visible
        assert store.sql("SELECT count(*) AS n FROM docs WHERE lang = 'th' OR dataset = 'ntrex'")["n"][0] == 0
        assert store.docs(lang="th").height == 0


def test_events_partitions_and_counts(populated):
    layout, made = populated
    with open_store(layout.root) as store:
        ev = store.events()
        assert ev.columns == ["run_id", "dataset", "lang", "layer", "doc_id", "pos", "feature", "act"]
        assert ev.schema["layer"] == pl.Int32 and ev.schema["act"] == pl.Float32
        assert ev.height == sum(len(v) for v in EN_EVENTS.values()) + sum(len(v) for v in DE_EVENTS.values())
        got = store.sql(
            "SELECT lang, layer, feature, count(*) AS n, sum(act) AS s FROM events GROUP BY ALL ORDER BY ALL"
        )
        expected = sorted(
            (lang, layer, f, sum(1 for e in evs if e[2] == f), sum(e[3] for e in evs if e[2] == f))
            for lang, table in (("en", EN_EVENTS), ("de", DE_EVENTS))
            for layer, evs in table.items() for f in {e[2] for e in evs}
        )
        assert got.rows() == expected  # activations chosen exact in float16
        assert store.events(layer=2, lang="en")[["pos", "feature", "act"]].rows() == [(2, 3, 4.0)]
        assert store.events(run_id=made["de"]["run_id"], layer=[0, 2]).height == 4
        # join events to docs: the text behind each event
        joined = store.sql(
            "SELECT d.text, e.pos FROM events e JOIN docs d USING (doc_id) WHERE e.feature = 9"
        )
        assert joined.rows() == [("xyzw", 3)]


def test_counts_views(populated):
    layout, made = populated
    with open_store(layout.root) as store:
        fc = store.feature_counts(lang="en", layer=0).sort("feature")
        assert fc.columns == ["run_id", "lang", "layer", "feature", "tok_count", "doc_count", "act_sum", "act_max",
                              "act_min"]
        assert fc.select("feature", "tok_count", "doc_count", "act_sum", "act_max", "act_min").rows() == [
            (5, 2, 2, 3.5, 2.0, 1.5), (7, 1, 1, 0.25, 0.25, 0.25), (9, 1, 1, 0.5, 0.5, 0.5),
        ]
        # counts agree with an aggregate over the events themselves
        agg = store.sql(
            "SELECT run_id, layer, feature, count(*) AS tok_count, count(DISTINCT doc_id) AS doc_count "
            "FROM events GROUP BY ALL ORDER BY ALL"
        )
        assert store.sql(
            "SELECT run_id, layer, feature, tok_count, doc_count FROM feature_counts ORDER BY ALL"
        ).rows() == agg.rows()
        nc = store.neuron_counts()
        assert set(nc["run_id"]) == {made["de"]["run_id"]}
        assert nc.sort("layer", "neuron")["neuron"].to_list() == [5, 3, 4]


def test_materialized_views_are_computed_once_and_read_by_the_views_above(populated):
    layout, _made = populated
    with open_store(layout.root) as store:
        before = store.sql("SELECT * FROM docs ORDER BY ALL")
        with store.materialized("runs") as same:
            assert same is store
            assert store.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE temporary")["n"][0] == 1
            add_run(layout, "fr", "flores", ["bonjour"], {0: [(0, 0, 2, 1.0)]})  # written meanwhile
            assert store.sql("SELECT * FROM docs ORDER BY ALL").equals(before)  # docs reads the computed runs
            assert "fr" not in store.runs()["lang"].to_list()
            with store.materialized("runs"):  # nested: the enclosing block's table is shared, not made again
                assert "fr" not in store.runs()["lang"].to_list()
            assert store.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE temporary")["n"][0] == 1
        assert store.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE temporary")["n"][0] == 0
        assert store.sql("SELECT lang FROM docs WHERE lang = 'fr'")["lang"].to_list() == ["fr"]
        with pytest.raises(RuntimeError), store.materialized("runs"):
            raise RuntimeError("dropped on the way out")
        assert store.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE temporary")["n"][0] == 0
        with pytest.raises(UsageError, match="no view named 'nope'"), store.materialized("nope"):
            pass


def test_temporary_tables_and_arrays(populated):
    """A temporary result is read by later queries inside the block and gone after it (also on an error); arrays
    returns the columns as numpy arrays, the same values as the frame."""
    layout, _made = populated
    with open_store(layout.root) as store:
        want = store.sql("SELECT doc_id, pos, act FROM events ORDER BY doc_id, pos, feature")
        with store.temporary("ev", "SELECT doc_id, pos, feature, act FROM events WHERE pos >= ?", [0]):
            got = store.arrays("SELECT doc_id, pos, act FROM ev ORDER BY doc_id, pos, feature")
            assert isinstance(got["act"], np.ndarray) and got["act"].dtype == np.float32
            for col in want.columns:
                assert got[col].tolist() == want[col].to_list()
        assert store.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE temporary")["n"][0] == 0
        with pytest.raises(RuntimeError), store.temporary("ev", "SELECT 1 AS one"):
            raise RuntimeError("dropped on the way out")
        assert store.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE temporary")["n"][0] == 0
        with pytest.raises(UsageError, match="SQL error"), store.temporary("ev", "SELECT * FROM no_such_view"):
            pass


def test_languages_view(populated):
    layout, _ = populated
    with open_store(layout.root) as store:
        langs = store.languages()
        assert langs.columns == ["lang", "lang_name", "runs", "datasets", "docs", "tokens"]
        assert langs.rows() == [("en", "English", 1, ["flores"], 3, 15), ("de", "German", 1, ["flores"], 2, 9)]


def test_placeholder_partition_excluded(populated):
    layout, _ = populated
    base = layout.data_dir / "run_id=_schema" / "lang=und"
    write_table(base / "docs" / "extra.parquet", "docs",
                {"doc_id": [1], "dataset": ["x"], "row": [0], "n_tokens": [1], "text": ["x"]})
    write_table(base / "events" / "layer=-1" / "extra.parquet", "events",
                {"doc_id": [1], "pos": [0], "feature": [1], "act": [1.0], "dataset": ["x"]})
    with open_store(layout.root) as store:
        assert store.sql("SELECT count(*) AS n FROM docs")["n"][0] == 5
        assert store.sql("SELECT count(*) AS n FROM events WHERE layer = -1 OR lang = 'und'")["n"][0] == 0


def test_feature_sets_and_params(populated):
    layout, _ = populated
    rows = {"algorithm": ["sae-lape", "sae-lape"], "kind": ["sae", "sae"], "lang": ["en", "de"], "layer": [0, 2],
            "feature": [7, 4], "entropy": [0.1, 0.2], "prob": [0.5, 0.6], "act_max": [1.0, 2.0],
            "act_min": [0.0, 0.5], "act_avg": [0.5, 1.0], "rank": [0, 0]}
    write_set(layout.root, "demo", pl.DataFrame(rows), params={"algorithm": "sae-lape", "r": 0.5})
    with open_store(layout.root) as store:
        fs = store.feature_sets().sort("lang")
        assert fs.columns[0] == "name" and set(fs["name"]) == {"demo"}
        assert fs.select("lang", "layer", "feature").rows() == [("de", 2, 4), ("en", 0, 7)]
        params = store.sql("SELECT name, params->>'r' AS r, params->>'algorithm' AS a FROM feature_set_params")
        assert params.rows() == [("demo", "0.5", "sae-lape")]


def test_view_filters_and_errors(populated):
    layout, _ = populated
    with open_store(layout.root) as store:
        assert store.view("docs", lang=["en", "de"], run_id=None).height == 5
        assert store.view("docs", lang=[]).height == 0
        assert store.view("runs", status=("running", "failed"))["lang"].sort().to_list() == ["en", "th"]
        with pytest.raises(UsageError, match="has no column 'nope'"):
            store.view("docs", nope=1)
        with pytest.raises(UsageError, match="no view named 'nope'"):
            store.view("nope")
        with pytest.raises(UsageError) as err:
            store.sql("SELEC 1")
        assert "\n" not in str(err.value) and str(err.value).startswith("SQL error: Parser Error")
        assert store.sql("SELECT $a + 1 AS x", {"a": 41})["x"].to_list() == [42]
        assert store.sql("SELECT count(*) AS n FROM docs WHERE lang = ?", ["en"])["n"][0] == 3
        assert isinstance(store.sql("CREATE TEMP TABLE t AS SELECT 1 AS a"), pl.DataFrame)
        assert store.sql("SELECT a FROM t")["a"].to_list() == [1]


def test_open_store_errors(tmp_path, monkeypatch):
    with pytest.raises(StoreError, match=r"^no langfeat store at .*missing: run `langfeat ingest"):
        open_store(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="is not a langfeat store"):
        open_store(tmp_path / "plain")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_store(tmp_path / "afile")
    monkeypatch.setenv("LANGFEAT_STORE", str(tmp_path / "from_env"))
    with langfeat.open_store(create=True) as store:
        assert store.root == (tmp_path / "from_env").resolve()
    assert (tmp_path / "from_env" / "runs").is_dir()


# ---------------------------------------------------------------------------------------------------------------
# catalog.duckdb


def test_catalog_has_same_views(populated):
    layout, _ = populated
    refresh_catalog(layout.root)  # what every writing command does
    with Store(layout, catalog=False) as store:  # the views run from the SQL files
        views = store.views()
        expected = {v: store.sql(f'SELECT * FROM "{v}"') for v in ("runs", "docs", "events", "languages")}
    with duckdb.connect(str(layout.catalog), read_only=True) as con:
        names = [r[0] for r in con.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' ORDER BY 1"
        ).fetchall()]
        assert names == views
        con.execute("SET TimeZone = 'UTC'")
        for view, frame in expected.items():
            got = con.sql(f'SELECT * FROM "{view}"').pl()
            keys = [c for c in got.columns if got[c].dtype != pl.List(pl.Int32) and c != "layers"]
            assert got.sort(keys).equals(frame.sort(keys)), view
        meta = dict(con.sql("SELECT key, value FROM langfeat_meta").fetchall())
    assert meta["store_path"] == layout.root.as_posix()
    assert meta["schema_version"] == (Path(store_mod.__file__).parents[2] / "db" / "VERSION").read_text().strip()
    assert meta["langfeat_version"] == langfeat.__version__
    assert set(meta) == {"schema_version", "langfeat_version", "store_path", "sql_hash", "built_at"}


def _database(store: Store) -> str:
    return store.con.sql("SELECT current_database()").fetchall()[0][0]


def test_open_store_uses_the_catalog_only_when_current(populated):
    layout, _ = populated
    query = "SELECT * FROM docs ORDER BY run_id, doc_id"
    with Store(layout, catalog=False) as store:
        assert _database(store) == "memory"
        expected = store.sql(query)
    assert expected.height > 0
    refresh_catalog(layout.root)
    with open_store(layout.root) as store:
        assert _database(store) == "catalog"  # read-only, no view file executed
        assert store.sql(query).equals(expected)
        assert store.views() == Store(layout, catalog=False).views()
    with duckdb.connect(str(layout.catalog)) as con:
        con.execute("UPDATE langfeat_meta SET value = 'other' WHERE key = 'sql_hash'")
    with open_store(layout.root) as store:  # stale (another langfeat's SQL): views run from this one's files
        assert _database(store) == "memory"
        assert store.sql(query).equals(expected)
    layout.catalog.write_bytes(b"not a database")
    with open_store(layout.root) as store:
        assert _database(store) == "memory"
        assert store.sql(query).equals(expected)


def test_catalog_rebuilt_when_stale_or_moved(tmp_path):
    layout = ensure_store(tmp_path / "a")
    assert not layout.catalog.exists()
    assert refresh_catalog(layout.root) is True
    built = store_mod.catalog_meta(layout.root)["built_at"]
    assert refresh_catalog(layout.root) is True  # current: not rebuilt
    assert store_mod.catalog_meta(layout.root)["built_at"] == built
    with duckdb.connect(str(layout.catalog)) as con:
        con.execute("UPDATE langfeat_meta SET value = '0' WHERE key = 'schema_version'")
    assert store_mod.catalog_meta(layout.root)["schema_version"] == "0"
    open_store(layout.root).close()  # reading never rewrites the catalog
    assert store_mod.catalog_meta(layout.root)["schema_version"] == "0"
    assert refresh_catalog(layout.root) is True  # writers (and `langfeat catalog`) do
    assert store_mod.catalog_meta(layout.root)["schema_version"] == store_mod.expected_meta(layout.root)[
        "schema_version"]
    # a moved store gets a catalog that points at its new place
    shutil.copytree(layout.root, tmp_path / "b")
    open_store(tmp_path / "b").close()
    assert store_mod.catalog_meta(tmp_path / "b")["store_path"] == layout.root.as_posix()
    refresh_catalog(tmp_path / "b")
    assert store_mod.catalog_meta(tmp_path / "b")["store_path"] == (tmp_path / "b").resolve().as_posix()
    with duckdb.connect(str(tmp_path / "b" / "catalog.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM runs").fetchall()[0][0] == 0
    assert not [p.name for p in (tmp_path / "b").iterdir() if p.name.startswith(".catalog-")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_refresh_catalog_never_raises_on_permissions(tmp_path):
    layout = ensure_store(tmp_path / "s")
    os.chmod(layout.root, 0o555)
    try:
        assert refresh_catalog(layout.root, force=True) is False
        with open_store(layout.root) as store:  # readers still work
            assert store.runs().height == 0
    finally:
        os.chmod(layout.root, 0o755)


def test_refresh_catalog_returns_false_when_catalog_path_unwritable(tmp_path):
    layout = ensure_store(tmp_path / "s")
    layout.catalog.mkdir()  # a directory where the file should go: os.replace fails
    assert refresh_catalog(layout.root, force=True) is False
    assert not [p.name for p in layout.root.iterdir() if p.name.startswith(".catalog-")]
    with open_store(layout.root) as store:
        assert store.runs().height == 0


def test_reader_while_catalog_refreshes_in_another_process(populated):
    layout, _ = populated
    refresh_catalog(layout.root, force=True)
    script = textwrap.dedent(f"""
        from langfeat.store import refresh_catalog
        ok = [refresh_catalog({str(layout.root)!r}, force=True) for _ in range(8)]
        print(sum(ok))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    reads = 0
    while proc.poll() is None or reads < 3:
        with duckdb.connect(str(layout.catalog), read_only=True) as con:
            assert con.sql("SELECT count(*) FROM docs").fetchall()[0][0] == 5
            assert con.sql("SELECT count(*) FROM runs").fetchall()[0][0] == 4
        reads += 1
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "8"
    assert reads >= 3
    with duckdb.connect(str(layout.catalog), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM events").fetchall()[0][0] == 9


def test_open_store_sees_runs_committed_later(populated):
    layout, _ = populated
    with open_store(layout.root) as store:
        assert store.sql("SELECT count(*) AS n FROM docs")["n"][0] == 5
        th = store.runs(lang="th")
        assert th["status"].to_list() == ["running"]
        # the running th run commits while the store is open: its data appears, nothing is reopened
        manifest = runs_mod.read_manifest(layout, th["run_id"][0])
        runs_mod.commit_run(layout, manifest, n_docs=1, n_tokens=7)
        assert store.sql("SELECT count(*) AS n FROM docs")["n"][0] == 6
        assert store.docs(lang="th")["text"].to_list() == ["สวัสดี"]
        assert store.languages()["lang"].to_list() == ["en", "de", "th"]
        assert store.runs(lang="th")["status"].to_list() == ["complete"]


def test_ensure_store_concurrent_processes(tmp_path):
    root = tmp_path / "new"
    script = textwrap.dedent(f"""
        from langfeat.store import ensure_store, open_store
        for _ in range(3):
            ensure_store({str(root)!r})
            with open_store({str(root)!r}) as st:
                assert st.sql("SELECT count(*) AS n FROM events")["n"][0] == 0
        print("ok")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and outs == ["ok"] * 3
    layout = Layout(root)
    for table, schema in arrow_schemas().items():
        assert pq.read_schema(layout.placeholder(table)).remove_metadata().equals(schema)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".catalog-")]
    assert store_mod.catalog_meta(root) is None  # readers wrote no catalog


def test_duckdb_memory_is_limited_and_spills_outside_the_working_directory(tmp_path, monkeypatch):
    """A store connection caps DuckDB at a fifth of physical memory (DuckDB's own default, 80 %, leaves too
    little for the NumPy and scikit-learn work after a big query) or $LANGFEAT_DUCKDB_MEMORY, and spills to the
    system's temporary directory, not to ``.tmp`` in the working directory."""
    import tempfile

    from langfeat.store.database import MEMORY_SHARE

    ensure_store(tmp_path / "s")
    monkeypatch.delenv("LANGFEAT_DUCKDB_MEMORY", raising=False)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with open_store(tmp_path / "s") as st:
        limit, spill = st.con.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')"
                                      ).fetchall()[0]
    plain = duckdb.connect()
    plain.execute(f"SET memory_limit = '{int(total * MEMORY_SHARE) // 2**20}MiB'")
    want = plain.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert limit == want and MEMORY_SHARE == 0.2
    assert Path(spill).parent == Path(tempfile.gettempdir())
    monkeypatch.setenv("LANGFEAT_DUCKDB_MEMORY", "512MiB")
    with open_store(tmp_path / "s") as st:
        assert st.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "512.0 MiB"
    monkeypatch.setenv("LANGFEAT_DUCKDB_MEMORY", "lots")
    with pytest.raises(UsageError, match="LANGFEAT_DUCKDB_MEMORY='lots' is not a size DuckDB accepts"):
        open_store(tmp_path / "s")


def test_a_second_store_on_a_catalog_that_spilled_opens(tmp_path, monkeypatch):
    """Connections to one catalog file share a DuckDB database; once one has spilled to its temporary folder, a
    second open (a probe fitted on another thread, say) must not try to set the folder again."""
    layout = ensure_store(tmp_path / "s")
    refresh_catalog(layout.root)
    monkeypatch.setenv("LANGFEAT_DUCKDB_MEMORY", "64MiB")
    with open_store(tmp_path / "s") as first:
        first.con.execute("CREATE TEMP TABLE big AS SELECT range AS i, random() AS x, md5(range::VARCHAR) AS h "
                          "FROM range(3000000)")
        assert first.con.execute("SELECT count(*) FROM big").fetchall() == [(3000000,)]
        with open_store(tmp_path / "s") as second:
            assert second.sql("SELECT 1 AS one")["one"].to_list() == [1]


def _plan(store: Store, query: str) -> list[dict]:
    return json.loads(store.con.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchall()[0][1])


def _nodes(nodes: list[dict]):
    for node in nodes:
        yield node
        yield from _nodes(node.get("children", []))


def test_the_planner_knows_the_run_tables_are_large(populated):
    """The placeholder read first would make DuckDB estimate every run table at 0 rows (first file × files): the
    views pass catalog.ESTIMATED_ROWS, so a join of a small results table with the events builds its hash table
    on the results side (the right child) and probes with the event scan."""
    from langfeat.store.catalog import ESTIMATED_ROWS

    layout, _ = populated
    write_set(layout.root, "S", [("en", 0, 5), ("de", 2, 3)])
    with open_store(layout.root) as store:
        for table, rows in ESTIMATED_ROWS.items():
            scans = [n for n in _nodes(_plan(store, f"SELECT * FROM {table}")) if n["name"] == "READ_PARQUET"]
            assert [int(n["extra_info"]["Estimated Cardinality"]) for n in scans] == [rows], table
        query = ("SELECT count(*) AS n FROM feature_sets f JOIN events e ON e.layer = f.layer AND e.feature = f.feature"
                 " WHERE f.name = 'S'")
        joins = [n for n in _nodes(_plan(store, query)) if n["name"] == "HASH_JOIN"
                 and "feature = feature" in str(n["extra_info"].get("Conditions"))]
        assert len(joins) == 1
        build = list(_nodes([joins[0]["children"][1]]))
        assert all(n["extra_info"].get("Estimated Cardinality") != str(ESTIMATED_ROWS["events"]) for n in build)
        # (layer 0, feature 5): en twice, de twice; (layer 2, feature 3): en once, de once; th (running) not counted
        assert store.sql(query)["n"][0] == 6
