"""Statistics over the store's count aggregates: run selection, language totals, per-unit statistics, sets.

Every statistic is computed by the SQL in ``queries/stats/`` and ``queries/identify/`` (DuckDB table macros
``stat_units``, ``stat_lang_totals``, ``stat_lang_units``, ``unit_stats``, ``stat_unit_entropy``, ``sae_lape``,
``lape``, ``identify_units``); this module only chooses the runs and passes parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from langfeat import langs
from langfeat.errors import UsageError
from langfeat.sae_identity import canonical_sae_id

__all__ = [
    "KINDS", "feature_set", "language_totals", "opened", "parse_dataset_configs", "run_ids", "select_runs",
    "unit_stats",
]

KINDS = ("sae", "neuron")


@contextlib.contextmanager
def opened(store: Any) -> Iterator[Any]:
    """``store`` itself if it is an open Store, else the store at that path (closed afterwards)."""
    from langfeat.store import Store, open_store

    if isinstance(store, Store):
        yield store
        return
    st = open_store(store)
    try:
        yield st
    finally:
        st.close()


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"unknown unit kind {kind!r}: use 'sae' (SAE features) or 'neuron' (MLP neurons)")
    return kind


def run_ids(runs: pl.DataFrame | Sequence[str] | str | None) -> list[str] | None:
    """Run ids from a runs frame, a list of ids or one id (None stays None)."""
    if runs is None:
        return None
    if isinstance(runs, str):
        return [runs]
    if isinstance(runs, pl.DataFrame):
        return runs["run_id"].to_list()
    return [str(r) for r in runs]


def parse_dataset_configs(patterns: Sequence[str] | str | None, flag: str = "--dataset-configs"
                          ) -> list[tuple[str, str]]:
    """``'facebook/xnli:{en,de}'`` patterns (bracex) → ``[(dataset, config), ...]`` without duplicates; errors name
    ``flag``, the option the patterns came from."""
    import bracex

    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[tuple[str, str]] = []
    for pattern in patterns:
        try:
            expanded = bracex.expand(str(pattern))
        except Exception as exc:  # bracex raises plain exceptions on malformed patterns
            raise UsageError(f"bad {flag} pattern {pattern!r} ({exc}): write DATASET:{{a,b}}") from None
        for item in expanded:
            dataset, sep, config = item.rpartition(":")
            if not sep or not dataset or not config:
                raise UsageError(f"bad {flag} entry {item!r}: write DATASET:CONFIG, e.g. facebook/xnli:en")
            if (dataset, config) not in out:
                out.append((dataset, config))
    return out


def _unit_layers(kind: str) -> pl.Expr:
    """The layers a run recorded ``kind`` units at (imported runs list them in ``layers``)."""
    if kind == "sae":
        fallback = pl.when(~pl.col("neurons").fill_null(False)).then(pl.col("layers"))
        return pl.coalesce(pl.col("sae_layers"), fallback)
    return pl.coalesce(pl.col("neuron_layers"), pl.when(pl.col("neurons").fill_null(False)).then(pl.col("layers")))


def _units_ok(kind: str, layers: Sequence[int] | None) -> pl.Expr:
    """Runs that recorded ``kind`` units at every layer of ``layers`` (at any layer when None)."""
    col = _unit_layers(kind)
    has = col.list.len().fill_null(0) > 0
    for layer in layers or []:
        has = has & col.list.contains(int(layer)).fill_null(False)
    return has


def _describe(runs: pl.DataFrame) -> str:
    if runs.height == 0:
        return "none"
    items = sorted({f"{d}:{c}" for d, c in zip(runs["dataset"], runs["config"], strict=True)})
    return ", ".join(items[:30]) + (f" (+{len(items) - 30} more)" if len(items) > 30 else "")


def _model_names(model: str) -> list[str]:
    """The names a model may be recorded under (as given, its stable id, an older store's description)."""
    try:
        from langfeat.models import model_names

        return model_names(model)
    except Exception:  # models imports torch; a plain name still matches without it
        return [model]


def _canonical_saes(runs: pl.DataFrame) -> pl.DataFrame:
    """``runs`` with legacy SAE folder paths replaced by the folder's content identity
    (:func:`langfeat.sae_identity.canonical_sae_id`)."""
    if "sae_model" not in runs.columns:
        return runs
    names = runs["sae_model"].drop_nulls().unique().to_list()
    renamed = {v: c for v in names if (c := canonical_sae_id(v)) != v}
    return runs.with_columns(pl.col("sae_model").replace(renamed)) if renamed else runs


def select_runs(
    store: Any, model: str | None = None, sae_model: str | None = None,
    dataset_configs: Sequence[str] | str | None = None, layers: Sequence[int] | None = None, kind: str = "sae",
    role: str | None = "identify", runs: Sequence[str] | None = None, configs_flag: str = "--dataset-configs",
) -> pl.DataFrame:
    """The complete runs to identify over (one row per run, by language then run number).

    Only runs of ``role`` are taken (``identify``: evaluation runs that ``classify`` ingested never feed an
    identification unless asked; None: every role); ``runs`` (ids or unique prefixes) selects runs explicitly,
    whatever their role.

    ``dataset_configs`` (``'DATASET:CONFIG'`` with bracex braces) matches the runs' dataset and config as recorded;
    without it every complete run matching ``model`` / ``sae_model`` / ``kind`` and holding all ``layers`` is taken.
    Raises UsageError when nothing matches (listing what exists), when a selector matches no run, or when the runs
    mix models; errors about ``dataset_configs`` name ``configs_flag`` (classify: ``--train-configs``).
    """
    kind = _check_kind(kind)
    chosen = runs
    with opened(store) as st:
        all_runs = _canonical_saes(st.runs(status="complete"))
        if chosen:
            from langfeat.store import resolve_runs

            ids = resolve_runs(st.root, chosen)
            incomplete = sorted(set(ids) - set(all_runs["run_id"]))
            if incomplete:
                raise UsageError(f"run {incomplete[0]} is not complete: finish it (rerun its ingest) or drop --run")
            all_runs = all_runs.filter(pl.col("run_id").is_in(ids))
    what = "SAE feature" if kind == "sae" else "neuron"
    if not chosen and role is not None:
        others = all_runs.filter((pl.col("role") != role) & _units_ok(kind, None)).height
        all_runs = all_runs.filter(pl.col("role") == role)
        if others and all_runs.filter(_units_ok(kind, None)).height == 0:
            raise UsageError(f"the store's complete runs with {what} counts are all evaluation runs (made by "
                             "classify): pass --role eval (or --run RUN) to identify over them")
    runs = all_runs.filter(_units_ok(kind, None))
    if runs.height == 0:
        raise UsageError(f"the store has no complete run with {what} counts: ingest or import some first")
    if model is not None:
        runs = runs.filter(pl.col("model").is_in(_model_names(model)))
        if runs.height == 0:
            have = sorted(set(all_runs.filter(_units_ok(kind, None))["model"].drop_nulls()))
            raise UsageError(f"no complete run of model {model!r} with {what} counts: the store has {have}")
    if kind == "sae" and sae_model is not None:
        before = runs
        runs = runs.filter(pl.col("sae_model") == sae_model)
        if runs.height == 0:
            have = sorted(set(before["sae_model"].drop_nulls()))
            raise UsageError(f"no complete run with SAE {sae_model!r}: the store has {have}; fix --sae-model")
    pairs = parse_dataset_configs(dataset_configs, configs_flag)
    if pairs:
        keys = list(zip(runs["dataset"].to_list(), runs["config"].to_list(), strict=True))
        missing = [f"{d}:{c}" for d, c in pairs if (d, c) not in keys]
        if missing:
            raise UsageError(
                f"{configs_flag} {', '.join(missing)} match no complete run with {what} counts; "
                f"the store has: {_describe(runs)}"
            )
        runs = runs.filter(pl.struct("dataset", "config").is_in(
            [{"dataset": d, "config": c} for d, c in pairs]
        ))
    if layers:
        lacking = runs.filter(~_units_ok(kind, layers))
        if pairs and lacking.height:
            first = lacking.with_columns(_unit_layers(kind).alias("_l")).row(0, named=True)
            raise UsageError(
                f"run {first['run_id']} ({first['dataset']}:{first['config']}) has {what} counts for layers "
                f"{first['_l']} only, not all of {sorted(set(layers))}: fix --layer or ingest those layers"
            )
        runs = runs.filter(_units_ok(kind, layers))
        if runs.height == 0:
            raise UsageError(f"no complete run has {what} counts for all layers {sorted(set(layers))}: fix --layer")
    if model is None and runs["model"].n_unique() > 1:
        raise UsageError(f"the selected runs mix models {sorted(set(runs['model'].drop_nulls()))}: pass --model")
    if kind == "sae" and sae_model is None and runs["sae_model"].n_unique() > 1:
        raise UsageError(
            f"the selected runs mix SAEs {sorted(set(runs['sae_model'].drop_nulls()))}: pass --sae-model"
        )
    return langs.sort_frame(runs, "lang", then=("run_num",))


def common_layers(runs: pl.DataFrame, kind: str) -> list[int]:
    """The layers every run of ``runs`` recorded ``kind`` units at."""
    sets = [set(v or []) for v in runs.select(_unit_layers(_check_kind(kind)).alias("l"))["l"].to_list()]
    return sorted(set.intersection(*sets)) if sets else []


def language_totals(store: Any, runs: pl.DataFrame | Sequence[str] | str) -> pl.DataFrame:
    """Per language of the runs: lang, lang_name, runs, run_ids, n_docs, n_tokens (by English name)."""
    ids = run_ids(runs) or []
    with opened(store) as st:
        return st.sql("SELECT * FROM stat_lang_totals(?::VARCHAR[])", [ids])


def unit_stats(
    store: Any, runs: pl.DataFrame | Sequence[str] | str | None = None, kind: str = "sae",
    layers: Sequence[int] | None = None,
) -> pl.DataFrame:
    """Per (language, layer, unit) that fired: tok_count, doc_count, n_docs, n_tokens, coverage, p, q (p normalised
    over languages), act_sum / act_mean / act_max / act_min, entropy, n_langs and the pooled unit_act_max /
    unit_act_min / unit_act_avg. ``runs`` None = every complete run with ``kind`` counts (merged per language)."""
    kind = _check_kind(kind)
    with opened(store) as st:
        ids = run_ids(runs)
        if ids is None:
            ids = select_runs(st, kind=kind, layers=layers)["run_id"].to_list()
        layer_list = None if layers is None else [int(x) for x in layers]
        return st.sql("SELECT * FROM unit_stats(?, ?::VARCHAR[], layers := ?::INTEGER[])", [kind, ids, layer_list])


def feature_set(store: Any, name: str) -> pl.DataFrame:
    """The rows of feature set ``name`` (feature_sets view: name, algorithm, kind, lang, layer, feature, entropy,
    prob, act_max, act_min, act_avg, rank), by language (English name) then rank."""
    with opened(store) as st:
        df = st.sql('SELECT * FROM feature_sets WHERE name = ? ORDER BY lang, "rank", layer, feature', [name])
        if df.height == 0:
            exists = st.sql("SELECT count(*) AS n FROM feature_set_params WHERE name = ?", [name])["n"][0]
            if not exists:
                raise UsageError(f"no feature set named {name!r}: list them with `langfeat sets`")
    return langs.sort_frame(df, "lang", then=("rank", "layer", "feature"))
