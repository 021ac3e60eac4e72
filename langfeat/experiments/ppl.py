"""Per-sentence perplexity, with or without an intervention (the paper's ppl.py, batched and stored).

A sentence's perplexity is exp of the mean negative log-likelihood of its tokens after the first one (BOS is never
a target), computed in float32 with padding excluded. Results go to the ``ppl_results`` table of the store, one
row per (intervened language, evaluated language, sentence), the baseline (``intervention = 'none'``) included;
the views in ``queries/ppl/`` derive the ΔPPL matrix from them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch

from langfeat import features as feature_source
from langfeat import interventions as iv
from langfeat import langs
from langfeat.activations import pad_batch, plan_batches
from langfeat.errors import UsageError
from langfeat.features import FeatureSource
from langfeat.models import tokenize
from langfeat.options import PplOptions, stored

TABLE = "ppl_results"


@dataclass
class EvalSet:
    """The sentences of one evaluated language: ``rows`` are their indices in the source split."""

    lang: str
    config: str
    rows: list[int]
    texts: list[str]
    ids: list[list[int]] = field(default_factory=list)
    dataset: str | None = None
    split: str | None = None
    template: str | None = None


def sentence_nll(
    model: torch.nn.Module,
    ids: Sequence[Sequence[int]],
    batch_size: int = 16,
    intervention: iv.Intervention | None = None,
    advance: Callable[[int], None] | None = None,
) -> tuple[list[int], list[float]]:
    """Per sequence: (number of targets, mean NLL in nats) — targets are tokens 1..T−1, padding excluded."""
    intervention = intervention or iv.Intervention()
    device = next(model.parameters()).device
    n_tgt = [0] * len(ids)
    nll = [math.nan] * len(ids)
    with torch.inference_mode(), intervention.applied(model):
        for idx in plan_batches([len(x) for x in ids], batch_size):  # similar lengths share a batch
            input_ids, mask = pad_batch([ids[i] for i in idx], 0, device)
            logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
            for r, i in enumerate(idx):  # one row at a time keeps the float32 copy of the logits small
                n = len(ids[i]) - 1
                n_tgt[i] = n
                if n > 0:
                    logp = torch.log_softmax(logits[r, :n].float(), dim=-1)
                    tok = logp.gather(1, input_ids[r, 1 : n + 1, None]).squeeze(1)
                    nll[i] = float(-tok.mean())
            if advance is not None:
                advance(len(idx))
    return n_tgt, nll


def perplexities(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    intervention: iv.Intervention | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
) -> pl.DataFrame:
    """Per-sentence ``n_targets``, ``nll`` and ``ppl`` of ``texts`` under ``intervention`` (None = baseline)."""
    n, nll = sentence_nll(model, tokenize(tokenizer, texts, max_length), batch_size, intervention)
    return pl.DataFrame(
        {"n_targets": n, "nll": nll, "ppl": [math.exp(x) for x in nll]},
        schema={"n_targets": pl.Int32, "nll": pl.Float64, "ppl": pl.Float64},
    )


def sweep(
    model: torch.nn.Module,
    eval_sets: Sequence[EvalSet],
    plans: Sequence[iv.Intervention],
    batch_size: int = 16,
    baseline: bool = True,
    progress: Any = None,
) -> pl.DataFrame:
    """Perplexity of every evaluated set under the baseline and each intervention, model loaded once.

    Each :class:`EvalSet` must already hold its token ids. Returns one row per (intervention, sentence) with
    columns dataset, split, intervention, int_lang, lang, config, row, n_targets, nll, ppl, n_units.
    """
    runs = ([iv.Intervention()] if baseline else []) + list(plans)
    total = sum(len(s.ids) for s in eval_sets) * len(runs)
    task = progress.add_task("perplexity", total=total) if progress is not None else None

    def advance(k: int) -> None:
        if progress is not None:
            progress.advance(task, k)

    frames = []
    for plan in runs:
        for es in eval_sets:
            n, nll = sentence_nll(model, es.ids, batch_size, plan, advance)
            frames.append(
                pl.DataFrame(
                    {
                        "dataset": es.dataset,
                        "split": es.split,
                        "intervention": plan.intervention_type,
                        "int_lang": plan.lang,
                        "lang": es.lang,
                        "config": es.config,
                        "row": es.rows,
                        "n_targets": n,
                        "nll": nll,
                        "ppl": [math.exp(x) for x in nll],
                        "n_units": plan.n_units,
                    },
                    schema={
                        "dataset": pl.String, "split": pl.String, "intervention": pl.String,
                        "int_lang": pl.String, "lang": pl.String, "config": pl.String,
                        "row": pl.Int64, "n_targets": pl.Int32, "nll": pl.Float64, "ppl": pl.Float64,
                        "n_units": pl.Int32,
                    },
                )
            )
    return pl.concat(frames)


def check_options(opts: PplOptions) -> None:
    """Reject inconsistent options before anything is loaded."""
    if opts.intervention_type not in iv.INTERVENTION_TYPES:
        raise UsageError(
            f"unknown --intervention-type {opts.intervention_type!r}: use one of {', '.join(iv.INTERVENTION_TYPES)}"
        )
    if not opts.langs:
        raise UsageError("no evaluation language: pass --lang (one or more)")
    if opts.batch < 1:
        raise UsageError("--batch must be at least 1")
    if opts.intervention_type == "none":
        if opts.intervention_langs:
            raise UsageError("--intervention-lang needs an --intervention-type other than none")
        return
    if not opts.intervention_langs:
        raise UsageError(f"--intervention-type {opts.intervention_type} needs --intervention-lang L (or 'all')")
    if opts.lape_value_type not in iv.VALUE_TYPES:
        raise UsageError(f"unknown --lape-value-type {opts.lape_value_type!r}: use max, min or avg")
    if opts.intervention_type == "diffmean":
        if not opts.diffmean:
            raise UsageError("--intervention-type diffmean needs --diffmean NAME (a vector set made by "
                             "`langfeat identify --algorithm diffmean`)")
        if opts.feature_set or opts.lape_result_path:
            raise UsageError("--intervention-type diffmean steers with --diffmean vectors: drop --feature-set / "
                             "--lape-result-path")
        if opts.multiplier is None:
            raise UsageError("--intervention-type diffmean needs --multiplier (α, e.g. -1)")
        return
    if opts.diffmean:
        raise UsageError("--diffmean needs --intervention-type diffmean")
    if opts.intervention_type == "sae-features" and opts.multiplier is None:
        raise UsageError("--intervention-type sae-features needs --multiplier (e.g. -0.2)")
    if opts.intervention_type.startswith("sae") and opts.sae_model is None and opts.local_sae_dir is None:
        raise UsageError(f"--intervention-type {opts.intervention_type} needs --sae-model or --local-sae-dir")
    if opts.intervention_type == "neuron":
        if opts.neuron_method not in iv.NEURON_METHODS:
            raise UsageError(f"unknown --neuron-intervention-method {opts.neuron_method!r}: use fixed or scaling")
        if opts.neuron_method == "scaling" and opts.multiplier is None:
            raise UsageError("--neuron-intervention-method scaling needs --multiplier (e.g. -0.2)")
    FeatureSource.of(opts).check()


def intervention_langs(values: Sequence[str], features: pl.DataFrame | Sequence[str]) -> list[str]:
    """Canonical intervention languages; ``all`` means every language of the feature set (or of the given
    languages, e.g. a DiffMean vector set's)."""
    present = iv.set_langs(features) if isinstance(features, pl.DataFrame) else list(features)
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            tags = present if part.lower() == "all" else [langs.canonical(part)]
            out += [t for t in tags if t not in out]
    missing = [t for t in out if t not in present]
    if missing:
        what = "units" if isinstance(features, pl.DataFrame) else "vectors"
        raise UsageError(
            f"the set has no {what} for {', '.join(missing)}: pick from {', '.join(present)} or 'all'"
        )
    return out


def default_name(opts: PplOptions, int_langs: Sequence[str]) -> str:
    """A readable result name when --name is not given."""
    parts = [opts.intervention_type]
    if opts.intervention_type != "none":
        parts.append(opts.diffmean or opts.feature_set or "lape")
        parts.append("all" if len(int_langs) > 3 else "+".join(int_langs))
        if opts.intervention_type == "neuron" and opts.neuron_method == "fixed":
            parts.append(f"value{opts.value:g}")
        elif opts.intervention_type == "sae-features":
            parts.append(f"{opts.lape_value_type}{opts.multiplier:g}")
        elif opts.intervention_type == "diffmean":
            parts.append(f"a{opts.multiplier:g}")
        elif opts.multiplier is not None:
            parts.append(f"mult{opts.multiplier:g}")
    return "-".join(parts).replace("/", "_").replace(" ", "_")


def run_ppl(opts: PplOptions, progress: Any = None) -> tuple[str, pl.DataFrame]:
    """Run ``langfeat ppl``: load everything once, sweep, store the per-sentence results. Returns (name, rows)."""
    from langfeat.models import load_model, model_id
    from langfeat.store import ensure_store
    from langfeat.store.results import check_name, write_result

    check_options(opts)
    features = None
    int_langs: list[str] = []
    source = None
    if opts.intervention_type == "diffmean":
        from langfeat import diffmean

        int_langs = intervention_langs(opts.intervention_langs, diffmean.set_langs(opts.store, opts.diffmean))
        source = opts.diffmean
    elif opts.intervention_type != "none":
        features = feature_source.load_feature_set(opts.store, FeatureSource.of(opts))
        iv.check_kind(features, opts.intervention_type)
        int_langs = intervention_langs(opts.intervention_langs, features)
        source = opts.feature_set or (Path(opts.lape_result_path).name if opts.lape_result_path else None)
    name = check_name(opts.name or default_name(opts, int_langs))
    eval_sets = load_eval_sets(opts)

    model, tokenizer = load_model(opts.model, opts.gguf_file, opts.dtype, opts.device)
    for es in eval_sets:
        es.ids = tokenize(tokenizer, es.texts, opts.max_length)
        keep = [i for i, ids in enumerate(es.ids) if len(ids) > 1]  # a single token has nothing to predict
        es.rows, es.texts, es.ids = ([seq[i] for i in keep] for seq in (es.rows, es.texts, es.ids))
    plans: list[iv.Intervention] = []
    layer_list: list[int] = []
    if opts.intervention_type == "diffmean":
        from langfeat import diffmean

        vectors = {lang: diffmean.load_vectors(opts.store, opts.diffmean, lang) for lang in int_langs}
        specs = iv.vector_layer_specs(model, opts.layers, vectors)
        layer_list = [s.layer for s in specs]
        plans = [iv.diffmean_steering(vectors[lang], lang, specs, float(opts.multiplier)) for lang in int_langs]
    if features is not None:
        specs = iv.layer_specs(model, opts.layers, features)
        layer_list = [s.layer for s in specs]
        saes = {}
        if opts.intervention_type.startswith("sae"):
            saes = iv.load_saes(model, specs, features, opts.sae_model, opts.local_sae_dir)
        n_neurons = getattr(model.config, "intermediate_size", None)
        for lang in int_langs:
            plans.append(
                iv.build(
                    opts.intervention_type, features, lang, specs, saes,
                    multiplier=opts.multiplier, value=opts.value, value_type=opts.lape_value_type,
                    neuron_method=opts.neuron_method, n_neurons=n_neurons,
                )
            )
    t0 = time.time()
    rows = sweep(model, eval_sets, plans, opts.batch, baseline=opts.baseline or not plans, progress=progress)
    mid = model_id(opts.model, opts.gguf_file)
    rows = rows.with_columns(
        pl.lit(mid).alias("model"),
        pl.lit(opts.multiplier, dtype=pl.Float64).alias("multiplier"),
        pl.lit(opts.value if opts.intervention_type == "neuron" and opts.neuron_method == "fixed" else None,
               dtype=pl.Float64).alias("value"),
        pl.when(pl.col("intervention") != "none").then(pl.lit(source, dtype=pl.String)).alias("source"),
    )
    params = stored(
        opts, model=mid, dataset=eval_sets[0].dataset, split=eval_sets[0].split, langs=[es.lang for es in eval_sets],
        configs=[es.config for es in eval_sets], template=eval_sets[0].template, intervention_langs=int_langs,
        layers=layer_list, seconds=round(time.time() - t0, 3),
    )
    write_result(ensure_store(opts.store), TABLE, name, rows, params)
    return name, rows


def load_eval_sets(opts: PplOptions) -> list[EvalSet]:
    """The evaluation sentences of each --lang (read with the loader ingestion uses)."""
    from langfeat import data

    sets = []
    for value in opts.langs:
        source = data.open_source(
            opts.dataset, value, split=opts.split, start=opts.start, end=opts.end,
            template=opts.template, text_column=opts.text_column,
        )
        sets.append(EvalSet(lang=source.lang.tag, config=value, rows=list(range(source.start, source.end)),
                            texts=source.texts(), dataset=source.dataset, split=source.split,
                            template=source.template))
    return sets


METRICS = ("mean_delta", "median_ratio", "mean_log_ratio")


def list_results(store: Any) -> pl.DataFrame:
    """One row per stored ppl result: name, intervention, languages and sentence counts."""
    return store.sql("SELECT * FROM ppl_result_list")


def result_summary(store: Any, name: str) -> pl.DataFrame:
    """Per (intervened, evaluated language) of result ``name``: ΔPPL cells, or plain PPL for a baseline-only run."""
    delta = store.sql("SELECT * FROM ppl_delta WHERE name = ?", [name])
    if delta.height:
        return _lang_sorted(delta.drop("name"), "int_lang", "lang")
    base = store.sql("SELECT * FROM ppl_summary WHERE name = ?", [name])
    if base.height == 0:
        raise UsageError(f"no ppl result named {name!r}: run `langfeat report ppl` to list them")
    return _lang_sorted(base.drop("name"), "lang")


def delta_matrix(store: Any, name: str, metric: str = "mean_delta") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(matrix: one row per intervened language, one column per evaluated language; summary of ``metric``)."""
    if metric not in METRICS:
        raise UsageError(f"unknown --metric {metric!r}: use one of {', '.join(METRICS)}")
    cells = store.sql("SELECT int_lang, lang, value FROM ppl_delta_long WHERE name = ? AND metric = ?", [name, metric])
    if cells.height == 0:
        result_summary(store, name)  # raises when the name is unknown
        raise UsageError(f"ppl result {name!r} has no intervened rows: it is a baseline; run ppl with an intervention")
    order = sorted(set(cells["lang"].to_list()), key=langs.sort_key)
    matrix = cells.pivot(on="lang", index="int_lang", values="value")
    matrix = _lang_sorted(matrix, "int_lang").select("int_lang", *[c for c in order if c in matrix.columns])
    summary = store.sql(
        "SELECT metric, diag_median, off_median, diag_mean, off_mean, rowmax, n_rows FROM ppl_delta_summary "
        "WHERE name = ? AND metric = ?",
        [name, metric],
    )
    return matrix, summary


def _lang_sorted(df: pl.DataFrame, *cols: str) -> pl.DataFrame:
    return langs.sort_frame(df, *cols, nulls_last=False)
