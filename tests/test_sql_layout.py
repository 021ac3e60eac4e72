"""The SQL laid out like a dbt project: sources in db/, layered queries/, one model per file, each with a header
that `langfeat views` shows; the store's paths written once (layout.table_glob); shared macros checked against an
independent computation."""

from __future__ import annotations

import json
import math
import re
from importlib import resources

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from langfeat.cli import app
from langfeat.formats import paper
from langfeat.store import catalog
from langfeat.store.layout import TABLES, Layout, arrow_schemas
from langfeat.store.placeholders import ensure_store

CREATE = re.compile(r"^CREATE OR REPLACE (VIEW|MACRO) (\w+)(\(([^)]*)\))?", re.M)


def files() -> list[tuple[str, str]]:
    return catalog.view_files()


def test_every_file_is_one_model_named_like_the_file_with_a_header():
    seen: list[str] = []
    for label, text in files():
        creates = CREATE.findall(text)
        assert len(creates) == 1, f"{label}: one model per file, found {[c[1] for c in creates]}"
        what, name, _, params = creates[0]
        stem = label.rsplit("/", 1)[1].removesuffix(".sql")
        assert re.fullmatch(rf"\d\d_{name}", stem), f"{label} defines {name}: name the file NN_{name}.sql"
        header = text[: text.index("CREATE OR REPLACE")]
        lines = header.strip().splitlines()
        assert lines and all(ln.startswith("--") for ln in lines), f"{label}: the file starts with its header"
        assert re.match(rf"-- {name}(\(.*?\))?: \S", lines[0]), f"{label}: the header starts with '{name}: purpose'"
        inputs = [ln for ln in lines if ln.startswith("-- inputs: ")]
        assert len(inputs) == 1, f"{label}: one '-- inputs:' line"
        if what == "MACRO" and params.strip():
            assert any(ln.startswith("-- params: ") for ln in lines), f"{label}: a '-- params:' line"
        # every input is a source (a path) or a model defined by an earlier file: the layers only read downwards
        for item in inputs[0].removeprefix("-- inputs: ").split(", "):
            if item == "none" or item.endswith("(source)"):
                continue
            assert item in seen, f"{label} reads {item!r}, which no earlier file defines"
        seen.append(name)


def test_query_layers_are_ordered_folders_and_sources_live_in_db():
    labels = [label for label, _ in files()]
    db = [x for x in labels if x.startswith("db/")]
    assert labels[: len(db)] == db  # sources first
    layers = [x.split("/")[1] for x in labels[len(db):]]
    assert layers == sorted(layers, key=catalog.QUERY_LAYERS.index)
    folders = {p.name for p in resources.files("langfeat.sql.queries").iterdir() if p.is_dir()
               and not p.name.startswith(("_", "."))}
    assert folders == set(catalog.QUERY_LAYERS)
    for label, text in files():
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--"))
        # no hand-written store path or placeholder filter: they come from the layout ({source:}/{glob:}/{schema})
        for raw in ("read_parquet(", "'_schema'", "{store}", "/*.parquet", "runs/"):
            assert raw not in code, f"{label} writes {raw!r}: use {{source:<table>}} / {{glob:<table>}} / {{schema}}"
        if label.startswith("queries/"):
            assert "{source:" not in code and "{glob:" not in code, f"{label}: only db/ reads files"


def test_every_file_table_has_one_source_view():
    sources = {}
    for label, text in files():
        for table in re.findall(r"\{source:(\w+)\}", text):
            sources.setdefault(table, []).append(label)
    assert set(sources) == set(arrow_schemas())
    assert all(len(v) == 1 for v in sources.values()), sources


def test_source_sql_uses_the_layout(tmp_path):
    layout = Layout(tmp_path / "it's")
    got = catalog.source_sql(layout, "events")
    glob = layout.table_glob("events").replace("'", "''")
    first = layout.placeholder("events").as_posix().replace("'", "''")
    # a run's data: the placeholder first (the view binds its schema to it), the planner told the table's size
    # (catalog.ESTIMATED_ROWS), only runs whose manifest says complete
    assert got == (f"(SELECT * FROM read_parquet(['{first}', '{glob}'], hive_partitioning = true, hive_types = "
                   "{'run_id': VARCHAR, 'lang': VARCHAR, 'layer': INTEGER}, explicit_cardinality = 1000000000) "
                   "WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'complete'))")
    glob = layout.table_glob("ppl_results").replace("'", "''")
    assert catalog.source_sql(layout, "ppl_results") == (
        f"(SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {{'name': VARCHAR}}, "
        "union_by_name = true) WHERE name <> '_schema')")
    assert "union_by_name = true" in catalog.source_sql(layout, "ppl_results")
    assert "union_by_name" not in catalog.source_sql(layout, "docs")
    assert catalog.render("x {glob:runs} {schema}", layout.root) == (
        f"x '{(layout.root / 'runs').as_posix().replace(chr(39), chr(39) * 2)}/*.json' '_schema'")
    # every placeholder file lies under its table's glob (so the filter is what hides it)
    for table in arrow_schemas():
        path = layout.placeholder(table).as_posix()
        pattern = re.escape(layout.table_glob(table)).replace(r"\*", "[^/]*")
        assert re.fullmatch(pattern, path), (table, path)
    assert set(TABLES) < set(arrow_schemas())


def test_views_command_shows_every_description(tmp_path):
    root = ensure_store(tmp_path / "store").root
    res = CliRunner().invoke(app, ["views", "--store", str(root), "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["view"]: r for r in json.loads(res.stdout)}
    descriptions = catalog.view_descriptions()
    names = {CREATE.search(text).group(2) for _, text in files()}
    assert set(rows) == names == set(descriptions)
    for name in names:
        assert rows[name]["description"] == descriptions[name] and len(descriptions[name]) > 20, name
    assert rows["stat_units"]["columns"] == "(kind, run_ids, layers) TABLE MACRO"
    assert rows["lang_entropy"]["columns"] == "(p) MACRO"
    assert rows["docs"]["description"].startswith("one row per ingested text")


def test_identify_defaults_are_read_from_sql():
    from langfeat import identify

    p = identify.Params()
    assert (p.topk_threshold_ratio, p.example_rate, p.hfl_rate, p.filter_rate, p.top_rate, p.activation_bar_ratio,
            p.shared_count) == (0.8, 0.98, 0.1, 0.95, 0.01, 0.95, 2)
    text = catalog.sql_file(identify.DEFAULTS_SQL)
    assert "0.98" in text
    # no other SQL file writes the defaults
    for label, other in files():
        if label != identify.DEFAULTS_SQL:
            code = "\n".join(ln for ln in other.splitlines() if not ln.lstrip().startswith("--"))
            assert not re.search(r":=\s*0\.\d", code), f"{label} writes a default: use identify_defaults()"


def _entropy_reference(p: np.ndarray) -> np.ndarray:
    out = []
    for row in p:
        total = row.sum()
        out.append(0.0 if total <= 0 else -sum((x / total) * math.log(x / total) for x in row if x > 0))
    return np.array(out)


def test_lang_entropy_macro_matches_definition():
    counts = np.array([[2, 4, 0], [5, 0, 0], [0, 0, 0], [1, 300, 700], [1, 4, 9]], dtype=np.float64)
    n_tok = np.array([10.0, 20.0, 0.0])  # a language without tokens divides by 1, as the paper's code
    p, entropy = paper._file_stats(counts, n_tok)
    want = counts / np.array([10.0, 20.0, 1.0])
    np.testing.assert_allclose(p, want, rtol=1e-15)
    np.testing.assert_allclose(entropy, _entropy_reference(want), rtol=1e-12, atol=1e-15)
    assert entropy[0] == pytest.approx(math.log(2)) and entropy[1] == 0.0 and entropy[2] == 0.0


def test_merge_counts_macro():
    with catalog.connect_views(None, ["queries/stats/02_merge_counts.sql"]) as con:
        con.register("rows", pl.DataFrame({
            "k": [1, 1, 2], "tok_count": [3, 4, 5], "doc_count": [1, 2, 3], "act_sum": [1.5, 2.0, 0.5],
            "act_max": [2.0, 3.0, 0.5], "act_min": [0.5, 0.25, 0.5],
        }).to_arrow())
        got = con.sql("SELECT k, unnest(merge_counts(tok_count, doc_count, act_sum, act_max, act_min)) "
                      "FROM rows GROUP BY k ORDER BY k").fetchall()
    assert got == [(1, 7, 3, 3.5, 3.0, 0.25), (2, 5, 3, 0.5, 0.5, 0.5)]
