"""The identity runs record for their SAEs: a hub id, or a local folder's content hash (torch-free, so the store's
run matching needs no model libraries)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from langfeat.errors import UsageError


def check_sae_source(sae_model: str | None, local_sae_dir: str | os.PathLike | None) -> None:
    """At most one of ``--sae-model`` and ``--local-sae-dir``."""
    if sae_model and local_sae_dir:
        raise UsageError("both --sae-model and --local-sae-dir given: pass only one")


SAE_SAMPLE_BYTES = 1 << 12  # a weight file over SAE_FULL_HASH bytes is fingerprinted by 256 such chunks
SAE_FULL_HASH = 64 << 20


def _hash_file(h: Any, path: Path) -> None:
    """Feed ``path`` to ``h``: every byte of a file up to :data:`SAE_FULL_HASH`, else its size and 256 evenly spaced
    chunks (two trained SAEs differ in nearly every weight, so a sample tells them apart at the paper's scale,
    where a folder holds tens of GB)."""
    size = path.stat().st_size
    h.update(f"{path.name}:{size}\n".encode())
    with path.open("rb") as f:
        if size <= SAE_FULL_HASH:
            h.update(f.read())
            return
        step = (size - SAE_SAMPLE_BYTES) // 255
        for i in range(256):
            f.seek(i * step)
            h.update(f.read(SAE_SAMPLE_BYTES))


@functools.lru_cache(maxsize=64)
def _local_sae_id(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for hookpoint in sorted(p.parent for p in folder.glob("*/cfg.json")):
        h.update(f"[{hookpoint.name}]\n".encode())
        for file in sorted(hookpoint.iterdir()):
            if file.is_file():
                _hash_file(h, file)
    return f"local:{h.hexdigest()[:16]}"


def local_sae_id(local_sae_dir: str | os.PathLike) -> str:
    """The content identity of a local SAE folder, ``local:<16 hex digits>``: a SHA-256 over every hookpoint's
    ``cfg.json`` and weights, not the folder's path or name. It survives moving, renaming or copying the folder (and
    the store beside it), and changes when an SAE is retrained in place."""
    folder = Path(local_sae_dir).expanduser().resolve()
    try:
        stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*/*"))
                      if p.is_file())
        return _local_sae_id(folder, stamp)
    except OSError as exc:
        raise UsageError(f"cannot read SAE folder {folder} ({exc.strerror or exc}): check its files' permissions, "
                         "or pass another --local-sae-dir") from None


def sae_id(sae_model: str | None, local_sae_dir: str | os.PathLike | None) -> str | None:
    """How runs name their SAEs: :func:`local_sae_id` of ``--local-sae-dir``, else the hub id ``--sae-model``."""
    if local_sae_dir is not None:
        return local_sae_id(local_sae_dir)
    return sae_model


def canonical_sae_id(stored: str | None) -> str | None:
    """A run's recorded SAE as :func:`sae_id` names it today: stores written before content identities recorded the
    absolute folder path, which maps to that folder's :func:`local_sae_id` while it exists."""
    if stored and os.path.isabs(stored) and Path(stored).is_dir():
        return local_sae_id(stored)
    return stored
