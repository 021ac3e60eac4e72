"""Human-written training text for the probe benchmark: the translated interface messages of three BSD-licensed
Python packages (Django, Wagtail, Sphinx), one ``<lang>.txt`` file per paper language, grouped into lines of about
180 characters (70 for Japanese and Chinese).

    pip download --no-deps -d wheels django==5.2.19 wagtail==8.0.1 sphinx==9.0.4 && pip install polib
    .venv/bin/python benchmarks/ui_text.py wheels/django-*.whl wheels/wagtail-*.whl wheels/sphinx-*.whl --out ui

Messages are read from the wheels' gettext catalogs (``*/locale/<code>/LC_MESSAGES/*.po``, translations by each
project's translation teams; English: the source messages of the German catalogs). Left out: fuzzy, obsolete and
untranslated entries, messages with placeholders, markup or code (``% { } < > & _ \\ |``, URLs, dotted names),
multi-line messages and messages under 12 characters (5 for Japanese and Chinese); each message is kept once, and a
period is added where a message ends without sentence punctuation. ``benchmarks/probe_lid.py --ui <out>`` trains
the probe on these files beside the demo's identification split. The files are benchmark inputs, not shipped.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

from langfeat.corpus.build import MIN_CHARS, SENTENCE_END

# Canonical tag -> catalog folder names to try, in order (the first one a package has is read).
CATALOGS = {"en": ["de"], "de": ["de"], "fr": ["fr"], "it": ["it"], "pt": ["pt", "pt_PT"], "hi": ["hi"],
            "es": ["es"], "th": ["th"], "bg": ["bg"], "ru": ["ru"], "tr": ["tr"], "vi": ["vi"], "ja": ["ja"],
            "ko": ["ko"], "zh": ["zh_Hans", "zh_CN"]}
CJK = {"ja", "zh"}
CODE = re.compile(r"[%{}<>&_\\|]|https?:|\.\w+\(|\w+\.\w+\.|[A-Za-z]+_[a-z]")


def catalogs(wheel: zipfile.ZipFile, folder: str) -> list[str]:
    """The .po files of one catalog folder in a wheel, in path order."""
    pattern = re.compile(rf"/locale/{re.escape(folder)}/LC_MESSAGES/[^/]+\.po$")
    return sorted(n for n in wheel.namelist() if pattern.search(n))


def messages(wheels: list[Path], lang: str) -> list[str]:
    """The kept messages of ``lang``, in wheel order, then catalog path order, then file order."""
    import polib

    seen: set[str] = set()
    out: list[str] = []
    for path in wheels:
        with zipfile.ZipFile(path) as wheel:
            names: list[str] = []
            for folder in CATALOGS[lang]:
                names = catalogs(wheel, folder)
                if names:
                    break
            for name in names:
                for e in polib.pofile(wheel.read(name).decode("utf-8")):
                    if e.obsolete or "fuzzy" in e.flags:
                        continue
                    text = e.msgid if lang == "en" else (e.msgstr or (e.msgstr_plural.get(0, "")
                                                                       if e.msgstr_plural else ""))
                    if lang != "en" and text == e.msgid:
                        continue
                    text = " ".join(text.split())
                    if (len(text) >= (5 if lang in CJK else MIN_CHARS) and not CODE.search(text) and "\n" not in text
                            and text not in seen):
                        seen.add(text)
                        out.append(text)
    return out


def lines(msgs: list[str], lang: str) -> list[str]:
    """Consecutive messages joined into lines of at least 180 characters (70 for Japanese and Chinese)."""
    out, cur, size = [], [], 0
    target, sep, end = (70, "", "。") if lang in CJK else (180, " ", ".")
    for text in msgs:
        if text[-1] not in SENTENCE_END:
            text += end
        cur.append(text)
        size += len(text)
        if size >= target:
            out.append(sep.join(cur))
            cur, size = [], 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, nargs="+", help="the Django, Wagtail and Sphinx wheels, in this order")
    parser.add_argument("--out", type=Path, required=True, help="folder for the <lang>.txt files")
    args = parser.parse_args()
    for path in args.wheels:  # one-line errors, before anything is written
        if not path.is_file():
            parser.error(f"{path} does not exist: pass the downloaded Django, Wagtail and Sphinx .whl files")
        if not zipfile.is_zipfile(path):
            parser.error(f"{path} is not a wheel (not a zip archive): pass the .whl files")
    try:
        texts = {lang: (len(msgs), lines(msgs, lang)) for lang in CATALOGS for msgs in [messages(args.wheels, lang)]}
    except (OSError, UnicodeDecodeError, ValueError, zipfile.BadZipFile) as exc:
        parser.error(f"could not read the catalogs: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    for lang, (n_msgs, text) in texts.items():
        (args.out / f"{lang}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
        print(f"{lang}: {n_msgs} messages, {len(text)} lines, {sum(map(len, text)):,} characters")


if __name__ == "__main__":
    main()
