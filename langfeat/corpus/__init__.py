"""The corpus shipped with langfeat: real text in the paper's 15 languages, usable without any download.

Two sources, one gzipped file per source and language under ``langfeat/corpus/data/`` (rebuilt by
``python -m langfeat.corpus.build``), one segment per line:

- ``synthetic``: LLM-written prose on ten broad topics (dataset-build, BSD-2-Clause), 117–474 paragraphs a
  language. It is synthetic text, not human writing.
- ``udhr``: the Universal Declaration of Human Rights (OHCHR, free reuse), 58–60 segments a language.

Each source is split per language, deterministically and disjointly, by segment position: of every 10
consecutive segments the first 6 go to ``train`` (SAE training), the next 3 to ``identify`` (feature
identification) and the last to ``eval`` (held-out evaluation); ``all`` is every segment. Evaluate on a source
other than the one features were identified on: :data:`PLAN` identifies on synthetic prose and evaluates on the
UDHR. The CLI reads a split as the dataset ``langfeat:corpus/<source>/<split>`` (languages from ``--lang``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from langfeat.errors import UsageError

PREFIX = "langfeat:corpus/"
LANGUAGES = ("en", "de", "fr", "it", "pt", "hi", "es", "th", "bg", "ru", "tr", "vi", "ja", "ko", "zh")
SPLITS = ("train", "identify", "eval", "all")
_CYCLE = ("train",) * 6 + ("identify",) * 3 + ("eval",)


@dataclass(frozen=True)
class Source:
    """One corpus source: its name, what it is, and its licence."""

    name: str
    description: str
    licence: str
    synthetic: bool


SOURCES = {
    "synthetic": Source(
        "synthetic", "LLM-written prose on ten topics (dataset-build 0.1.11), one paragraph per line",
        "BSD-2-Clause, Copyright 2025 electroglyph", True,
    ),
    "udhr": Source(
        "udhr", "Universal Declaration of Human Rights (UDHR in Unicode), one paragraph or item per line",
        "OHCHR text, reproduced freely", False,
    ),
}

# The default use: train SAEs and identify features on synthetic prose, evaluate on the (human-translated) UDHR.
PLAN = {
    "train": PREFIX + "synthetic/train",
    "identify": PREFIX + "synthetic/identify",
    "eval": PREFIX + "udhr/all",
}


def sources() -> list[str]:
    """The names of the corpus sources."""
    return list(SOURCES)


def languages(source: str) -> list[str]:
    """The language tags ``source`` has files for (every source has all 15 paper languages)."""
    _check_source(source)
    return [lang for lang in LANGUAGES if path(source, lang).is_file()]


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise UsageError(f"unknown corpus source {source!r}: use one of {', '.join(SOURCES)}")


def _check_lang(source: str, lang: str) -> str:
    from langfeat import langs

    try:
        tag = langs.canonical(lang)
    except langs.UnknownLanguageError as exc:
        raise UsageError(str(exc)) from None
    if tag not in LANGUAGES:
        raise UsageError(f"corpus source {source!r} has no language {lang!r}: use one of {' '.join(LANGUAGES)}")
    return tag


def path(source: str, lang: str) -> Path:
    """The shipped file of ``source`` in ``lang`` (a canonical tag)."""
    return Path(str(files("langfeat.corpus").joinpath("data", source, f"{lang}.txt.gz")))


@lru_cache(maxsize=64)
def _segments(source: str, tag: str) -> tuple[str, ...]:
    raw = gzip.decompress(path(source, tag).read_bytes()).decode("utf-8")
    return tuple(raw.removesuffix("\n").split("\n"))


def segments(source: str, lang: str) -> list[str]:
    """Every segment of ``source`` in ``lang`` (any tag or name ``langs`` resolves), in file order."""
    _check_source(source)
    return list(_segments(source, _check_lang(source, lang)))


def split_of(index: int) -> str:
    """The split the segment at position ``index`` of its file belongs to."""
    return _CYCLE[index % len(_CYCLE)]


def split_indices(n: int, split: str) -> list[int]:
    """Positions (of ``n`` segments) that form ``split``."""
    if split not in SPLITS:
        raise UsageError(f"unknown corpus split {split!r}: use one of {', '.join(SPLITS)}")
    return [i for i in range(n) if split == "all" or split_of(i) == split]


def texts(source: str, split: str, lang: str) -> list[str]:
    """The segments of ``source`` / ``split`` in ``lang``, in file order."""
    seg = segments(source, lang)
    return [seg[i] for i in split_indices(len(seg), split)]


def dataset(source: str, split: str) -> str:
    """The DATASET name under which the CLI reads ``source`` / ``split``."""
    _check_source(source)
    split_indices(0, split)
    return f"{PREFIX}{source}/{split}"


def is_corpus(name: str) -> bool:
    """Whether a DATASET names a corpus split (``langfeat:corpus/<source>/<split>``)."""
    return name.startswith(PREFIX)


def parse(name: str) -> tuple[str, str]:
    """``(source, split)`` of ``langfeat:corpus/<source>/<split>`` (a trailing ``/{lang}`` is allowed)."""
    parts = name[len(PREFIX):].strip("/").split("/") if is_corpus(name) else []
    if parts and parts[-1] == "{lang}":
        parts = parts[:-1]
    if len(parts) != 2:
        raise UsageError(
            f"bad corpus dataset {name!r}: use {PREFIX}<source>/<split> with source in {', '.join(SOURCES)} "
            f"and split in {', '.join(SPLITS)}"
        )
    _check_source(parts[0])
    split_indices(0, parts[1])
    return parts[0], parts[1]
