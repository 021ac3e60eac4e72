"""The store as a database: :class:`Store`, an in-memory DuckDB connection holding every view over the files.

``open_store(path)`` opens the store's ``catalog.duckdb`` read-only when it is current (same schema, langfeat
version, store path and SQL text; writers keep it so), else runs every ``db/*.sql`` view file and then every
``queries/*.sql`` file on an in-memory connection (``{store}`` replaced by the absolute store path). Neither
locks anything a writer needs (catalogs are replaced by rename), so readers work while an ingestion writes: a
run's data shows once its manifest says complete. Opening a store to read writes nothing (a read-only store can
be queried).

:meth:`Store.read_only_sql` / :meth:`Store.stream` run user SQL read-only: one SELECT (or EXPLAIN of one), on a
connection whose configuration is locked and that installs or loads no extension.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import polars as pl

from langfeat.errors import StoreError, UsageError
from langfeat.store.catalog import META_TABLE, execute_views, expected_meta, one_line, view_descriptions, view_files
from langfeat.store.layout import Layout, corrupt_file_message, store_path
from langfeat.store.placeholders import ensure_store, missing_placeholders

READ_ONLY_TYPES = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?", re.I)

__all__ = ["Store", "open_store"]


# ---------------------------------------------------------------------------------------------------------------
# the Store


class Store:
    """A langfeat store opened for queries: an in-memory DuckDB connection holding every view."""

    def __init__(self, layout: Layout, files: Sequence[tuple[str, str]] | None = None, catalog: bool = True):
        """Views from ``catalog.duckdb`` when it is current and ``catalog`` is true, else run from ``files``."""
        self.layout = layout
        self.root = layout.root
        files = view_files() if files is None else files
        self._locked = False
        con = _current_catalog(layout, files) if catalog else None
        self.con = con if con is not None else duckdb.connect(":memory:")
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            _limit_memory(self.con)
            if con is None:
                execute_views(self.con, self.root, files)
        except BaseException:
            self.con.close()
            raise

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- queries -------------------------------------------------------------------------------------------------

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run ``query`` (``?`` or ``$name`` parameters from ``params``) and return the result as a frame."""
        try:
            rel = self.con.sql(query, params=params)
            return pl.DataFrame() if rel is None else rel.pl()
        except duckdb.Error as exc:
            raise self.query_error(exc) from None

    def arrays(self, query: str, params: Sequence[Any] | None = None) -> dict[str, Any]:
        """Run ``query`` and return its columns as numpy arrays (no frame in between: for large numeric results)."""
        try:
            return self.con.execute(query, params).fetchnumpy()
        except duckdb.Error as exc:
            raise self.query_error(exc) from None

    @contextlib.contextmanager
    def temporary(self, name: str, query: str, params: Sequence[Any] | None = None) -> Iterator[Store]:
        """Within the block, the result of ``query`` is the temporary table ``name`` (computed once, kept inside
        DuckDB, dropped when the block ends): for intermediate results several queries read."""
        try:
            self.con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {query}', params)
        except duckdb.Error as exc:
            raise self.query_error(exc) from None
        try:
            yield self
        finally:
            self.con.execute(f'DROP TABLE IF EXISTS temp."{name}"')

    @contextlib.contextmanager
    def materialized(self, *names: str) -> Iterator[Store]:
        """Within the block, each of view ``names`` is computed once into a temporary table of the same name, which
        every query and every view built on it reads instead (DuckDB resolves temporary objects first). For
        read-only work that queries several views over an expensive one (the LID metrics, confusion and methods
        all read ``classify_votes``, which scans the events); results written meanwhile are not seen. Nested blocks
        share a view already computed by an enclosing one, which drops it when it ends."""
        for name in names:
            self._check_view(name)
        made: list[str] = []
        try:
            for name in names:
                if self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                                    [name]).fetchall()[0][0]:
                    continue
                self.con.execute(f'CREATE TEMP TABLE "{name}" AS SELECT * FROM main."{name}"')
                made.append(name)
            yield self
        finally:
            for name in made:
                self.con.execute(f'DROP TABLE IF EXISTS temp."{name}"')

    def query_error(self, exc: Exception) -> Exception:
        """A corrupt store file named with its fix (StoreError), else ``SQL error: …`` (UsageError)."""
        message = one_line(exc)
        named = corrupt_file_message(self.root, message)
        return StoreError(named) if named else UsageError(f"SQL error: {message}")

    def check_read_only(self, query: str) -> str:
        """``query`` if it is one SELECT (or EXPLAIN of one), else UsageError; locks the connection's settings."""
        try:
            statements = self.con.extract_statements(query)
        except duckdb.Error as exc:
            raise UsageError(f"SQL error: {one_line(exc)}") from None
        if len(statements) != 1:
            raise UsageError(f"`langfeat sql` runs exactly one statement, got {len(statements)}: send one query")
        kind = statements[0].type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = self.con.extract_statements(_EXPLAIN.sub("", statements[0].query, count=1))
            kind = inner[0].type if len(inner) == 1 else duckdb.StatementType.MULTI
            kind = duckdb.StatementType.EXPLAIN if kind == duckdb.StatementType.SELECT else kind
        if kind not in READ_ONLY_TYPES:
            raise UsageError(
                f"`langfeat sql` is read-only: {kind.name} statements are refused (no files written, databases "
                "attached, extensions installed or settings changed); write a SELECT and save it with --output"
            )
        if not self._locked:
            for setting in ("autoinstall_known_extensions", "autoload_known_extensions"):
                self.con.execute(f"SET {setting} = false")
            self.con.execute("SET lock_configuration = true")
            self._locked = True
        return query

    def read_only_sql(self, query: str) -> pl.DataFrame:
        """Run a user query read-only (see :meth:`check_read_only`) and return the result as a frame."""
        return self.sql(self.check_read_only(query))

    def stream(self, query: str, batch_rows: int = 65_536) -> Any:
        """A ``pyarrow.RecordBatchReader`` over a user query, run read-only: memory stays bounded by the batch."""
        self.check_read_only(query)
        try:
            return self.con.sql(query).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise self.query_error(exc) from None

    def views(self) -> list[str]:
        """The names of every view (raw tables and statistics), sorted."""
        rows = self.con.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' ORDER BY view_name"
        ).fetchall()
        return [r[0] for r in rows]

    def columns(self, name: str) -> dict[str, str]:
        """``{column: DuckDB type}`` of view ``name``."""
        self._check_view(name)
        rows = self.con.sql(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = ? "
            "ORDER BY column_index",
            params=[name],
        ).fetchall()
        return dict(rows)

    def schema(self) -> pl.DataFrame:
        """One row per view column: view, column, type (and the view's description from its SQL comment); then one
        row per macro: its name, ``(parameters)`` and ``MACRO`` / ``TABLE MACRO``."""
        from langfeat.store.catalog import macro_rows

        desc = view_descriptions()
        rows = self.con.sql(
            "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
            "JOIN duckdb_views() v ON v.view_name = c.table_name AND v.schema_name = c.schema_name "
            "WHERE NOT v.internal AND c.schema_name = 'main' ORDER BY c.table_name, c.column_index"
        ).fetchall() + macro_rows(self.con)
        return pl.DataFrame(
            {
                "view": [r[0] for r in rows],
                "column": [r[1] for r in rows],
                "type": [r[2] for r in rows],
                "description": [desc.get(r[0], "") for r in rows],
            },
            schema={"view": pl.String, "column": pl.String, "type": pl.String, "description": pl.String},
        )

    def _check_view(self, name: str) -> None:
        if name not in self.views():
            raise UsageError(f"no view named {name!r}: list them with `langfeat views`")

    def view(self, name: str, /, **filters: Any) -> pl.DataFrame:
        """Rows of view ``name`` where every ``column=value`` holds (list/tuple/set: IN; None: no filter)."""
        cols = self.columns(name)
        where, params = [], []
        for col, value in filters.items():
            if value is None:
                continue
            if col not in cols:
                raise UsageError(f"view {name} has no column {col!r}: its columns are {', '.join(cols)}")
            if isinstance(value, (list, tuple, set, frozenset)):
                values = list(value)
                if not values:
                    where.append("false")
                    continue
                where.append(f'"{col}" IN ({", ".join("?" * len(values))})')
                params += values
            else:
                where.append(f'"{col}" = ?')
                params.append(value)
        query = f'SELECT * FROM "{name}"' + (f" WHERE {' AND '.join(where)}" if where else "")
        return self.sql(query, params or None)

    # -- the raw views -------------------------------------------------------------------------------------------

    def runs(self, **filters: Any) -> pl.DataFrame:
        """Run manifests (every status), by run number; ``filters`` as in :meth:`view` (e.g. ``status='complete'``)."""
        return self.view("runs", **filters).sort("run_num", nulls_last=True)

    def docs(self, run_id: Any = None, lang: Any = None, dataset: Any = None) -> pl.DataFrame:
        return self.view("docs", run_id=run_id, lang=lang, dataset=dataset)

    def tokens(self, run_id: Any = None, lang: Any = None, doc_id: Any = None) -> pl.DataFrame:
        return self.view("tokens", run_id=run_id, lang=lang, doc_id=doc_id)

    def events(self, run_id: Any = None, layer: Any = None, lang: Any = None) -> pl.DataFrame:
        return self.view("events", run_id=run_id, layer=layer, lang=lang)

    def feature_counts(self, run_id: Any = None, layer: Any = None, lang: Any = None) -> pl.DataFrame:
        return self.view("feature_counts", run_id=run_id, layer=layer, lang=lang)

    def neuron_counts(self, run_id: Any = None, layer: Any = None, lang: Any = None) -> pl.DataFrame:
        return self.view("neuron_counts", run_id=run_id, layer=layer, lang=lang)

    def neuron_docs(self, run_id: Any = None, layer: Any = None, lang: Any = None) -> pl.DataFrame:
        """Per-document neuron values (runs ingested with ``--neuron-docs``)."""
        return self.view("neuron_docs", run_id=run_id, layer=layer, lang=lang)

    def languages(self) -> pl.DataFrame:
        return self.view("languages")

    def feature_sets(self, name: Any = None) -> pl.DataFrame:
        return self.view("feature_sets", name=name)


MEMORY_SHARE = 0.2  # DuckDB's memory limit, as a share of physical memory (DuckDB's own default is 80 %)


def memory_limit() -> str:
    """DuckDB's memory limit for a store connection: ``$LANGFEAT_DUCKDB_MEMORY`` (a DuckDB size such as ``4GB``),
    else :data:`MEMORY_SHARE` of physical memory. Beyond it DuckDB evicts buffers and spills large sorts,
    aggregates and temporary tables to disk, leaving the rest to the NumPy, SciPy and scikit-learn work that follows
    a big query (a probe's training matrix, for instance)."""
    env = os.environ.get("LANGFEAT_DUCKDB_MEMORY", "").strip()
    if env:
        return env
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf: DuckDB's default
        return ""
    return f"{max(1, int(total * MEMORY_SHARE) // 2**20)}MiB"


def _limit_memory(con: duckdb.DuckDBPyConnection) -> None:
    """Apply :func:`memory_limit`, and spill to a folder of the system's temporary directory (DuckDB's default is
    ``.tmp`` in the working directory)."""
    import tempfile

    spill = os.path.join(tempfile.gettempdir(), f"langfeat-duckdb-{os.getuid() if hasattr(os, 'getuid') else 0}")
    current = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    if current != spill:  # connections to one catalog file share a database, whose folder is set by the first
        with contextlib.suppress(duckdb.NotImplementedException):  # already spilled there: it stays
            con.execute(f"SET temp_directory = '{spill.replace(chr(39), chr(39) * 2)}'")
    limit = memory_limit()
    try:
        if limit:
            con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
    except duckdb.Error:
        raise UsageError(f"LANGFEAT_DUCKDB_MEMORY={limit!r} is not a size DuckDB accepts: use e.g. 4GB or 512MiB"
                         ) from None


def _current_catalog(layout: Layout, files: Sequence[tuple[str, str]]) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection to the store's ``catalog.duckdb`` if it holds exactly the views of ``files`` for
    this store (its ``langfeat_meta`` matches), else None; binding ~70 view files per open is the slow part of a
    trivial query."""
    if not layout.catalog.is_file():
        return None
    try:
        con = duckdb.connect(str(layout.catalog), read_only=True)
    except duckdb.Error:  # held for writing by another program (the duckdb CLI), or unreadable
        return None
    try:
        meta = dict(con.sql(f"SELECT key, value FROM {META_TABLE}").fetchall())
        if all(meta.get(k) == v for k, v in expected_meta(layout.root, files).items()):
            return con
    except duckdb.Error:
        pass
    con.close()
    return None


def open_store(path: str | os.PathLike | None = None, create: bool = False) -> Store:
    """Open the store at ``path`` / ``$LANGFEAT_STORE`` / ``./langfeat-store`` (``create``: make it if missing)."""
    root = store_path(path)
    if not root.exists() and not create:
        raise StoreError(f"no langfeat store at {root}: run `langfeat ingest ... --store {root}` first or pass --store")
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} is a file, not a langfeat store: pass --store pointing at a store directory")
    if root.exists() and not os.access(root, os.R_OK | os.X_OK):
        raise StoreError(f"the store {root} is not readable: check its permissions or pass another --store")
    layout = Layout(root)
    if not layout.runs_dir.is_dir() and not create:
        raise StoreError(f"{root} is not a langfeat store (it has no runs/ folder): pass --store pointing at a store")
    if create or missing_placeholders(layout):
        try:
            ensure_store(root)
        except StoreError:
            raise StoreError(
                f"the store {root} lacks placeholder files and is not writable: run `langfeat catalog --store "
                f"{root}` as its owner once"
            ) from None
    return Store(layout, view_files())  # reading writes nothing: the catalog is refreshed by writers


