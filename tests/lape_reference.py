"""An independent dense numpy implementation of SAE-LAPE and LAPE, written from the paper's description.

Inputs are dense arrays ``tok[L, U, n_lang]`` and ``doc[L, U, n_lang]`` (token / document counts) with the
per-language totals ``n_tok[n_lang]`` and ``n_doc[n_lang]``. The result is a list of memberships
``(lang index, layer index, unit, entropy, p, n_assigned)`` in each language's final order, with the paper's bugs
fixed: probabilities aligned with units, no list shift for empty languages, and the entropy threshold as a filter.
Ties in entropy (equal to 12 decimals) break by (layer, unit), as documented for langfeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Member:
    lang: int
    layer: int
    unit: int
    entropy: float
    p: float
    n_assigned: int


def probabilities(tok: np.ndarray, n_tok: np.ndarray) -> np.ndarray:
    """p[L, U, l] = tok / n_tok[l]."""
    return tok.astype(np.float64) / n_tok.astype(np.float64)[None, None, :]


def entropy(p: np.ndarray) -> np.ndarray:
    """Entropy over the last axis of p normalised to sum 1 (natural log, 0·ln0 = 0; all-zero rows give 0)."""
    total = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(total > 0, p / total, 0.0)
        terms = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def _python_round(x: float) -> int:
    return round(x)  # Python rounds half to even, like the paper's round()


def sae_lape_assign(tok, doc, n_tok, n_doc, ratio=0.8, example_rate=0.98, hfl_rate=0.1) -> list[Member]:
    """SAE-LAPE steps 1–6: every (language, unit) membership of a candidate unit."""
    p = probabilities(tok, n_tok)
    h = entropy(p)
    n_lang = len(n_tok)
    out = []
    L, U, _ = tok.shape
    doc_thr = [int(n_doc[i] * example_rate) for i in range(n_lang)]
    tok_thr = [int(n_tok[i] * hfl_rate) for i in range(n_lang)]
    for layer in range(L):
        for unit in range(U):
            covers = any(doc[layer, unit, i] >= doc_thr[i] for i in range(n_lang))
            frequent = any(tok[layer, unit, i] > tok_thr[i] for i in range(n_lang))
            if not (covers and frequent):
                continue
            m = p[layer, unit].max()
            langs = [i for i in range(n_lang) if p[layer, unit, i] >= ratio * m]
            for i in langs:
                out.append(Member(i, layer, unit, float(h[layer, unit]), float(p[layer, unit, i]), len(langs)))
    return out


def kth_smallest(values: np.ndarray, rate: float) -> float:
    """torch.kthvalue(flat, round(numel · rate)) of every value (zeros included)."""
    flat = np.sort(values.ravel())
    k = min(max(_python_round(len(flat) * rate), 1), len(flat))
    return float(flat[k - 1])


def lape_assign(tok, n_tok, filter_rate=0.95, top_rate=0.01, activation_bar_ratio=0.95) -> list[Member]:
    """Original LAPE on dense counts: percentile filter, lowest-entropy top_rate, absolute bar."""
    p = probabilities(tok, n_tok)
    h = entropy(p)
    L, U, n_lang = p.shape
    v_filter = kth_smallest(p, filter_rate)
    bar = kth_smallest(p, activation_bar_ratio)
    cands = [(round(float(h[a, b]), 12), a, b) for a in range(L) for b in range(U) if (p[a, b] > v_filter).any()]
    cands.sort()
    n_sel = _python_round(L * U * top_rate)
    out = []
    for _, layer, unit in cands[:n_sel]:
        langs = [i for i in range(n_lang) if p[layer, unit, i] > bar]
        for i in langs:
            out.append(Member(i, layer, unit, float(h[layer, unit]), float(p[layer, unit, i]), len(langs)))
    return out


def select(members: list[Member], n_lang: int, lang_specific=False, lang_shared=False, shared_count=2, top=None,
           top_per_layer=False, top_by_frequency=False, entropy_threshold=None) -> dict[int, list[Member]]:
    """Steps 7–10 per language (every language present, possibly empty), each list in its final order."""
    out: dict[int, list[Member]] = {}
    for lang in range(n_lang):
        mine = [m for m in members if m.lang == lang]
        if lang_specific:
            mine = [m for m in mine if m.n_assigned == 1]
        elif lang_shared:
            mine = [m for m in mine if m.n_assigned == shared_count]
        mine.sort(key=lambda m: (round(m.entropy, 12), m.layer, m.unit))
        if top_by_frequency:
            mine.sort(key=lambda m: -m.p)  # stable: equal p keep the entropy order
        if top:
            if top_per_layer:
                seen: dict[int, int] = {}
                kept = []
                for m in mine:
                    seen[m.layer] = seen.get(m.layer, 0) + 1
                    if seen[m.layer] <= top:
                        kept.append(m)
                mine = kept
            else:
                mine = mine[:top]
        if entropy_threshold is not None:
            mine = [m for m in mine if m.entropy <= entropy_threshold]
        out[lang] = mine
    return out


def pooled(act_sum, act_max, act_min, tok) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gmax / gmin / gavg over languages (act_min of a language where the unit never fired is ignored)."""
    gmax = np.where(tok > 0, act_max, -np.inf).max(axis=-1)
    gmin = np.where(tok > 0, act_min, np.inf).min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gavg = act_sum.sum(axis=-1) / tok.sum(axis=-1)
    return gmax, gmin, gavg


def is_close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
