"""Steered text generation (the paper's text_generation.py) with a KV cache and explicit sampling settings.

The steering vector of a language is the paper's s_N = α · Σ_f gmax_f · W_dec[f] at each hooked MLP output.

* all-token mode (default): a forward hook adds s_N to every position as it is computed — the prompt positions
  in the prefill and each new position at each step — which equals re-running the whole sequence with s_N
  added everywhere, as the paper does, without its O(T²) re-runs and re-tokenisation;
* last-token mode (``last_token_only``): s_N is added to the last prompt position in the prefill and to the
  newest position at each step.

A sweep runs every (language, method, α): ``sae-features`` (the paper's steering), ``diffmean`` (α · the language's
DiffMean vector at each hooked MLP output, ``langfeat.diffmean``) and ``prompting`` (no steering; the prompt is
prefixed with "Answer in <language>.", once per language). Each sample is judged by the fastText language
identifier (``langfeat.lid``) and scored for fluency: its perplexity per character under the unsteered model
(:func:`fluency`). The views in ``queries/generate/`` turn these per-sample values into switch rates, success rates,
fluency and steering scores and the best α per language (``generate_steering``, ``generate_best_alpha``,
``methods_steering``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
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


METHODS = ("sae-features", "diffmean", "prompting")
FLUENCY_BATCH = 16  # texts per forward when scoring fluency


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
    if not opts.methods:
        raise UsageError(f"no method: pass --method (one or more of {', '.join(METHODS)})")
    for method in opts.methods:
        if method not in METHODS:
            raise UsageError(f"unknown --method {method!r}: use one or more of {', '.join(METHODS)}")
    if "prompting" in opts.methods and "{language}" not in opts.instruction:
        raise UsageError("--instruction must contain {language} (e.g. 'Answer in {language}.')")
    if "diffmean" in opts.methods and not opts.diffmean:
        raise UsageError("--method diffmean needs --diffmean NAME (a vector set made by "
                         "`langfeat identify --algorithm diffmean`)")
    if opts.diffmean and "diffmean" not in opts.methods:
        raise UsageError("--diffmean is only used by --method diffmean: add it to --method")
    if "sae-features" in opts.methods and any(a != 0 for a in opts.multipliers):
        FeatureSource.of(opts).check()
        if opts.sae_model is None and opts.local_sae_dir is None:
            raise UsageError("steering needs the SAE decoder: pass --sae-model or --local-sae-dir")


def instructed_prompt(instruction: str, lang: str, prompt: str) -> str:
    """The prompting baseline's prompt: ``instruction`` for ``lang`` (its English name), a newline, then ``prompt``."""
    return instruction.format(language=langs.english_name(lang)) + "\n" + prompt


def fluency(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch: int = 16
            ) -> tuple[list[int], list[int], list[float | None], list[float | None]]:
    """Per text: (characters, scored tokens, summed NLL in nats, per-character perplexity) under ``model`` as it
    is (no intervention). A text is re-tokenized on its own (BOS first, BOS not a target, as ``langfeat ppl``);
    its per-character perplexity is exp(summed NLL / characters), comparable across tokenizers. An empty text
    gets NULLs (0 characters)."""
    import math

    from langfeat.experiments.ppl import sentence_nll

    n_chars = [len(t) for t in texts]
    ids = tokenize(tokenizer, list(texts))
    n_tgt, nll = sentence_nll(model, ids, batch)
    total: list[float | None] = []
    char_ppl: list[float | None] = []
    for chars, n, mean in zip(n_chars, n_tgt, nll, strict=True):
        if chars == 0 or n == 0:
            total.append(None)
            char_ppl.append(None)
        else:
            total.append(mean * n)
            char_ppl.append(math.exp(mean * n / chars))
    return n_chars, n_tgt, total, char_ppl


def sweep_targets(opts: GenerateOptions, features: pl.DataFrame | None) -> list[str]:
    """The languages of the sweep: ``--lang`` (canonical), ``all`` = every language of the feature set (or of the
    DiffMean vector set without one)."""
    from langfeat.experiments.ppl import intervention_langs

    if features is not None:
        return intervention_langs(opts.langs, features)
    if opts.diffmean:
        from langfeat import diffmean

        return intervention_langs(opts.langs, diffmean.set_langs(opts.store, opts.diffmean))
    if any(v.lower() == "all" for v in opts.langs):
        raise UsageError("--lang all needs a feature set: pass --feature-set or --lape-result-path")
    return list(dict.fromkeys(langs.canonical(v) for v in opts.langs))


def run_generate(opts: GenerateOptions, progress: Any = None) -> tuple[str, pl.DataFrame]:
    """Run ``langfeat generate``: every (language, method, α), plus the prompting baseline once per language; judge
    and score every sample; store and return (name, rows). Unsteered samples of one prompt are drawn once (the
    α = 0 rows of every language and method are the same draws)."""
    from langfeat.models import load_model, model_id
    from langfeat.store import ensure_store
    from langfeat.store.results import check_name, write_result

    check_options(opts)
    methods = list(dict.fromkeys(opts.methods))
    steered = "sae-features" in methods and any(a != 0 for a in opts.multipliers)
    features = feature_source.load_feature_set(opts.store, FeatureSource.of(opts)) if steered else None
    if features is not None:
        iv.check_kind(features, "sae-features")
    targets = sweep_targets(opts, features)
    default = f"generate-{opts.feature_set or 'lape'}-{'+'.join(targets[:3])}"
    if methods != ["sae-features"]:
        default = f"generate-{'+'.join(methods)}-{'+'.join(targets[:3])}"
    name = check_name(opts.name or default)
    if opts.judge:
        judge(["warm up the language identifier"])  # fail before the long part if it is unavailable
    vectors: dict[str, dict[int, torch.Tensor]] = {}
    if "diffmean" in methods:
        from langfeat import diffmean

        vectors = {lang: diffmean.load_vectors(opts.store, opts.diffmean, lang) for lang in targets}

    model, tokenizer = load_model(opts.model, opts.gguf_file, opts.dtype, opts.device)
    specs, saes = [], {}
    if features is not None:
        specs = iv.layer_specs(model, opts.layers, features)
        saes = iv.load_saes(model, specs, features, opts.sae_model, opts.local_sae_dir)
    vec_specs = iv.vector_layer_specs(model, opts.layers, vectors) if vectors else []
    sources = {"sae-features": opts.feature_set or (Path(opts.lape_result_path).name if opts.lape_result_path
                                                    else None), "diffmean": opts.diffmean, "prompting": None}
    t0 = time.time()
    unsteered: dict[str, pl.DataFrame] = {}

    def draw(plan: iv.Intervention | None, prompt: str) -> pl.DataFrame:
        if plan is None and prompt in unsteered:
            return unsteered[prompt]
        df = generate_samples(model, tokenizer, plan, prompt, opts.times, opts.seed, opts.sampling, opts.batch,
                              progress)
        if plan is None:
            unsteered[prompt] = df
        return df

    frames = []
    for lang in targets:
        for method in methods:
            cells: list[tuple[float, iv.Intervention | None, str]] = []
            if method == "prompting":
                cells.append((0.0, None, instructed_prompt(opts.instruction, lang, opts.prompt)))
            for alpha in opts.multipliers if method != "prompting" else []:
                plan = None
                if alpha != 0 and method == "sae-features":
                    plan = iv.build("sae-features", features, lang, specs, saes, multiplier=alpha,
                                    value_type="max", last_token_only=opts.last_token_only)
                elif alpha != 0:
                    plan = iv.diffmean_steering(vectors[lang], lang, vec_specs, alpha, opts.last_token_only)
                cells.append((float(alpha), plan, opts.prompt))
            for alpha, plan, prompt in cells:
                df = draw(plan, prompt)
                frames.append(df.with_columns(
                    pl.lit(lang).alias("lang"),
                    pl.lit(alpha).alias("multiplier"),
                    pl.lit(plan.n_units if plan else 0, dtype=pl.Int32).alias("n_units"),
                    pl.lit(prompt).alias("prompt"),
                    pl.lit(method).alias("method"),
                    pl.lit(sources[method], dtype=pl.String).alias("source"),
                ))
    rows = pl.concat(frames).drop("token_ids")
    texts = rows["text"].to_list()
    tags, probs = judge(texts) if opts.judge else ([None] * rows.height, [None] * rows.height)
    rows = rows.with_columns(
        pl.lit(model_id(opts.model, opts.gguf_file)).alias("model"),
        pl.lit(opts.last_token_only).alias("last_token"),
        pl.Series("lid_lang", tags, dtype=pl.String),
        pl.Series("lid_prob", probs, dtype=pl.Float64),
    )
    if opts.fluency:
        unique = list(dict.fromkeys(texts))
        with torch.inference_mode():
            scored = dict(zip(unique, zip(*fluency(model, tokenizer, unique, FLUENCY_BATCH), strict=True),
                              strict=True))
        chars, n_tgt, nll, cppl = (list(col) for col in zip(*(scored[x] for x in texts), strict=True))
    else:
        chars, n_tgt, nll, cppl = [len(x) for x in texts], [None] * len(texts), [None] * len(texts), \
            [None] * len(texts)
    rows = rows.with_columns(
        pl.Series("n_chars", chars, dtype=pl.Int32),
        pl.Series("flu_targets", n_tgt, dtype=pl.Int32),
        pl.Series("flu_nll", nll, dtype=pl.Float64),
        pl.Series("char_ppl", cppl, dtype=pl.Float64),
    )
    params = stored(
        opts, model=model_id(opts.model, opts.gguf_file), langs=targets, methods=methods,
        multipliers=[float(a) for a in opts.multipliers], layers=[s.layer for s in specs],
        diffmean_layers=[s.layer for s in vec_specs], value_type="max",
        judge="fasttext lid" if opts.judge else None,
        fluency="per-character perplexity under the unsteered model" if opts.fluency else None,
        seconds=round(time.time() - t0, 3),
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
    return langs.sort_frame(rows.drop("name"), "lang", then=("method", "last_token", "multiplier"))


def switch_matrix(rates: pl.DataFrame, column: str = "switch_rate") -> pl.DataFrame:
    """``rates`` pivoted: one row per (language, mode, method), one column per α."""
    alphas = sorted(set(rates["multiplier"].to_list()))
    wide = rates.with_columns(pl.col("multiplier").map_elements(lambda a: f"{a:g}", return_dtype=pl.String)).pivot(
        on="multiplier", index=["lang", "last_token", "method"], values=column
    )
    return wide.select("lang", "last_token", "method", *[f"{a:g}" for a in alphas])


def steering_scores(store: Any, name: str) -> pl.DataFrame:
    """The ``generate_steering`` rows of result ``name`` (success, fluency and steering score per cell)."""
    rows = store.sql("SELECT * EXCLUDE (name) FROM generate_steering WHERE name = ?", [name])
    if rows.height == 0:
        raise UsageError(f"no generate result named {name!r}: run `langfeat report generate` to list them")
    return langs.sort_frame(rows, "lang", then=("method", "last_token", "multiplier"))


def best_alphas(store: Any, name: str) -> pl.DataFrame:
    """The ``generate_best_alpha`` rows of result ``name``: the best α per (method, language, mode)."""
    rows = store.sql("SELECT * EXCLUDE (name) FROM generate_best_alpha WHERE name = ?", [name])
    return langs.sort_frame(rows, "lang", then=("method", "last_token"))


def sample_texts(store: Any, name: str, per_cell: int) -> pl.DataFrame:
    """The first ``per_cell`` samples of each (language, α) of result ``name`` with their judgement."""
    rows = store.sql(
        "SELECT lang, coalesce(method, 'sae-features') AS method, multiplier, last_token, sample, lid_lang, lid_prob, "
        "char_ppl, text FROM generate_results WHERE name = ? ORDER BY lang, method, last_token, multiplier, sample",
        [name],
    )
    return rows.filter(pl.int_range(pl.len()).over("lang", "method", "multiplier", "last_token") < per_cell)
