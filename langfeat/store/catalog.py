"""The SQL of a store: the view files run on every connection, and ``catalog.duckdb`` for the duckdb CLI.

``catalog.duckdb`` holds the same views as :class:`~langfeat.store.Store`; it is built in a temporary file and
renamed into place, and rebuilt when its schema version, langfeat version, store path or SQL text changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import duckdb

from langfeat.errors import StoreError
from langfeat.store.layout import Layout, corrupt_file_message, sql_text, store_path
from langfeat.store.placeholders import ensure_store
from langfeat.store.runs import now

__all__ = [
    "build_catalog", "catalog_meta", "execute_views", "expected_meta", "one_line", "refresh_catalog",
    "view_descriptions", "view_files",
]

SQL_PACKAGES = ("db", "queries")
SKIP_SQL = {("db", "tables.sql")}  # DDL documentation of the file schemas, not views
META_TABLE = "langfeat_meta"


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


def execute_views(con: duckdb.DuckDBPyConnection, root: Path, files: Sequence[tuple[str, str]]) -> None:
    for label, text in files:
        try:
            con.execute(_substitute(text, root))
        except duckdb.Error as exc:
            named = corrupt_file_message(root, one_line(exc))
            raise StoreError(named or f"{label} failed on store {root}: {one_line(exc)}: fix that SQL file") from None


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




