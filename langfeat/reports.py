"""Reports over a store, as Polars frames (the CLI renders them with rich).

* :func:`sets_report`: the feature sets (name, algorithm, kind, #features, #languages, created, params).
* :func:`features_report`: a feature set per language × layer with totals and entropy min / median / max.
* :func:`languages_report`: documents and tokens per language and run.
* :func:`feature_report`: one unit (``LAYER:FEATURE``): per-language activation probability, coverage and
  entropy, the feature sets containing it, and its top-activating contexts from ``events`` / ``tokens``.

Every number comes from the SQL in ``queries/reports/`` (``report_*`` views and table macros); this module picks
runs, decodes token ids and shapes frames for display.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from langfeat import langs
from langfeat import layers as layer_patterns
from langfeat.errors import UsageError
from langfeat.stats import opened

__all__ = [
    "FeatureReport",
    "feature_report",
    "features_report",
    "languages_report",
    "parse_unit",
    "run_summary",
    "sets_report",
]

UNIT_KINDS = ("sae", "neuron")


# ---------------------------------------------------------------------------------------------------------------
# feature sets


def _params_summary(text: str | None) -> str:
    """``key=value`` pairs of a set's params (lists and dicts shortened to their length)."""
    if not text:
        return ""
    try:
        params = json.loads(text)
    except ValueError:
        return ""
    parts = []
    for key, value in params.items():
        if key in ("algorithm", "kind", "created_at") or value is None:
            continue
        if isinstance(value, (list, dict)):
            value = f"[{len(value)}]"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def sets_report(store: Any = None) -> pl.DataFrame:
    """One row per feature set: name, algorithm, kind, features (distinct units), memberships (language, unit),
    languages, layers (``min-max``), created, params (a one-line summary)."""
    with opened(store) as st:
        df = st.sql("SELECT * FROM report_sets")
    return df.select(
        "name", "algorithm", "kind", "features", "memberships", "languages",
        pl.when(pl.col("layer_min").is_null()).then(pl.lit(""))
        .when(pl.col("layer_min") == pl.col("layer_max")).then(pl.col("layer_min").cast(pl.String))
        .otherwise(pl.format("{}-{}", "layer_min", "layer_max")).alias("layers"),
        pl.col("created").str.slice(0, 16).str.replace("T", " ").alias("created"),
        pl.col("params").map_elements(_params_summary, return_dtype=pl.String).alias("params"),
    )


def _set_langs_from_params(st: Any, name: str) -> list[str]:
    rows = st.sql("SELECT params FROM feature_set_params WHERE name = ?", [name])
    if rows.height == 0 or rows["params"][0] is None:
        return []
    try:
        params = json.loads(rows["params"][0])
    except ValueError:
        return []
    out = []
    for key in ("langs", "languages"):
        for tag in params.get(key) or []:
            with contextlib.suppress(langs.UnknownLanguageError):
                out.append(langs.canonical(str(tag)))
    return out


def features_report(store: Any, name: str) -> pl.DataFrame:
    """Feature set ``name`` per language: lang, lang_name, n, one count column per layer (``L<N>``), entropy
    min / median / max; by English name, languages the set was made over but without units included (n = 0),
    and a last row ``lang = 'all'`` with the totals (entropy over all rows)."""
    with opened(store) as st:
        if st.sql("SELECT count(*) AS n FROM report_sets WHERE name = ?", [name])["n"][0] == 0:
            raise UsageError(f"no feature set named {name!r}: list them with `langfeat sets`")
        layers = st.sql("SELECT lang, layer, n FROM report_set_layers WHERE name = ?", [name])
        per_lang = st.sql("SELECT * EXCLUDE (name) FROM report_set_langs WHERE name = ?", [name])
        totals = st.sql("SELECT * EXCLUDE (name) FROM report_set_totals WHERE name = ?", [name])
        layer_totals = st.sql("SELECT layer, n FROM report_set_layer_totals WHERE name = ?", [name])
        extra = _set_langs_from_params(st, name)
    n_layers = int(layers["layer"].max()) + 1 if layers.height else 0
    layer_cols = [f"L{i}" for i in range(n_layers)]
    tags = list(dict.fromkeys([*per_lang["lang"].to_list(), *extra]))
    base = pl.DataFrame({"lang": tags}, schema={"lang": pl.String})
    wide = (
        layers.with_columns(pl.format("L{}", "layer").alias("col"))
        .pivot(on="col", index="lang", values="n", on_columns=layer_cols)
        if layers.height else pl.DataFrame(schema={"lang": pl.String})
    )
    out = (
        base.join(per_lang, on="lang", how="left").join(wide, on="lang", how="left")
        .with_columns(pl.col("n").fill_null(0), *(pl.col(c).fill_null(0) for c in layer_cols))
    )
    out = langs.sort_frame(out).with_columns(
        pl.col("lang").map_elements(langs.display_name, return_dtype=pl.String).alias("lang_name")
    )
    cols = ["lang", "lang_name", "n", *layer_cols, "entropy_min", "entropy_median", "entropy_max"]
    out = out.select(cols).with_columns(pl.col("n").cast(pl.Int64), *(pl.col(c).cast(pl.Int64) for c in layer_cols))
    by_layer = dict(zip(layer_totals["layer"].to_list(), layer_totals["n"].to_list(), strict=True))
    total_layers = {f"L{i}": int(by_layer.get(i, 0)) for i in range(n_layers)}
    t = totals.row(0, named=True) if totals.height else {"n": 0}
    total = pl.DataFrame([{
        "lang": "all", "lang_name": "all", "n": int(t.get("n") or 0), **total_layers,
        "entropy_min": t.get("entropy_min"), "entropy_median": t.get("entropy_median"),
        "entropy_max": t.get("entropy_max"),
    }], schema=out.schema)
    return pl.concat([out, total])


# ---------------------------------------------------------------------------------------------------------------
# languages


def languages_report(store: Any = None) -> pl.DataFrame:
    """Documents and tokens per language and complete run: lang, lang_name, run_id, kind, model, units,
    dataset, config, split, docs, tokens, tokens_per_doc (by English name, then run number)."""
    with opened(store) as st:
        return st.sql("SELECT * EXCLUDE (run_num) FROM report_languages")


def language_totals_report(store: Any = None) -> pl.DataFrame:
    """Per language, the totals of :func:`languages_report` (view ``report_language_totals``): lang, lang_name,
    runs, docs, tokens, tokens_per_doc (by English name)."""
    with opened(store) as st:
        return st.sql("SELECT * FROM report_language_totals")


# ---------------------------------------------------------------------------------------------------------------
# one unit


def parse_unit(text: str) -> tuple[int, int]:
    """``'12:345'`` → ``(12, 345)`` (layer, feature or neuron)."""
    try:
        layer, unit = (int(x) for x in str(text).split(":"))
    except ValueError:
        raise UsageError(f"bad unit {text!r}: write LAYER:FEATURE, e.g. 12:345") from None
    if layer < 0 or unit < 0:
        raise UsageError(f"bad unit {text!r}: layer and feature are non-negative")
    return layer, unit


@dataclass
class FeatureReport:
    """Everything :func:`feature_report` found about one unit."""

    layer: int
    unit: int
    kind: str
    langs: pl.DataFrame  # per language: runs, docs, tokens, tok_count, doc_count, p, coverage, q, act_*
    entropy: float | None  # entropy of q over the languages (None when the unit never fired)
    sets: pl.DataFrame  # feature-set memberships: name, algorithm, lang, rank, entropy, prob
    contexts: pl.DataFrame  # top activations: run_id, lang, doc_id, pos, act, left, token, right
    decoded: bool = False  # contexts decoded with a tokenizer (else token ids)
    runs: list[str] = field(default_factory=list)


def _select_runs(st: Any, kind: str, layer: int | None, run: Sequence[str] | None, model: str | None,
                 lang: str | None) -> pl.DataFrame:
    from langfeat.store import resolve_runs

    runs = st.runs(status="complete")
    if run:
        runs = runs.filter(pl.col("run_id").is_in(resolve_runs(st.root, list(run))))
    if model:
        runs = runs.filter(pl.col("model") == model)
    if lang:
        runs = runs.filter(pl.col("lang") == langs.canonical(lang))
    unit = pl.col("sae_model").is_not_null() if kind == "sae" else pl.col("neurons").fill_null(False)
    return runs.filter(unit & (pl.col("layers").list.contains(layer) if layer is not None else pl.lit(True)))


def _tokenizer(model: str | None, override: str | None) -> Any | None:
    """A tokenizer for ``model`` (or ``override``) if one loads from local files, else None."""
    from langfeat import models

    candidates = [override] if override else []
    if not override and model:
        candidates.append(model)
        named = [n for n in models.NAMED_MODELS if model in models.model_names(n)]
        candidates += [c for c in map(models.cached_source, named) if c]
    for source in candidates:
        if not source:
            continue
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(source, local_files_only=True)
        except Exception:  # any failure means "not loadable here": fall back to token ids
            continue
    return None


def _contexts(st: Any, layer: int, unit: int, runs: pl.DataFrame, top: int, window: int,
              tokenizer: str | None) -> tuple[pl.DataFrame, bool]:
    """The ``report_unit_contexts`` rows, decoded with each run's tokenizer where one loads (else ``[id]``)."""
    schema = {"run_id": pl.String, "lang": pl.String, "doc_id": pl.Int64, "pos": pl.Int32, "act": pl.Float32,
              "left": pl.String, "token": pl.String, "right": pl.String}
    run_ids = runs["run_id"].to_list()
    if not run_ids or top <= 0:
        return pl.DataFrame(schema=schema), False
    hits = st.sql("SELECT * FROM report_unit_contexts(?::VARCHAR[], ?, ?, ?, ?)", [run_ids, layer, unit, top, window])
    if hits.height == 0:
        return pl.DataFrame(schema=schema), False
    models = dict(zip(runs["run_id"], runs["model"], strict=True))
    cache: dict[str, Any] = {}
    decoded_all = True
    rows = []
    for hit in hits.iter_rows(named=True):
        model = models.get(hit["run_id"])
        if model not in cache:
            cache[model] = _tokenizer(model, tokenizer)
        tok = cache[model]
        left_ids, token_id, right_ids = hit.pop("left_ids"), hit.pop("token_id"), hit.pop("right_ids")
        if tok is not None and token_id is not None:
            left, token, right = tok.decode(left_ids), tok.decode([token_id]), tok.decode(right_ids)
        else:
            decoded_all = False
            left = " ".join(f"[{i}]" for i in left_ids)
            token = "[?]" if token_id is None else f"[{token_id}]"
            right = " ".join(f"[{i}]" for i in right_ids)
        rows.append({**hit, "left": left, "token": token, "right": right})
    return pl.DataFrame(rows, schema=schema), decoded_all


def feature_report(
    store: Any, unit: str | tuple[int, int], kind: str = "sae", run: Sequence[str] | None = None,
    model: str | None = None, lang: str | None = None, top: int = 10, window: int = 8,
    tokenizer: str | os.PathLike | None = None,
) -> FeatureReport:
    """Report on SAE feature / neuron ``unit`` (``'LAYER:FEATURE'``) over the complete runs (filtered by
    ``run`` ids / prefixes, ``model``, ``lang``) that recorded its layer.

    Per language (by English name; the table macro ``report_unit_langs``): runs, docs, tokens, tok_count,
    doc_count, p = tok_count / tokens (BOS included, as the paper), coverage = doc_count / docs, q = p / Σp,
    act_mean = Σact_sum / Σtok_count, act_max, act_min. ``entropy`` = −Σ q ln q. ``sets``: the feature sets
    holding the unit. ``contexts``: the ``top`` highest activations (SAE features only: neurons have no events)
    with ``window`` tokens either side (``report_unit_contexts``), decoded with the run's tokenizer (or
    ``tokenizer``) when it loads from local files, else as ``[id]``.
    """
    if kind not in UNIT_KINDS:
        raise UsageError(f"unknown --kind {kind!r}: use sae or neuron")
    layer, idx = parse_unit(unit) if isinstance(unit, str) else (int(unit[0]), int(unit[1]))
    with opened(store) as st:
        runs = _select_runs(st, kind, layer, run, model, lang)
        if runs.height == 0:
            have = _select_runs(st, kind, None, run, model, lang)["layers"].explode().drop_nulls().unique()
            what = "SAE feature" if kind == "sae" else "neuron"
            raise UsageError(
                f"no selected complete run has {what} counts at layer {layer} (layers there: "
                f"{layer_patterns.compact(have.to_list()) or 'none'}): pick a LAYER:UNIT within them"
            )
        run_ids = runs["run_id"].to_list()
        per = st.sql("SELECT * FROM report_unit_langs(?, ?::VARCHAR[], ?, ?)", [kind, run_ids, layer, idx])
        sets = st.sql(
            "SELECT name, algorithm, lang, rank, entropy, prob FROM feature_sets WHERE kind = ? AND layer = ? "
            "AND feature = ? ORDER BY name", [kind, layer, idx],
        )
        if per["act_max"].is_null().all() and sets.height == 0:
            raise UsageError(
                f"unit {layer}:{idx} never fired in the {len(run_ids)} selected runs and is in no feature set: "
                "check LAYER:FEATURE (e.g. from `langfeat report features NAME`)"
            )
        contexts, decoded = (
            _contexts(st, layer, idx, runs, top, window, None if tokenizer is None else str(tokenizer))
            if kind == "sae" else (pl.DataFrame(), False)
        )
    entropy = per["entropy"][0] if per.height else None
    per = per.drop("entropy")
    sets = langs.sort_frame(sets).sort("name", maintain_order=True)
    return FeatureReport(
        layer=layer, unit=idx, kind=kind, langs=per, entropy=entropy, sets=sets, contexts=contexts,
        decoded=decoded, runs=run_ids,
    )


def run_summary(store: Any, **filters: Any) -> pl.DataFrame:
    """One display row per run: id, model, SAE or neurons, dataset, config, lang, split, slice, layers, sizes."""
    runs = store.runs(**filters)
    return runs.select(
        pl.col("run_id"),
        pl.col("model"),
        pl.when(pl.col("sae_model").is_not_null()).then(pl.col("sae_model"))
        .when(pl.col("neurons").fill_null(False)).then(pl.lit("neurons"))
        .otherwise(pl.lit("")).alias("units"),
        pl.col("dataset"),
        pl.col("config"),
        pl.col("lang"),
        pl.col("split"),
        pl.format("{}:{}", pl.col("start").fill_null(0), pl.col("end").cast(pl.String).fill_null("")).alias("slice"),
        pl.col("layers").map_elements(lambda x: layer_patterns.compact(list(x)), return_dtype=pl.String)
        .alias("layers"),
        pl.col("n_docs").alias("docs"),
        pl.col("n_tokens").alias("tokens"),
        pl.col("status"),
        pl.col("created_at").dt.strftime("%Y-%m-%d %H:%M").alias("created"),
    )
