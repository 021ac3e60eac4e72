"""Steered text generation (the paper's text_generation.py) with a KV cache and explicit sampling settings.

The steering vector of a language is the paper's s_N = α · Σ_f gmax_f · W_dec[f] at each hooked MLP output.

* all-token mode (default): a forward hook adds s_N to every position as it is computed — the prompt positions
  in the prefill and each new position at each step — which equals re-running the whole sequence with s_N
  added everywhere, as the paper does, without its O(T²) re-runs and re-tokenisation;
* last-token mode (``last_token_only``): s_N is added to the last prompt position in the prefill and to the
  newest position at each step.

Each sample is judged by the fastText language identifier (``langfeat.lid``); the views in
``queries/generate/`` turn the judgements into switch rates per (language, α).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import polars as pl
import torch

from langfeat import features as feature_source
from langfeat import interventions as iv
from langfeat import langs
from langfeat.errors import UsageError
from langfeat.features import FeatureSource
from langfeat.models import tokenize
from langfeat.options import GenerateOptions, Sampling, stored

TABLE = "generate_results"


def generation_config(tokenizer: Any, sampling: Sampling) -> Any:
    """A complete ``GenerationConfig`` (nothing left to the model's own defaults)."""
    from transformers import GenerationConfig

    kwargs: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens,
        min_new_tokens=0,
        do_sample=sampling.do_sample,
        num_beams=1,
        repetition_penalty=sampling.repetition_penalty,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        use_cache=True,
    )
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    return GenerationConfig(**kwargs)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's token ids, BOS first; an empty prompt is BOS alone (as in the paper)."""
    ids = tokenize(tokenizer, [prompt])[0]
    if not ids:
        fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [fallback]
    return ids


def generate_samples(
    model: torch.nn.Module,
    tokenizer: Any,
    steering: iv.Intervention | None = None,
    prompt: str = "",
    times: int = 1,
    seed: int = 0,
    sampling: Sampling | None = None,
    batch: int = 1,
    progress: Any = None,
) -> pl.DataFrame:
    """``times`` samples from ``prompt`` under ``steering``; the batch starting at sample i is seeded ``seed + i``.

    With ``batch=1`` every sample i has its own seed ``seed + i``, as in the paper. Returns one row per sample:
    sample, seed, text, n_new_tokens, stopped_eos, token_ids.
    """
    from transformers import set_seed

    sampling = sampling or Sampling()
    config = generation_config(tokenizer, sampling)
    steering = steering or iv.Intervention()
    device = next(model.parameters()).device
    ids = prompt_ids(tokenizer, prompt)
    eos = tokenizer.eos_token_id
    rows: list[dict[str, Any]] = []
    task = progress.add_task("generate", total=times) if progress is not None else None
    with torch.inference_mode(), steering.applied(model):
        for start in range(0, times, batch):
            n = min(batch, times - start)
            input_ids = torch.tensor([ids] * n, dtype=torch.long, device=device)
            set_seed(seed + start)
            out = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config
            )
            for r in range(n):
                new = out[r, len(ids) :].tolist()
                stop = new.index(eos) if eos is not None and eos in new else None
                kept = new if stop is None else new[:stop]
                rows.append(
                    {
                        "sample": start + r,
                        "seed": seed + start,
                        "text": tokenizer.decode(kept, skip_special_tokens=True),
                        "n_new_tokens": len(kept),
                        "stopped_eos": stop is not None,
                        "token_ids": kept,
                    }
                )
            if progress is not None:
                progress.advance(task, n)
    return pl.DataFrame(
        rows,
        schema={
            "sample": pl.Int32, "seed": pl.Int64, "text": pl.String, "n_new_tokens": pl.Int32,
            "stopped_eos": pl.Boolean, "token_ids": pl.List(pl.Int64),
        },
    )


def judge(texts: Sequence[str]) -> tuple[list[str | None], list[float | None]]:
    """fastText language of each text (canonical tag) and its confidence; empty texts get NULLs."""
    from langfeat.lid import identify

    flat = [" ".join(t.split()) for t in texts]
    todo = [i for i, t in enumerate(flat) if t]
    tags: list[str | None] = [None] * len(flat)
    probs: list[float | None] = [None] * len(flat)
    if todo:
        for i, (tag, prob) in zip(todo, identify([flat[i] for i in todo]), strict=True):
            try:
                tags[i] = langs.canonical(tag)
            except ValueError:
                tags[i] = tag
            probs[i] = float(prob)
    return tags, probs


def check_options(opts: GenerateOptions) -> None:
    """Reject inconsistent options before anything is loaded."""
    if not opts.langs:
        raise UsageError("no language: pass --lang (one or more, or 'all')")
    if not opts.multipliers:
        raise UsageError("no steering strength: pass --multiplier (one or more, 0 for the unsteered baseline)")
    if opts.times < 1 or opts.batch < 1 or opts.sampling.max_new_tokens < 1:
        raise UsageError("--times, --batch and --max-new-token must be at least 1")
    if opts.sampling.do_sample and not (opts.sampling.temperature > 0 and 0 < opts.sampling.top_p <= 1):
        raise UsageError("sampling needs --temperature > 0 and 0 < --top-p <= 1 (or pass --greedy)")
    if any(a != 0 for a in opts.multipliers):
        FeatureSource.of(opts).check()
        if opts.sae_model is None and opts.local_sae_dir is None:
            raise UsageError("steering needs the SAE decoder: pass --sae-model or --local-sae-dir")


def run_generate(opts: GenerateOptions, progress: Any = None) -> tuple[str, pl.DataFrame]:
    """Run ``langfeat generate`` for every (language, α); store and return (name, rows)."""
    from langfeat.experiments.ppl import intervention_langs
    from langfeat.models import load_model, model_id
    from langfeat.store import ensure_store
    from langfeat.store.results import check_name, write_result

    check_options(opts)
    steered = any(a != 0 for a in opts.multipliers)
    features = feature_source.load_feature_set(opts.store, FeatureSource.of(opts)) if steered else None
    if features is not None:
        iv.check_kind(features, "sae-features")
        targets = intervention_langs(opts.langs, features)
    else:
        if any(v.lower() == "all" for v in opts.langs):
            raise UsageError("--lang all needs a feature set: pass --feature-set or --lape-result-path")
        targets = list(dict.fromkeys(langs.canonical(v) for v in opts.langs))
    name = check_name(opts.name or f"generate-{opts.feature_set or 'lape'}-{'+'.join(targets[:3])}")
    if opts.judge:
        judge(["warm up the language identifier"])  # fail before the long part if it is unavailable

    model, tokenizer = load_model(opts.model, opts.gguf_file, opts.dtype, opts.device)
    specs, saes = [], {}
    if features is not None:
        specs = iv.layer_specs(model, opts.layers, features)
        saes = iv.load_saes(model, specs, features, opts.sae_model, opts.local_sae_dir)
    t0 = time.time()
    frames = []
    for lang in targets:
        for alpha in opts.multipliers:
            plan = None
            if alpha != 0:
                plan = iv.build("sae-features", features, lang, specs, saes, multiplier=alpha,
                                value_type="max", last_token_only=opts.last_token_only)
            df = generate_samples(model, tokenizer, plan, opts.prompt, opts.times, opts.seed, opts.sampling,
                                  opts.batch, progress)
            frames.append(df.with_columns(
                pl.lit(lang).alias("lang"),
                pl.lit(float(alpha)).alias("multiplier"),
                pl.lit(plan.n_units if plan else 0, dtype=pl.Int32).alias("n_units"),
            ))
    rows = pl.concat(frames).drop("token_ids")
    tags, probs = judge(rows["text"].to_list()) if opts.judge else ([None] * rows.height, [None] * rows.height)
    rows = rows.with_columns(
        pl.lit(model_id(opts.model, opts.gguf_file)).alias("model"),
        pl.lit(opts.last_token_only).alias("last_token"),
        pl.lit(opts.prompt).alias("prompt"),
        pl.Series("lid_lang", tags, dtype=pl.String),
        pl.Series("lid_prob", probs, dtype=pl.Float64),
    )
    params = stored(
        opts, model=model_id(opts.model, opts.gguf_file), langs=targets,
        multipliers=[float(a) for a in opts.multipliers], layers=[s.layer for s in specs], value_type="max",
        judge="fasttext lid" if opts.judge else None, seconds=round(time.time() - t0, 3),
    )
    write_result(ensure_store(opts.store), TABLE, name, rows, params)
    return name, rows


def list_results(store: Any) -> pl.DataFrame:
    """One row per stored generation result."""
    return store.sql("SELECT * FROM generate_result_list")


def switch_rates(store: Any, name: str) -> pl.DataFrame:
    """The ``generate_switch`` rows of result ``name``, by language (English-name order) then α."""
    rows = store.sql("SELECT * FROM generate_switch WHERE name = ?", [name])
    if rows.height == 0:
        raise UsageError(f"no generate result named {name!r}: run `langfeat report generate` to list them")
    return langs.sort_frame(rows.drop("name"), "lang", then=("last_token", "multiplier"))


def switch_matrix(rates: pl.DataFrame, column: str = "switch_rate") -> pl.DataFrame:
    """``rates`` pivoted: one row per (language, mode), one column per α."""
    alphas = sorted(set(rates["multiplier"].to_list()))
    wide = rates.with_columns(pl.col("multiplier").map_elements(lambda a: f"{a:g}", return_dtype=pl.String)).pivot(
        on="multiplier", index=["lang", "last_token"], values=column
    )
    return wide.select("lang", "last_token", *[f"{a:g}" for a in alphas])


def sample_texts(store: Any, name: str, per_cell: int) -> pl.DataFrame:
    """The first ``per_cell`` samples of each (language, α) of result ``name`` with their judgement."""
    rows = store.sql(
        "SELECT lang, multiplier, last_token, sample, lid_lang, lid_prob, text FROM generate_results "
        "WHERE name = ? ORDER BY lang, last_token, multiplier, sample",
        [name],
    )
    return rows.filter(pl.int_range(pl.len()).over("lang", "multiplier", "last_token") < per_cell)
