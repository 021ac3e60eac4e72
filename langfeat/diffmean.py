"""DiffMean steering vectors: per layer, a language's mean MLP output minus the mean of the other languages'.

The model is re-run over the stored tokens of the identification runs (the documents SAE-LAPE counted, as they were
fed to the model at ingestion). For each (language, layer) the MLP outputs of every real token position except BOS
are summed in float64 on the model's device and divided by their count: dense means, computed in torch because
they are not a statistic of anything the store holds. They are stored as the result table ``diffmean_means`` (one
row per language, layer and dimension, with the tokens and documents averaged); the steering vectors themselves are
the SQL view ``diffmean_vectors`` (``diff = mean_L − mean over the other languages of their means``, each language
weighing equally) and their norms ``diffmean_norms``. The ``diffmean`` intervention of ``generate`` and ``ppl``
adds α · vector to the MLP output at the chosen layers (:func:`langfeat.interventions.diffmean_steering`).

DiffMean (the difference of class means) is the simple baseline AxBench found to beat SAE-based steering
(Wu et al. 2025, arXiv 2501.17148) and the strongest method of CLaS-Bench (Gurgurov et al. 2026, arXiv 2601.08331).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import polars as pl

from langfeat import langs
from langfeat.errors import UsageError

TABLE = "diffmean_means"


def language_means(
    model: Any, docs: dict[str, list[list[int]]], layers: Sequence[int], batch: int = 16, pad_id: int = 0,
    bos_id: int | None = None, progress: Any = None,
) -> pl.DataFrame:
    """Mean MLP output per (language, layer) of ``docs`` (language → token-id lists, each starting with BOS when the
    tokenizer has one): every real position except a leading BOS, padding excluded. Returns ``lang, layer, dim,
    mean, n_tokens, n_docs``."""
    import torch

    from langfeat.activations import mlp_outputs, plan_batches

    sums: dict[int, torch.Tensor] = {}

    def add(layer: int, out: torch.Tensor) -> None:
        part = out.to(torch.float64).sum(0)
        sums[layer] = part if layer not in sums else sums[layer] + part

    total = sum(len(v) for v in docs.values())
    task = progress.add_task("diffmean", total=total) if progress is not None else None
    rows = []
    for lang, seqs in docs.items():
        sums.clear()
        n_tokens = mlp_outputs(model, seqs, layers, plan_batches([len(s) for s in seqs], batch), add, pad_id, bos_id,
                               on_batch=None if progress is None else lambda n: progress.advance(task, n))
        if n_tokens == 0:
            raise UsageError(f"the stored documents of {lang} have no token besides BOS: ingest longer texts")
        n_docs = sum(1 for s in seqs if s)
        for layer in layers:
            mean = (sums[layer] / n_tokens).cpu().tolist()
            rows.append(pl.DataFrame({"lang": lang, "layer": layer, "dim": range(len(mean)), "mean": mean,
                                      "n_tokens": n_tokens, "n_docs": n_docs}))
    return pl.concat(rows).cast({"layer": pl.Int32, "dim": pl.Int32, "n_tokens": pl.Int64, "n_docs": pl.Int64})


def _select_runs(st: Any, **kw: Any) -> pl.DataFrame:
    """The identification runs (with SAE feature counts, else with neuron counts: any run holds its tokens)."""
    from langfeat import stats

    try:
        return stats.select_runs(st, kind="sae", **kw)
    except UsageError as first:
        try:
            return stats.select_runs(st, kind="neuron", **kw)
        except UsageError:
            raise first from None


def _layers(patterns: Sequence[str | int] | str | None, runs: pl.DataFrame) -> list[int]:
    from langfeat import stats
    from langfeat.identify import resolve_layers

    if patterns is not None and not isinstance(patterns, str) and len(patterns) == 0:
        patterns = None
    if patterns is not None:
        items = [patterns] if isinstance(patterns, (str, int)) else list(patterns)
        if any(str(p).endswith("act_fn") for p in items):
            raise UsageError("DiffMean steers MLP outputs: pass --layer 'model.layers.N.mlp' (not .mlp.act_fn)")
    layers, _ = resolve_layers(patterns, "sae-lape")
    if layers is None:
        layers = stats.common_layers(runs, "sae") or stats.common_layers(runs, "neuron")
    if not layers:
        raise UsageError("the selected runs share no layer: pass --layer 'model.layers.N.mlp'")
    return sorted(set(layers))


def stored_docs(st: Any, run_ids: Sequence[str], max_docs: int | None = None) -> dict[str, list[list[int]]]:
    """The token ids of the documents of ``run_ids``, by canonical language (languages in the paper's order,
    documents by id; the first ``max_docs`` of each language when given)."""
    frame = st.sql(
        "SELECT lang, doc_id, list(token_id ORDER BY pos) AS ids FROM tokens WHERE list_contains(?, run_id) "
        "GROUP BY lang, doc_id ORDER BY doc_id", [list(run_ids)])
    out: dict[str, list[list[int]]] = {}
    for lang, ids in zip(frame["lang"].to_list(), frame["ids"].to_list(), strict=True):
        out.setdefault(langs.canonical(lang), []).append([int(x) for x in ids])
    return {k: out[k][:max_docs] for k in sorted(out, key=langs.sort_key)}


def make_diffmean(
    store: Any = None, *, model: str | None = None, layers: Sequence[str | int] | str | None = None,
    dataset_configs: Sequence[str] | str | None = None, role: str | None = "identify",
    runs: Sequence[str] | None = None, name: str | None = None, overwrite: bool = False, batch: int = 16,
    device: str = "auto", dtype: str = "float32", max_docs: int | None = None, progress: Any = None,
) -> tuple[str, pl.DataFrame]:
    """Compute and store DiffMean vector set ``name`` (default ``diffmean``) from the selected runs' documents
    (selection as :func:`langfeat.identify.identify_named`; ``max_docs``: at most that many per language, the
    first by document id); the model is the runs' own. Returns (name, the set's ``diffmean_norms`` rows)."""
    from langfeat import stats
    from langfeat.store.results import check_name, write_result
    from langfeat.store.runs import now

    if batch < 1 or (max_docs is not None and max_docs < 1):
        raise UsageError("--batch and the documents per language must be at least 1")
    name = check_name(name or "diffmean")
    with stats.opened(store) as st:
        if st.layout.result_dir(TABLE, name).exists() and not overwrite:
            raise UsageError(f"DiffMean vector set {name!r} already exists: pick another --name or pass --overwrite")
        chosen = _select_runs(st, model=model, dataset_configs=dataset_configs, role=role, runs=runs)
        layer_list = _layers(layers, chosen)
        docs = stored_docs(st, chosen["run_id"].to_list(), max_docs)
        if len(docs) < 2:
            raise UsageError(f"DiffMean needs documents of at least two languages; the runs hold {list(docs)}: "
                             "ingest more languages or widen --dataset-configs")
        from langfeat.models import load_model

        model_name = chosen["model"][0]
        lm, tokenizer = load_model(model_name, dtype=dtype, device=device)
        t0 = time.time()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        means = language_means(lm, docs, layer_list, batch, pad, tokenizer.bos_token_id, progress)
        params = {
            "name": name, "algorithm": "diffmean", "model": model_name, "layers": layer_list,
            "runs": chosen["run_id"].to_list(), "langs": list(docs),
            "dataset_configs": [f"{d}:{c}" for d, c in zip(chosen["dataset"], chosen["config"], strict=True)],
            "positions": "every real token position except BOS", "others": "each other language weighs equally",
            "max_docs": max_docs,
            "dtype": dtype, "seconds": round(time.time() - t0, 3), "created_at": now(),
        }
        write_result(st.layout, TABLE, name, means, params)
    return name, norms(store, name)


def norms(store: Any, name: str) -> pl.DataFrame:
    """``diffmean_norms`` of vector set ``name`` by language (paper order) then layer."""
    from langfeat import stats

    with stats.opened(store) as st:
        rows = st.sql("SELECT * EXCLUDE (name) FROM diffmean_norms WHERE name = ?", [name])
    if rows.height == 0:
        raise UsageError(f"no DiffMean vector set named {name!r}: run `langfeat report diffmean` to list them")
    return langs.sort_frame(rows, "lang", then=("layer",))


def list_sets(store: Any) -> pl.DataFrame:
    """One row per stored DiffMean vector set: languages, layers, d_model, tokens averaged."""
    from langfeat import stats

    with stats.opened(store) as st:
        return st.sql(
            "SELECT name, count(DISTINCT lang) AS n_langs, list(DISTINCT layer ORDER BY layer) AS layers, "
            "max(d_model) AS d_model, sum(n_tokens) FILTER (WHERE layer = (SELECT min(layer) FROM diffmean_norms)) "
            "AS n_tokens FROM diffmean_norms GROUP BY name ORDER BY name")


def load_vectors(store: Any, name: str, lang: str) -> dict[int, Any]:
    """The DiffMean vectors of ``lang`` in set ``name``: layer → float32 tensor ``[d_model]``."""
    import torch

    from langfeat import stats

    tag = langs.canonical(lang)
    with stats.opened(store) as st:
        rows = st.sql("SELECT layer, list(diff ORDER BY dim) AS v FROM diffmean_vectors WHERE name = ? AND lang = ? "
                      "GROUP BY layer ORDER BY layer", [name, tag])
        if rows.height == 0:
            have = st.sql("SELECT DISTINCT lang FROM diffmean_means WHERE name = ?", [name])["lang"].to_list()
    if rows.height == 0:
        if not have:
            raise UsageError(f"no DiffMean vector set named {name!r}: make one with `langfeat identify --algorithm "
                             "diffmean --name NAME`")
        raise UsageError(f"DiffMean vector set {name!r} has no vector for {tag}: pick from "
                         f"{', '.join(sorted(have, key=langs.sort_key))}")
    if any(x is None for v in rows["v"].to_list() for x in v):
        raise UsageError(f"DiffMean vector set {name!r} holds one language only: it has no difference to steer with")
    return {int(layer): torch.tensor(v, dtype=torch.float32) for layer, v in rows.iter_rows()}


def set_langs(store: Any, name: str) -> list[str]:
    """The languages of DiffMean vector set ``name`` (paper order); a one-line error when it does not exist."""
    from langfeat import stats

    with stats.opened(store) as st:
        have = st.sql("SELECT DISTINCT lang FROM diffmean_means WHERE name = ?", [name])["lang"].to_list()
    if not have:
        raise UsageError(f"no DiffMean vector set named {name!r}: make one with `langfeat identify --algorithm "
                         "diffmean --name NAME`")
    return sorted(have, key=langs.sort_key)
