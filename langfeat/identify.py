"""Identify language-specific units (SAE-LAPE for SAE features, LAPE for neurons, ν of Deng et al. for either) and
store them as named sets.

The statistics and the selection are the SQL table macro ``identify_units`` (``queries/identify/``, built on
``sae_lape_candidates``, ``sae_lape``, ``lape_bars`` and ``lape``); its default parameters are the SQL macro
``identify_defaults()``, which :class:`Params` reads; ν is the macro ``nu_units``. This module selects the runs,
validates parameters, writes ``sets/name=<NAME>/{features.parquet, params.json}`` and reads the set's summary
(``report_set_summary``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from langfeat import langs, stats
from langfeat.errors import UsageError

__all__ = ["ALGORITHMS", "Params", "compute", "default_name", "identify", "identify_named", "resolve_layers", "summary"]

ALGORITHMS = ("sae-lape", "lape", "nu")
DEFAULTS_SQL = "queries/identify/00_identify_defaults.sql"


def sql_defaults() -> dict[str, Any]:
    """The SQL macro ``identify_defaults()``: the one definition of the identification defaults."""
    from langfeat.options import identify_defaults

    return identify_defaults()


_D = sql_defaults()


@dataclass
class Params:
    """Every identification parameter (the paper's flag names; defaults as in its identify.py, read from the SQL
    macro ``identify_defaults()``: ``Params.example_rate`` etc. are the defaults everywhere)."""

    algorithm: str = "sae-lape"
    kind: str = "sae"
    topk_threshold_ratio: float = _D["ratio"]
    example_rate: float = _D["example_rate"]
    hfl_rate: float = _D["hfl_rate"]
    filter_rate: float = _D["filter_rate"]
    top_rate: float = _D["top_rate"]
    activation_bar_ratio: float = _D["activation_bar_ratio"]
    units_per_layer: int | None = None
    lang_specific: bool = False
    lang_shared: bool = False
    shared_count: int = _D["shared_count"]
    top: int | None = None
    top_per_layer: bool = False
    top_by_frequency: bool = False
    entropy_threshold: float | None = None
    layers: list[int] = field(default_factory=list)

    def check(self) -> Params:
        """Normalise the algorithm name and raise UsageError on out-of-range values."""
        self.algorithm = normalise_algorithm(self.algorithm)
        stats._check_kind(self.kind)
        rates = {"--topk-threshold-ratio": self.topk_threshold_ratio, "--example-rate": self.example_rate,
                 "--hfl-rate": self.hfl_rate, "--filter-rate": self.filter_rate, "--top-rate": self.top_rate,
                 "--activation-bar-ratio": self.activation_bar_ratio}
        for flag, value in rates.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise UsageError(f"{flag} must be between 0 and 1, got {value}")
        if self.topk_threshold_ratio <= 0:
            raise UsageError("--topk-threshold-ratio must be > 0 (0 would assign every unit to every language)")
        if self.top is not None and self.top < 0:
            raise UsageError(f"--top must be ≥ 0 (0 = all), got {self.top}")
        if self.lang_shared and self.shared_count < 1:
            raise UsageError(f"--shared-count must be ≥ 1, got {self.shared_count}")
        if self.lang_specific and self.lang_shared:
            raise UsageError("--lang-specific and --lang-shared exclude each other: pass one")
        if self.units_per_layer is not None and self.units_per_layer < 1:
            raise UsageError(f"--units-per-layer must be ≥ 1, got {self.units_per_layer}")
        if self.entropy_threshold is not None and not math.isfinite(self.entropy_threshold):
            raise UsageError("--entropy-threshold must be a finite number")
        if self.algorithm == "nu":
            given = [flag for flag, on in (("--lang-specific", self.lang_specific), ("--lang-shared", self.lang_shared),
                                           ("--top-by-frequency", self.top_by_frequency),
                                           ("--entropy-threshold", self.entropy_threshold is not None)) if on]
            if given:
                raise UsageError(f"{given[0]} does not apply to --algorithm nu (it ranks by ν): drop it, keep --top")
        return self


def normalise_algorithm(name: str) -> str:
    """``sae_lape`` / ``SAE-LAPE`` → ``sae-lape``; ``lape`` and ``nu`` stay."""
    value = str(name).strip().lower().replace("_", "-")
    if value not in ALGORITHMS:
        raise UsageError(f"unknown --algorithm {name!r}: use sae-lape (or sae_lape), lape or nu")
    return value


def resolve_layers(patterns: Sequence[str | int] | str | None, algorithm: str) -> tuple[list[int] | None, str]:
    """``--layer`` patterns → (layer numbers or None for all, unit kind).

    ``...mlp.act_fn`` paths select neuron counts; so does ``...mlp`` with ``--algorithm lape`` (the paper's neuron
    LAPE); otherwise SAE feature counts. Plain integers are layer numbers.
    """
    from langfeat.layers import parse_option

    algorithm = normalise_algorithm(algorithm)
    neuron_default = algorithm == "lape"
    if patterns is None or (not isinstance(patterns, str) and len(patterns) == 0):
        return None, "neuron" if neuron_default else "sae"
    if isinstance(patterns, (str, int)):
        patterns = [patterns]
    if all(isinstance(p, int) or str(p).isdigit() for p in patterns):
        return sorted({int(p) for p in patterns}), "neuron" if neuron_default else "sae"
    specs = parse_option([str(p) for p in patterns])
    kinds = {s.neurons for s in specs}
    if len(kinds) > 1:
        raise UsageError("--layer mixes .mlp and .mlp.act_fn paths: identify SAE features or neurons, not both")
    neurons = kinds.pop() or neuron_default
    return [s.layer for s in specs], "neuron" if neurons else "sae"


def _fmt(value: float) -> str:
    return f"{value:g}"


def default_name(p: Params) -> str:
    """A set name from the parameters, e.g. ``sae-lape-r0.8-specific`` or ``lape-neuron``."""
    parts = [p.algorithm]
    if (p.kind == "sae") != (p.algorithm in ("sae-lape", "nu")):
        parts.append(p.kind)
    if p.algorithm == "sae-lape":
        parts.append(f"r{_fmt(p.topk_threshold_ratio)}")
        if p.example_rate != Params.example_rate:
            parts.append(f"x{_fmt(p.example_rate)}")
        if p.hfl_rate != Params.hfl_rate:
            parts.append(f"hfl{_fmt(p.hfl_rate)}")
    elif p.algorithm == "lape":
        if p.filter_rate != Params.filter_rate:
            parts.append(f"f{_fmt(p.filter_rate)}")
        if p.top_rate != Params.top_rate:
            parts.append(f"t{_fmt(p.top_rate)}")
        if p.activation_bar_ratio != Params.activation_bar_ratio:
            parts.append(f"b{_fmt(p.activation_bar_ratio)}")
    if p.lang_specific:
        parts.append("specific")
    elif p.lang_shared:
        parts.append(f"shared{p.shared_count}")
    if p.top:
        parts.append(f"top{p.top}" + ("-per-layer" if p.top_per_layer else ""))
        if p.top_by_frequency:
            parts.append("freq")
    if p.entropy_threshold is not None:
        parts.append(f"h{_fmt(p.entropy_threshold)}")
    return "-".join(parts)


def _n_units(st: Any, p: Params, ids: list[str]) -> int:
    """Units per layer for LAPE's percentile: given, else ``stat_n_units`` (the largest unit index seen + 1)."""
    if p.units_per_layer is not None:
        return int(p.units_per_layer)
    return int(st.sql("SELECT n_units FROM stat_n_units(?, ?, layers := ?)", [p.kind, ids, p.layers])["n_units"][0])


def compute(store: Any, runs: pl.DataFrame | Sequence[str], params: Params) -> pl.DataFrame:
    """The identified set over ``runs`` (feature_sets columns + n_assigned), by language then rank; nothing saved.

    ``params.layers`` must list the layers (LAPE's percentile counts every unit of every listed layer).
    """
    p = params.check()
    ids = stats.run_ids(runs) or []
    with stats.opened(store) as st:
        if p.algorithm == "nu":
            return st.sql("SELECT * FROM nu_units(?, ?, layers := ?, top := ?, top_per_layer := ?)",
                          [p.kind, ids, p.layers, p.top, bool(p.top_per_layer)])
        n_units = _n_units(st, p, ids) if p.algorithm == "lape" else None
        if p.algorithm == "lape":
            p.units_per_layer = n_units
        return st.sql(
            "SELECT * FROM identify_units(?, ?, ?, layers := ?, n_units := ?, ratio := ?, example_rate := ?, "
            "hfl_rate := ?, filter_rate := ?, top_rate := ?, activation_bar_ratio := ?, lang_specific := ?, "
            "lang_shared := ?, shared_count := ?, top := ?, top_per_layer := ?, top_by_frequency := ?, "
            "entropy_threshold := ?)",
            [p.algorithm, p.kind, ids, p.layers, n_units, float(p.topk_threshold_ratio), float(p.example_rate),
             float(p.hfl_rate), float(p.filter_rate), float(p.top_rate), float(p.activation_bar_ratio),
             bool(p.lang_specific), bool(p.lang_shared), int(p.shared_count), p.top, bool(p.top_per_layer),
             bool(p.top_by_frequency), None if p.entropy_threshold is None else float(p.entropy_threshold)],
        )


def identify(store: Any = None, **kw: Any) -> pl.DataFrame:
    """Identify language-specific units over the selected runs and store them as a named feature set.

    Keyword arguments as :func:`identify_named`; returns the set (feature_sets columns: name, algorithm, kind,
    lang, layer, feature, entropy, prob, act_max, act_min, act_avg, rank), by language then rank.
    """
    return identify_named(store, **kw)[1]


def identify_named(
    store: Any = None, *, algorithm: str = "sae-lape", model: str | None = None, sae_model: str | None = None,
    layers: Sequence[str | int] | str | None = None, dataset_configs: Sequence[str] | str | None = None,
    top: int | None = None, top_per_layer: bool = False, topk_threshold_ratio: float = Params.topk_threshold_ratio,
    top_by_frequency: bool = False, example_rate: float = Params.example_rate, hfl_rate: float = Params.hfl_rate,
    entropy_threshold: float | None = None, lang_specific: bool = False, lang_shared: bool = False,
    shared_count: int = Params.shared_count, filter_rate: float = Params.filter_rate,
    top_rate: float = Params.top_rate, activation_bar_ratio: float = Params.activation_bar_ratio,
    units_per_layer: int | None = None, kind: str | None = None, name: str | None = None, overwrite: bool = False,
    save: bool = True, role: str | None = "identify", runs: Sequence[str] | None = None,
) -> tuple[str, pl.DataFrame]:
    """Identify language-specific units over the selected runs and store them as feature set ``name``.

    ``layers``: ``--layer`` patterns (``model.layers.{0..15}.mlp``; ``.mlp.act_fn`` or ``algorithm='lape'`` select
    neuron counts) or layer numbers; None = the layers every selected run holds. ``dataset_configs``:
    ``DATASET:CONFIG`` bracex patterns (counts are merged per canonical language). Returns the set (feature_sets
    columns: name, algorithm, kind, lang, layer, feature, entropy, prob, act_max, act_min, act_avg, rank), by
    language then rank, with its name. ``save=False`` only computes it. ``role`` / ``runs``: which runs may be
    merged (see :func:`langfeat.stats.select_runs`; evaluation runs only when asked).
    """
    from langfeat.store.results import check_name

    algorithm = normalise_algorithm(algorithm)
    layer_list, inferred = resolve_layers(layers, algorithm)
    p = Params(
        algorithm=algorithm, kind=kind or inferred, topk_threshold_ratio=topk_threshold_ratio,
        example_rate=example_rate, hfl_rate=hfl_rate, filter_rate=filter_rate, top_rate=top_rate,
        activation_bar_ratio=activation_bar_ratio, units_per_layer=units_per_layer, lang_specific=lang_specific,
        lang_shared=lang_shared, shared_count=shared_count, top=top or None, top_per_layer=top_per_layer,
        top_by_frequency=top_by_frequency, entropy_threshold=entropy_threshold,
    ).check()
    name = check_name(name or default_name(p))
    with stats.opened(store) as st:
        if save and st.layout.set_dir(name).exists() and not overwrite:
            raise UsageError(f"feature set {name!r} already exists: pick another --name or pass --overwrite")
        runs = stats.select_runs(st, model=model, sae_model=sae_model, dataset_configs=dataset_configs,
                                 layers=layer_list, kind=p.kind, role=role, runs=runs)
        p.layers = layer_list if layer_list is not None else stats.common_layers(runs, p.kind)
        if not p.layers:
            raise UsageError("the selected runs share no layer: pass --layer")
        totals = stats.language_totals(st, runs)
        if p.algorithm == "nu" and totals.height < 2:
            raise UsageError("--algorithm nu compares a language with the others: select runs of at least two "
                             "languages")
        df = compute(st, runs, p)
        out = df.select(pl.lit(name).alias("name"), *[c for c in df.columns if c != "n_assigned"])
        if save:
            from langfeat.formats.paper import write_feature_set
            from langfeat.store.runs import now

            record = {
                **asdict(p), "name": name, "model": runs["model"][0], "sae_model": runs["sae_model"][0],
                "dataset_configs": [f"{d}:{c}" for d, c in zip(runs["dataset"], runs["config"], strict=True)],
                "runs": runs["run_id"].to_list(), "langs": totals["lang"].to_list(),
                "num_examples": dict(zip(totals["lang"], totals["n_docs"], strict=True)),
                "num_tokens": dict(zip(totals["lang"], totals["n_tokens"], strict=True)),
                "created_at": now(),
            }
            write_feature_set(st.layout, name, df.drop("n_assigned"), _jsonable(record), overwrite=overwrite)
    return name, out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def summary(store: Any, name: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Per language of set ``name`` (all languages of its runs, by English name): lang, lang_name, docs, tokens,
    n (units), entropy_min / median / max (``report_set_summary``); and the set's params (with its candidate count,
    ``sae_lape_candidate_count``, where it applies)."""
    import json

    with stats.opened(store) as st:
        rows = st.sql("SELECT params FROM feature_set_params WHERE name = ?", [name])
        params = json.loads(rows["params"][0]) if rows.height and rows["params"][0] else {}
        stats.feature_set(st, name)  # raises UsageError on an unknown name
        ids = params.get("runs") or []
        out = st.sql("SELECT * FROM report_set_summary(?, ?::VARCHAR[])", [name, ids])
        sizes = st.sql("SELECT features, memberships FROM report_sets WHERE name = ?", [name])
        params["counts"] = {"units": int(sizes["features"][0] or 0), "memberships": int(sizes["memberships"][0] or 0)}
        if params.get("algorithm") == "sae-lape" and ids:
            params["candidates"] = int(st.sql(
                "SELECT candidates FROM sae_lape_candidate_count(?, ?, layers := ?, example_rate := ?, hfl_rate := ?)",
                [params["kind"], ids, params.get("layers"), float(params["example_rate"]), float(params["hfl_rate"])],
            )["candidates"][0])
    out = out.with_columns(pl.col("lang_name").fill_null(pl.col("lang").map_elements(
        langs.display_name, return_dtype=pl.String)))
    return out.sort("lang_name", "lang"), params
