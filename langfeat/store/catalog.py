"""The SQL of a store: the view files run on every connection, and ``catalog.duckdb`` for the duckdb CLI.

``catalog.duckdb`` holds the same views as :class:`~langfeat.store.Store`; it is built in a temporary file and
renamed into place, and rebuilt when its schema version, langfeat version, store path or SQL text changed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import duckdb

from langfeat.errors import StoreError
from langfeat.store.layout import SCHEMA_RUN, TABLES, Layout, corrupt_file_message, partitions, sql_text, store_path
from langfeat.store.placeholders import ensure_store
from langfeat.store.runs import now

__all__ = [
    "QUERY_LAYERS", "build_catalog", "catalog_meta", "connect_views", "execute_views", "expected_meta",
    "macro_rows", "one_line", "refresh_catalog", "render", "source_sql", "sql_file", "view_descriptions",
    "view_files",
]

SKIP_SQL = {"db/tables.sql"}  # DDL documentation of the file schemas, not views
META_TABLE = "langfeat_meta"
# queries/ is layered like a dbt project: each folder reads only db/ and the folders before it.
QUERY_LAYERS = ("stats", "identify", "reports", "classify", "ppl", "generate", "html", "interpret", "demo")
# What DuckDB's planner is told a run table holds (read_parquet's explicit_cardinality): orders of magnitude, the
# largest table first. The zero-row placeholder is read first (it binds the schema), and DuckDB estimates a scan as
# the first file's rows times the files, so without this every run table is estimated at 0 rows: each join with a
# results table built its hash table on the whole event scan (one classify_metrics lookup on the demo store held
# 5 GB and spilled), and scans ran on one thread.
ESTIMATED_ROWS = {"events": 10**9, "neuron_docs": 10**8, "tokens": 10**7, "feature_counts": 10**6,
                  "neuron_counts": 10**6, "docs": 10**5}


# ---------------------------------------------------------------------------------------------------------------
# SQL files


def _sql_names(package: str, folder: str = "") -> list[str]:
    root = resources.files(f"langfeat.sql.{package}")
    here = root.joinpath(*folder.split("/")) if folder else root
    return sorted(p.name for p in here.iterdir() if p.name.endswith(".sql"))


def view_files() -> list[tuple[str, str]]:
    """``(label, sql)`` of every SQL file to execute, in order: ``db/*.sql`` (the sources), then each layer of
    ``queries/`` (:data:`QUERY_LAYERS`), each folder sorted by file name. Raises StoreError on a ``queries/``
    sub-folder or top-level file outside the layers (it would silently not run)."""
    root = resources.files("langfeat.sql.queries")
    stray = sorted(p.name for p in root.iterdir() if p.name.endswith(".sql")
                   or (p.is_dir() and p.name not in QUERY_LAYERS and not p.name.startswith(("_", "."))))
    if stray:
        raise StoreError(f"queries/{stray[0]} is outside the query layers {', '.join(QUERY_LAYERS)}: move it into "
                         "one (or add its folder to QUERY_LAYERS)")
    labels = [f"db/{n}" for n in _sql_names("db")]
    labels += [f"queries/{layer}/{n}" for layer in QUERY_LAYERS for n in _sql_names("queries", layer)]
    return [(label, sql_file(label)) for label in labels if label not in SKIP_SQL]


def sql_file(label: str) -> str:
    """The text of SQL file ``label`` (``'db/10_runs.sql'``, ``'queries/stats/10_stat_units.sql'``)."""
    package, _, name = label.partition("/")
    return sql_text(package, name)


def _sql_hash(files: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256(repr(sorted(ESTIMATED_ROWS.items())).encode() if _explicit_cardinality() else b"")
    for label, text in files:
        digest.update(label.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@functools.cache
def _explicit_cardinality() -> bool:
    """Whether this DuckDB's read_parquet takes ``explicit_cardinality`` (1.2 and later do)."""
    with duckdb.connect(":memory:") as con:
        return bool(con.execute("SELECT list_contains(parameters, 'explicit_cardinality') FROM duckdb_functions() "
                                "WHERE function_name = 'read_parquet' LIMIT 1").fetchall()[0][0])


def source_sql(layout: Layout, table: str) -> str:
    """What ``{source:<table>}`` stands for in a view file: the rows of ``table``'s Parquet files with their
    partition columns, the placeholder files left out.

    A run's data (:data:`TABLES`) is visible exactly when its manifest says ``complete`` (the manifest rename is
    the commit point), and the placeholder file is read first so the view binds its schema to it, not to
    whichever data file sorts first (one corrupt file then fails only the queries that read it); the planner is
    given the table's :data:`ESTIMATED_ROWS`."""
    parts = partitions(table)
    types = ", ".join(f"'{col}': {typ}" for col, typ in parts.items())
    first = next(iter(parts))
    if table in TABLES:
        files = f"[{_quote(layout.placeholder(table).as_posix())}, {_quote(layout.table_glob(table))}]"
        estimate = f", explicit_cardinality = {ESTIMATED_ROWS[table]}" if _explicit_cardinality() else ""
        return (f"(SELECT * FROM read_parquet({files}, hive_partitioning = true, hive_types = {{{types}}}{estimate}) "
                f"WHERE {first} IN (SELECT run_id FROM runs WHERE status = 'complete'))")
    return (f"(SELECT * FROM read_parquet({_quote(layout.table_glob(table))}, hive_partitioning = true, "
            f"hive_types = {{{types}}}, union_by_name = true) WHERE {first} <> {_quote(SCHEMA_RUN)})")


_PLACEHOLDER_RE = re.compile(r"\{(source|glob):(\w+)\}|\{(store|schema)\}")


def render(text: str, root: str | os.PathLike) -> str:
    """A view file made runnable on the store at ``root``: ``{source:<table>}`` (see :func:`source_sql`),
    ``{glob:<table>}`` (the quoted glob of :meth:`Layout.table_glob`), ``{schema}`` (the quoted placeholder name)
    and ``{store}`` (the store path, inside a quoted string) replaced."""
    layout = Layout(root)

    def one(match: re.Match[str]) -> str:
        kind, table, plain = match.groups()
        if kind == "source":
            return source_sql(layout, table)
        if kind == "glob":
            return _quote(layout.table_glob(table))
        if plain == "schema":
            return _quote(SCHEMA_RUN)
        return layout.root.as_posix().replace("'", "''")

    return _PLACEHOLDER_RE.sub(one, text)


def connect_views(root: str | os.PathLike | None, labels: Sequence[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding only the SQL files ``labels`` (in that order) over the store at ``root``
    (None: files that read no store, e.g. macros over frames registered on the connection)."""
    con = duckdb.connect(":memory:")
    try:
        execute_views(con, None if root is None else Layout(root).root, [(label, sql_file(label)) for label in labels])
    except BaseException:
        con.close()
        raise
    return con


def one_line(exc: BaseException) -> str:
    """A DuckDB error message on one line (the position marker lines dropped)."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(keep)


def execute_views(con: duckdb.DuckDBPyConnection, root: Path | None, files: Sequence[tuple[str, str]]) -> None:
    """Run each SQL file of ``files`` on ``con``, rendered for the store at ``root`` (None: as written)."""
    for label, text in files:
        try:
            con.execute(text if root is None else render(text, root))
        except duckdb.Error as exc:
            named = None if root is None else corrupt_file_message(root, one_line(exc))
            where = "" if root is None else f" on store {root}"
            raise StoreError(named or f"{label} failed{where}: {one_line(exc)}: fix that SQL file") from None


_CREATE_RE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\w*\s+)?(VIEW|MACRO)\s+\"?(\w+)\"?(\s*\([^)]*\))?", re.I)


def _header_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(VIEW | MACRO, name, description)`` of every CREATE in ``text``: the comment block just above it."""
    out = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            comment.append(stripped.lstrip("-").strip())
            continue
        match = _CREATE_RE.match(line)
        if match:
            what, name = match.group(1).upper(), match.group(2)
            desc = re.sub(rf"^{re.escape(name)}\s*(\([^)]*\))?\s*:\s*", "", " ".join(comment))
            out.append((what, name, desc))
        comment = []
    return out


def view_descriptions(files: Sequence[tuple[str, str]] | None = None) -> dict[str, str]:
    """The comment block written just above each ``CREATE VIEW`` / ``CREATE MACRO`` in the SQL files, by name
    (the leading ``name(params):`` dropped)."""
    out: dict[str, str] = {}
    for _label, text in files if files is not None else view_files():
        for _what, name, desc in _header_blocks(text):
            out[name] = desc
    return out


def macro_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """``(name, '(parameters)', 'TABLE MACRO' | 'MACRO')`` of every macro defined by the SQL files, by name."""
    rows = con.sql(
        "SELECT function_name, any_value(function_type), list(parameters ORDER BY len(parameters) DESC)[1] "
        "FROM duckdb_functions() WHERE NOT internal AND schema_name = 'main' "
        "AND function_type IN ('macro', 'table_macro') GROUP BY function_name ORDER BY function_name"
    ).fetchall()
    return [(name, "(" + ", ".join(params or []) + ")", "TABLE MACRO" if typ == "table_macro" else "MACRO")
            for name, typ, params in rows]


# ---------------------------------------------------------------------------------------------------------------
# catalog.duckdb


def expected_meta(path: str | os.PathLike | None = None, files: Sequence[tuple[str, str]] | None = None
                  ) -> dict[str, str]:
    """The ``langfeat_meta`` a current catalog of the store at ``path`` holds (build time excluded)."""
    from langfeat import __version__

    return {
        "schema_version": sql_text("db", "VERSION").strip(),
        "langfeat_version": __version__,
        "store_path": store_path(path).as_posix(),
        "sql_hash": _sql_hash(view_files() if files is None else files),
    }


def catalog_meta(path: str | os.PathLike | None = None) -> dict[str, str] | None:
    """The ``langfeat_meta`` key/values of the store's ``catalog.duckdb`` (None when missing or unreadable)."""
    catalog = Layout(path).catalog
    if not catalog.is_file():
        return None
    try:
        with duckdb.connect(str(catalog), read_only=True) as con:
            return dict(con.sql(f"SELECT key, value FROM {META_TABLE}").fetchall())
    except duckdb.Error:
        return None


def build_catalog(path: str | os.PathLike | None = None, files: Sequence[tuple[str, str]] | None = None) -> Path:
    """(Re)write ``<store>/catalog.duckdb`` with every view and ``langfeat_meta``; raise StoreError on failure."""
    layout = ensure_store(path)
    files = view_files() if files is None else files
    meta = expected_meta(layout.root, files)
    tmp = layout.root / f".catalog-{os.getpid()}-{uuid.uuid4().hex[:8]}.duckdb"
    try:
        with duckdb.connect(str(tmp)) as con:
            execute_views(con, layout.root, files)
            con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
            rows = [*meta.items(), ("built_at", now())]
            con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", [list(r) for r in rows])
            con.execute("CHECKPOINT")
        os.replace(tmp, layout.catalog)
    except (OSError, duckdb.Error) as exc:
        msg = one_line(exc) if isinstance(exc, duckdb.Error) else (exc.strerror or str(exc))
        raise StoreError(f"cannot write {layout.catalog} ({msg}): check the store's permissions") from None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return layout.catalog


def refresh_catalog(path: str | os.PathLike | None = None, force: bool = False,
                    files: Sequence[tuple[str, str]] | None = None) -> bool:
    """Rebuild ``catalog.duckdb`` if missing or stale (always with ``force``); True if it is current afterwards.

    Best effort: a lock, permission or disk problem returns False instead of raising.
    """
    files = view_files() if files is None else files
    if not force:
        current = catalog_meta(path)
        if current is not None and all(current.get(k) == v for k, v in expected_meta(path, files).items()):
            return True
    try:
        build_catalog(path, files)
    except StoreError:
        return False
    return True




