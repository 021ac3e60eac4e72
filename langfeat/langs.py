"""Language tags: the one place where aliases become the store's canonical tag.

Every language in the store is kept as a short BCP-47 tag: the language subtag (ISO 639-1 where one exists,
macrolanguages folded: ``cmn`` → ``zh``, ``arb`` → ``ar``), plus a script subtag only when it is not the
language's usual script (``zh-Hant``, ``sr-Latn``). Regions are dropped (``pt-BR`` → ``pt``). So ``en``,
``eng``, ``eng_Latn``, ``English`` and ``en-GB`` are all ``en``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import langcodes
import polars as pl

from langfeat.errors import UsageError

# Scripts that are part of a language's usual (composite) script: Korean ``Kore`` = Hangul + Han, etc.
_USUAL_SCRIPTS = {"ko": ("Hang", "Kore"), "ja": ("Jpan", "Hira", "Kana"), "zh": ("Hans",)}


class UnknownLanguageError(UsageError, ValueError):
    """A language tag or name that no language matches."""


@dataclass(frozen=True)
class Lang:
    """A canonical language: ``tag`` (as stored) and its English ``name``."""

    tag: str
    name: str


@lru_cache(maxsize=4096)
def resolve(value: str) -> Lang:
    """Resolve a tag, code or English name (``en``, ``eng_Latn``, ``English``) to its canonical :class:`Lang`."""
    text = str(value).strip()
    if not text:
        raise UnknownLanguageError("empty language tag: pass a code such as 'en', 'eng_Latn' or 'English'")
    lang = None
    try:
        lang = langcodes.Language.get(langcodes.standardize_tag(text.replace("_", "-"), macro=True))
        if not lang.language or not lang.is_valid() or lang.language == "und":
            lang = None
    except (langcodes.LanguageTagError, ValueError):
        lang = None
    if lang is None:
        try:
            lang = langcodes.find(text)
        except LookupError:
            lang = None
    if lang is None or not lang.language:
        raise UnknownLanguageError(
            f"unknown language {value!r}: use an ISO 639 code ('de', 'deu'), a FLORES code ('deu_Latn') "
            "or an English name ('German')"
        )
    script = lang.script
    usual = {langcodes.Language.get(lang.language).maximize().script, *_USUAL_SCRIPTS.get(lang.language, ())}
    if script in usual:
        script = None
    tag = lang.language + (f"-{script}" if script else "")
    canonical = langcodes.Language.get(tag)
    return Lang(tag=tag, name=canonical.display_name("en"))


def canonical(value: str) -> str:
    """The canonical store tag of ``value``."""
    return resolve(value).tag


def english_name(value: str) -> str:
    """The English name of ``value`` (``'zh'`` → ``'Chinese'``)."""
    return resolve(value).name


def display_name(value: str) -> str:
    """The English name of ``value``, or ``value`` itself when it is no known language (``'unknown'``, ``'all'``)."""
    try:
        return resolve(value).name
    except UnknownLanguageError:
        return str(value)


def sort_key(value: str) -> str:
    """The language order used everywhere: by English name, as the paper's ``sorted_lang`` (an unknown tag sorts
    by itself). In SQL the same order is ``ORDER BY lang_name, lang``."""
    return display_name(value)


def sort_frame(df: pl.DataFrame, *cols: str, then: Sequence[str] = (), last: Sequence[str] = (),
               nulls_last: bool = True) -> pl.DataFrame:
    """``df`` sorted by the language order (:func:`sort_key`) of each of ``cols`` (default ``lang``; ties by the
    tag), then by the columns ``then``; values in ``last`` (e.g. ``'unknown'``) sort after every language."""
    if df.height == 0:
        return df
    keys: list[pl.Expr] = []
    for col in cols or ("lang",):
        keys += [pl.col(col).is_in(list(last)), pl.col(col).map_elements(sort_key, return_dtype=pl.String), pl.col(col)]
    return df.sort([*keys, *(pl.col(c) for c in then)], maintain_order=True, nulls_last=nulls_last)
