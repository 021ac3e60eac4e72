"""The paper's file formats, both ways: count files and LAPE result files (``.pt``), loaded safely.

* :func:`import_counts` reads count files (``DIR/<dataset…>/<lang>.pt``: ``num_examples``, ``num_tokens`` and
  ``over_zero_token / over_zero_example / over_zero_total / max_active_over_zero / min_active_over_zero`` as
  dense or sparse ``[layers, units]`` tensors) into the store as ``kind='import'`` runs with ``feature_counts``
  (or ``neuron_counts``), so identification works on them as on ingested runs.
* :func:`read_lape` reads a LAPE result file (``final_indice``, ``sorted_lang``, …) as a feature frame in the
  ``feature_sets`` schema; :func:`import_lape` stores it as a named set (plus, where the file holds the full
  counts, one import run per language so the statistics can be re-queried with other thresholds).
* :func:`export_pt` writes a stored set in the paper's schema, with one entry per language of ``sorted_lang``
  (empty where a language has no features: the paper's list shift does not occur) and ``features_info``
  probabilities aligned with their features.

Every ``.pt`` is read with ``torch.load(..., weights_only=True)``: a file that needs any other class is refused.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from langfeat import langs
from langfeat.errors import UsageError
from langfeat.layers import mlp_path
from langfeat.store.atomic import write_atomic
from langfeat.store.layout import Layout
from langfeat.store.results import check_name, to_arrow
from langfeat.store.runs import RunManifest

__all__ = [
    "COUNT_KEYS", "LapeAlignmentWarning", "PaperCounts", "count_files", "export_pt", "import_counts",
    "import_lape", "read_counts", "read_lape", "safe_load", "write_feature_set",
]

COUNT_KEYS = (
    "over_zero_token", "over_zero_example", "over_zero_total", "max_active_over_zero", "min_active_over_zero",
)
KINDS = {"sae": ("feature_counts", "feature"), "neuron": ("neuron_counts", "neuron")}
MARKER = "langfeat"  # key of our own files: tells a reader the probabilities are aligned with the features
SET_COLUMNS = (
    "algorithm", "kind", "lang", "layer", "feature", "entropy", "prob", "act_max", "act_min", "act_avg", "rank",
)
_GLOBALS = {"act_max": "max", "act_min": "min", "act_avg": "avg"}


class LapeAlignmentWarning(UserWarning):
    """A LAPE file whose per-language lists had to be re-aligned (the paper's shift bug)."""


# ---------------------------------------------------------------------------------------------------------------
# safe loading


def safe_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a UsageError naming the problem for anything unsafe."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no file {path}: pass an existing .pt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"the class {found.group(1)}" if found else "objects other than tensors, lists, dicts and numbers"
        raise UsageError(
            f"{path} needs {what} to load, which langfeat refuses (unsafe pickle): re-save it with plain "
            "tensors, lists and dicts only"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read {path} as a torch file ({first}): pass a file written by torch.save") from None


def _np(value: Any) -> np.ndarray:
    """A dense numpy array of a dense or sparse tensor (or a list / array)."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_sparse:
            value = value.to_dense()
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _entries(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [ndim, nnz], values [nnz])`` of the non-zero entries of a dense or sparse tensor."""
    import torch

    if isinstance(value, torch.Tensor) and value.is_sparse:
        value = value.coalesce()
        idx, vals = value.indices().numpy(), value.values().numpy()
        keep = vals != 0
        return idx[:, keep], vals[keep]
    arr = _np(value)
    idx = np.stack(np.nonzero(arr)) if arr.ndim else np.zeros((0, 0), np.int64)
    return idx, arr[tuple(idx)]


def _int(value: Any, what: str, path: Path) -> int:
    try:
        arr = _np(value)
        if arr.size != 1:
            raise ValueError
        return int(arr.reshape(()))
    except (TypeError, ValueError):
        raise UsageError(f"{path}: {what} is not a single number: pass a count file in the paper's format") from None


# ---------------------------------------------------------------------------------------------------------------
# count files


@dataclass
class PaperCounts:
    """One count file: per-unit aggregates over one (dataset, language), as ``[layers, units]`` arrays."""

    path: Path
    dataset: str
    config: str
    num_examples: int
    num_tokens: int
    arrays: dict[str, np.ndarray]

    @property
    def n_layers(self) -> int:
        return int(self.arrays["over_zero_token"].shape[0])

    def frame(self, kind: str) -> pl.DataFrame:
        """The units that fired (``tok_count > 0``) in the ``feature_counts`` / ``neuron_counts`` schema."""
        unit = KINDS[kind][1]
        tok = self.arrays["over_zero_token"]
        layer, idx = np.nonzero(tok > 0)
        a = self.arrays
        return pl.DataFrame({
            "layer": layer.astype(np.int32),
            unit: idx.astype(np.int32),
            "tok_count": np.rint(tok[layer, idx]).astype(np.int64),
            "doc_count": np.rint(a["over_zero_example"][layer, idx]).astype(np.int64),
            "act_sum": a["over_zero_total"][layer, idx].astype(np.float64),
            "act_max": a["max_active_over_zero"][layer, idx].astype(np.float32),
            "act_min": a["min_active_over_zero"][layer, idx].astype(np.float32),
        })


def count_files(directory: str | os.PathLike) -> list[tuple[str, str, Path]]:
    """``(dataset, config, path)`` of every ``<dataset…>/<lang>.pt`` under ``directory`` (dataset may hold ``/``)."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"no directory {root}: pass the folder holding <dataset>/<lang>.pt count files")
    out = []
    for path in sorted(root.rglob("*.pt")):
        rel = path.relative_to(root)
        dataset = rel.parent.as_posix()
        if dataset in ("", "."):
            raise UsageError(f"{path} is not inside a dataset folder: lay files out as DIR/<dataset>/<lang>.pt")
        out.append((dataset, path.stem, path))
    if not out:
        raise UsageError(f"no .pt files under {root}: pass the folder holding <dataset>/<lang>.pt count files")
    return out


def read_counts(path: str | os.PathLike, dataset: str = "", config: str | None = None) -> PaperCounts:
    """Read and check one count file (dense or sparse COO ``[layers, units]`` tensors)."""
    path = Path(path)
    data = safe_load(path)
    if not isinstance(data, Mapping):
        raise UsageError(f"{path} holds a {type(data).__name__}, not a dict of counts: pass a paper count file")
    missing = [k for k in ("num_examples", "num_tokens", *COUNT_KEYS) if k not in data]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}: pass a count file in the paper's format")
    arrays = {k: _np(data[k]) for k in COUNT_KEYS}
    shape = arrays["over_zero_token"].shape
    bad = [k for k, a in arrays.items() if a.shape != shape or a.ndim != 2]
    if bad:
        raise UsageError(
            f"{path}: {', '.join(bad)} not [layers, units] like over_zero_token {tuple(shape)}: pass a count file "
            "whose five tensors share one 2-D shape"
        )
    return PaperCounts(
        path=path, dataset=dataset, config=config or path.stem,
        num_examples=_int(data["num_examples"], "num_examples", path),
        num_tokens=_int(data["num_tokens"], "num_tokens", path), arrays=arrays,
    )


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r}: use sae or neuron")
    return kind


def _lang(value: str, where: str) -> langs.Lang:
    try:
        return langs.resolve(value)
    except langs.UnknownLanguageError:
        raise UsageError(
            f"{where}: {value!r} is not a language: name the file <lang>.pt with a code or English name"
        ) from None


def _import_record(
    kind: str, model: str, sae_model: str | None, dataset: str, config: str, lang: langs.Lang, n_layers: int,
    source: str,
) -> RunManifest:
    return RunManifest(
        origin="import", model=model, sae_model=sae_model if kind == "sae" else None, neurons=kind == "neuron",
        dataset=dataset, config=config, lang=lang.tag, lang_name=lang.name, layers=list(range(n_layers)),
        layer_paths=[mlp_path("model", i, neurons=kind == "neuron") for i in range(n_layers)],
        dtype="float32", bos=True, source_path=source,
    )


def _write_runs(layout: Layout, kind: str, items: list[tuple[RunManifest, pl.DataFrame, int, int]],
                overwrite: bool) -> pl.DataFrame:
    """Stage and commit one import run per ``(record, counts frame, n_docs, n_tokens)``; a summary frame."""
    from langfeat.store import runs
    from langfeat.store.writer import write_parquet_atomic

    table = KINDS[kind][0]
    rows = []
    for record, frame, n_docs, n_tokens in items:
        manifest, done = runs.begin_run(layout, record, overwrite=overwrite)
        if not done:
            try:
                target = layout.run_work(manifest["run_id"]) / f"lang={record.lang}" / table / "part-0.parquet"
                write_parquet_atomic(to_arrow(frame, table), target)
                manifest = runs.commit_run(layout, manifest, n_docs=n_docs, n_tokens=n_tokens, error=None)
            except BaseException as exc:
                runs.fail_run(layout, manifest, f"{type(exc).__name__}: {exc}")
                raise
        rows.append({
            "run_id": manifest["run_id"], "dataset": record.dataset, "config": record.config,
            "lang": record.lang, "docs": int(manifest.get("n_docs") or n_docs),
            "tokens": int(manifest.get("n_tokens") or n_tokens), "units": frame.height,
            "status": "exists" if done else "imported",
        })
    return pl.DataFrame(rows, schema={
        "run_id": pl.String, "dataset": pl.String, "config": pl.String, "lang": pl.String, "docs": pl.Int64,
        "tokens": pl.Int64, "units": pl.Int64, "status": pl.String,
    })


def import_counts(
    directory: str | os.PathLike, kind: str, model: str, sae_model: str | None = None,
    store: str | os.PathLike | None = None, overwrite: bool = False,
) -> pl.DataFrame:
    """Import every ``<dataset…>/<lang>.pt`` count file under ``directory`` as one ``kind='import'`` run.

    All files are read and checked before anything is written. A file whose run already exists is skipped
    (``status='exists'``) unless ``overwrite``. Returns one row per file: run_id, dataset, config, lang, docs,
    tokens, units (fired units stored), status.
    """
    from langfeat.store import ensure_store

    _check_kind(kind)
    if kind == "sae" and not sae_model:
        raise UsageError("--kind sae needs --sae-model NAME (the SAE the counts were made with)")
    if kind == "neuron" and sae_model:
        raise UsageError("--sae-model is for --kind sae: drop it for neuron counts")
    items = []
    for dataset, config, path in count_files(directory):
        counts = read_counts(path, dataset, config)
        lang = _lang(config, str(path))
        record = _import_record(kind, model, sae_model, dataset, config, lang, counts.n_layers, path.name)
        items.append((record, counts.frame(kind), counts.num_examples, counts.num_tokens))
    layout = ensure_store(store)
    return _write_runs(layout, kind, items, overwrite)


# ---------------------------------------------------------------------------------------------------------------
# LAPE result files


def _pairs(entry: Sequence[Any]) -> list[tuple[int, int]]:
    """The ``(layer, unit)`` pairs of one language's ``final_indice`` entry, in list order."""
    out = []
    for layer, ids in enumerate(entry):
        out += [(layer, int(u)) for u in _np(ids).reshape(-1).tolist()]
    return out


def _info_pairs(info: Mapping[str, Any]) -> list[tuple[int, int]]:
    return [(int(p[0]), int(p[1])) for p in info.get("indicies", [])]


def _align(data: Mapping[str, Any], path: Path) -> list[str]:
    """The ``sorted_lang`` name of every ``final_indice`` entry (re-aligned through ``features_info`` if shifted)."""
    sorted_lang = [str(x) for x in data["sorted_lang"]]
    lists = data["final_indice"]
    if len(lists) == len(sorted_lang):
        return sorted_lang
    info = data.get("features_info")
    if len(lists) > len(sorted_lang):
        raise UsageError(f"{path}: final_indice has {len(lists)} lists for {len(sorted_lang)} languages: "
                         "pass an unmodified LAPE result file")
    if not isinstance(info, Mapping):
        raise UsageError(
            f"{path}: final_indice has {len(lists)} lists for {len(sorted_lang)} languages (the paper's shift bug) "
            "and no features_info to align them: re-create the file with `langfeat identify --export-pt`"
        )
    by_pairs: dict[frozenset, list[str]] = {}
    for name in sorted_lang:
        if name in info:
            by_pairs.setdefault(frozenset(_info_pairs(info[name])), []).append(name)
    names: list[str] = []
    for i, entry in enumerate(lists):
        candidates = [n for n in by_pairs.get(frozenset(_pairs(entry)), []) if n not in names]
        later = [n for n in candidates if not names or sorted_lang.index(n) > sorted_lang.index(names[-1])]
        if not later:
            raise UsageError(f"{path}: final_indice list {i} matches no language of features_info: the file "
                             "cannot be aligned safely; re-create it with `langfeat identify --export-pt`")
        names.append(later[0])
    empty = [n for n in sorted_lang if n not in names]
    warnings.warn(
        f"{path.name}: final_indice has {len(lists)} lists for {len(sorted_lang)} languages (the paper's shift "
        f"bug); aligned through features_info, no features for: {', '.join(empty)}",
        LapeAlignmentWarning, stacklevel=3,
    )
    return names


def _lape_kind(data: Mapping[str, Any], path: Path, kind: str | None) -> str:
    if kind is not None:
        return _check_kind(kind)
    marker = data.get(MARKER)
    if isinstance(marker, Mapping) and marker.get("kind") in KINDS:
        return str(marker["kind"])
    return "neuron" if "neuron" in path.name.lower() else "sae"


@dataclass
class LapeFile:
    """A LAPE result file, checked: the feature frame and, where present, the per-language counts."""

    path: Path
    kind: str
    sorted_lang: list[str]
    tags: list[str]
    features: pl.DataFrame
    num_examples: list[int] | None
    num_tokens: list[int] | None
    over_zero_token: Any
    over_zero_example: Any
    aligned_by_info: bool
    n_layers: int


ENTROPY_SQL = ("queries/stats/00_lang_entropy_of.sql", "queries/stats/01_lang_entropy.sql")


def _file_stats(ctok: np.ndarray, n_tok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a LAPE file's counts ``ctok[unit, language]`` and ``n_tok[language]``: the activation probabilities
    p = count / tokens (``[unit, language]``; a language without tokens divides by 1, as the paper) and each
    unit's SQL ``lang_entropy`` over the languages with p > 0 (0 when there is none), computed by DuckDB."""
    from langfeat.store.catalog import connect_views

    p = np.zeros(ctok.shape, np.float64)
    entropy = np.zeros(ctok.shape[0], np.float64)
    units, cols = np.nonzero(ctok)
    if units.size == 0:
        return p, entropy
    counts = pl.DataFrame({"i": units.astype(np.int64), "l": cols.astype(np.int64),
                           "c": ctok[units, cols].astype(np.float64)})
    totals = pl.DataFrame({"l": np.arange(len(n_tok), dtype=np.int64), "n": np.asarray(n_tok, np.float64)})
    with connect_views(None, ENTROPY_SQL) as con:
        con.register("counts", counts.to_arrow())
        con.register("totals", totals.to_arrow())
        probs = con.sql(
            "SELECT i, l, c / CASE WHEN n > 0 THEN n ELSE 1 END AS p FROM counts JOIN totals USING (l)"
        ).pl()
        con.register("probs", probs.to_arrow())
        ent = con.sql("SELECT i, lang_entropy(p) AS h FROM probs WHERE p > 0 GROUP BY i").pl()
    p[probs["i"].to_numpy(), probs["l"].to_numpy()] = probs["p"].to_numpy()
    entropy[ent["i"].to_numpy()] = ent["h"].to_numpy()
    return p, entropy


def _gather(counts: Any, pairs: list[tuple[int, int]]) -> np.ndarray:
    """``counts[layer, unit, :]`` for each pair, as a float64 array ``[len(pairs), n_langs]``."""
    import torch

    n_langs = int(counts.shape[-1])
    out = np.zeros((len(pairs), n_langs), np.float64)
    if not pairs:
        return out
    layer = np.array([p[0] for p in pairs], np.int64)
    unit = np.array([p[1] for p in pairs], np.int64)
    if isinstance(counts, torch.Tensor) and counts.is_sparse:
        width = int(counts.shape[1])
        idx, vals = _entries(counts)
        keys = idx[0].astype(np.int64) * width + idx[1]
        wanted = layer * width + unit
        order = np.argsort(wanted, kind="stable")
        pos = np.searchsorted(wanted[order], keys)
        pos = np.clip(pos, 0, len(pairs) - 1)
        hit = wanted[order][pos] == keys
        out[order[pos[hit]], idx[2][hit]] = vals[hit]
        return out
    return _np(counts)[layer, unit].astype(np.float64)


def load_lape(path: str | os.PathLike, kind: str | None = None) -> LapeFile:
    """Read a LAPE result file (the paper's or our own export) into a :class:`LapeFile`."""
    path = Path(path)
    data = safe_load(path)
    if not isinstance(data, Mapping) or "final_indice" not in data or "sorted_lang" not in data:
        raise UsageError(f"{path} is not a LAPE result file (no final_indice / sorted_lang): pass a lape_*.pt file")
    kind = _lape_kind(data, path, kind)
    sorted_lang = [str(x) for x in data["sorted_lang"]]
    tags = [_lang(n, str(path)).tag for n in sorted_lang]
    names = _align(data, path)
    marker = data.get(MARKER) if isinstance(data.get(MARKER), Mapping) else None
    info = data.get("features_info") if isinstance(data.get("features_info"), Mapping) else {}
    has_counts = all(k in data for k in ("over_zero_token", "num_tokens"))
    n_tok = _np(data["num_tokens"]).astype(np.float64).reshape(-1) if "num_tokens" in data else None
    n_layers = max((len(e) for e in data["final_indice"]), default=0)
    frames = []
    for i, name in enumerate(names):
        pairs = _pairs(data["final_indice"][i])
        cols: dict[str, Any] = {"layer": [p[0] for p in pairs], "feature": [p[1] for p in pairs]}
        for col, key in _GLOBALS.items():
            lists = data.get(f"final_indice_global_{key}_active")
            cols[col] = (
                [_null_nan(float(v)) for L in lists[i] for v in _np(L).reshape(-1).tolist()]
                if lists is not None and i < len(lists) else [None] * len(pairs)
            )
            if len(cols[col]) != len(pairs):
                raise UsageError(f"{path}: final_indice_global_{key}_active of {name} does not match final_indice: "
                                 "pass an unmodified LAPE result file")
        rank = {p: r + 1 for r, p in enumerate(pairs)}
        entropy: dict[tuple[int, int], float] = {}
        prob: dict[tuple[int, int], float] = {}
        if name in info:
            ipairs = _info_pairs(info[name])
            ents = [float(x) for x in _np(info[name].get("entropies", [])).reshape(-1).tolist()]
            if len(ents) == len(ipairs):
                entropy = dict(zip(ipairs, ents, strict=True))
            if set(ipairs) == set(pairs):
                rank = {p: r + 1 for r, p in enumerate(ipairs)}
            if marker is not None and marker.get("probs_aligned"):
                probs = [float(x) for x in _np(info[name].get("selected_probs", [])).reshape(-1).tolist()]
                if len(probs) == len(ipairs):
                    prob = dict(zip(ipairs, probs, strict=True))
        if has_counts and pairs and (not prob or not entropy):
            p_all, ent = _file_stats(_gather(data["over_zero_token"], pairs), n_tok)
            li = sorted_lang.index(name)
            prob = prob or {pair: float(p_all[j, li]) for j, pair in enumerate(pairs)}
            if not entropy:
                entropy = {pair: float(ent[j]) for j, pair in enumerate(pairs)}
        cols["entropy"] = [_null_nan(entropy.get(p)) for p in pairs]
        cols["prob"] = [_null_nan(prob.get(p)) for p in pairs]
        cols["rank"] = [rank[p] for p in pairs]
        frames.append(pl.DataFrame(cols, schema={
            "layer": pl.Int32, "feature": pl.Int32, "act_max": pl.Float32, "act_min": pl.Float32,
            "act_avg": pl.Float32, "entropy": pl.Float64, "prob": pl.Float64, "rank": pl.Int32,
        }).with_columns(lang=pl.lit(tags[sorted_lang.index(name)])))
    features = pl.concat(frames) if frames else pl.DataFrame(schema={c: pl.Int32 for c in ("layer", "feature")})
    features = _set_frame(features, "imported", kind)
    return LapeFile(
        path=path, kind=kind, sorted_lang=sorted_lang, tags=tags, features=features,
        num_examples=_np(data["num_examples"]).reshape(-1).astype(int).tolist() if "num_examples" in data else None,
        num_tokens=n_tok.astype(int).tolist() if n_tok is not None else None,
        over_zero_token=data.get("over_zero_token"), over_zero_example=data.get("over_zero_example"),
        aligned_by_info=len(names) != len(data["final_indice"]) or len(data["final_indice"]) != len(sorted_lang),
        n_layers=n_layers,
    )


def _null_nan(value: float | None) -> float | None:
    """NaN (how a .pt file says "no value") as None."""
    return None if value is None or value != value else value


def _set_frame(df: pl.DataFrame, algorithm: str, kind: str) -> pl.DataFrame:
    """``df`` with every ``feature_sets`` column, typed and in order, sorted by language order then rank."""
    out = df.with_columns(algorithm=pl.lit(algorithm), kind=pl.lit(kind))
    arrow = to_arrow(out, "feature_sets")
    frame = pl.from_arrow(arrow)
    assert isinstance(frame, pl.DataFrame)
    return langs.sort_frame(frame, "lang", then=("rank", "layer", "feature"), nulls_last=False)


def read_lape(path: str | os.PathLike, kind: str | None = None) -> pl.DataFrame:
    """A LAPE result file as a feature frame: ``name`` (the file's stem) plus the ``feature_sets`` columns.

    ``lang`` holds canonical tags; ``rank`` is the order in the language's list (``features_info`` order where
    present); ``prob`` is recomputed from the counts inside (the paper's ``selected_probs`` are misaligned), else
    taken from a langfeat export (aligned), else null.
    """
    lape = load_lape(path, kind)
    return lape.features.select(pl.lit(lape.path.stem).alias("name"), *SET_COLUMNS)


def write_feature_set(
    layout: Layout, name: str, df: pl.DataFrame, params: dict[str, Any], overwrite: bool = False
) -> Path:
    """Write feature set ``name`` (``sets/name=<name>/features.parquet`` + ``params.json``) atomically."""
    from langfeat.store.results import publish

    check_name(name)
    return publish(layout.set_dir(name), "feature_sets", "features.parquet", df, params, overwrite,
                   f"feature set {name!r}")


def _lape_run_frames(lape: LapeFile) -> list[pl.DataFrame]:
    """Per language of ``sorted_lang``: its ``feature_counts`` rows (the units with a token count > 0).

    The file holds only pooled activation statistics of the selected units: they are stored for every language
    (act_sum = avg · tok_count, so pooling over languages gives the file's values back), NaN elsewhere.
    """
    tok_idx, tok_val = _entries(lape.over_zero_token)
    ex = pl.DataFrame()
    if lape.over_zero_example is not None:
        ex_idx, ex_val = _entries(lape.over_zero_example)
        ex = pl.DataFrame({"layer": ex_idx[0], "unit": ex_idx[1], "li": ex_idx[2], "doc_count": ex_val})
    tok = pl.DataFrame({"layer": tok_idx[0], "unit": tok_idx[1], "li": tok_idx[2], "tok_count": tok_val})
    tok = tok.filter(pl.col("tok_count") > 0)
    if ex.height:
        tok = tok.join(ex, on=["layer", "unit", "li"], how="left")
    else:
        tok = tok.with_columns(doc_count=pl.lit(0.0))
    glob = lape.features.group_by("layer", "feature").agg(
        pl.col("act_max").first(), pl.col("act_min").first(), pl.col("act_avg").first()
    ).rename({"feature": "unit"}).with_columns(pl.col("layer").cast(pl.Int64), pl.col("unit").cast(pl.Int64))
    tok = tok.with_columns(pl.col("layer").cast(pl.Int64), pl.col("unit").cast(pl.Int64)) \
        .join(glob, on=["layer", "unit"], how="left")
    unit = KINDS[lape.kind][1]
    nan = float("nan")
    frame = tok.select(
        "li",
        pl.col("layer").cast(pl.Int32),
        pl.col("unit").cast(pl.Int32).alias(unit),
        pl.col("tok_count").round().cast(pl.Int64),
        pl.col("doc_count").fill_null(0).round().cast(pl.Int64),
        (pl.col("act_avg").cast(pl.Float64) * pl.col("tok_count")).fill_null(nan).alias("act_sum"),
        pl.col("act_max").fill_null(nan),
        pl.col("act_min").fill_null(nan),
    ).sort("li", "layer", unit)
    parts = frame.partition_by("li", as_dict=True, include_key=False)
    return [parts.get((i,), frame.clear().drop("li")) for i in range(len(lape.sorted_lang))]


def import_lape(
    path: str | os.PathLike, name: str | None = None, store: str | os.PathLike | None = None,
    kind: str | None = None, model: str = "unknown", sae_model: str | None = None, runs: bool = True,
    overwrite: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Store a LAPE result file as feature set ``name`` (default: the file's stem), algorithm ``'imported'``.

    Where the file holds ``over_zero_token`` / ``over_zero_example`` and ``num_*`` (and ``runs``), one import run
    per language is written too (dataset = the file name, config = the language name), so identification can be
    re-run with other thresholds. Returns ``(feature set frame, runs summary frame)``.
    """
    from langfeat.store import ensure_store
    from langfeat.store.runs import now

    path = Path(path)
    name = check_name(name or path.stem)
    if Layout(store).set_dir(name).exists() and not overwrite:
        raise UsageError(f"feature set {name!r} already exists: pick another --name or pass --overwrite")
    lape = load_lape(path, kind)
    layout = ensure_store(store)
    run_rows = pl.DataFrame()
    run_ids: list[str] = []
    has_counts = lape.over_zero_token is not None and lape.num_tokens is not None and lape.num_examples is not None
    if runs and has_counts:
        n_layers = int(lape.over_zero_token.shape[0])
        sae = (sae_model or "unknown") if lape.kind == "sae" else None
        items = []
        for i, frame in enumerate(_lape_run_frames(lape)):
            lang = langs.resolve(lape.tags[i])
            record = _import_record(lape.kind, model, sae, path.name, lape.sorted_lang[i], lang, n_layers,
                                    path.name)
            items.append((record, frame, lape.num_examples[i], lape.num_tokens[i]))
        run_rows = _write_runs(layout, lape.kind, items, overwrite)
        run_ids = run_rows["run_id"].to_list()
    params: dict[str, Any] = {
        "algorithm": "imported", "kind": lape.kind, "source": path.name, "created_at": now(),
        "langs": lape.tags, "sorted_lang": lape.sorted_lang, "layers": lape.n_layers, "runs": run_ids,
        "aligned_through_features_info": lape.aligned_by_info, "model": model, "sae_model": sae_model,
    }
    if lape.num_examples is not None:
        params["num_examples"] = dict(zip(lape.tags, lape.num_examples, strict=True))
    if lape.num_tokens is not None:
        params["num_tokens"] = dict(zip(lape.tags, lape.num_tokens, strict=True))
    write_feature_set(layout, name, lape.features, params, overwrite=overwrite)
    return lape.features.select(pl.lit(name).alias("name"), *SET_COLUMNS, pl.lit(None, pl.Float64).alias("score")), \
        run_rows


# ---------------------------------------------------------------------------------------------------------------
# export


def _set_params(layout: Layout, name: str) -> dict[str, Any]:
    import json

    path = layout.set_dir(name) / "params.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _totals(store: Any, params: Mapping[str, Any], kind: str, tags: list[str]) -> tuple[list[int], list[int]]:
    """``num_examples`` / ``num_tokens`` per language: from the set's params, else its runs, else matching runs."""
    ex, tok = params.get("num_examples"), params.get("num_tokens")
    if isinstance(ex, Mapping) and isinstance(tok, Mapping):
        return [int(ex.get(t, 0)) for t in tags], [int(tok.get(t, 0)) for t in tags]
    runs = store.runs(status="complete")
    run_ids = params.get("runs") or params.get("run_ids")
    if run_ids:
        runs = runs.filter(pl.col("run_id").is_in(list(run_ids)))
    else:
        unit = pl.col("sae_model").is_not_null() if kind == "sae" else pl.col("neurons").fill_null(False)
        runs = runs.filter(unit)
    sums = store.sql("SELECT lang, n_docs, n_tokens FROM stat_lang_totals(?::VARCHAR[])", [runs["run_id"].to_list()])
    look = {r["lang"]: (int(r["n_docs"] or 0), int(r["n_tokens"] or 0)) for r in sums.iter_rows(named=True)}
    return [look.get(t, (0, 0))[0] for t in tags], [look.get(t, (0, 0))[1] for t in tags]


def _set_langs(store: Any, params: Mapping[str, Any], df: pl.DataFrame) -> list[str]:
    """The set's languages and every language it was identified over (params ``langs`` or its runs' languages)."""
    tags = set(df["lang"].to_list())
    for key in ("langs", "languages"):
        if isinstance(params.get(key), list):
            tags |= {langs.canonical(str(t)) for t in params[key]}
    run_ids = params.get("runs") or params.get("run_ids")
    if run_ids:
        runs = store.runs(status="complete").filter(pl.col("run_id").is_in(list(run_ids)))
        tags |= set(runs["lang"].drop_nulls().to_list())
    return sorted(tags, key=langs.sort_key)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def export_pt(
    store: Any, name: str, path: str | os.PathLike, sae_model: str | None = None,
    local_sae_dir: str | os.PathLike | None = None,
) -> Path:
    """Write feature set ``name`` of ``store`` (a Store or a store path) in the paper's LAPE result schema.

    Keys: final_indice, final_indice_global_{max,min,avg}_active, sorted_lang, num_examples, num_tokens,
    features_info (per language: indicies, selected_probs, entropies, all in the set's rank order and aligned),
    ``sae_features`` (decoder rows) when an SAE is given, and ``langfeat`` (a marker: kind, name, probs_aligned).
    Every language of ``sorted_lang`` has an entry, empty where it has no features. The file loads with
    ``torch.load(..., weights_only=True)``.
    """
    import torch

    from langfeat.stats import feature_set
    from langfeat.store import Store, open_store

    own = not isinstance(store, Store)
    st = open_store(store) if own else store
    try:
        df = feature_set(st, name)
        params = _set_params(st.layout, name)
        if df.height == 0 and not params.get("kind"):
            raise UsageError(f"no feature set named {name!r}: list them with `langfeat sets`")
        kinds = df["kind"].unique().to_list() if df.height else [params["kind"]]  # an empty set: every list empty
        if len(kinds) != 1:
            raise UsageError(f"feature set {name!r} mixes kinds {kinds}: export one kind per file")
        kind = str(kinds[0])
        tags = _set_langs(st, params, df)
        num_examples, num_tokens = _totals(st, params, kind, tags)
    finally:
        if own:
            st.close()
    layers = params.get("layers")
    n_layers = max(int(df["layer"].max()) + 1 if df.height else 0,
                   (max(layers) + 1 if layers else 0) if isinstance(layers, list) else int(layers or 0))
    decoders: dict[int, torch.Tensor] = {}
    if kind == "sae" and (sae_model or local_sae_dir):
        from langfeat.layers import mlp_specs
        from langfeat.models import load_saes

        saes = load_saes(mlp_specs("", df["layer"].to_list()), sae_model, local_sae_dir, device="cpu", prefix="")
        decoders = {layer: sae.W_dec.detach().float().cpu() for layer, sae in saes.items()}
    d_model = next(iter(decoders.values())).shape[1] if decoders else 0
    out: dict[str, Any] = {
        "final_indice": [], "final_indice_global_max_active": [], "final_indice_global_min_active": [],
        "final_indice_global_avg_active": [], "features_info": {},
    }
    if decoders:
        out["sae_features"] = []
    names = []
    for tag in tags:
        lang_name = langs.english_name(tag)
        names.append(lang_name)
        rows = df.filter(pl.col("lang") == tag).sort("rank", "layer", "feature", nulls_last=True)
        by_layer = rows.sort("layer", "feature")
        per_layer = [by_layer.filter(pl.col("layer") == L) for L in range(n_layers)]
        out["final_indice"].append([torch.tensor(p["feature"].to_list(), dtype=torch.long) for p in per_layer])
        for col, key in _GLOBALS.items():
            out[f"final_indice_global_{key}_active"].append(
                [torch.tensor([_num(v) for v in p[col].to_list()], dtype=torch.float32) for p in per_layer]
            )
        if decoders:
            out["sae_features"].append([
                decoders[L][torch.tensor(p["feature"].to_list(), dtype=torch.long)].clone() if L in decoders
                else torch.zeros(0, d_model) for L, p in enumerate(per_layer)
            ])
        out["features_info"][lang_name] = {
            "indicies": [(int(a), int(b)) for a, b in zip(rows["layer"], rows["feature"], strict=True)],
            "selected_probs": [_num(v) for v in rows["prob"].to_list()],
            "entropies": [_num(v) for v in rows["entropy"].to_list()],
        }
    out["sorted_lang"] = names
    out["num_examples"] = torch.tensor(num_examples, dtype=torch.long)
    out["num_tokens"] = torch.tensor(num_tokens, dtype=torch.long)
    out[MARKER] = {"format": 1, "kind": kind, "name": name, "probs_aligned": True, "langs": tags,
                   "features_info_order": "rank"}
    return write_atomic(path, lambda tmp: torch.save(out, tmp))
