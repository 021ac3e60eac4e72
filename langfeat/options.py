"""The options of every job, defined once: small specs composed into one dataclass per command.

``ModelSpec`` (which model), ``SaeSpec`` (which SAEs), ``TextSource`` (which texts) and ``FeatureSpec`` (which
feature set) are shared; ``IngestConfig``, ``ClassifyOptions``, ``CheckOptions``, ``PplOptions`` and
``GenerateOptions`` combine them with their own fields. The CLI declares each flag once (``langfeat.cli.options``)
and builds these objects; a flag is named like its field, except for the names in :data:`FLAGS`. Values the
paper's scripts spell differently (``--classifier-type count``, ``--lape-value-type
final_indice_global_max_active``) are accepted and normalised here, so the library sees one spelling.

This module imports nothing heavy (no torch): the CLI reads the defaults from it at start-up.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from importlib import resources
from typing import Any

from langfeat.errors import UsageError

# Field -> flag, where the flag is not the field name with '-' for '_' (the paper's flag names).
FLAGS = {
    "langs": "--lang",
    "layers": "--layer",
    "texts": "--text",
    "multipliers": "--multiplier",
    "intervention_langs": "--intervention-lang",
    "classifier": "--classifier-type",
    "neuron_method": "--neuron-intervention-method",
    "max_new_tokens": "--max-new-token",
    "methods": "--method",
}

# The paper's spellings of some values -> langfeat's.
CLASSIFIER_ALIASES = {"count": "sae-count", "min-max": "sae-min-max", "sae_count": "sae-count",
                      "sae_min_max": "sae-min-max", "neuron_count": "neuron-count"}
VALUE_TYPE_ALIASES = {f"final_indice_global_{v}_active": v for v in ("max", "min", "avg")}


def flag(name: str) -> str:
    """The CLI flag of option field ``name``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


@dataclass(kw_only=True)
class ModelSpec:
    """The language model: hub id, local folder, GGUF folder (with ``gguf_file``) or ``smollm2``."""

    model: str | None = None
    gguf_file: str | None = None
    dtype: str = "float32"
    device: str = "auto"


@dataclass(kw_only=True)
class SaeSpec:
    """The SAEs: a hub repo of sparsify SAEs or a local folder of ``<hookpoint>/cfg.json``."""

    sae_model: str | None = None
    local_sae_dir: str | None = None


@dataclass(kw_only=True)
class TextSource:
    """Texts: ``dataset`` (hub id or local file, ``{lang}`` expands) for each of ``langs``, rows [start, end)."""

    dataset: str = ""
    langs: list[str] = field(default_factory=list)
    split: str = "train"
    start: int = 0
    end: int | None = None
    template: str | None = None  # Python format template over the row's columns
    text_column: str | None = None


@dataclass(kw_only=True)
class FeatureSpec:
    """A feature set: a named set in the store or a paper LAPE result ``.pt`` (exactly one for most jobs)."""

    feature_set: str | None = None
    lape_result_path: str | None = None


ENGINES = ("local", "ray")


@dataclass(kw_only=True)
class EngineSpec:
    """Where ingestion's shards are encoded: this process (``local``) or a Ray Data pipeline of actor workers."""

    engine: str = "local"
    ray_address: str | None = None  # None: a new local Ray instance (or $RAY_ADDRESS); 'auto': the running one
    workers: int | None = None  # None: one per GPU of the Ray cluster (1 without GPUs)
    gpus_per_worker: float | None = None  # None: 1 on a cluster with GPUs, else 0
    cpus_per_worker: float = 1.0


@dataclass(kw_only=True)
class IngestConfig(ModelSpec, SaeSpec, TextSource, EngineSpec):
    """Options of ``langfeat ingest`` (the paper's flag names where it has them)."""

    model: str
    dataset: str
    langs: list[str]
    layers: list[str] = field(default_factory=list)
    neurons: bool = False
    neuron_docs: bool = False  # also store per-document neuron values (neuron_docs; implies neurons)
    batch: int = 16
    max_length: int | None = None
    store: str | None = None
    overwrite: bool = False
    shard_docs: int = 1024
    wait: bool = False  # wait for another process writing the same run instead of stopping
    role: str = "identify"  # 'eval': texts ingested to evaluate (classify); identify skips them unless asked

    @property
    def text_template(self) -> str | None:
        """The former name of :attr:`template`."""
        return self.template


@dataclass(kw_only=True)
class ClassifyOptions(ModelSpec, SaeSpec, TextSource, FeatureSpec):
    """Everything ``langfeat classify`` takes."""

    dataset: str
    langs: list[str]
    classifier: str = "sae-count"
    split: str = "test"
    layers: list[str] = field(default_factory=list)
    fasttext_model: str | None = None
    batch: int = 16
    max_length: int | None = None
    store: str | None = None
    name: str | None = None
    # sae-probe: the training runs (DATASET:CONFIG patterns of identification runs; none: all of them), the
    # features kept per language (None: all), the per-example value, the inverse L1 strength, the solver's epochs
    # and the training windows (None: whole documents; stride None: half the window)
    train_configs: list[str] = field(default_factory=list)
    max_features_per_language: int | None = None
    probe_value: str | None = None  # None: count (sae-probe and neuron-probe)
    probe_c: float = 1.0
    probe_class_weight: str = "balanced"  # balanced: every language weighs the same, however many examples it has
    probe_max_iter: int = 200
    probe_window: int | None = None
    probe_stride: int | None = None

    def __post_init__(self) -> None:
        self.classifier = CLASSIFIER_ALIASES.get(self.classifier, self.classifier)


@dataclass(kw_only=True)
class CheckOptions(ModelSpec, SaeSpec, FeatureSpec):
    """Everything ``langfeat check`` takes."""

    texts: list[str]
    model: str
    classifier: str = "sae-count"
    layers: list[str] = field(default_factory=list)
    explanations: str | None = None  # name of an explanations import; None: any
    batch: int = 16
    max_length: int | None = None
    store: str | None = None

    def __post_init__(self) -> None:
        self.classifier = CLASSIFIER_ALIASES.get(self.classifier, self.classifier)


@dataclass(kw_only=True)
class PplOptions(ModelSpec, SaeSpec, TextSource, FeatureSpec):
    """Everything ``langfeat ppl`` takes (:meth:`paper_multiplier` fills in the paper's default α)."""

    model: str
    dataset: str
    langs: list[str]
    split: str = "devtest"
    layers: list[str] | None = None
    intervention_type: str = "none"
    intervention_langs: list[str] = field(default_factory=list)
    multiplier: float | None = None
    value: float = 0.0
    lape_value_type: str = "max"
    neuron_method: str = "fixed"
    batch: int = 16
    max_length: int | None = None
    store: str | None = None
    name: str | None = None
    baseline: bool = True
    diffmean: str | None = None  # a DiffMean vector set (intervention_type 'diffmean')

    def __post_init__(self) -> None:
        self.lape_value_type = VALUE_TYPE_ALIASES.get(self.lape_value_type, self.lape_value_type)

    def paper_multiplier(self) -> PplOptions:
        """Without ``multiplier``, as the paper's ppl.py: ``sae-features`` steers with α = −1, and neuron
        ``scaling`` takes α from ``value`` (``sae-ablate`` defaults to −1 by itself)."""
        if self.multiplier is None:
            if self.intervention_type == "sae-features":
                self.multiplier = -1.0
            elif self.intervention_type == "neuron" and self.neuron_method == "scaling" and self.value != 0:
                self.multiplier = float(self.value)
        return self


@dataclass
class Sampling:
    """Decoding settings, all explicit (the paper's were the implicit Llama-3.2 defaults below)."""

    do_sample: bool = True
    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 50  # transformers' default, which the paper's runs used implicitly
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0


@dataclass(kw_only=True)
class GenerateOptions(ModelSpec, SaeSpec, FeatureSpec):
    """Everything ``langfeat generate`` takes (``multipliers`` defaults to the paper's α = 1; ``methods`` to the
    paper's SAE-feature steering)."""

    model: str
    langs: list[str]
    multipliers: list[float] = field(default_factory=lambda: [1.0])
    layers: list[str] | None = None
    prompt: str = ""
    times: int = 100
    seed: int = 42
    last_token_only: bool = False
    sampling: Sampling = field(default_factory=Sampling)
    batch: int = 1
    store: str | None = None
    name: str | None = None
    judge: bool = True
    methods: list[str] = field(default_factory=lambda: ["sae-features"])  # sae-features | diffmean | prompting
    diffmean: str | None = None  # the DiffMean vector set of method diffmean
    instruction: str = "Answer in {language}."  # the prompting baseline's prefix ({language}: English name)
    fluency: bool = True  # score each sample's per-character perplexity under the unsteered model


def stored(opts: Any, **resolved: Any) -> dict[str, Any]:
    """``params.json`` of a job: its options as stored (``dataclasses.asdict``, ``store`` left out), with the
    values resolved while running (``resolved``) written over the given ones."""
    out = {k: v for k, v in asdict(opts).items() if k != "store"}
    out.update(resolved)
    return out


def field_names(cls: type) -> set[str]:
    """The field names of option dataclass ``cls``."""
    return {f.name for f in fields(cls)}


@cache
def identify_defaults() -> dict[str, Any]:
    """The identification defaults as the SQL macro ``identify_defaults()`` writes them (its one definition,
    ``queries/identify/00_identify_defaults.sql``), read from the file's text so the CLI needs no DuckDB."""
    text = resources.files("langfeat.sql.queries").joinpath("identify", "00_identify_defaults.sql").read_text("utf-8")
    body = text[text.index("identify_defaults() AS {"):]
    out: dict[str, Any] = {}
    for name, value, typ in re.findall(r"(\w+):\s*([-0-9.eE]+)::(DOUBLE|INTEGER)", body):
        out[name] = int(value) if typ == "INTEGER" else float(value)
    return out


def _corpus_languages() -> tuple[str, ...]:
    from langfeat.corpus import LANGUAGES

    return tuple(LANGUAGES)


CHECK_TEXTS = (
    "The weather was lovely, so we walked along the river until sunset.",
    "Morgen fahren wir mit dem Zug nach Hamburg, um meine Großmutter zu besuchen.",
    "Je voudrais un café et un croissant, s'il vous plaît.",
    "Сегодня вечером мы пойдём в театр смотреть новый спектакль.",
    "今日は友達と一緒に公園で昼ご飯を食べました。",
    "ฉันชอบกินข้าวเหนียวมะม่วงในฤดูร้อน",
)


DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the model precisions --dtype takes (langfeat.models.DTYPES)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (docs/demo.md explains the choice). ``*_docs`` are per language; None = the whole split."""

    store: str = "demo-store"
    model: str = "gemma3-270m"
    langs: tuple[str, ...] = _corpus_languages()
    layers: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    num_latents: int = 2048
    k: int = 32
    lr: float = 1e-3
    train_docs: int | None = None
    ctx_len: int = 128
    train_batch: int = 8
    fvu_docs: int = 2
    identify_docs: int | None = None
    eval_docs: int | None = 20
    topk_threshold_ratio: float = 0.5
    example_rate: float = 0.5
    hfl_rate: float = 0.01
    max_length: int = 128
    batch: int = 16
    ppl_langs: tuple[str, ...] = ("en", "de", "zh")
    ppl_docs: int = 3
    generate_langs: tuple[str, ...] = ("de", "fr", "ja")
    generate_multipliers: tuple[float, ...] = (0.0, 1.0)
    generate_times: int = 4
    generate_tokens: int = 24
    sweep_multipliers: tuple[float, ...] = (0.0, 2.0)  # the steering sweep (SAE-LAPE, DiffMean, prompting)
    sweep_times: int = 2
    sweep_tokens: int = 8
    diffmean_docs: int | None = 4  # identification documents per language averaged for the DiffMean vectors
    check_texts: tuple[str, ...] = CHECK_TEXTS
    device: str = "auto"
    dtype: str = "auto"  # auto: bfloat16 where the device computes it natively (langfeat.models.fast_bfloat16)
    seed: int = 0

    @property
    def sae_dir(self) -> str:
        """Where the SAEs are trained: ``<store>-saes``."""
        return f"{self.store.rstrip('/')}-saes"

    @property
    def sae_pattern(self) -> str:
        return "model.layers.{" + ",".join(map(str, self.layers)) + "}.mlp" if len(self.layers) > 1 \
            else f"model.layers.{self.layers[0]}.mlp"

    @property
    def neuron_pattern(self) -> str:
        return self.sae_pattern + ".act_fn"

    def quick(self) -> DemoConfig:
        """A smaller run (a few minutes after the model is converted): one pass over less text, fewer samples."""
        return replace(self, train_docs=4, identify_docs=6, eval_docs=8, ppl_docs=2, ppl_langs=self.ppl_langs[:2],
                       generate_langs=self.generate_langs[:2], generate_times=2, check_texts=self.check_texts[:3])

    def check(self) -> DemoConfig:
        for what, value in (("--num-latents", self.num_latents), ("--k", self.k), ("--ctx-len", self.ctx_len),
                            ("--batch", self.batch), ("--max-length", self.max_length)):
            if value < 1:
                raise UsageError(f"{what} {value} is not positive: pass a value >= 1")
        if not self.layers:
            raise UsageError("no layers: pass --layer with at least one layer number")
        if self.dtype not in ("auto", *DTYPE_NAMES):
            raise UsageError(f"unknown --dtype {self.dtype!r}: use auto or one of {', '.join(DTYPE_NAMES)}")
        if self.k > self.num_latents:
            raise UsageError(f"--k {self.k} exceeds --num-latents {self.num_latents}: lower k")
        for group in (self.langs, self.ppl_langs, self.generate_langs):
            for lang in group:
                if lang not in _corpus_languages():
                    raise UsageError(f"unknown demo language {lang!r}: use one of {' '.join(_corpus_languages())}")
        return self


DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the chat-completions endpoint of `interpret --explainer openai:…`
