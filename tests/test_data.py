"""Text sources: local files of every supported format, templates, exact slicing, and errors."""

from __future__ import annotations

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DATA, flores_lines
from langfeat import data
from langfeat.errors import UsageError

LINES = flores_lines("tha_Thai", 5) + flores_lines("jpn_Jpan", 5) + flores_lines("hin_Deva", 5)


def _write(tmp_path, kind: str):
    path = tmp_path / f"th.{kind}"
    if kind == "txt":
        path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    elif kind == "txt.gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write("\n".join(LINES) + "\n")
    elif kind in ("jsonl", "jsonl.gz"):
        body = "".join(json.dumps({"id": i, "sentence": s}, ensure_ascii=False) + "\n" for i, s in enumerate(LINES))
        if kind.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(body)
        else:
            path.write_text(body, encoding="utf-8")
    elif kind == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "sentence"])
            writer.writerows(enumerate(LINES))
    elif kind == "tsv":  # plain TSV: quotes are literal characters
        path.write_text("id\tsentence\n" + "".join(f"{i}\t{s}\n" for i, s in enumerate(LINES)), encoding="utf-8")
    elif kind == "parquet":
        pq.write_table(pa.table({"id": list(range(len(LINES))), "sentence": LINES}), path)
    return path


@pytest.mark.parametrize("kind", ["txt", "txt.gz", "jsonl", "jsonl.gz", "csv", "tsv", "parquet"])
def test_formats_and_slices(tmp_path, kind):
    path = _write(tmp_path, kind)
    column = None if kind.startswith("txt") else "sentence"
    src = data.open_source(str(tmp_path / ("{lang}." + kind)), "th", start=3, end=11, text_column=column)
    assert (src.start, src.end, len(src)) == (3, 11, 8)
    assert src.texts() == LINES[3:11]
    assert src.texts(2, 4) == LINES[5:7]
    assert src.path == str(path)
    assert src.lang.tag == "th"


def test_end_clamps_and_default_is_all_rows(tmp_path):
    _write(tmp_path, "txt")
    src = data.open_source(str(tmp_path / "{lang}.txt"), "th", end=1000)
    assert src.end == len(LINES) and src.texts()[-1] == LINES[-1]  # no [start:-1] off-by-one
    assert data.open_source(str(tmp_path / "{lang}.txt"), "th").texts() == LINES


def test_flores_devtest_gz_reads_as_lines():
    src = data.open_source(str(DATA / "flores200_devtest" / "{lang}.devtest.gz"), "jpn_Jpan", start=0, end=4)
    assert src.texts() == flores_lines("jpn_Jpan", 4)
    assert src.lang.tag == "ja" and src.config == "jpn_Jpan"


def test_template_over_two_columns(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}"} for i in range(3)]
    (tmp_path / "en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = data.open_source(str(tmp_path / "{lang}.jsonl"), "en", template="{premise} {hypothesis}")
    assert src.texts() == ["p0 h0", "p1 h1", "p2 h2"]
    # the paper's templates apply to known datasets by name
    assert data.KNOWN_TEMPLATES["xnli"] == "{premise} {hypothesis}"


@pytest.mark.parametrize(
    ("setup", "kwargs", "match"),
    [
        ("empty", {}, "is empty"),
        ("jsonl", {"text_column": "nope"}, "text column 'nope'"),
        ("jsonl", {}, "no text column"),
        ("txt", {"start": 40}, "selects no rows"),
        ("none", {}, "no file"),
    ],
)
def test_bad_sources(tmp_path, setup, kwargs, match):
    if setup == "empty":
        (tmp_path / "th.txt").write_text("")
        pattern = "{lang}.txt"
    elif setup == "jsonl":
        (tmp_path / "th.jsonl").write_text('{"a": "x", "b": "y"}\n')
        pattern = "{lang}.jsonl"
    elif setup == "txt":
        _write(tmp_path, "txt")
        pattern = "{lang}.txt"
    else:
        pattern = "{lang}.txt"
    with pytest.raises(UsageError, match=match):
        data.open_source(str(tmp_path / pattern), "th", **kwargs)


def test_unknown_language(tmp_path):
    (tmp_path / "notalanguage.txt").write_text("hello\n")
    with pytest.raises(UsageError, match="unknown language"):
        data.open_source(str(tmp_path / "{lang}.txt"), "notalanguage")
