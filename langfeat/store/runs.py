"""Run manifests and atomic commits: how a run appears in a store.

A run is one (model, SAE/neurons, dataset, config/language, split, slice, template, layers) ingestion. Its
manifest ``runs/<run_id>.json`` is written first (status ``running``) and rewritten atomically; its data is
staged under ``_work/<run_id>/lang=<L>/`` and appears in ``data/run_id=<run_id>/`` by one directory rename,
after which the manifest says ``complete``. Readers therefore never see part of a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from langfeat.errors import StoreError, UsageError
from langfeat.store.atomic import remove_dir, write_json_atomic
from langfeat.store.layout import Layout

# Keys that define a run's identity: the same values give the same run_id (so a rerun resumes it).
IDENTITY_KEYS = (
    "model", "sae_model", "dataset", "split", "config", "start", "end", "template", "text_column",
    "layers", "neurons", "dtype", "max_length", "kind",
)


# The manifest key of a run's origin ('ingest' | 'import'); named ``kind`` on disk since the first store version.
ORIGIN_KEY = "kind"


@dataclass(frozen=True)
class RunManifest:
    """What a run is, as written to ``runs/<run_id>.json`` before it starts (columns of ``db/10_runs.sql``).

    ``origin`` is how the run was made: ``'ingest'`` (a model over a dataset) or ``'import'`` (the paper's count
    or LAPE files); it is stored under the key ``kind``. ``sae_layers`` / ``neuron_layers`` are left out of the
    file when None (import runs have neither). :func:`begin_run` adds run_id, run_num, status and timestamps.
    """

    origin: str
    model: str
    dataset: str
    lang: str
    lang_name: str
    model_description: str | None = None
    config: str | None = None
    split: str | None = None
    start: int | None = None
    end: int | None = None
    template: str | None = None
    text_column: str | None = None
    sae_model: str | None = None
    neurons: bool = False
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
    payload = json.dumps({k: identity.get(k) for k in IDENTITY_KEYS}, sort_keys=True, default=str)
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


def read_manifest(layout: Layout, run_id: str) -> dict[str, Any] | None:
    path = layout.manifest(run_id)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"run manifest {path} is unreadable ({exc}): delete it to drop the run") from None


def all_manifests(layout: Layout) -> list[dict[str, Any]]:
    if not layout.runs_dir.exists():
        return []
    out = []
    for path in sorted(layout.runs_dir.glob("*.json")):
        if path.name.startswith("_"):
            continue
        run = read_manifest(layout, path.stem)
        if run is not None:
            out.append(run)
    return out


def next_run_num(layout: Layout) -> int:
    """The next free run number (call under :func:`store_lock`)."""
    nums = [int(m.get("run_num", 0)) for m in all_manifests(layout)]
    return max(nums, default=0) + 1


def begin_run(
    layout: Layout, record: RunManifest | dict[str, Any], overwrite: bool = False
) -> tuple[dict[str, Any], bool]:
    """Create (or find, to resume) the run of ``record``; return ``(manifest, already_complete)``.

    ``record`` holds the identity keys and any other metadata; ``run_id``, ``run_num``, ``status``,
    ``created_at`` and ``versions`` are filled in here. ``overwrite`` drops an existing run of the same id.
    """
    record = _record(record)
    run_id = run_id_for(record)
    with store_lock(layout):
        existing = read_manifest(layout, run_id)
        if existing is not None and overwrite:
            drop_run(layout, run_id, locked=True)
            existing = None
        if existing is not None:
            if existing.get("status") == "complete":
                return existing, True
            existing.update({k: v for k, v in record.items() if k not in IDENTITY_KEYS})
            existing["status"] = "running"
            write_json_atomic(layout.manifest(run_id), existing)
            return existing, False
        manifest = dict(record)
        manifest.update(
            run_id=run_id, run_num=next_run_num(layout), status="running", created_at=now(),
            finished_at=None, versions=versions(),
        )
        write_json_atomic(layout.manifest(run_id), manifest)
        return manifest, False


def commit_run(layout: Layout, manifest: dict[str, Any], **updates: Any) -> dict[str, Any]:
    """Publish the staged ``_work/<run_id>/lang=<L>`` directory and mark the run complete."""
    run_id = manifest["run_id"]
    staged = layout.run_work(run_id)
    target = layout.run_data(run_id)
    with store_lock(layout):
        if staged.exists():
            langs = [p for p in staged.iterdir() if p.is_dir() and p.name.startswith("lang=")]
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for lang_dir in langs:  # one lang per run: a single rename makes it visible
                os.replace(lang_dir, target / lang_dir.name)
            shutil.rmtree(staged, ignore_errors=True)
        manifest = dict(manifest)
        manifest.update(updates)
        manifest.update(status="complete", finished_at=now())
        write_json_atomic(layout.manifest(run_id), manifest)
    return manifest


def fail_run(layout: Layout, manifest: dict[str, Any], error: str) -> None:
    """Mark a run failed (its staged shards stay, so a rerun resumes)."""
    manifest = dict(manifest, status="failed", error=error)
    write_json_atomic(layout.manifest(manifest["run_id"]), manifest)


def drop_run(layout: Layout, run_id: str, locked: bool = False) -> None:
    """Remove a run's data, staging and manifest (data first, so readers never see an orphan)."""
    ctx = contextlib.nullcontext() if locked else store_lock(layout)
    with ctx:
        for path in (layout.run_data(run_id), layout.run_work(run_id)):
            remove_dir(path)
        with contextlib.suppress(FileNotFoundError):
            layout.manifest(run_id).unlink()


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
