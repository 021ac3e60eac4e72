"""The store as a database: placeholder files, the DuckDB views over the Parquet files, and ``catalog.duckdb``.

``open_store(path)`` returns a :class:`Store`: an in-memory DuckDB connection on which every ``db/*.sql`` view file
and then every ``queries/*.sql`` file runs (in filename order, ``{store}`` replaced by the absolute store path).
An in-memory connection locks nothing, so readers work while an ingestion writes: runs appear in ``data/`` by an
atomic rename only when complete. ``catalog.duckdb`` holds the same views for users of the duckdb CLI; it is built
in a temporary file and renamed into place, and rebuilt when its schema version, langfeat version, store path or
SQL text changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from langfeat.errors import StoreError, UsageError
from langfeat.layout import SCHEMA_RUN, Layout, arrow_schemas, sql_text, store_path
from langfeat.runs import all_manifests, drop_run, read_manifest, write_json_atomic

__all__ = [
    "Store", "build_catalog", "catalog_meta", "ensure_store", "expected_meta", "open_store", "refresh_catalog",
    "resolve_runs", "run_summary", "view_files",
]

SQL_PACKAGES = ("db", "queries")
SKIP_SQL = {("db", "tables.sql")}  # DDL documentation of the file schemas, not views
META_TABLE = "langfeat_meta"


# ---------------------------------------------------------------------------------------------------------------
# placeholders


def _runs_placeholder(layout: Layout) -> Path:
    """``runs/_schema.json``: gives the ``runs`` view's glob a match in a store without runs (filtered out)."""
    return layout.runs_dir / f"{SCHEMA_RUN}.json"


def _params_placeholder(layout: Layout) -> Path:
    return layout.set_dir(SCHEMA_RUN) / "params.json"


def _placeholder_current(path: Path, schema: pa.Schema) -> bool:
    try:
        return pq.read_schema(path).remove_metadata().equals(schema.remove_metadata())
    except (OSError, pa.ArrowException):
        return False


def _write_placeholder(path: Path, schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(schema.empty_table(), tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _missing_placeholders(layout: Layout) -> list[Path]:
    out = [p for p in (_runs_placeholder(layout), _params_placeholder(layout)) if not p.is_file()]
    out += [
        layout.placeholder(table) for table, schema in arrow_schemas().items()
        if not _placeholder_current(layout.placeholder(table), schema)
    ]
    return out


def ensure_store(path: str | os.PathLike | None = None) -> Layout:
    """Create the store folders and a zero-row placeholder file for every table (idempotent, concurrent-safe)."""
    layout = Layout(path)
    try:
        for folder in (layout.root, layout.runs_dir, layout.data_dir, layout.sets_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not _runs_placeholder(layout).is_file():
            write_json_atomic(_runs_placeholder(layout), {"run_id": SCHEMA_RUN})
        if not _params_placeholder(layout).is_file():
            write_json_atomic(_params_placeholder(layout), {})
        for table, schema in arrow_schemas().items():
            target = layout.placeholder(table)
            if not _placeholder_current(target, schema):
                _write_placeholder(target, schema)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store at {layout.root} ({exc.strerror or exc}): pass a writable --store"
        ) from None
    return layout


# ---------------------------------------------------------------------------------------------------------------
# SQL files


def view_files() -> list[tuple[str, str]]:
    """``(label, sql)`` of every view file to execute: ``db/*.sql`` then ``queries/*.sql``, each sorted by name."""
    out = []
    for package in SQL_PACKAGES:
        folder = resources.files(f"langfeat.sql.{package}")
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
        out += [(f"{package}/{name}", sql_text(package, name)) for name in names if (package, name) not in SKIP_SQL]
    return out


def _sql_hash(files: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for label, text in files:
        digest.update(label.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def _substitute(text: str, root: Path) -> str:
    return text.replace("{store}", root.as_posix().replace("'", "''"))


def one_line(exc: BaseException) -> str:
    """A DuckDB error message on one line (the position marker lines dropped)."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(keep)


def _execute_views(con: duckdb.DuckDBPyConnection, root: Path, files: Sequence[tuple[str, str]]) -> None:
    for label, text in files:
        try:
            con.execute(_substitute(text, root))
        except duckdb.Error as exc:
            raise StoreError(f"{label} failed on store {root}: {one_line(exc)}: fix that SQL file") from None


_VIEW_RE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\w*\s+)?VIEW\s+\"?(\w+)\"?", re.I)


def view_descriptions(files: Sequence[tuple[str, str]] | None = None) -> dict[str, str]:
    """The comment block written just above each ``CREATE VIEW`` in the SQL files, by view name."""
    out: dict[str, str] = {}
    for _label, text in files if files is not None else view_files():
        comment: list[str] = []
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("--"):
                comment.append(stripped.lstrip("-").strip())
                continue
            match = _VIEW_RE.match(line)
            if match:
                name = match.group(1)
                out[name] = re.sub(rf"^{re.escape(name)}\s*:\s*", "", " ".join(comment))
            comment = []
    return out


# ---------------------------------------------------------------------------------------------------------------
# the Store


class Store:
    """A langfeat store opened for queries: an in-memory DuckDB connection holding every view."""

    def __init__(self, layout: Layout, files: Sequence[tuple[str, str]] | None = None):
        self.layout = layout
        self.root = layout.root
        self.con = duckdb.connect(":memory:")
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            _execute_views(self.con, self.root, view_files() if files is None else files)
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
            raise UsageError(f"SQL error: {one_line(exc)}") from None

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
        """One row per view column: view, column, type (and the view's description from its SQL comment)."""
        desc = view_descriptions()
        rows = self.con.sql(
            "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
            "JOIN duckdb_views() v ON v.view_name = c.table_name AND v.schema_name = c.schema_name "
            "WHERE NOT v.internal AND c.schema_name = 'main' ORDER BY c.table_name, c.column_index"
        ).fetchall()
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

    def languages(self) -> pl.DataFrame:
        return self.view("languages")

    def feature_sets(self, name: Any = None) -> pl.DataFrame:
        return self.view("feature_sets", name=name)

    # -- statistics (langfeat.stats) ------------------------------------------------------------------------------

    def feature_set(self, name: str) -> pl.DataFrame:
        """The named feature set (see ``langfeat.stats.feature_set``)."""
        from langfeat import stats

        return stats.feature_set(self, name)

    def stats(self, **kw: Any) -> pl.DataFrame:
        """Per (language, layer, unit) statistics (see ``langfeat.stats.unit_stats``)."""
        from langfeat import stats

        return stats.unit_stats(self, **kw)


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
    if create or _missing_placeholders(layout):
        try:
            ensure_store(root)
        except StoreError:
            raise StoreError(
                f"the store {root} lacks placeholder files and is not writable: run `langfeat catalog --store "
                f"{root}` as its owner once"
            ) from None
    files = view_files()
    store = Store(layout, files)
    refresh_catalog(root, files=files)
    return store


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
            _execute_views(con, layout.root, files)
            con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
            rows = [*meta.items(), ("built_at", _now())]
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


def _now() -> str:
    from langfeat.runs import now

    return now()


# ---------------------------------------------------------------------------------------------------------------
# runs: listing and removal helpers for the CLI


def resolve_runs(path: str | os.PathLike | None, run_ids: Iterable[str]) -> list[str]:
    """Full run ids for ``run_ids`` (each a run id or a unique prefix of one); UsageError if any is unknown."""
    layout = Layout(path)
    known = [m["run_id"] for m in all_manifests(layout)]
    out: list[str] = []
    for given in run_ids:
        if read_manifest(layout, given) is not None:
            out.append(given)
            continue
        matches = [r for r in known if r.startswith(given)] if given else []
        if len(matches) != 1:
            why = "matches several runs" if matches else "is not a run"
            raise UsageError(f"{given!r} {why} in {layout.root}: list the run ids with `langfeat runs`")
        out.append(matches[0])
    return list(dict.fromkeys(out))


def remove_runs(path: str | os.PathLike | None, run_ids: Iterable[str]) -> list[str]:
    """Drop the given runs (data first, then manifest); all ids are checked before anything is removed."""
    layout = Layout(path)
    full = resolve_runs(path, run_ids)
    for run_id in full:
        drop_run(layout, run_id)
    return full


def _compact_layers(layers: list[int] | None) -> str:
    """``[0,1,2,3,7]`` → ``'0-3,7'``."""
    if not layers:
        return ""
    nums = sorted(set(int(x) for x in layers))
    parts, start, prev = [], nums[0], nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def run_summary(store: Store, **filters: Any) -> pl.DataFrame:
    """One display row per run: id, model, SAE or neurons, dataset, config, lang, split, slice, layers, sizes."""
    runs = store.runs(**filters)
    return runs.select(
        pl.col("run_id"),
        pl.col("model"),
        pl.when(pl.col("sae_model").is_not_null()).then(pl.col("sae_model"))
        .when(pl.col("neurons").fill_null(False)).then(pl.lit("neurons"))
        .otherwise(pl.lit("")).alias("units"),
        pl.col("dataset"),
        pl.col("config"),
        pl.col("lang"),
        pl.col("split"),
        pl.format("{}:{}", pl.col("start").fill_null(0), pl.col("end").cast(pl.String).fill_null("")).alias("slice"),
        pl.col("layers").map_elements(lambda x: _compact_layers(list(x)), return_dtype=pl.String).alias("layers"),
        pl.col("n_docs").alias("docs"),
        pl.col("n_tokens").alias("tokens"),
        pl.col("status"),
        pl.col("created_at").dt.strftime("%Y-%m-%d %H:%M").alias("created"),
    )


def manifest_json(path: str | os.PathLike | None, run_id: str) -> str:
    """A run's manifest as indented JSON."""
    full = resolve_runs(path, [run_id])[0]
    return json.dumps(read_manifest(Layout(path), full), indent=1, sort_keys=True, default=str)
