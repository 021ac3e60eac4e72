"""``langfeat demo``: the whole job on the shipped corpus and an offline model, cached and resumable.

Steps (one function each, every one skipped when its output already exists):

1. ``model``     assemble and de-quantise the model once (``langfeat.models``), load it (``dtype`` auto: bfloat16
                 where the device computes it natively, e.g. a CPU with AMX or AVX-512 BF16, else float32);
2. ``train``     train TopK SAEs on the corpus' training split (``langfeat.train``) into ``<store>-saes/``;
3. ``sae_stats`` tokens seen, FVU, dead and dense latents per SAE on held-out text (``<store>-saes/sae_stats.json``);
4. ``ingest``    SAE features and MLP neurons (and per-document neuron values) of the identification split;
   ``ingest_train`` SAE features of the synthetic training split (more text for the SAE probes only);
5. ``identify``  SAE-LAPE (set ``demo-sae``) and LAPE (set ``demo-neurons``);
6. ``classify``  the held-out UDHR texts with every classifier and fastText;
   ``nu_probe``  ν features (Deng et al.), the sparse probe (k = all, k = 2) and the neuron probe on the same
                 held-out texts;
7. ``ppl``       ΔPPL matrices: SAE steering (α = −0.2·max), true SAE ablation, LAPE neurons = 0;
8. ``generate``  steered generation towards a few languages, judged by fastText;
   ``steer``     DiffMean vectors (set ``demo-diffmean``) and a scored steering sweep over α of SAE-LAPE features,
                 DiffMean and prompting (result ``demo-sweep``);
   ``ppl_methods`` ΔPPL matrices of the other methods: ν and probe features (α = −0.2·max), DiffMean (α = −1);
9. ``check``     ``langfeat check`` on a few texts, by the SAE-LAPE vote and by the SAE probe
                 (``<store>/demo/check.json``);
10. ``report``   the HTML report.

Features are identified on synthetic prose and evaluated on the UDHR, a different source
(:data:`langfeat.corpus.PLAN`). Every statistic of the summary is read from the store's SQL views.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from langfeat import corpus
from langfeat.options import DemoConfig

SAE_SET = "demo-sae"
NEURON_SET = "demo-neurons"
CLASSIFIERS = ("sae-count", "sae-min-max", "sae-norm", "neuron-count", "fasttext")
PPL_RUNS = {  # result name -> (intervention type, feature set, multiplier, value)
    "demo-ppl-steer": ("sae-features", SAE_SET, -0.2, 0.0),
    "demo-ppl-ablate": ("sae-ablate", SAE_SET, -1.0, 0.0),
    "demo-ppl-neurons": ("neuron", NEURON_SET, None, 0.0),
}
GENERATE_RESULT = "demo-generate"
DIFFMEAN_SET = "demo-diffmean"
SWEEP_RESULT = "demo-sweep"
SWEEP_METHODS = ("sae-features", "diffmean", "prompting")
NU_SET = "demo-nu"  # Deng et al.'s ν over the identification runs, the first NU_TOP SAE features per language
NU_TOP = 20
PROBE_SET = "demo-sae-probe"  # the SAE probe over every feature (k = all): result and feature set
PROBE_RESULTS = {PROBE_SET: None, "demo-sae-probe-k2": 2}  # sae-probe results -> features per language
PROBE_WINDOW = 16  # the SAE probes train on windows of 16 tokens (every 8) of their training documents
PROBE_SPLITS = ("identify", "train")  # the SAE probes' training text: both synthetic splits (docs/methods.md)
PROBE_MAX_ITER = 30  # saga epochs of the SAE probes (three times the text of the identification split alone)
NEURON_PROBE_MAX_ITER = 50  # saga epochs of the neuron probe (identification split, whole documents)
PROBE_C = 0.1  # SAE probes: inverse L1 strength (languages balanced); 0.967 on the UDHR texts where C = 1 gave 0.937
PPL_METHOD_RUNS = {  # after the steering step, which makes the DiffMean vectors: the other methods' ΔPPL matrices
    "demo-ppl-nu": ("sae-features", NU_SET, -0.2, 0.0),
    "demo-ppl-probe": ("sae-features", PROBE_SET, -0.2, 0.0),
    "demo-ppl-diffmean": ("diffmean", DIFFMEAN_SET, -1.0, 0.0),
}
NEURON_PROBE_RESULT = "demo-neuron-probe"  # neuron-probe over every neuron (k = all)
DENSE_RATE = 0.1  # a latent firing on more than this share of held-out tokens counts as dense


@dataclass
class SaeStats:
    """One trained SAE, measured on held-out tokens."""

    layer: int
    num_latents: int
    k: int
    train_tokens: int
    heldout_tokens: int
    fvu: float
    dead: int
    dense: int


@dataclass
class DemoSummary:
    """What the demo produced; every frame is read from the store's views."""

    config: DemoConfig
    sae_stats: list[SaeStats]
    features: pl.DataFrame  # lang, sae, neurons (specific units per language)
    own_vs_other: pl.DataFrame  # demo_own_vs_other of demo-sae
    lid: pl.DataFrame  # name, classifier, n_docs, accuracy, f1_macro
    ppl: pl.DataFrame  # intervention, diag_median, off_median, rowmax, n_rows
    switch: pl.DataFrame  # lang, multiplier, n, switch_rate, target_rate
    check: list[dict[str, Any]]
    report: Path
    methods_lid: pl.DataFrame = field(default_factory=pl.DataFrame)  # methods_lid of the demo's results
    ran: list[str] = field(default_factory=list)  # steps that did work
    skipped: list[str] = field(default_factory=list)  # steps found finished
    seconds: dict[str, float] = field(default_factory=dict)
    steering: pl.DataFrame = field(default_factory=pl.DataFrame)  # generate_best_alpha of the sweep
    methods_ppl: pl.DataFrame = field(default_factory=pl.DataFrame)  # the methods_ppl view


# ---------------------------------------------------------------------------------------------------------------
# the model, loaded once for every step


class Models:
    """The demo's model, loaded on first use and shared by every step (each experiment's ``load_model`` call
    is answered from here while :meth:`shared` is active)."""

    def __init__(self, config: DemoConfig):
        from langfeat.models import load_model

        self.config = config
        self._load = load_model
        self._loaded: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = self._load(self.config.model, dtype=self.config.dtype, device=self.config.device)
        return self._loaded

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        from langfeat import models
        from langfeat.experiments import check, classify

        def load(name: str, *args: Any, **kw: Any) -> tuple[Any, Any]:
            if name == self.config.model:
                return self.get()
            return self._load(name, *args, **kw)

        modules = (models, classify, check)
        for mod in modules:
            mod.load_model = load  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for mod in modules:
                mod.load_model = self._load  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------------------
# the steps


def interleaved(source: str, split: str, langs: tuple[str, ...], per_lang: int | None) -> list[str]:
    """``per_lang`` segments of each language, interleaved (one pass of SAE training sees every language
    throughout, not one language after another)."""
    lists = [corpus.texts(source, split, lang)[:per_lang] for lang in langs]
    return [t for row in zip(*[lst + [None] * (max(map(len, lists)) - len(lst)) for lst in lists], strict=True)
            for t in row if t is not None]


def _hookpoint(layer: int) -> str:
    return f"layers.{layer}.mlp"


def train_step(config: DemoConfig, models: Models) -> bool:
    """Train one SAE per layer on the synthetic training split; False when every SAE already exists."""
    from langfeat.train import TrainSaeConfig, train_saes

    out = Path(config.sae_dir)
    if all((out / _hookpoint(layer) / "cfg.json").exists() for layer in config.layers):
        return False
    model, tokenizer = models.get()
    texts = interleaved("synthetic", "train", config.langs, config.train_docs)
    trained = train_saes(TrainSaeConfig(
        layers=[config.sae_pattern], out_dir=str(out), num_latents=config.num_latents, k=config.k, lr=config.lr,
        batch_size=config.train_batch, ctx_len=config.ctx_len, seed=config.seed), model, tokenizer, texts)
    (out / "train_tokens.json").write_text(json.dumps({"tokens": trained.tokens}))
    return True


def train_tokens(config: DemoConfig, tokenizer: Any) -> int:
    """Tokens one training pass sees: the chunks ``train_saes`` cuts from the training text × ``ctx_len`` (for SAEs
    trained before ``train_tokens.json`` was written; tokenizing through datasets costs ~20 s on Gemma's
    vocabulary)."""
    from datasets import Dataset
    from sparsify.data import chunk_and_tokenize

    texts = interleaved("synthetic", "train", config.langs, config.train_docs)
    data = chunk_and_tokenize(Dataset.from_dict({"text": texts}), tokenizer, max_seq_len=config.ctx_len,
                              return_final_batch=False, num_proc=None, load_from_cache_file=False)
    return len(data) * config.ctx_len


def heldout_activations(model: Any, tokenizer: Any, texts: list[str], layers: tuple[int, ...],
                        max_length: int, batch: int) -> dict[int, Any]:
    """MLP outputs ``[tokens, d_model]`` per layer of ``texts`` (padding and the BOS position left out)."""
    import torch

    from langfeat.activations import mlp_outputs
    from langfeat.models import tokenize

    ids = tokenize(tokenizer, texts, max_length)
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    chunks = [list(range(i, min(i + batch, len(ids)))) for i in range(0, len(ids), batch)]
    mlp_outputs(model, ids, layers, chunks, lambda layer, t: out[layer].append(t.detach().float()),
                tokenizer.pad_token_id or 0, tokenizer.bos_token_id)
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def measure_sae(sae: Any, x: Any) -> tuple[float, int, int]:
    """FVU (Σ‖x − x̂‖² / Σ‖x − mean(x)‖²), dead latents (never fire) and dense latents (fire on more than
    :data:`DENSE_RATE` of the tokens) of ``sae`` on activations ``x`` ``[tokens, d_in]``."""
    import torch

    with torch.inference_mode():
        x = x.to(next(sae.parameters()).dtype)
        enc = sae.encode(x)
        recon = sae.decode(enc.top_acts, enc.top_indices)
        fvu = float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        fired = torch.zeros(int(sae.num_latents), dtype=torch.long, device=x.device)
        active = enc.top_indices[enc.top_acts > 0]
        fired.index_add_(0, active, torch.ones_like(active))
    dead = int((fired == 0).sum())
    dense = int((fired > DENSE_RATE * x.shape[0]).sum())
    return fvu, dead, dense


def sae_stats_step(config: DemoConfig, models: Models) -> tuple[list[SaeStats], bool]:
    """Measure every SAE on the synthetic ``eval`` split (text neither trained nor identified on)."""
    from langfeat.models import load_sae

    path = Path(config.sae_dir) / "sae_stats.json"
    if path.exists():
        rows = [SaeStats(**r) for r in json.loads(path.read_text())]
        if sorted(r.layer for r in rows) == sorted(config.layers):
            return rows, False
    model, tokenizer = models.get()
    texts = interleaved("synthetic", "eval", config.langs, config.fvu_docs)
    acts = heldout_activations(model, tokenizer, texts, config.layers, config.max_length, config.batch)
    tokens_file = Path(config.sae_dir) / "train_tokens.json"
    seen = json.loads(tokens_file.read_text())["tokens"] if tokens_file.exists() else train_tokens(config, tokenizer)
    rows = []
    for layer in config.layers:
        sae = load_sae(_hookpoint(layer), local_sae_dir=config.sae_dir, device=acts[layer].device)
        fvu, dead, dense = measure_sae(sae, acts[layer])
        rows.append(SaeStats(layer, int(sae.num_latents), int(sae.cfg.k), int(seen), int(acts[layer].shape[0]),
                             round(fvu, 6), dead, dense))
    path.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows, True


def _complete_runs(config: DemoConfig, dataset: str) -> set[str]:
    from langfeat.store import open_store
    from langfeat.store.layout import store_path

    if not store_path(config.store).joinpath("runs").is_dir():
        return set()
    with open_store(config.store) as st:
        runs = st.runs()
    if runs.is_empty():
        return set()
    done = runs.filter((pl.col("dataset") == dataset) & (pl.col("status") == "complete"))
    return set(done["lang"].to_list())


def _ingest_split(config: DemoConfig, models: Models, split: str, end: int | None, neurons: bool) -> bool:
    """One run per language of corpus split ``split`` (:data:`langfeat.corpus.PLAN`), SAE features and with
    ``neurons`` MLP neurons and per-document neuron values; False when every run is complete (resumes by itself)."""
    from langfeat.ingest import ingest
    from langfeat.options import IngestConfig

    dataset = corpus.PLAN[split]
    if set(config.langs) <= _complete_runs(config, dataset):
        return False
    model, tokenizer = models.get()
    ingest(IngestConfig(model=config.model, dataset=dataset, langs=list(config.langs), layers=[config.sae_pattern],
                        local_sae_dir=config.sae_dir, neurons=neurons, neuron_docs=neurons, batch=config.batch,
                        max_length=config.max_length, end=end, store=config.store, dtype=config.dtype,
                        device=config.device), model, tokenizer, progress=True)
    return True


def ingest_step(config: DemoConfig, models: Models) -> bool:
    """SAE features and neurons (with per-document neuron values) of the identification split."""
    return _ingest_split(config, models, "identify", config.identify_docs, neurons=True)


def ingest_train_step(config: DemoConfig, models: Models) -> bool:
    """SAE features (no neurons) of the synthetic ``train`` split: more training text for the SAE probes
    (:data:`PROBE_SPLITS`); identification (SAE-LAPE, LAPE, ν, DiffMean) reads only the identification split."""
    return _ingest_split(config, models, "train", config.train_docs, neurons=False)


def split_configs(config: DemoConfig, *splits: str) -> list[str]:
    """``dataset:config`` selections of every language of each corpus split (``--train-configs`` /
    ``dataset_configs``)."""
    return [f"{corpus.PLAN[split]}:{lang}" for split in splits for lang in config.langs]


def _has_set(config: DemoConfig, name: str) -> bool:
    from langfeat.store.layout import Layout, store_path

    return Layout(store_path(config.store)).set_dir(name).exists()


def _has_result(config: DemoConfig, table: str, name: str) -> bool:
    from langfeat.store.layout import Layout, store_path

    return Layout(store_path(config.store)).result_dir(table, name).exists()


def _set_langs(config: DemoConfig, name: str) -> set[str]:
    """The languages feature set ``name`` has units for."""
    from langfeat.store import open_store

    with open_store(config.store) as st:
        return set(st.sql("SELECT DISTINCT lang FROM feature_sets WHERE name = ?", [name])["lang"].to_list())


def identify_step(config: DemoConfig) -> bool:
    """SAE-LAPE features (language-specific only; thresholds from the config) and LAPE neurons of the
    identification runs."""
    from langfeat.identify import identify_named

    configs = split_configs(config, "identify")
    did = False
    if not _has_set(config, SAE_SET):
        identify_named(config.store, algorithm="sae-lape", layers=[config.sae_pattern], dataset_configs=configs,
                       topk_threshold_ratio=config.topk_threshold_ratio, example_rate=config.example_rate,
                       hfl_rate=config.hfl_rate, lang_specific=True, name=SAE_SET)
        did = True
    if not _has_set(config, NEURON_SET):
        identify_named(config.store, algorithm="lape", layers=[config.neuron_pattern], dataset_configs=configs,
                       name=NEURON_SET)
        did = True
    return did


def classify_step(config: DemoConfig, progress: Any) -> bool:
    """The held-out UDHR texts of every language, with each classifier and fastText."""
    from langfeat.experiments.classify import classify
    from langfeat.options import ClassifyOptions

    did = False
    for clf in CLASSIFIERS:
        name = f"demo-{clf}"
        if _has_result(config, "classify_docs", name):
            continue
        feature_set = None if clf == "fasttext" else NEURON_SET if clf == "neuron-count" else SAE_SET
        classify(ClassifyOptions(
            dataset=corpus.PLAN["eval"], langs=list(config.langs), classifier=clf, model=config.model,
            local_sae_dir=None if clf in ("fasttext", "neuron-count") else config.sae_dir, feature_set=feature_set,
            end=config.eval_docs, batch=config.batch, max_length=config.max_length, store=config.store, name=name,
            device=config.device, dtype=config.dtype,
        ), progress)
        did = True
    return did


def nu_probe_step(config: DemoConfig) -> bool:
    """ν features (set ``demo-nu``) and the sparse probe (k = all and k = 2) trained on the identification runs,
    evaluated on the held-out UDHR texts classify ingested."""
    from sklearn.exceptions import ConvergenceWarning

    from langfeat.experiments.classify import classify
    from langfeat.identify import identify_named
    from langfeat.options import ClassifyOptions

    did = False
    if not _has_set(config, NU_SET):
        identify_named(config.store, algorithm="nu", layers=[config.sae_pattern], top=NU_TOP, name=NU_SET,
                       dataset_configs=split_configs(config, "identify"))
        did = True
    # the neuron probe beside the SAE probes: scikit-learn's saga releases the GIL, so its fit (about a minute on
    # one core) runs on another core while the SAE probes are built and fitted; results go to separate names.
    # The demo caps the epochs on purpose; warning filters are process-wide, so the fits' own ConvergenceWarning
    # filter (probe.fit) is set here too, for as long as both threads run
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=1) as pool:
        warnings.simplefilter("ignore", ConvergenceWarning)
        neurons = pool.submit(neuron_probe_step, config)
        for name, k in PROBE_RESULTS.items():
            if _has_result(config, "classify_docs", name):
                continue
            classify(ClassifyOptions(
                dataset=corpus.PLAN["eval"], langs=list(config.langs), classifier="sae-probe", model=config.model,
                local_sae_dir=config.sae_dir, end=config.eval_docs, batch=config.batch,
                max_length=config.max_length, store=config.store, name=name, device=config.device,
                dtype=config.dtype, max_features_per_language=k, train_configs=split_configs(config, *PROBE_SPLITS),
                probe_window=PROBE_WINDOW, probe_max_iter=PROBE_MAX_ITER, probe_c=PROBE_C,
            ))
            did = True
        did = neurons.result() or did
    return did


def neuron_probe_step(config: DemoConfig) -> bool:
    """The neuron probe (k = all, result and set ``demo-neuron-probe``) on the identification runs' neuron docs,
    scored on the held-out UDHR texts (classify ingests their neuron docs); skipped on a store whose
    identification runs predate neuron docs."""
    from langfeat.experiments.classify import classify
    from langfeat.options import ClassifyOptions
    from langfeat.store import open_store

    if _has_result(config, "classify_docs", NEURON_PROBE_RESULT):
        return False
    with open_store(config.store) as st:
        have = st.sql("SELECT count(*) AS n FROM runs WHERE status = 'complete' AND neuron_docs AND dataset = ?",
                      [corpus.PLAN["identify"]])["n"][0]
    if not have:
        return False
    classify(ClassifyOptions(
        dataset=corpus.PLAN["eval"], langs=list(config.langs), classifier="neuron-probe", model=config.model,
        end=config.eval_docs, batch=config.batch, max_length=config.max_length, store=config.store,
        name=NEURON_PROBE_RESULT, device=config.device, dtype=config.dtype, probe_max_iter=NEURON_PROBE_MAX_ITER,
        train_configs=split_configs(config, "identify"),
    ))
    return True


def ppl_step(config: DemoConfig, progress: Any, runs: dict[str, tuple[str, str, float | None, float]] | None = None
             ) -> bool:
    """ΔPPL matrices on the ΔPPL subset, one per entry of ``runs`` (default :data:`PPL_RUNS`): name ->
    (intervention type, feature or DiffMean set, α, value); the intervened languages are the subset's languages
    the set covers."""
    from langfeat import diffmean
    from langfeat.experiments.ppl import run_ppl
    from langfeat.options import PplOptions

    did = False
    for name, (kind, source, multiplier, value) in (PPL_RUNS if runs is None else runs).items():
        if _has_result(config, "ppl_results", name):
            continue
        covered = set(diffmean.set_langs(config.store, source)) if kind == "diffmean" else _set_langs(config, source)
        targets = [lang for lang in config.ppl_langs if lang in covered]
        if not targets:
            continue
        opts = PplOptions(
            model=config.model, dataset=corpus.PLAN["eval"], langs=list(config.ppl_langs), end=config.ppl_docs,
            intervention_type=kind, intervention_langs=targets, multiplier=multiplier, value=value,
            feature_set=None if kind == "diffmean" else source, diffmean=source if kind == "diffmean" else None,
            local_sae_dir=config.sae_dir if kind.startswith("sae") else None,
            batch=config.batch, max_length=config.max_length, store=config.store, name=name, device=config.device,
            dtype=config.dtype,
        )
        run_ppl(opts.paper_multiplier(), progress)
        did = True
    return did


def generate_step(config: DemoConfig, progress: Any) -> bool:
    """Generation from BOS steered towards each of ``generate_langs`` (α = 0 is the unsteered baseline)."""
    from langfeat.experiments.generate import run_generate
    from langfeat.options import GenerateOptions, Sampling

    targets = [lang for lang in config.generate_langs if lang in _set_langs(config, SAE_SET)]
    if _has_result(config, "generate_results", GENERATE_RESULT) or not targets:
        return False
    run_generate(GenerateOptions(
        model=config.model, langs=targets, multipliers=list(config.generate_multipliers),
        times=config.generate_times, seed=config.seed, sampling=Sampling(max_new_tokens=config.generate_tokens),
        batch=config.generate_times, feature_set=SAE_SET, local_sae_dir=config.sae_dir, store=config.store,
        name=GENERATE_RESULT, device=config.device, dtype=config.dtype,
    ), progress)
    return True


def steer_step(config: DemoConfig, progress: Any) -> bool:
    """DiffMean vectors of the identification runs (every language, ``diffmean_docs`` documents each, the SAE layers)
    and the steering sweep: SAE-LAPE features and DiffMean at each of ``sweep_multipliers`` plus prompting, towards
    each of ``generate_langs``, every sample judged and scored for fluency."""
    from langfeat.diffmean import make_diffmean
    from langfeat.experiments.generate import run_generate
    from langfeat.options import GenerateOptions, Sampling

    did = False
    if not _has_result(config, "diffmean_means", DIFFMEAN_SET):
        make_diffmean(config.store, layers=list(config.layers), name=DIFFMEAN_SET, batch=config.batch,
                      dataset_configs=split_configs(config, "identify"),
                      max_docs=config.diffmean_docs, device=config.device, dtype=config.dtype,
                      progress=progress)
        did = True
    targets = [lang for lang in config.generate_langs if lang in _set_langs(config, SAE_SET)]
    if targets and not _has_result(config, "generate_results", SWEEP_RESULT):
        run_generate(GenerateOptions(
            model=config.model, langs=targets, methods=list(SWEEP_METHODS),
            multipliers=list(config.sweep_multipliers), times=config.sweep_times, seed=config.seed,
            sampling=Sampling(max_new_tokens=config.sweep_tokens), batch=config.sweep_times, feature_set=SAE_SET,
            local_sae_dir=config.sae_dir, diffmean=DIFFMEAN_SET, store=config.store, name=SWEEP_RESULT,
            device=config.device, dtype=config.dtype,
        ), progress)
        did = True
    return did


def _check_path(config: DemoConfig) -> Path:
    from langfeat.store.layout import store_path

    return store_path(config.store) / "demo" / "check.json"


CHECK_CLASSIFIERS = {"prediction": [SAE_SET, "sae-count"], "probe_prediction": [PROBE_SET, "sae-probe"]}


def check_step(config: DemoConfig) -> tuple[list[dict[str, Any]], bool]:
    """``langfeat check`` on :attr:`DemoConfig.check_texts`, by the SAE-LAPE vote (``prediction``, with the number
    of the set's features that fired) and by the SAE probe's weights (``probe_prediction``); cached as
    ``<store>/demo/check.json``."""
    from langfeat.experiments.check import check
    from langfeat.options import CheckOptions

    path = _check_path(config)
    if path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("classifiers") == CHECK_CLASSIFIERS \
                and [c["text"] for c in cached["rows"]] == list(config.check_texts):
            return cached["rows"], False
    rows = [{"text": text} for text in config.check_texts]
    for column, (feature_set, classifier) in CHECK_CLASSIFIERS.items():
        result = check(CheckOptions(texts=list(config.check_texts), model=config.model, feature_set=feature_set,
                                    classifier=classifier, local_sae_dir=config.sae_dir, store=config.store,
                                    device=config.device, dtype=config.dtype))
        for row, r in zip(rows, result.to_json(), strict=True):
            row[column] = r["prediction"]
            if classifier == "sae-count":
                row["n_features"] = len(r["features"])
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"classifiers": CHECK_CLASSIFIERS, "rows": rows}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return rows, True


def report_step(config: DemoConfig) -> Path:
    """The HTML report of the store (always rewritten: it is cheap)."""
    from langfeat.html_report import write_html_report

    return write_html_report(config.store)


# ---------------------------------------------------------------------------------------------------------------
# the summary, from the views


def own_vs_other(store: Any, name: str = SAE_SET) -> pl.DataFrame:
    """The view ``demo_own_vs_other`` for feature set ``name``, by language."""
    return store.sql("SELECT * EXCLUDE (name) FROM demo_own_vs_other WHERE name = ? ORDER BY lang", [name])


def summarise(config: DemoConfig, sae_stats: list[SaeStats], check_rows: list[dict[str, Any]], report: Path
              ) -> DemoSummary:
    """Read the summary's numbers from the store."""
    from langfeat.store import open_store

    with open_store(config.store) as st, st.materialized("classify_votes"):  # the LID tables both read it
        features = st.sql(
            "SELECT lang, count(*) FILTER (WHERE name = ?) AS sae, count(*) FILTER (WHERE name = ?) AS neurons "
            "FROM feature_sets WHERE name IN (?, ?) GROUP BY lang ORDER BY lang",
            [SAE_SET, NEURON_SET, SAE_SET, NEURON_SET])
        names = [f"demo-{c}" for c in CLASSIFIERS]
        lid = st.sql("SELECT name, classifier, n_docs, accuracy, f1_macro FROM classify_metrics "
                     "WHERE list_contains(?, name)", [names])
        lid = lid.with_columns(pl.col("name").replace_strict({n: i for i, n in enumerate(names)}).alias("o")) \
            .sort("o").drop("o")
        ppl = st.sql("SELECT name AS intervention, diag_median, off_median, rowmax, n_rows FROM ppl_delta_summary "
                     "WHERE metric = 'mean_delta' AND list_contains(?, name) ORDER BY name", [list(PPL_RUNS)])
        switch = st.sql("SELECT lang, multiplier, n, n_target, target_rate, switch_rate FROM generate_switch "
                        "WHERE name = ? ORDER BY lang, multiplier", [GENERATE_RESULT])
        ovo = own_vs_other(st)
        steering = st.sql("SELECT method, lang, best_alpha, success_rate, fluency_score, steering_score, n_alphas "
                          "FROM generate_best_alpha WHERE name = ? ORDER BY lang, method", [SWEEP_RESULT])
        methods_ppl = st.sql("SELECT * FROM methods_ppl")
        methods_lid = st.sql("SELECT method, feature_set, n_docs, accuracy, fasttext_accuracy FROM methods_lid "
                             "WHERE name LIKE 'demo-%' ORDER BY accuracy DESC, name")
    return DemoSummary(config=config, sae_stats=sae_stats, features=features, own_vs_other=ovo, lid=lid, ppl=ppl,
                       switch=switch, check=check_rows, report=report, steering=steering, methods_ppl=methods_ppl,
                       methods_lid=methods_lid)


# ---------------------------------------------------------------------------------------------------------------
# the whole demo


def run_demo(config: DemoConfig, progress: Any = None, log: Callable[[str], None] | None = None) -> DemoSummary:
    """Run every step that has not finished yet; return the summary. ``progress``: a rich Progress for the
    long steps; ``log`` receives one line per step."""
    from dataclasses import replace

    from langfeat.models import auto_dtype

    config = replace(config.check(), dtype=auto_dtype(config.dtype, config.device))
    log = log or (lambda _msg: None)
    models = Models(config)
    ran: list[str] = []
    skipped: list[str] = []
    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.time()
        out = fn()
        did = out[1] if isinstance(out, tuple) else out
        seconds[name] = round(time.time() - t0, 1)
        (ran if did else skipped).append(name)
        log(f"{name}: {'done' if did else 'already done'} ({seconds[name]:.0f} s)")
        return out

    with models.shared():
        step("train", lambda: train_step(config, models))
        stats, _ = step("sae_stats", lambda: sae_stats_step(config, models))
        step("ingest", lambda: ingest_step(config, models))
        step("ingest_train", lambda: ingest_train_step(config, models))
        step("identify", lambda: identify_step(config))
        step("classify", lambda: classify_step(config, progress))
        step("nu_probe", lambda: nu_probe_step(config))
        step("ppl", lambda: ppl_step(config, progress))
        step("generate", lambda: generate_step(config, progress))
        step("steer", lambda: steer_step(config, progress))
        step("ppl_methods", lambda: ppl_step(config, progress, PPL_METHOD_RUNS))
        check_rows, _ = step("check", lambda: check_step(config))
    t0 = time.time()
    report = report_step(config)
    seconds["report"] = round(time.time() - t0, 1)
    summary = summarise(config, stats, check_rows, report)
    summary.ran, summary.skipped, summary.seconds = ran, skipped, seconds
    return summary


def ppl_note(config: DemoConfig) -> str:
    """What the ΔPPL and generation subsets cover (they are smaller than identification and LID)."""
    per = "all" if config.eval_docs is None else str(config.eval_docs)
    return (f"model dtype {config.dtype}; identification and LID: {len(config.langs)} languages (LID on {per} "
            "UDHR segments each); "
            f"ΔPPL: {len(config.ppl_langs)} languages ({' '.join(config.ppl_langs)}) × {config.ppl_docs} UDHR "
            f"segments; generation: {' '.join(config.generate_langs)}, {config.generate_times} samples × "
            f"{config.generate_tokens} tokens per (language, α); steering sweep: α "
            f"{' '.join(f'{a:g}' for a in config.sweep_multipliers)}, {config.sweep_times} samples × "
            f"{config.sweep_tokens} tokens per (language, method, α)")


__all__ = ["DemoConfig", "DemoSummary", "SaeStats", "run_demo"]
