"""``langfeat sql | runs | views | rm | catalog``: output formats, --output, one-line errors with exit 2."""

from __future__ import annotations

import io
import json

import duckdb
import polars as pl
import pytest
from factories import table_rows
from test_store import DE_EVENTS, EN_EVENTS, add_run
from typer.testing import CliRunner

from langfeat.cli import app
from langfeat.store import ensure_store, open_store
from langfeat.store.layout import doc_id
from langfeat.store.runs import all_manifests

runner = CliRunner()


@pytest.fixture()
def store_dir(tmp_path):
    layout = ensure_store(tmp_path / "store")
    made = {
        "en": add_run(layout, "en", "flores", ["hello", "a b", "xyzw"], EN_EVENTS),
        "de": add_run(layout, "de", "flores", ["Hallo", "ja"], DE_EVENTS, start=10, neurons=True),
        "th": add_run(layout, "th", "flores", ["สวัสดี"], {0: [(0, 0, 1, 1.0)]}, status="running"),
    }
    return layout.root, made


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


QUERY = "SELECT lang, doc_id, text, n_tokens FROM docs ORDER BY doc_id"


def test_sql_csv_and_json_round_trip(store_dir):
    root, made = store_dir
    with open_store(root) as st:
        expected = st.sql(QUERY)
    assert expected.height == 5
    res = invoke("sql", QUERY, "--store", str(root), "--format", "csv")
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    got = pl.read_csv(io.StringIO(res.stdout), schema=expected.schema)
    assert got.equals(expected)
    res = invoke("sql", QUERY, "--store", str(root), "-f", "json")
    assert res.exit_code == 0, res.output
    assert pl.DataFrame(json.loads(res.stdout), schema=expected.schema).equals(expected)
    assert json.loads(res.stdout)[0] == {"lang": "en", "doc_id": doc_id(made["en"]["run_num"], 0), "text": "hello",
                                         "n_tokens": 6}


def test_sql_table_parquet_and_output(store_dir, tmp_path):
    root, _ = store_dir
    res = invoke("sql", "SELECT text FROM docs WHERE lang = 'de' ORDER BY text", "--store", str(root))
    assert res.exit_code == 0 and "Hallo" in res.stdout and "ja" in res.stdout
    assert table_rows(res.stdout) == [["Hallo"], ["ja"]]
    out = tmp_path / "r.parquet"
    res = invoke("sql", QUERY, "--store", str(root), "--format", "parquet", "--output", str(out))
    assert res.exit_code == 0 and res.stdout == ""
    with open_store(root) as st:
        assert pl.read_parquet(out).equals(st.sql(QUERY))
    csv = tmp_path / "r.csv"
    res = invoke("sql", "SELECT count(*) AS n FROM events", "--store", str(root), "-f", "csv", "-o", str(csv))
    assert res.exit_code == 0 and res.stdout == ""
    assert csv.read_text() == "n\n9\n"


def test_sql_nested_columns_to_csv(store_dir):
    root, _ = store_dir
    res = invoke("sql", "SELECT lang, layers FROM runs ORDER BY run_num", "--store", str(root), "-f", "csv")
    assert res.exit_code == 0, res.output
    rows = pl.read_csv(io.StringIO(res.stdout))
    assert rows["layers"].to_list() == ["[0, 2]", "[0, 2]", "[0]"]


def test_store_from_env(store_dir):
    root, _ = store_dir
    res = invoke("sql", "SELECT count(*) AS n FROM docs", "-f", "csv", env={"LANGFEAT_STORE": str(root)})
    assert res.exit_code == 0 and res.stdout == "n\n5\n"


def test_sql_bad_inputs(store_dir, tmp_path):
    root, _ = store_dir
    assert_one_line_error(invoke("sql", "SELEC 1", "--store", str(root)), "SQL error: Parser Error")
    assert_one_line_error(invoke("sql", "SELECT * FROM nope", "--store", str(root)), "SQL error: Catalog Error")
    assert_one_line_error(invoke("sql", "SELECT 1", "--store", str(tmp_path / "none")), "no langfeat store at")
    assert not (tmp_path / "none").exists()
    (tmp_path / "junk").mkdir()
    assert_one_line_error(invoke("sql", "SELECT 1", "--store", str(tmp_path / "junk")), "is not a langfeat store")
    assert_one_line_error(invoke("sql", "SELECT 1", "--store", str(root), "-f", "parquet"), "needs --output")


def test_runs_command(store_dir):
    root, made = store_dir
    res = invoke("runs", "--store", str(root), "-f", "csv")
    assert res.exit_code == 0, res.output
    df = pl.read_csv(io.StringIO(res.stdout), infer_schema=False)
    assert df.columns == ["run_id", "model", "units", "dataset", "config", "lang", "split", "slice", "layers", "docs",
                          "tokens", "status", "created"]
    assert df.select("run_id", "lang", "slice", "layers", "docs", "tokens", "status").rows() == [
        (made["en"]["run_id"], "en", "0:3", "0,2", "3", "15", "complete"),
        (made["de"]["run_id"], "de", "10:12", "0,2", "2", "9", "complete"),
        (made["th"]["run_id"], "th", "0:1", "0", None, None, "interrupted"),  # its writer is gone
    ]
    res = invoke("runs", "--store", str(root), "--status", "interrupted", "--all", "-f", "json")
    rows = json.loads(res.stdout)
    assert [r["run_id"] for r in rows] == [made["th"]["run_id"]] and rows[0]["layers"] == [0]
    res = invoke("runs", "--store", str(root), "--status", "running", "-f", "csv")
    assert res.exit_code == 0 and res.stdout.strip().splitlines()[1:] == []  # no live run
    res = invoke("runs", "--store", str(root), env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert made["en"]["run_id"] in res.stdout and "complete" in res.stdout and "interrupted" in res.stdout
    assert [(r[0], r[5], r[8], r[10]) for r in table_rows(res.stdout)] == [
        (made["en"]["run_id"], "en", "3", "complete"), (made["de"]["run_id"], "de", "2", "complete"),
        (made["th"]["run_id"], "th", "", "interrupted")]


def test_views_command(store_dir):
    root, _ = store_dir
    res = invoke("views", "--store", str(root), "-f", "json")
    assert res.exit_code == 0, res.output
    rows = {r["view"]: r for r in json.loads(res.stdout)}
    assert rows["docs"]["columns"] == ("run_id VARCHAR, doc_id BIGINT, dataset VARCHAR, lang VARCHAR, row BIGINT, "
                                       "n_tokens INTEGER, text VARCHAR")
    assert rows["docs"]["description"].startswith("one row per ingested text")
    res = invoke("views", "--store", str(root), "--columns", "-f", "csv")
    df = pl.read_csv(io.StringIO(res.stdout))
    assert df.filter(pl.col("view") == "events")["column"].to_list() == [
        "run_id", "dataset", "lang", "layer", "doc_id", "pos", "feature", "act"]


def test_rm_command(store_dir):
    root, made = store_dir
    from langfeat.store.layout import Layout

    layout = Layout(root)
    res = invoke("rm", made["en"]["run_id"], "nosuchrun", "--store", str(root))
    assert_one_line_error(res, "'nosuchrun' is not a run")
    assert len(all_manifests(layout)) == 3  # nothing removed
    res = invoke("rm", made["en"]["run_id"][:6], made["th"]["run_id"], "--store", str(root))
    assert res.exit_code == 0, res.output
    assert res.stderr.count("removed run") == 2
    assert [m["run_id"] for m in all_manifests(layout)] == [made["de"]["run_id"]]
    assert not layout.run_data(made["en"]["run_id"]).exists()
    assert not layout.run_work(made["th"]["run_id"]).exists()
    with open_store(root) as st:
        assert st.sql("SELECT DISTINCT lang FROM docs")["lang"].to_list() == ["de"]
        assert st.sql("SELECT count(*) AS n FROM events")["n"][0] == 4


def test_catalog_command(store_dir):
    root, _ = store_dir
    catalog = root / "catalog.duckdb"
    catalog.unlink(missing_ok=True)
    # open_store (inside the command) writes it if missing; the command rebuilds it regardless
    res = invoke("catalog", "--store", str(root))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(catalog)
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM docs").fetchall() == [(5,)]
        assert con.sql("SELECT count(*) FROM runs WHERE status = 'running'").fetchall() == [(1,)]
