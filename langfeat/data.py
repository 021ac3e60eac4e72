"""Text sources: a hub dataset config or a local file, sliced ``[start:end)`` and formatted with a template.

A DATASET is a hub id (``facebook/xnli``; each language is a dataset config, as in the paper), a local path
(a path containing ``{lang}`` expands per language), or a split of the corpus shipped with langfeat,
``langfeat:corpus/<source>/<split>`` (see :mod:`langfeat.corpus`; the language comes from ``--lang``).
Local files are read by extension (``.gz`` allowed): ``.txt`` (one example per line), ``.jsonl``/``.json``
(JSON lines), ``.csv``, ``.tsv``, ``.parquet``; any other extension (FLORES' ``eng_Latn.devtest.gz``) is read
as text lines. Rows are sliced exactly: ``end`` is exclusive and clamped to the number of rows (the paper's
``[start:-1]`` off-by-one does not recur).
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from langfeat import langs
from langfeat.errors import UsageError

# The paper's prompt templates (scripts/const.py), by the last part of the hub id, and the label column of
# single-config datasets whose language is a label value (WiLI-2018).
KNOWN_TEMPLATES = {
    "xnli": "{premise} {hypothesis}",
    "paws-x": "{sentence1}",
    "flores_plus": "{text}",
    "wili_2018": "{sentence}",
}
LABEL_LANGUAGE = {"wili_2018": "label"}

_TEXT_EXTS = {".txt"}
_TABLE_EXTS = {".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet"}


def is_local(dataset: str) -> bool:
    """Whether ``dataset`` names a local file (pattern) rather than a hub id."""
    if "{lang}" in dataset:
        return True
    path = Path(dataset).expanduser()
    return path.exists() or dataset.startswith((".", "/", "~")) or path.suffix.lower() in _TABLE_EXTS | {".gz"}


def _known(dataset: str) -> str | None:
    key = dataset.rstrip("/").split("/")[-1].lower()
    return key if key in KNOWN_TEMPLATES else None


def template_fields(template: str) -> list[str]:
    """The column names a ``str.format`` template reads."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise UsageError(f"bad --text-template {template!r} ({exc}): use format fields like '{{text}}'") from None
    if any(n == "" or n.isdigit() for n in names):
        raise UsageError(f"--text-template {template!r} has positional fields: name the columns, e.g. '{{text}}'")
    return [n.split(".")[0].split("[")[0] for n in names]


@dataclass
class TextSource:
    """Rows ``[start, end)`` of one dataset config, formatted with ``template``."""

    dataset: str  # as recorded in the store (hub id, absolute local path pattern, or a given name)
    config: str  # the language value as the user gave it
    lang: langs.Lang
    split: str
    start: int
    end: int  # exclusive, clamped to the rows available
    template: str
    text_column: str | None
    path: str | None = None  # the local file read, if any
    _rows: Any = field(default=None, repr=False)  # pa.Table, datasets.Dataset or list[str] of the slice

    def __len__(self) -> int:
        return self.end - self.start

    def texts(self, lo: int = 0, hi: int | None = None) -> list[str]:
        """Formatted texts of slice-relative rows ``[lo, hi)`` (absolute row = ``start + i``)."""
        hi = len(self) if hi is None else min(hi, len(self))
        if isinstance(self._rows, list):
            return self._rows[lo:hi]
        names = template_fields(self.template)
        if isinstance(self._rows, pa.Table):
            cols = self._rows.select(names).slice(lo, hi - lo).to_pydict()
        else:  # datasets.Dataset: columnar slice
            cols = self._rows.select_columns(names)[lo:hi]
        n = hi - lo
        return [
            self.template.format_map({c: ("" if cols[c][i] is None else cols[c][i]) for c in names}) for i in range(n)
        ]


def _resolve_template(
    dataset: str, columns: list[str], template: str | None, text_column: str | None, where: str
) -> tuple[str, str | None]:
    if template is None and text_column is not None:
        template = "{" + text_column + "}"
    if template is None:
        known = _known(dataset)
        if known is not None:
            template = KNOWN_TEMPLATES[known]
        elif "text" in columns:
            template = "{text}"
        elif len(columns) == 1:
            template = "{" + columns[0] + "}"
        else:
            raise UsageError(
                f"no text column in {where} (columns: {', '.join(columns)}): pass --text-column or --text-template"
            )
    missing = [c for c in template_fields(template) if c not in columns]
    if missing:
        raise UsageError(
            f"text column {missing[0]!r} is not in {where} (columns: {', '.join(columns)}): "
            "fix --text-column / --text-template"
        )
    return template, text_column


def _read_lines(path: Path) -> pa.Table:
    with pa.input_stream(str(path), compression="detect") as fh:
        raw = fh.read().decode("utf-8")
    if raw.endswith("\n"):
        raw = raw[:-1]
    lines = [line.rstrip("\r") for line in raw.split("\n")] if raw else []
    return pa.table({"text": pa.array(lines, pa.string())})


def read_local(path: Path) -> pa.Table:
    """Read a local file into an Arrow table (text lines become one column ``text``)."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    name = path.name.lower()
    ext = Path(name[:-3] if name.endswith(".gz") else name).suffix
    try:
        if ext in (".jsonl", ".json", ".ndjson"):
            with pa.input_stream(str(path), compression="detect") as fh:
                return pjson.read_json(fh)
        if ext in (".csv", ".tsv"):
            parse = pcsv.ParseOptions(delimiter="\t", quote_char=False) if ext == ".tsv" else pcsv.ParseOptions()
            with pa.input_stream(str(path), compression="detect") as fh:
                return pcsv.read_csv(fh, parse_options=parse)
        if ext == ".parquet":
            if name.endswith(".gz"):
                with pa.input_stream(str(path), compression="detect") as fh:
                    return pq.read_table(pa.BufferReader(fh.read()))
            return pq.read_table(path)
        return _read_lines(path)
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
        if isinstance(exc, pa.ArrowInvalid) and "Empty CSV" in str(exc):
            return pa.table({})
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read {path} ({first}): check the file's format and extension") from None


def _slice(n_rows: int, start: int, end: int | None, where: str) -> tuple[int, int]:
    if start < 0 or (end is not None and end < 0):
        raise UsageError(f"negative --start/--end ({start}, {end}): rows are counted from 0")
    if n_rows == 0:
        raise UsageError(f"{where} is empty: check the file or the dataset config")
    stop = n_rows if end is None else min(end, n_rows)
    if start >= stop:
        raise UsageError(f"--start {start} --end {end} selects no rows of {where} ({n_rows} rows): fix the range")
    return start, stop


def _resolve_lang(value: str) -> langs.Lang:
    try:
        return langs.resolve(value)
    except langs.UnknownLanguageError as exc:
        raise UsageError(str(exc)) from None


def _open_local(
    dataset: str, value: str, start: int, end: int | None, template: str | None, text_column: str | None
) -> TextSource:
    pattern = os.path.abspath(os.path.expanduser(dataset))  # keeps a literal {lang}
    path = Path(pattern.replace("{lang}", value))
    if not path.is_file():
        raise UsageError(f"no file {path} for language {value!r}: check DATASET and --lang")
    table = read_local(path)
    where = str(path)
    tmpl, col = _resolve_template(dataset, table.column_names, template, text_column, where)
    lo, hi = _slice(table.num_rows, start, end, where)
    rows = table.select(template_fields(tmpl)).slice(lo, hi - lo)
    return TextSource(
        dataset=pattern, config=value, lang=_resolve_lang(value), split="file", start=lo, end=hi,
        template=tmpl, text_column=col, path=str(path), _rows=rows,
    )


def _open_corpus(
    dataset: str, value: str, start: int, end: int | None, template: str | None, text_column: str | None
) -> TextSource:
    from langfeat import corpus

    source, split = corpus.parse(dataset)
    rows_all = corpus.texts(source, split, value)
    lang = _resolve_lang(value)
    where = f"{corpus.dataset(source, split)} ({lang.tag})"
    tmpl, col = _resolve_template(dataset, ["text"], template, text_column, where)
    lo, hi = _slice(len(rows_all), start, end, where)
    return TextSource(
        dataset=corpus.dataset(source, split), config=value, lang=lang, split=split, start=lo, end=hi,
        template=tmpl, text_column=col, path=str(corpus.path(source, lang.tag)),
        _rows=pa.table({"text": pa.array(rows_all[lo:hi], pa.string())}),
    )


def _open_hub(
    dataset: str, value: str, split: str, start: int, end: int | None, template: str | None, text_column: str | None
) -> TextSource:
    import datasets

    known = _known(dataset)
    label = LABEL_LANGUAGE.get(known or "")
    lang = _resolve_lang(value)
    try:
        ds = datasets.load_dataset(dataset, None if label else value, split=split)
    except ValueError as exc:  # unknown config or split
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"dataset {dataset!r} has no config {value!r} / split {split!r} ({first}): fix --lang/--split"
        ) from None
    except Exception as exc:  # hub and network errors come in many types
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"cannot load dataset {dataset!r} config {value!r} ({type(exc).__name__}: {first}): check the id, the "
            "network/token, or pass a local file"
        ) from None
    if label:
        names = ds.features[label].names
        if value not in names:
            raise UsageError(f"{dataset} has no label {value!r}: use one of its label codes, e.g. {names[:3]}")
        wanted = names.index(value)
        ds = ds.filter(lambda col: [x == wanted for x in col], batched=True, input_columns=[label])
    where = f"{dataset} ({value}, {split})"
    tmpl, col = _resolve_template(dataset, list(ds.column_names), template, text_column, where)
    lo, hi = _slice(len(ds), start, end, where)
    rows = ds.select(range(lo, hi))
    return TextSource(
        dataset=dataset, config=value, lang=lang, split=split, start=lo, end=hi, template=tmpl,
        text_column=col, _rows=rows,
    )


def open_source(
    dataset: str,
    lang: str,
    split: str = "train",
    start: int = 0,
    end: int | None = None,
    template: str | None = None,
    text_column: str | None = None,
) -> TextSource:
    """Open the rows of language ``lang`` of ``dataset`` (hub id, local path or corpus split); raises UsageError
    on bad input."""
    if dataset.startswith("langfeat:corpus"):
        return _open_corpus(dataset, lang, start, end, template, text_column)
    if is_local(dataset):
        return _open_local(dataset, lang, start, end, template, text_column)
    return _open_hub(dataset, lang, split, start, end, template, text_column)


def count_blank(source: TextSource, chunk: int = 4096) -> int:
    """How many of ``source``'s texts are empty or only whitespace (they would be BOS-only documents)."""
    n = 0
    for lo in range(0, len(source), chunk):
        n += sum(1 for t in source.texts(lo, lo + chunk) if not t.strip())
    return n


def from_texts(texts: list[str], lang: str, name: str) -> TextSource:
    """An in-memory list of texts as a source (``dataset = name``)."""
    if not texts:
        raise UsageError(f"no texts given for {name!r}: pass at least one text")
    return TextSource(
        dataset=name, config=lang, lang=_resolve_lang(lang), split="memory", start=0, end=len(texts),
        template="{text}", text_column=None, _rows=list(texts),
    )


def load_texts(
    dataset: str,
    lang: str,
    split: str = "train",
    start: int = 0,
    end: int | None = None,
    template: str | None = None,
    text_column: str | None = None,
) -> tuple[range, list[str]]:
    """``(absolute row indices, formatted texts)`` of a (small) slice, in memory."""
    source = open_source(dataset, lang, split, start, end, template, text_column)
    return range(source.start, source.end), source.texts()
