"""Run manifests, run ownership and atomic commits: how a run appears in a store.

A run is one (model, SAE/neurons, dataset, config/language, split, slice, template, layers) ingestion. Its
manifest ``runs/<run_id>.json`` is written first (status ``running``) and rewritten atomically; its data is
staged under ``_work/<run_id>/lang=<L>/`` and moved into ``data/run_id=<run_id>/`` by one directory rename,
after which the manifest says ``complete``. The data views only show runs whose manifest says ``complete``, so
readers see a run's data exactly when its manifest does (a kill between the rename and the manifest leaves the
data invisible; the rerun moves it back to staging and commits again).

A run being written is owned by one process: :func:`begin_run` takes an exclusive ``flock`` on
``runs/<run_id>.lock`` (released by :func:`commit_run` / :func:`fail_run`, or by the OS when the process dies),
so a second writer of the same run stops with :class:`RunBusy` naming the owner, and ``runs`` tells a live run
(lock held) from an interrupted one (status ``running``, lock free). Run numbers are allocated under the store
lock, so writers of different runs work in parallel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from langfeat.errors import StoreError, UsageError
from langfeat.store.atomic import remove_dir, write_json_atomic
from langfeat.store.layout import Layout

STATUSES = ("running", "complete", "failed", "removing")
ROLES = ("identify", "eval")  # ingested to identify features | texts ingested by `classify` to evaluate

# Keys that define a run's identity: the same values give the same run_id (so a rerun resumes it).
IDENTITY_KEYS = (
    "model", "sae_model", "dataset", "split", "config", "start", "end", "template", "text_column",
    "layers", "neurons", "dtype", "max_length", "kind",
)
# Keys a resumed run keeps from its manifest (the shard size fixes which documents each staged shard holds).
RESUME_KEYS = ("shard_docs", "run_num", "created_at")


# The manifest key of a run's origin ('ingest' | 'import'); named ``kind`` on disk since the first store version.
ORIGIN_KEY = "kind"


@dataclass(frozen=True)
class RunManifest:
    """What a run is, as written to ``runs/<run_id>.json`` before it starts (columns of ``db/10_runs.sql``).

    ``origin`` is how the run was made: ``'ingest'`` (a model over a dataset) or ``'import'`` (the paper's count
    or LAPE files); it is stored under the key ``kind``. ``role`` is what the run is for: ``'identify'``
    (ingested to identify features) or ``'eval'`` (texts ``classify`` ingested to evaluate; identify skips them
    unless asked). ``sae_layers`` / ``neuron_layers`` are left out of the file when None (import runs have
    neither). :func:`begin_run` adds run_id, run_num, status and timestamps; :func:`commit_run` adds n_docs,
    n_tokens, n_files and n_rows.
    """

    origin: str
    model: str
    dataset: str
    lang: str
    lang_name: str
    role: str = "identify"
    model_description: str | None = None
    config: str | None = None
    split: str | None = None
    start: int | None = None
    end: int | None = None
    template: str | None = None
    text_column: str | None = None
    sae_model: str | None = None
    sae_path: str | None = None  # where a local SAE folder was at ingestion (sae_model is its content identity)
    neurons: bool = False
    neuron_docs: bool = False  # per-document neuron values (neuron_docs) stored too
    layers: list[int] = field(default_factory=list)
    layer_paths: list[str] = field(default_factory=list)
    sae_layers: list[int] | None = None
    neuron_layers: list[int] | None = None
    dtype: str = "float32"
    max_length: int | None = None
    bos: bool = True
    shard_docs: int | None = None
    source_path: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The manifest's keys and values as stored (``origin`` as ``kind``)."""
        out: dict[str, Any] = {ORIGIN_KEY: self.origin}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "origin" or (f.name in ("sae_layers", "neuron_layers") and value is None):
                continue
            out[f.name] = list(value) if isinstance(value, list) else value
        return out


def _record(record: RunManifest | dict[str, Any]) -> dict[str, Any]:
    return record.to_record() if isinstance(record, RunManifest) else dict(record)


def run_id_for(identity: RunManifest | dict[str, Any]) -> str:
    """A short, deterministic id for a run identity (12 hex digits of a SHA-256)."""
    identity = _record(identity)
    keys = {k: identity.get(k) for k in IDENTITY_KEYS}
    if identity.get("neuron_docs"):  # only when set: the ids of runs without neuron docs stay what they were
        keys["neuron_docs"] = True
    payload = json.dumps(keys, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("langfeat", "torch", "transformers", "eai-sparsify", "datasets", "duckdb", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


FAULT_ENV = "LANGFEAT_FAULT"


def fault_point(name: str) -> None:
    """Crash-safety test hook: at point ``name``, SIGKILL this process when ``$LANGFEAT_FAULT`` is ``name``,
    sleep S seconds when it is ``name:sleep:S`` (to hold a run while a test starts a second writer), or SIGKILL
    only the first process to get there when it is ``name:once:FILE`` (FILE is created; a restarted worker lives)."""
    value = os.environ.get(FAULT_ENV)
    if not value or value.split(":", 1)[0] != name:
        return
    if value == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif value.startswith(f"{name}:once:"):
        try:
            os.close(os.open(value.split(":", 2)[2], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
    elif value.startswith(f"{name}:sleep:"):
        time.sleep(float(value.rsplit(":", 1)[1]))


# ---------------------------------------------------------------------------------------------------------------
# locks


@contextlib.contextmanager
def store_lock(layout: Layout) -> Iterator[None]:
    """An exclusive inter-process lock on the store (held briefly, for run-number allocation and commits)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RunBusy(StoreError):
    """Another process owns (is writing) the run."""


def lock_owner(layout: Layout, run_id: str) -> str:
    """``pid N on host H since T`` of the process that wrote ``runs/<run_id>.lock`` (or ``another process``)."""
    try:
        info = json.loads(layout.run_lock(run_id).read_text(encoding="utf-8"))
        return f"pid {info['pid']} on host {info['host']} since {info['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def is_live(layout: Layout, run_id: str) -> bool:
    """True while some process owns the run (its lock is held); opens the lock file read-only."""
    try:
        fd = os.open(layout.run_lock(run_id), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


class RunLock:
    """Ownership of one run: an exclusive ``flock`` on ``runs/<run_id>.lock`` with the owner's pid/host/time."""

    def __init__(self, layout: Layout, run_id: str, wait: bool = False, poll: float = 0.5):
        self.path = layout.run_lock(run_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not wait:
                    raise RunBusy(
                        f"run {run_id} is being written by {lock_owner(layout, run_id)}: wait for it to finish "
                        "(or pass --wait), or stop that process and rerun to resume"
                    ) from None
                time.sleep(poll)
                continue
            try:  # the previous owner may have removed the file between our open and flock: take the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: a waiter re-checks the inode
        os.close(self.fd)
        self.fd = -1


_held: dict[tuple[str, str], RunLock] = {}
_held_guard = threading.Lock()


def acquire_run(layout: Layout, run_id: str, wait: bool = False) -> None:
    """Own run ``run_id`` until :func:`release_run` (RunBusy if another process owns it and not ``wait``)."""
    key = (str(layout.root), run_id)
    with _held_guard:
        if key in _held:
            raise RunBusy(f"run {run_id} is already being written by this process")
    lock = RunLock(layout, run_id, wait=wait)
    with _held_guard:
        _held[key] = lock


def release_run(layout: Layout, run_id: str) -> None:
    with _held_guard:
        lock = _held.pop((str(layout.root), run_id), None)
    if lock is not None:
        lock.release()


@contextlib.contextmanager
def owned_run(layout: Layout, run_id: str, wait: bool = False) -> Iterator[None]:
    """Own run ``run_id`` for the duration of the block (for commands that change a run, e.g. ``rm``)."""
    acquire_run(layout, run_id, wait=wait)
    try:
        yield
    finally:
        release_run(layout, run_id)


# ---------------------------------------------------------------------------------------------------------------
# signals: SIGTERM is handled like SIGINT, and neither splits a commit


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a write; ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}: rerun the same command to resume")


_critical = {"depth": 0, "pending": None}


def _on_signal(signum: int, _frame: Any) -> None:
    if _critical["depth"]:
        _critical["pending"] = signum  # raised when the critical section ends
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` (so runs are failed cleanly); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A block no SIGINT/SIGTERM interrupts (the signal is raised when it ends)."""
    _critical["depth"] += 1
    try:
        yield
    finally:
        _critical["depth"] -= 1
        pending = _critical["pending"]
        if not _critical["depth"] and pending is not None:
            _critical["pending"] = None
            raise Interrupted(pending)


# ---------------------------------------------------------------------------------------------------------------
# manifests


def read_manifest(layout: Layout, run_id: str) -> dict[str, Any] | None:
    path = layout.manifest(run_id)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"run manifest {path} is unreadable ({exc.strerror}): check its permissions") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("run_id") != run_id:
            raise ValueError("not a manifest of this run")
    except ValueError as exc:
        raise StoreError(
            f"run manifest {path} is corrupt ({exc}): remove the run with `langfeat rm {run_id}` and ingest it "
            "again (`langfeat verify` lists every problem)"
        ) from None
    return data


def manifest_ids(layout: Layout) -> list[str]:
    """The run ids that have a manifest file (readable or not), sorted."""
    if not layout.runs_dir.exists():
        return []
    return sorted(p.stem for p in layout.runs_dir.glob("*.json") if not p.name.startswith(("_", ".")))


def all_manifests(layout: Layout) -> list[dict[str, Any]]:
    """Every manifest (StoreError naming the file if one is corrupt)."""
    return [m for run_id in manifest_ids(layout) if (m := read_manifest(layout, run_id)) is not None]


def next_run_num(layout: Layout) -> int:
    """The next free run number (call under :func:`store_lock`)."""
    nums = [int(m.get("run_num") or 0) for m in all_manifests(layout)]
    return max(nums, default=0) + 1


# ---------------------------------------------------------------------------------------------------------------
# the run lifecycle


def _uncommit(layout: Layout, run_id: str) -> None:
    """Put the data of a run killed during its commit back into staging (or drop an empty half-made folder)."""
    target, staged = layout.run_data(run_id), layout.run_work(run_id)
    if not target.exists():
        return
    for lang_dir in sorted(p for p in target.iterdir() if p.name.startswith("lang=")):
        if not (staged / lang_dir.name).exists():
            staged.mkdir(parents=True, exist_ok=True)
            os.replace(lang_dir, staged / lang_dir.name)
    remove_dir(target)


def begin_run(layout: Layout, record: RunManifest | dict[str, Any], overwrite: bool = False, wait: bool = False
              ) -> tuple[dict[str, Any], bool]:
    """Own, then create (or find, to resume) the run of ``record``; return ``(manifest, already_complete)``.

    ``record`` holds the identity keys and any other metadata; ``run_id``, ``run_num``, ``status``, ``role``
    (default ``identify``), ``created_at`` and ``versions`` are filled in here. ``overwrite`` drops an existing run
    of the same id. The run stays owned by this process until :func:`commit_run` or :func:`fail_run` (released at
    once when it is already complete); RunBusy if another process owns it (``wait``: wait for it).
    """
    record = _record(record)
    run_id = run_id_for(record)
    record = dict(record, role=record.get("role") or "identify")
    if record["role"] not in ROLES:
        raise UsageError(f"unknown run role {record['role']!r}: use one of {', '.join(ROLES)}")
    acquire_run(layout, run_id, wait=wait)
    try:
        with store_lock(layout):
            fault_point("begin-owned")  # owned, manifest not yet written: the rerun starts the run afresh
            existing = read_manifest(layout, run_id)
            if existing is not None and (overwrite or existing.get("status") == "removing"):
                drop_run(layout, run_id, locked=True)
                existing = None
            if existing is not None and existing.get("status") == "complete":
                if record["role"] == "identify" and existing.get("role") == "eval":
                    existing["role"] = "identify"  # ingested on purpose: it now feeds identification too
                    write_json_atomic(layout.manifest(run_id), existing)
                release_run(layout, run_id)
                return existing, True
            if existing is not None:
                _uncommit(layout, run_id)
                kept = {k: existing[k] for k in RESUME_KEYS if existing.get(k) is not None}
                manifest = existing
                manifest.update({k: v for k, v in record.items() if k not in IDENTITY_KEYS})
                manifest.update(kept, status="running", error=None)
            else:
                remove_dir(layout.run_data(run_id))  # invisible leftovers of a run whose manifest is gone
                manifest = dict(record)
                manifest.update(
                    run_id=run_id, run_num=next_run_num(layout), status="running", created_at=now(),
                    finished_at=None, versions=versions(),
                )
            write_json_atomic(layout.manifest(run_id), manifest)
        return manifest, False
    except BaseException:
        release_run(layout, run_id)
        raise


def parquet_rows(folder: Path) -> dict[str, int]:
    """``{path relative to folder: row count}`` of every Parquet file under ``folder`` (from the footers)."""
    import pyarrow.parquet as pq

    return {
        p.relative_to(folder).as_posix(): pq.read_metadata(p).num_rows
        for p in sorted(folder.rglob("*.parquet")) if not p.name.startswith(".")
    }


def commit_run(layout: Layout, manifest: dict[str, Any], expect_docs: int | None = None, **updates: Any
               ) -> dict[str, Any]:
    """Publish the staged ``_work/<run_id>/lang=<L>`` directory and mark the run complete; release the run.

    The staged files' row counts are checked first: with ``expect_docs``, the docs files must hold exactly that
    many documents and the tokens files ``updates['n_tokens']`` tokens (else StoreError, nothing published). The
    row count of every file goes into ``files.json`` beside the data (moved with it by the same rename) and the
    totals into the manifest (``n_files``, ``n_rows``).
    """
    run_id = manifest["run_id"]
    staged = layout.run_work(run_id)
    target = layout.run_data(run_id)
    langs = sorted(p for p in staged.iterdir() if p.is_dir() and p.name.startswith("lang=")) if staged.exists() else []
    files: dict[str, dict[str, int]] = {p.name: parquet_rows(p) for p in langs}
    if expect_docs is not None:
        docs = sum(n for f in files.values() for k, n in f.items() if k.startswith("docs/"))
        tokens = sum(n for f in files.values() for k, n in f.items() if k.startswith("tokens/"))
        want_tokens = updates.get("n_tokens")
        bad_tokens = want_tokens is not None and tokens != want_tokens
        if docs != expect_docs or updates.get("n_docs", docs) != docs or bad_tokens:
            raise StoreError(
                f"run {run_id}: the staged files hold {docs} docs / {tokens} tokens but {expect_docs} docs / "
                f"{want_tokens} tokens were written; nothing was published: rerun the same command to redo it"
            )
    for lang_dir in langs:
        write_json_atomic(lang_dir / "files.json", files[lang_dir.name])
    fault_point("commit")
    manifest = dict(manifest)
    manifest.update(updates)
    manifest.update(
        status="complete", finished_at=now(), n_files=sum(len(f) for f in files.values()),
        n_rows=_table_rows(files),
    )
    with critical(), store_lock(layout):
        if langs:
            remove_dir(target)
            target.mkdir(parents=True)
            for lang_dir in langs:  # one lang per run: a single rename moves it
                os.replace(lang_dir, target / lang_dir.name)
            fault_point("commit-renamed")
        write_json_atomic(layout.manifest(run_id), manifest)  # the commit point: the views show the data now
    fault_point("commit-done")
    shutil.rmtree(staged, ignore_errors=True)
    release_run(layout, run_id)
    return manifest


def _table_rows(files: dict[str, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for per_lang in files.values():
        for rel, n in per_lang.items():
            table = rel.split("/", 1)[0]
            out[table] = out.get(table, 0) + n
    return out


def fail_run(layout: Layout, manifest: dict[str, Any], error: str) -> None:
    """Mark a run failed (its staged shards stay, so a rerun resumes) and release it; best effort on a full disk."""
    try:
        with contextlib.suppress(OSError):
            write_json_atomic(layout.manifest(manifest["run_id"]), dict(manifest, status="failed", error=error))
    finally:
        release_run(layout, manifest["run_id"])


def drop_run(layout: Layout, run_id: str, locked: bool = False) -> None:
    """Remove a run: its manifest first says ``removing`` (the views hide its data), then data, staging, manifest.

    The caller owns the run (:func:`owned_run`); ``locked``: the store lock is already held.
    """
    ctx = contextlib.nullcontext() if locked else store_lock(layout)
    with ctx:
        path = layout.manifest(run_id)
        if path.exists():
            try:
                manifest = read_manifest(layout, run_id) or {}
            except StoreError:
                manifest = {}
            write_json_atomic(path, dict(manifest, run_id=run_id, status="removing"))
        for folder in (layout.run_data(run_id), layout.run_work(run_id)):
            remove_dir(folder)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def resolve_runs(path: str | os.PathLike | None, run_ids: Iterable[str]) -> list[str]:
    """Full run ids for ``run_ids`` (each a run id or a unique prefix of one); UsageError if any is unknown."""
    layout = Layout(path)
    known = manifest_ids(layout)
    for folder, prefix in ((layout.data_dir, "run_id="), (layout.work_dir, "")):  # data left without a manifest
        if folder.is_dir():
            known += sorted(p.name[len(prefix):] for p in folder.iterdir()
                            if p.is_dir() and p.name.startswith(prefix) and not p.name.startswith((".", "run_id=_")))
    known = list(dict.fromkeys(known))
    out: list[str] = []
    for given in run_ids:
        if given in known:
            out.append(given)
            continue
        matches = [r for r in known if r.startswith(given)] if given else []
        if len(matches) != 1:
            why = "matches several runs" if matches else "is not a run"
            raise UsageError(f"{given!r} {why} in {layout.root}: list the run ids with `langfeat runs`")
        out.append(matches[0])
    return list(dict.fromkeys(out))


def remove_runs(path: str | os.PathLike | None, run_ids: Iterable[str],
                log: Callable[[str], None] | None = None) -> list[str]:
    """Drop the given runs; all ids are checked (and the runs owned) before anything is removed."""
    layout = Layout(path)
    full = resolve_runs(path, run_ids)
    with contextlib.ExitStack() as stack:
        for run_id in full:  # RunBusy for a run being written: nothing removed
            stack.enter_context(owned_run(layout, run_id))
        for run_id in full:
            drop_run(layout, run_id)
            if log is not None:
                log(run_id)
    return full
