"""Language identification with language-specific features (the paper's classify.py), stored and queried in SQL.

A classification is a named result made of four small tables (schemas in ``db/tables.sql``):
``classify_docs`` (the documents and their true language), ``classify_langs`` (the candidate languages and their
set sizes), ``classify_units`` (the feature-set units voted with) and ``classify_scores`` (scores computed outside
SQL). For the SAE classifiers the documents are an ingested run (re-used when one covers the texts, ingested
otherwise) and the per-document, per-language votes are the view ``classify_votes`` over ``events`` joined with
the units; ``classify_predictions`` takes the argmax (ties and all-zero scores: ``unknown``) and
``classify_metrics`` / ``classify_class_metrics`` / ``classify_confusion`` evaluate it (``queries/classify/``).

* ``sae-count``: firings of each language's SAE features (BOS included).
* ``sae-min-max``: firings weighted by (act − act_min) / (act_max − act_min + 1e-6) with the set's statistics.
* ``sae-norm``: ``sae-count`` divided by the size of the language's feature set.
* ``sae-probe``: an L1 multinomial logistic regression over per-document feature values, fit on identification
  runs and scored on the evaluated (held-out) runs in SQL (``langfeat.experiments.probe``).
* ``neuron-probe``: the same probe over per-document MLP-neuron values (``neuron_docs``: runs ingested with
  ``--neuron-docs``), scored in SQL too.
* ``neuron-count``: (token, neuron) pairs with ``mlp.act_fn`` output > 0 among the language's neurons, counted by
  forward hooks (neuron activations are dense and not stored), kept in ``classify_scores``.
* ``fasttext``: lid.176 probabilities restricted to the evaluated languages, kept in ``classify_scores``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from langfeat import langs
from langfeat.errors import UsageError
from langfeat.features import FeatureSource, load_feature_set
from langfeat.layers import mlp_path, mlp_specs, parse_option
from langfeat.models import (
    base_prefix,
    load_model,
    model_id,
    model_names,
    tokenize,
)
from langfeat.options import ClassifyOptions, stored
from langfeat.sae_identity import canonical_sae_id, check_sae_source, sae_id
from langfeat.store.runs import ORIGIN_KEY

CLASSIFIERS = ("sae-count", "sae-min-max", "sae-norm", "sae-probe", "neuron-probe", "neuron-count", "fasttext")
SAE_CLASSIFIERS = ("sae-count", "sae-min-max", "sae-norm")
UNKNOWN = "unknown"
# written in this order: classify_docs last, so a result is listed only once all of its parts exist
TABLES = ("classify_units", "classify_langs", "classify_scores", "classify_docs")

Advance = Callable[[int], None]


def check_options(opts: ClassifyOptions) -> None:
    """Reject inconsistent options before anything is loaded."""
    if opts.classifier not in CLASSIFIERS:
        raise UsageError(f"unknown --classifier-type {opts.classifier!r}: use one of {', '.join(CLASSIFIERS)}")
    if not opts.langs:
        raise UsageError("no --lang given: pass the evaluated languages / dataset configs, e.g. --lang en de")
    if opts.batch < 1:
        raise UsageError(f"--batch {opts.batch} is not positive: pass a batch size >= 1")
    check_sae_source(opts.sae_model, opts.local_sae_dir)
    source = FeatureSource.of(opts)
    from langfeat.experiments import probe

    if opts.classifier in probe.PROBE_CLASSIFIERS:
        if source.given:
            raise UsageError(f"--classifier-type {opts.classifier} chooses its own features: drop --feature-set/"
                             "--lape-result-path (pass --max-features-per-language to keep k per language)")
        probe.check_k(opts.max_features_per_language)
        probe.check_value(opts.probe_value, probe.KINDS[opts.classifier])
        probe.check_window(opts.probe_window, opts.probe_stride)
        if opts.probe_window is not None and opts.classifier != "sae-probe":
            raise UsageError("--probe-window / --probe-stride apply to sae-probe only (neuron docs hold whole "
                             "documents): drop them")
        if not (opts.probe_c > 0 and np.isfinite(opts.probe_c)):
            raise UsageError(f"--probe-c {opts.probe_c} must be a positive number (the inverse L1 strength)")
        probe.check_class_weight(opts.probe_class_weight)
        if isinstance(opts.probe_max_iter, bool) or not isinstance(opts.probe_max_iter, int) or opts.probe_max_iter < 1:
            raise UsageError(f"--probe-max-iter {opts.probe_max_iter!r} is not a positive number of epochs: pass e.g. "
                             "200")
        return
    if (opts.train_configs or opts.max_features_per_language is not None or opts.probe_window is not None
            or opts.probe_stride is not None):
        raise UsageError("--train-configs / --max-features-per-language / --probe-window / --probe-stride apply to "
                         "--classifier-type sae-probe / neuron-probe only")
    if opts.classifier == "fasttext":
        if opts.feature_set or opts.lape_result_path:
            raise UsageError("--classifier-type fasttext uses no feature set: drop --feature-set/--lape-result-path")
        return
    source.check()
    if opts.classifier == "neuron-count" and opts.model is None:
        raise UsageError("--classifier-type neuron-count runs the model: pass --model")


# ---------------------------------------------------------------------------------------------------------------
# feature sets


def select_units(features: pl.DataFrame, kind: str, layers: Sequence[int] | None = None) -> pl.DataFrame:
    """The set's units of ``kind`` (``sae`` | ``neuron``) at ``layers`` (None: all), as classify_units rows."""
    frame = features
    if "kind" in frame.columns:
        kinds = set(frame["kind"].drop_nulls().unique().to_list())
        if kind not in kinds:
            other = ", ".join(sorted(kinds)) or "none"
            want = "an SAE feature set" if kind == "sae" else "a neuron set (identify --algorithm lape)"
            raise UsageError(f"the feature set holds {other} units, not {kind}: pass {want}")
        frame = frame.filter(pl.col("kind") == kind)
    if layers is not None:
        frame = frame.filter(pl.col("layer").is_in(list(layers)))
    if frame.height == 0:
        raise UsageError("the feature set has no units at the chosen layers: fix --layer or pick another set")
    cols = {
        "kind": pl.lit(kind),
        "lang": pl.col("lang").map_elements(langs.canonical, return_dtype=pl.String),
        "layer": pl.col("layer").cast(pl.Int32),
        "feature": pl.col("feature").cast(pl.Int32),
        "act_min": pl.col("act_min").cast(pl.Float32) if "act_min" in frame.columns else pl.lit(None, pl.Float32),
        "act_max": pl.col("act_max").cast(pl.Float32) if "act_max" in frame.columns else pl.lit(None, pl.Float32),
    }
    units = frame.select(**cols).unique(["lang", "layer", "feature"], keep="first", maintain_order=True)
    return units.sort("lang", "layer", "feature")


def candidate_langs(units: pl.DataFrame) -> pl.DataFrame:
    """``lang, n_units`` of every language with units, in the paper's order (by English name)."""
    counts = units.group_by("lang").agg(pl.len().cast(pl.Int32).alias("n_units"))
    order = sorted(counts["lang"].to_list(), key=langs.sort_key)
    return counts.sort(pl.col("lang").replace_strict(order, list(range(len(order)))))


def check_minmax(units: pl.DataFrame) -> None:
    """sae-min-max needs every unit's act_min and act_max."""
    if units["act_min"].null_count() or units["act_max"].null_count():
        raise UsageError("sae-min-max needs act_min/act_max for every feature: use a set identified with "
                         "statistics, or --classifier-type sae-count")


# ---------------------------------------------------------------------------------------------------------------
# runs holding the documents (SAE classifiers)


def find_run(manifests: Sequence[dict[str, Any]], source: Any, layers: Sequence[int], opts: ClassifyOptions,
             kind: str = "sae") -> dict[str, Any] | None:
    """The newest complete SAE run of exactly ``source``'s rows whose SAE layers cover ``layers`` (``kind``
    neuron: a run with neuron docs whose neuron layers cover them).

    ``--model`` / SAE options narrow the match when given; several (model, SAE) pairs matching is an error.
    """
    want_model = set(model_names(opts.model, opts.gguf_file)) if opts.model else None
    want_sae = sae_id(opts.sae_model, opts.local_sae_dir) if kind == "sae" else None
    unit_layers = "sae_layers" if kind == "sae" else "neuron_layers"
    hits = []
    for m in manifests:
        same_rows = (
            m.get("status") == "complete" and m.get(ORIGIN_KEY) == "ingest"
            and (m.get("sae_model") if kind == "sae" else m.get("neuron_docs"))
            and m.get("dataset") == source.dataset and m.get("config") == source.config
            and m.get("split") == source.split and m.get("start") == source.start and m.get("end") == source.end
            and m.get("template") == source.template and m.get("max_length") == opts.max_length
            and m.get("dtype") == opts.dtype
        )
        if not same_rows or not set(layers) <= set(m.get(unit_layers) or m.get("layers") or []):
            continue
        if (want_model and m.get("model") not in want_model) or (
                want_sae and canonical_sae_id(m.get("sae_model")) != want_sae):
            continue
        hits.append(m)
    pairs = {(m["model"], canonical_sae_id(m["sae_model"]) if kind == "sae" else "neurons") for m in hits}
    if len(pairs) > 1:
        listed = "; ".join(f"{a} + {b}" for a, b in sorted(pairs))
        raise UsageError(f"runs of several models/SAEs cover {source.config} ({listed}): pass --model and "
                         "--sae-model/--local-sae-dir")
    return max(hits, key=lambda m: m.get("run_num", 0)) if hits else None


def ensure_runs(opts: ClassifyOptions, sources: Sequence[Any], layers: Sequence[int], log: Callable[[str], None],
                kind: str = "sae") -> list[dict[str, Any]]:
    """One complete run per source covering ``layers``: re-used from the store, or ingested now (``kind`` neuron:
    runs with neuron docs, ingested with the model's neurons only)."""
    from langfeat.ingest import IngestConfig, ingest
    from langfeat.store import ensure_store
    from langfeat.store.layout import Layout
    from langfeat.store.runs import all_manifests

    layout: Layout = ensure_store(opts.store)
    manifests = all_manifests(layout)
    found = [find_run(manifests, s, layers, opts, kind) for s in sources]
    missing = [s for s, m in zip(sources, found, strict=True) if m is None]
    for s, m in zip(sources, found, strict=True):
        if m is not None:
            log(f"{s.lang.tag}: re-using run {m['run_id']} ({m.get('n_docs')} docs)")
    if missing:
        if kind == "neuron" and opts.model is None:
            raise UsageError(
                f"no run with neuron docs covers {missing[0].config} of {missing[0].dataset} at layers "
                f"{list(layers)}: pass --model to ingest it"
            )
        if kind == "sae" and (opts.model is None or sae_id(opts.sae_model, opts.local_sae_dir) is None):
            raise UsageError(
                f"no ingested run covers {missing[0].config} of {missing[0].dataset} at layers {list(layers)}: "
                "pass --model and --sae-model/--local-sae-dir to ingest it"
            )
        model, tokenizer = load_model(opts.model, opts.gguf_file, opts.dtype, opts.device)
        prefix = base_prefix(model)
        config = IngestConfig(
            model=opts.model, dataset=opts.dataset, langs=[s.config for s in missing],
            layers=[mlp_path(prefix, n) for n in layers], split=opts.split,
            start=opts.start, end=opts.end, sae_model=opts.sae_model if kind == "sae" else None,
            local_sae_dir=opts.local_sae_dir if kind == "sae" else None, neuron_docs=kind == "neuron",
            batch=opts.batch, max_length=opts.max_length, dtype=opts.dtype, device=opts.device,
            template=opts.template, text_column=opts.text_column, gguf_file=opts.gguf_file, store=opts.store,
            role="eval",  # evaluation texts: identify never merges them unless asked
        )
        made = iter(ingest(config, model, tokenizer, progress=True))
        found = [m if m is not None else next(made) for m in found]
    return found


# ---------------------------------------------------------------------------------------------------------------
# scores computed outside SQL


def neuron_votes(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    units: pl.DataFrame,
    lang_order: Sequence[str],
    specs: Sequence[Any],
    batch: int = 16,
    max_length: int | None = None,
    advance: Advance | None = None,
) -> np.ndarray:
    """``[len(texts), len(lang_order)]`` counts of (token, neuron) pairs with ``mlp.act_fn`` output > 0 among each
    language's neurons (BOS included, padding excluded), by forward hooks; the forward stops after the last layer.
    """
    import torch

    from langfeat.activations import Probe, pad_batch, plan_batches

    device = next(model.parameters()).device
    col = {lang: i for i, lang in enumerate(lang_order)}
    state: dict[str, Any] = {}

    def reader(ids: torch.Tensor, member: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def read(out: torch.Tensor) -> None:
            fired = (out[..., ids] > 0) & state["valid"].unsqueeze(-1)  # [B, T, n_ids]
            state["votes"] += fired.sum(1, dtype=torch.float64) @ member

        return read

    readers = []  # (act_fn path, reader over the layer's neuron ids and their membership [n_ids, n_langs])
    for spec in sorted(specs, key=lambda s: s.layer):
        part = units.filter(pl.col("layer") == spec.layer)
        if part.height == 0:
            continue
        ids = sorted(set(part["feature"].to_list()))
        pos = {n: i for i, n in enumerate(ids)}
        member = torch.zeros(len(ids), len(lang_order), dtype=torch.float64)
        for lang, neuron in part.select("lang", "feature").iter_rows():
            member[pos[neuron], col[lang]] += 1
        readers.append((spec.act_fn_path, reader(torch.tensor(ids, device=device), member.to(device))))
    tokens = tokenize(tokenizer, list(texts), max_length)
    votes = torch.zeros(len(texts), len(lang_order), dtype=torch.float64)
    if not readers:
        return votes.numpy()
    probe = Probe(model, readers)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with probe.attached():
        for idx in plan_batches([len(t) for t in tokens], batch):
            input_ids, mask = pad_batch([tokens[i] for i in idx], pad, device)
            state.update(valid=mask.bool(), votes=torch.zeros(len(idx), len(lang_order), dtype=torch.float64,
                                                              device=device))
            probe.run(input_ids, mask)
            votes[idx] = state["votes"].cpu()
            if advance is not None:
                advance(len(idx))
    return votes.numpy()


def scores_frame(matrix: np.ndarray, lang_order: Sequence[str]) -> pl.DataFrame:
    """classify_scores rows (doc, lang, score) of a ``[docs, langs]`` matrix."""
    n_docs, n_langs = matrix.shape
    return pl.DataFrame(
        {
            "doc": np.repeat(np.arange(n_docs, dtype=np.int32), n_langs),
            "lang": list(lang_order) * n_docs,
            "score": matrix.reshape(-1).astype(np.float64),
        },
        schema={"doc": pl.Int32, "lang": pl.String, "score": pl.Float64},
    )


# ---------------------------------------------------------------------------------------------------------------
# the command


def default_name(opts: ClassifyOptions) -> str:
    """A readable result name when --name is not given."""
    path = Path(opts.dataset.replace("{lang}", ""))
    data = path.name.split(".")[0].strip("_-") or path.parent.name or "data"
    if opts.classifier in ("sae-probe", "neuron-probe"):
        k = opts.max_features_per_language
        used = f"k{k}" if k is not None else "all"
    else:
        used = "lid176" if opts.classifier == "fasttext" else FeatureSource.of(opts).label
    out = f"{opts.classifier}-{used}-{data}"
    return "".join(ch if ch.isalnum() or ch in "._+-" else "_" for ch in out)


def _layer_numbers(patterns: Sequence[str]) -> list[int] | None:
    if not patterns:
        return None
    return sorted({s.layer for s in parse_option(list(patterns))})


def open_sources(opts: ClassifyOptions) -> list[Any]:
    """The evaluated texts of each --lang (the loader ingestion uses: local '{lang}' files or hub configs)."""
    from langfeat import data

    sources = [
        data.open_source(opts.dataset, value, opts.split, opts.start, opts.end, opts.template, opts.text_column)
        for value in opts.langs
    ]
    tags = [s.lang.tag for s in sources]
    if len(set(tags)) != len(tags):
        raise UsageError(f"--lang names a language twice ({', '.join(tags)}): list each language once")
    return sources


def _docs_from_sources(sources: Sequence[Any], classifier: str) -> tuple[pl.DataFrame, list[str]]:
    rows, texts = [], []
    for s in sources:
        chunk = s.texts()
        for i, text in enumerate(chunk):
            rows.append((classifier, len(rows), s.lang.tag, s.config, s.start + i, None, None, text))
        texts += chunk
    return _docs_frame(rows), texts


def _docs_frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, orient="row",
        schema={"classifier": pl.String, "doc": pl.Int32, "label": pl.String, "config": pl.String, "row": pl.Int64,
                "run_id": pl.String, "doc_id": pl.Int64, "text": pl.String},
    )


def _docs_from_runs(store: Any, sources: Sequence[Any], manifests: Sequence[dict[str, Any]], classifier: str
                    ) -> pl.DataFrame:
    rows: list[tuple] = []
    for s, m in zip(sources, manifests, strict=True):
        docs = store.sql(
            'SELECT doc_id, "row", text FROM docs WHERE run_id = ? AND "row" >= ? AND "row" < ? ORDER BY "row"',
            [m["run_id"], s.start, s.end],
        )
        for doc_id, row, text in docs.iter_rows():
            rows.append((classifier, len(rows), s.lang.tag, s.config, row, m["run_id"], doc_id, text))
    return _docs_frame(rows)


def classify(opts: ClassifyOptions, progress: Any = None, log: Callable[[str], None] | None = None) -> str:
    """Run ``langfeat classify``: gather documents, compute or reference scores, store the result; return its name.

    ``progress`` is an optional rich Progress (neuron-count forward passes); ``log`` receives status lines.
    """
    from langfeat.store import ensure_store, open_store
    from langfeat.store.results import check_name, write_result

    log = log or (lambda _msg: None)
    check_options(opts)
    name = check_name(opts.name or default_name(opts))
    sources = open_sources(opts)
    t0 = time.time()
    units = pl.DataFrame(schema={"kind": pl.String, "lang": pl.String, "layer": pl.Int32, "feature": pl.Int32,
                                 "act_min": pl.Float32, "act_max": pl.Float32})
    scores = pl.DataFrame(schema={"doc": pl.Int32, "lang": pl.String, "score": pl.Float64})
    layers: list[int] = []
    params: dict[str, Any] = {}
    if opts.classifier == "fasttext":
        from langfeat import lid

        cand = pl.DataFrame({"lang": [s.lang.tag for s in sources], "n_units": [0] * len(sources)},
                            schema={"lang": pl.String, "n_units": pl.Int32})
        docs, texts = _docs_from_sources(sources, opts.classifier)
        model_path = opts.fasttext_model or str(lid.default_model_path())
        scores = scores_frame(lid.probabilities(texts, cand["lang"].to_list(), model_path), cand["lang"].to_list())
        params["fasttext_model"] = str(Path(model_path).expanduser().resolve())
    elif opts.classifier in ("sae-probe", "neuron-probe"):
        docs, units, cand, layers, probe_set, probe_params = _probe(opts, sources, name, log)
        params.update(probe_params)
    else:
        features = load_feature_set(opts.store, FeatureSource.of(opts))
        kind = "neuron" if opts.classifier == "neuron-count" else "sae"
        units = select_units(features, kind, _layer_numbers(opts.layers))
        if opts.classifier == "sae-min-max":
            check_minmax(units)
        layers = sorted(set(units["layer"].to_list()))
        cand = candidate_langs(units)
        if kind == "sae":
            manifests = ensure_runs(opts, sources, layers, log)
            with open_store(opts.store) as store:
                docs = _docs_from_runs(store, sources, manifests, opts.classifier)
            params["runs"] = [m["run_id"] for m in manifests]
            params["model"] = manifests[0].get("model")
            params["sae_model"] = manifests[0].get("sae_model")
        else:
            docs, texts = _docs_from_sources(sources, opts.classifier)
            model, tokenizer = load_model(opts.model, opts.gguf_file, opts.dtype, opts.device)
            specs = mlp_specs(base_prefix(model), layers, neurons=True)
            task = progress.add_task("neuron votes", total=len(texts)) if progress is not None else None
            advance = (lambda k: progress.advance(task, k)) if progress is not None else None
            matrix = neuron_votes(model, tokenizer, texts, units, cand["lang"].to_list(), specs, opts.batch,
                                  opts.max_length, advance)
            scores = scores_frame(matrix, cand["lang"].to_list())
            params["model"] = model_id(opts.model, opts.gguf_file)
    missing = [s.lang.tag for s in sources if s.lang.tag not in set(cand["lang"].to_list())]
    if missing:
        log(f"note: the feature set has no units for {', '.join(missing)}: those documents can only be misclassified")
    used_set = params.pop("feature_set", opts.feature_set)
    params = stored(
        opts, **params, classifier=opts.classifier, dataset=sources[0].dataset, split=sources[0].split,
        langs=[s.lang.tag for s in sources], configs=[s.config for s in sources], start=opts.start, end=opts.end,
        template=sources[0].template, feature_set=used_set, lape_result_path=opts.lape_result_path,
        layers=layers, candidates=cand["lang"].to_list(), n_docs=docs.height, max_length=opts.max_length,
        dtype=opts.dtype, seconds=round(time.time() - t0, 3),
    )
    layout = ensure_store(opts.store)
    docs = docs.with_columns(dataset=pl.lit(sources[0].dataset, pl.String), feature_set=pl.lit(used_set, pl.String))
    parts = {"classify_units": units, "classify_langs": cand, "classify_scores": scores, "classify_docs": docs}
    if opts.classifier in ("sae-probe", "neuron-probe"):
        from langfeat.formats.paper import write_feature_set

        kind = "sae" if opts.classifier == "sae-probe" else "neuron"
        write_feature_set(layout, name, probe_set, {**params, "algorithm": opts.classifier, "kind": kind,
                                                     "classify_result": name}, overwrite=True)
    for table in TABLES:
        write_result(layout, table, name, parts[table], params if table == "classify_docs" else None)
    return name


def _probe(opts: ClassifyOptions, sources: Sequence[Any], name: str, log: Callable[[str], None]
           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[int], pl.DataFrame, dict[str, Any]]:
    """sae-probe / neuron-probe: fit on the identification runs, check the evaluated runs are disjoint from them;
    returns (classify_docs, classify_units, classify_langs, layers, the feature set, params)."""
    from langfeat import stats
    from langfeat.experiments import probe
    from langfeat.store import open_store

    kind = probe.KINDS[opts.classifier]
    value = probe.check_value(opts.probe_value, kind)
    want_sae = sae_id(opts.sae_model, opts.local_sae_dir) if kind == "sae" else None
    with open_store(opts.store) as store:
        other = store.sql("SELECT DISTINCT algorithm FROM feature_sets WHERE name = ? AND algorithm <> ?",
                          [name, opts.classifier])
        if other.height:
            raise UsageError(f"feature set {name!r} exists ({other['algorithm'][0]}) and the probe stores its "
                             "features under the result name: pick another --name")
        if kind == "neuron":
            _check_neuron_docs(store)
        layer_list = _layer_numbers(opts.layers)
        train = stats.select_runs(store, model=opts.model, sae_model=want_sae,
                                  dataset_configs=opts.train_configs or None, layers=layer_list, kind=kind,
                                  role="identify", configs_flag="--train-configs")
        if kind == "neuron":
            train = _with_neuron_docs(train, bool(opts.train_configs), log)
        layers = layer_list or stats.common_layers(train, kind)
        if not layers:
            raise UsageError(f"the training runs share no {'SAE' if kind == 'sae' else 'neuron'} layer: pass --layer")
    manifests = ensure_runs(opts, sources, layers, log, kind)
    train_ids = train["run_id"].to_list()
    shared = sorted({m["run_id"] for m in manifests} & set(train_ids))
    if shared:
        raise UsageError(f"the evaluated texts are in training run {shared[0]}: evaluate on other texts, or narrow "
                         "the training runs with --train-configs")
    with open_store(opts.store) as store:
        x, y, lang_list, units, train_docs = probe.matrix(kind, store, train_ids, layers, value,
                                                          opts.max_features_per_language, opts.probe_window,
                                                          opts.probe_stride)
        unit_stats = store.sql("SELECT * FROM probe_unit_stats(?, ?, layers := ?)", [kind, train_ids, list(layers)])
        docs = _docs_from_runs(store, sources, manifests, opts.classifier)
    overlap = set(docs["doc_id"].to_list()) & set(train_docs.tolist())
    if overlap:  # doc ids carry their run's number: only possible if a run were both
        raise UsageError(f"document {min(overlap)} is both a training and an evaluated document: evaluate on "
                         "other runs")
    what = "documents" if opts.probe_window is None else f"windows of {opts.probe_window} tokens"
    unit_word = "features" if kind == "sae" else "neurons"
    log(f"{opts.classifier}: fitting on {x.shape[0]} {what} of {len(train_ids)} runs, {x.shape[1]} {unit_word}")
    fitted = probe.fit(x, y, lang_list, units, value, opts.probe_c, opts.probe_max_iter, kind=kind,
                       class_weight=opts.probe_class_weight)
    params = {"train_runs": train_ids, "n_train_docs": len(set(train_docs.tolist())),
              "n_train_examples": int(x.shape[0]), "n_candidate_features": int(x.shape[1]),
              "intercepts": dict(zip(fitted.langs, fitted.intercept.tolist(), strict=True)),
              "runs": [m["run_id"] for m in manifests], "model": manifests[0].get("model"),
              "sae_model": manifests[0].get("sae_model") if kind == "sae" else None, "feature_set": name,
              "probe_value": value, "probe_c": opts.probe_c, "probe_class_weight": opts.probe_class_weight}
    return docs, fitted.units_frame(), fitted.langs_frame(), list(layers), fitted.feature_set(unit_stats), params


NO_NEURON_DOCS = ("no identification run has neuron docs (per-document neuron values): ingest the identification "
                  "texts with `langfeat ingest --neuron-docs`")


def _check_neuron_docs(store: Any) -> None:
    """neuron-probe trains on neuron_docs: at least one complete identification run must hold them."""
    n = store.sql("SELECT count(*) AS n FROM runs WHERE status = 'complete' AND role = 'identify' AND neuron_docs")
    if n["n"][0] == 0:
        raise UsageError(NO_NEURON_DOCS)


def _with_neuron_docs(train: pl.DataFrame, chosen: bool, log: Callable[[str], None]) -> pl.DataFrame:
    """The training runs that hold neuron docs; runs without are an error when chosen by --train-configs, else
    left out (with a note)."""
    lacking = train.filter(~pl.col("neuron_docs"))
    if lacking.height and chosen:
        row = lacking.row(0, named=True)
        raise UsageError(f"training run {row['run_id']} ({row['dataset']}:{row['config']}) has no neuron docs: "
                         "ingest it again with --neuron-docs, or leave it out of --train-configs")
    if lacking.height:
        log(f"neuron-probe: leaving out {lacking.height} identification run(s) without neuron docs")
    kept = train.filter(pl.col("neuron_docs"))
    if kept.height == 0:
        raise UsageError(NO_NEURON_DOCS)
    return kept


# ---------------------------------------------------------------------------------------------------------------
# reading results


def list_results(store: Any) -> pl.DataFrame:
    """One row per stored classification: name, classifier, documents, accuracy and macro-F1."""
    return store.sql("SELECT name, classifier, n_docs, n_classes, n_unknown, accuracy, f1_macro "
                     "FROM classify_metrics ORDER BY name")


def _check_known(store: Any, names: Sequence[str]) -> None:
    known = set(store.sql("SELECT DISTINCT name FROM classify_docs")["name"].to_list())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"no classify result named {unknown[0]!r}: list them with `langfeat report classify`")


def metrics(store: Any, names: Sequence[str]) -> pl.DataFrame:
    """classify_metrics rows of ``names`` (in that order)."""
    _check_known(store, names)
    df = store.sql("SELECT * FROM classify_metrics WHERE list_contains(?, name)", [list(names)])
    return df.sort(pl.col("name").replace_strict(list(names), list(range(len(names)))))


def class_metrics(store: Any, name: str) -> pl.DataFrame:
    """Per-class support, precision, recall and F1 of result ``name`` (languages in the paper's order)."""
    _check_known(store, [name])
    df = store.sql('SELECT class, support, predicted, tp, "precision", recall, f1 FROM classify_class_metrics '
                   "WHERE name = ?", [name])
    return _lang_sorted(df, "class")


def confusion(store: Any, name: str) -> pl.DataFrame:
    """The confusion matrix of result ``name``: one row per true label, one column per predicted language."""
    _check_known(store, [name])
    cells = store.sql("SELECT label, pred, n FROM classify_confusion WHERE name = ?", [name])
    labels = sorted(set(cells["label"].to_list()), key=_lang_key)
    preds = sorted(set(cells["pred"].to_list()) | set(labels), key=_lang_key)
    wide = cells.pivot(on="pred", index="label", values="n")
    for col in preds:
        if col not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Int64).alias(col))
    wide = wide.select("label", *preds).with_columns(pl.col(preds).fill_null(0))
    return _lang_sorted(wide, "label")


def predictions(store: Any, name: str) -> pl.DataFrame:
    """Per document of result ``name``: label, prediction, score and the text (the paper's predictions CSV)."""
    _check_known(store, [name])
    return store.sql("SELECT * EXCLUDE (name) FROM classify_prediction_texts WHERE name = ? ORDER BY doc", [name])


def compare(store: Any, names: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Side by side: (metric × result table, per-class F1 × result table)."""
    summary = metrics(store, names)
    cols = ["n_docs", "n_unknown", "accuracy", "precision_macro", "recall_macro", "f1_macro"]
    side = pl.DataFrame({"metric": cols})
    for row in summary.iter_rows(named=True):
        side = side.with_columns(pl.Series(row["name"], [float(row[c]) for c in cols], dtype=pl.Float64))
    f1 = store.sql("SELECT name, class, f1 FROM classify_class_metrics WHERE list_contains(?, name) AND support > 0",
                   [list(names)])
    per_class = f1.pivot(on="name", index="class", values="f1")
    per_class = per_class.select("class", *[n for n in names if n in per_class.columns])
    return side, _lang_sorted(per_class, "class")


def _lang_key(tag: str) -> str:
    return "\uffff" if tag == UNKNOWN else langs.sort_key(tag)


def _lang_sorted(df: pl.DataFrame, col: str) -> pl.DataFrame:
    return langs.sort_frame(df, col, last=(UNKNOWN,))
