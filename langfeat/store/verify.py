"""Checking a store (``langfeat verify``): every file readable and matching its manifest, no leftovers.

Problems have a severity: ``error`` (corrupt or missing data, a manifest that does not match its files),
``warning`` (a failed or interrupted run: rerun to resume) or ``leftover`` (temporary files a killed process left:
catalog builds, ``.tmp`` files and folders, ``.trash-*`` folders, staging of finished runs, stale run locks).
``repair`` removes leftovers only, never data.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from langfeat.errors import StoreError
from langfeat.store import runs
from langfeat.store.layout import SCHEMA_RUN, Layout, corrupt_file_message

__all__ = ["Problem", "corrupt_file_message", "verify_store"]

# The writer's pid in a temporary name: ``.catalog-<pid>-<hex>.duckdb[.wal]`` (catalog builds) or the names of
# langfeat.store.atomic: ``.<name>.<pid>.<hex>.tmp`` (files), ``.tmp-<name>.<pid>.<hex>`` and
# ``.trash-<name>.<pid>.<hex>`` (folders).
_PID = re.compile(r"^\.(?:catalog-(\d+)-.*|.*\.(\d+)\.[0-9a-f]{8}(?:\.tmp)?)$")


@dataclass
class Problem:
    severity: str  # error | warning | leftover
    path: str  # relative to the store root
    problem: str
    fix: str


def _rel(layout: Layout, path: Path) -> str:
    try:
        return path.relative_to(layout.root).as_posix()
    except ValueError:
        return str(path)


def _readable(path: Path) -> str | None:
    """None if every page of the Parquet file decodes, else the reason."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            for _ in pf.iter_batches(batch_size=1 << 16):
                pass
    except (OSError, pa.ArrowException) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _rows(path: Path) -> int | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def _pid_alive(name: str) -> bool:
    match = _PID.match(name)
    if not match:
        return False
    pid = int(match.group(1) or match.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_run_files(layout: Layout, run_id: str, manifest: dict, out: list[Problem]) -> None:
    import json

    target = layout.run_data(run_id)
    fix = f"remove the run with `langfeat rm {run_id}` and ingest it again"
    if not target.is_dir():
        if manifest.get("n_files") or manifest.get("kind") == "ingest":
            out.append(Problem("error", _rel(layout, target), "the data folder of a complete run is missing", fix))
        return
    totals: dict[str, int] = {}
    for lang_dir in sorted(p for p in target.iterdir() if p.name.startswith("lang=")):
        listed_path = lang_dir / "files.json"
        listed: dict[str, int] | None = None
        if listed_path.exists():
            try:
                listed = json.loads(listed_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                out.append(Problem("error", _rel(layout, listed_path), "files.json is corrupt", fix))
        present = {p.relative_to(lang_dir).as_posix(): p for p in lang_dir.rglob("*.parquet")
                   if not p.name.startswith(".")}
        for rel in listed or {}:
            if rel not in present:
                out.append(Problem("error", _rel(layout, lang_dir / rel), "a file of the run is missing", fix))
        for rel, path in sorted(present.items()):
            reason = _readable(path)
            if reason is not None:
                out.append(Problem("error", _rel(layout, path), f"unreadable Parquet file ({reason})", fix))
                continue
            n = _rows(path) or 0
            table = rel.split("/", 1)[0]
            totals[table] = totals.get(table, 0) + n
            if listed is not None and rel not in listed:
                out.append(Problem("error", _rel(layout, path), "a file not listed in files.json", fix))
            elif listed is not None and listed[rel] != n:
                out.append(Problem("error", _rel(layout, path), f"{n} rows, the commit recorded {listed[rel]}", fix))
    for table, key in (("docs", "n_docs"), ("tokens", "n_tokens")):
        want = manifest.get(key)
        if table in totals and want is not None and totals[table] != want:
            out.append(Problem("error", _rel(layout, target), f"{totals[table]} rows in {table}, manifest {key} "
                               f"says {want}", fix))


def verify_store(path: str | os.PathLike | None = None, repair: bool = False) -> tuple[list[Problem], list[str]]:
    """Check the store at ``path``; return its problems and (with ``repair``) the leftovers removed."""
    from langfeat.store.catalog import catalog_meta, expected_meta
    from langfeat.store.placeholders import missing_placeholders

    layout = Layout(path)
    if not layout.runs_dir.is_dir():
        raise StoreError(f"{layout.root} is not a langfeat store (it has no runs/ folder): pass --store")
    out: list[Problem] = []
    leftovers: list[Path] = []

    def leftover(p: Path, what: str) -> None:
        out.append(Problem("leftover", _rel(layout, p), what, "`langfeat verify --repair` removes it"))
        leftovers.append(p)

    ids = runs.manifest_ids(layout)
    manifests: dict[str, dict] = {}
    for run_id in ids:
        try:
            m = runs.read_manifest(layout, run_id)
        except StoreError as exc:
            out.append(Problem("error", _rel(layout, layout.manifest(run_id)), str(exc).split(": remove")[0],
                               f"`langfeat rm {run_id}` and ingest it again"))
            continue
        if m is not None:
            manifests[run_id] = m
    live = {r for r in set(ids) | {p.name[:-5] for p in layout.runs_dir.glob("*.lock")} if runs.is_live(layout, r)}
    for run_id, m in manifests.items():
        mpath = _rel(layout, layout.manifest(run_id))
        status = m.get("status")
        if status not in runs.STATUSES or not isinstance(m.get("run_num"), int):
            out.append(Problem("error", mpath, f"invalid manifest (status {status!r}, run_num {m.get('run_num')!r})",
                               f"`langfeat rm {run_id}` and ingest it again"))
            continue
        if run_id in live:
            continue
        if status == "complete":
            _check_run_files(layout, run_id, m, out)
            if layout.run_work(run_id).exists():
                leftover(layout.run_work(run_id), "staging folder of a complete run")
        elif status == "removing":
            out.append(Problem("error", mpath, "a half-removed run", f"`langfeat rm {run_id}` finishes removing it"))
        else:
            what = "failed" if status == "failed" else "interrupted (its writer is gone)"
            out.append(Problem("warning", mpath, f"run {what}: its data is not visible",
                               f"rerun the same command to resume, or `langfeat rm {run_id}`"))
    known = set(ids)
    if layout.data_dir.is_dir():
        for d in sorted(layout.data_dir.glob("run_id=*")):
            run_id = d.name[len("run_id="):]
            if run_id != SCHEMA_RUN and run_id not in known and run_id not in live:
                out.append(Problem("error", _rel(layout, d), "data without a manifest (invisible to every view)",
                                   f"`langfeat rm {run_id}` removes it"))
    if layout.work_dir.is_dir():
        for d in sorted(layout.work_dir.iterdir()):
            if d.is_dir() and d.name not in known and d.name not in live:
                leftover(d, "staging folder of no run")
    for lock in sorted(layout.runs_dir.glob("*.lock")):
        if lock.name[:-5] not in live:
            leftover(lock, "lock file of a writer that is gone")
    for p in sorted(layout.root.glob(".catalog-*")):
        if not _pid_alive(p.name):
            leftover(p, "temporary catalog of a killed build")
    for p in sorted(layout.root.rglob(".*")):
        if p.name == ".lock" or p.name.startswith(".catalog-") or any(part in live for part in p.parts):
            continue
        if p.name.startswith((".tmp-", ".trash-")) or p.name.endswith(".tmp"):
            if not _pid_alive(p.name) and not any(q in p.parents for q in leftovers):
                leftover(p, "temporary file of a killed write")
    for p in missing_placeholders(layout):
        out.append(Problem("error", _rel(layout, p), "missing or outdated placeholder file", "`langfeat catalog`"))
    for p in sorted([*layout.sets_dir.glob("name=*/*.parquet"), *(layout.root / "results").glob("*/name=*/*.parquet")]):
        reason = _readable(p)
        if reason is not None:
            out.append(Problem("error", _rel(layout, p), f"unreadable Parquet file ({reason})",
                               f"delete {_rel(layout, p.parent)} or rerun the command that wrote it"))
    meta = catalog_meta(layout.root)
    if meta is not None and any(meta.get(k) != v for k, v in expected_meta(layout.root).items()):
        out.append(Problem("warning", "catalog.duckdb", "out of date (the duckdb CLI sees old views)",
                           "`langfeat catalog`"))
    removed: list[str] = []
    if repair:
        for p in leftovers:
            if p.suffix == ".lock" and p.parent == layout.runs_dir:
                with contextlib.suppress(StoreError):  # taken and released: the release removes the file
                    runs.RunLock(layout, p.name[:-5]).release()
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            if not p.exists():
                removed.append(_rel(layout, p))
    return out, removed
