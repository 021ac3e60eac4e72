"""Atomic publishing: a file or folder that exists under its final name is complete.

Everything the store (and langfeat's model cache) writes goes through these helpers: a file is written to a
hidden temporary name beside its target (``.<name>.<pid>.<random>.tmp``) and renamed into place; a folder is
built under a temporary name and swapped in, the older one moved to a hidden trash name first and deleted after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _hidden(path: Path, prefix: str, suffix: str = "") -> Path:
    return path.with_name(f"{prefix}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden(path, ".", ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically."""
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def temp_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty hidden folder beside ``target`` to build it in (then :func:`publish_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden(target, ".tmp-")
    tmp.mkdir()
    return tmp


def remove_dir(path: str | os.PathLike) -> None:
    """Remove folder ``path`` as one step for readers: renamed to a hidden trash name, then deleted."""
    path = Path(path)
    if path.exists():
        trash = _hidden(path, ".trash-")
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def publish_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the finished folder ``tmp`` to ``target``, replacing an older ``target`` (the trash swap)."""
    target = Path(target)
    remove_dir(target)
    os.replace(tmp, target)
    return target


@contextlib.contextmanager
def building_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; published as ``target`` when the block ends, deleted if it raises."""
    tmp = temp_dir(target)
    try:
        yield tmp
        publish_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
