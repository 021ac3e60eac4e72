"""Auto-interpretation of SAE features from the store (the paper's interpret.py, which ran delphi with GPT-4.1).

delphi caches activations and tokens before explaining; a langfeat store already holds both, so the examples
are SQL (``queries/interpret/10–13_interpret_*.sql``: top-activating contexts to explain from, quantile-sampled
activating and random non-activating contexts to score on). An explainer model writes one explanation per
feature from the marked top examples; two scorers then test it on held-out examples:

* detection: given the explanation, does each (unmarked) text activate the feature?
* fuzz: given the explanation, are the marked tokens of each text the ones that activate it? Activating
  examples carry their true marks; non-activating ones carry as many marks placed at random.

The explainer is any OpenAI-compatible chat-completions endpoint (``openai:MODEL``, standard library HTTP, the key
read from an environment variable) or a local transformers model (``local:MODEL``), which answers the scorers
through the probabilities of ``0`` / ``1`` (so ROC-AUC exists for it). Every request and answer is appended to the
``interpret_cache`` result table as it arrives: a rerun resumes and sends nothing twice. The scores are SQL views
(``queries/interpret/14–15_interpret_*.sql and db/77–79``).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import polars as pl

from langfeat import langs
from langfeat.errors import LangfeatError, UsageError
from langfeat.options import DEFAULT_BASE_URL

SCORERS = ("detection", "fuzz")
KEY_ENVS = ("LANGFEAT_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY")
MARK_OPEN, MARK_CLOSE = "<<", ">>"
CACHE_TABLE = "interpret_cache"
FLUSH_EVERY = 16  # answers buffered before a cache part is written ...
FLUSH_SECONDS = 20.0  # ... or seconds since the last write (slow local explainers lose little when stopped)


@dataclass
class InterpretOptions:
    """Everything ``langfeat interpret`` takes (see docs/interpret.md)."""

    feature_set: str
    explainer: str = "local:smollm2"  # openai:MODEL | local:MODEL
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = None  # None: the first of KEY_ENVS that is set (none: no Authorization header)
    n_examples_train: int = 40
    n_examples_test: int = 50
    n_quantiles: int = 10
    n_non_activating: int = 50
    example_ctx_len: int = 32
    scorers: list[str] = field(default_factory=lambda: list(SCORERS))
    max_features: int | None = None
    concurrency: int = 8
    examples_per_prompt: int = 5  # the paper's num_examples_per_scorer_prompt (local models: always 1)
    threshold: float = 0.3  # a token is marked when its activation >= threshold x the example's maximum
    seed: int = 42
    filter_bos: bool = False
    tokenizer: str | None = None  # default: the model recorded with the runs
    rate_limit: float | None = None  # requests per second (None: no limit)
    max_retries: int = 6
    retry_base: float = 1.0  # seconds; backoff is retry_base * 2**attempt unless the server sends Retry-After
    timeout: float = 120.0
    explain_max_tokens: int = 200
    device: str = "auto"
    name: str | None = None
    store: str | None = None


@dataclass
class Example:
    """One context: its token texts, the feature's activation on each, and where it comes from."""

    split: str  # train | test | non_activating
    example: int
    quantile: int | None
    max_act: float
    pieces: list[str]
    acts: list[float]

    @property
    def activating(self) -> bool:
        return self.split != "non_activating"


# ---------------------------------------------------------------------------------------------------------------
# examples and prompts


def example_sql(opts: InterpretOptions) -> str:
    """The ``interpret_example_tokens`` call for ``opts`` (every value validated, the set name quoted)."""
    ints = {
        "ctx_len": opts.example_ctx_len, "n_train": opts.n_examples_train, "n_test": opts.n_examples_test,
        "n_quantiles": opts.n_quantiles, "n_non_activating": opts.n_non_activating, "seed": opts.seed,
    }
    for key, value in ints.items():
        if not isinstance(value, int) or value < (1 if key in ("ctx_len", "n_quantiles") else 0):
            raise UsageError(f"{key.replace('_', '-')} must be a non-negative integer (ctx-len, quantiles >= 1)")
    if opts.max_features is not None and opts.max_features < 1:
        raise UsageError("--max-features must be at least 1 (omit it to explain every feature)")
    args = ", ".join(f"{k} := {v}" for k, v in ints.items())
    limit = "NULL" if opts.max_features is None else str(int(opts.max_features))
    name = opts.feature_set.replace("'", "''")
    return (f"SELECT * FROM interpret_example_tokens('{name}', {args}, filter_bos := {str(opts.filter_bos).lower()}, "
            f"max_features := {limit})")


def render(pieces: Sequence[str], acts: Sequence[float], threshold: float | None) -> str:
    """The text of ``pieces`` with every run of tokens whose activation is >= ``threshold`` x max wrapped in
    ``<<`` ``>>`` (whitespace kept outside the marks); ``threshold=None`` marks nothing."""
    top = max(acts, default=0.0)
    marked = [threshold is not None and top > 0 and a >= threshold * top for a in acts]
    return render_marks(pieces, marked)


def render_marks(pieces: Sequence[str], marked: Sequence[bool]) -> str:
    """The text of ``pieces`` with each run of marked tokens wrapped in ``<<`` ``>>``."""
    out: list[str] = []
    i = 0
    while i < len(pieces):
        if not marked[i]:
            out.append(pieces[i])
            i += 1
            continue
        j = i
        while j < len(pieces) and marked[j]:
            j += 1
        span = "".join(pieces[i:j])
        core = span.strip()
        if not core:
            out.append(span)
        else:
            lead = span[: len(span) - len(span.lstrip())]
            trail = span[len(span.rstrip()):]
            out.append(f"{lead}{MARK_OPEN}{core}{MARK_CLOSE}{trail}")
        i = j
    return "".join(out).replace("\n", " ")


EXPLAIN_SYSTEM = (
    "You study one feature of a language model. You will read text excerpts in which the feature is active; "
    "in each excerpt the tokens where it is most active are wrapped in << and >>. Work out what the marked "
    "tokens and their contexts have in common (a word, a grammatical role, a topic, a language or script) and "
    "describe the feature in one short sentence. Finish with one line of the form: Explanation: <your sentence>"
)
DETECTION_SYSTEM = (
    "You check an explanation of a language-model feature. For each numbered text excerpt below, decide whether "
    "the feature, as the explanation describes it, would be active anywhere in that excerpt. Answer with a JSON "
    "list holding 1 (active) or 0 (not active) for each excerpt, in order, and nothing else, e.g. [1, 0, 0]."
)
FUZZ_SYSTEM = (
    "You check an explanation of a language-model feature. In each numbered text excerpt below some tokens are "
    "wrapped in << and >>. Decide whether those marked tokens are the ones where the feature, as the explanation "
    "describes it, is active. Answer with a JSON list holding 1 (correctly marked) or 0 (wrongly marked) for each "
    "excerpt, in order, and nothing else, e.g. [0, 1, 1]."
)


def explain_messages(train: Sequence[Example], threshold: float) -> list[dict[str, str]]:
    """The chat messages asking for an explanation of the feature from its top-activating examples."""
    lines = [f"Excerpt {i + 1}: {render(ex.pieces, ex.acts, threshold)}" for i, ex in enumerate(train)]
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def score_messages(scorer: str, explanation: str, texts: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages asking ``scorer`` (detection | fuzz) to judge ``texts`` against ``explanation``."""
    system = DETECTION_SYSTEM if scorer == "detection" else FUZZ_SYSTEM
    body = [f"Explanation: {explanation}", ""] + [f"Excerpt {i + 1}: {t}" for i, t in enumerate(texts)]
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(body)}]


def parse_explanation(text: str) -> str:
    """The explanation in a model's answer: what follows the last 'Explanation:', else its first non-empty line."""
    found = re.findall(r"explanation\s*:\s*(.+)", text, flags=re.I)
    if found:
        out = found[-1].strip()
    else:
        out = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    out = out.strip().strip('"').strip()
    return out[:500] if out else "(no explanation)"


def parse_answers(text: str, n: int) -> list[bool | None]:
    """The 0/1 list in a scorer's answer; ``n`` Nones unless it holds exactly ``n`` values."""
    match = re.search(r"\[([^\[\]]*)\]", text)
    if match:
        values = re.findall(r"\d+", match.group(1))
        if len(values) == n and all(v in ("0", "1") for v in values):
            return [v == "1" for v in values]
    return [None] * n


def fuzz_marks(ex: Example, n_marks: int, threshold: float, rng: random.Random) -> list[bool]:
    """Marks of ``ex`` for the fuzz scorer: its true marks if activating, else ``n_marks`` random visible
    (non-blank) tokens."""
    if ex.activating:
        top = max(ex.acts, default=0.0)
        return [top > 0 and a >= threshold * top for a in ex.acts]
    visible = [i for i, piece in enumerate(ex.pieces) if piece.strip()]
    chosen = set(rng.sample(visible, max(1, min(n_marks, len(visible))))) if visible else set()
    return [i in chosen for i in range(len(ex.pieces))]


def scoring_items(scorer: str, test: Sequence[Example], quiet: Sequence[Example], threshold: float, seed: int,
                  layer: int, feature: int) -> list[tuple[Example, str]]:
    """The scorer's (example, text) items in a seeded shuffled order: activating test examples, then
    non-activating ones, rendered unmarked (detection) or with true / random marks (fuzz)."""
    rng = random.Random(f"{seed}:{scorer}:{layer}:{feature}")
    marks_per = [sum(fuzz_marks(ex, 0, threshold, rng)) for ex in test]
    n_marks = max(1, round(sorted(marks_per)[len(marks_per) // 2])) if marks_per else 1
    items = []
    for ex in [*test, *quiet]:
        if scorer == "detection":
            text = render_marks(ex.pieces, [False] * len(ex.pieces))
        else:
            text = render_marks(ex.pieces, fuzz_marks(ex, n_marks, threshold, rng))
        items.append((ex, text))
    rng.shuffle(items)
    return items


# ---------------------------------------------------------------------------------------------------------------
# explainers


class ExplainerError(LangfeatError):
    """A request the explainer could not answer (after retries)."""


class RateLimiter:
    """At most ``rate`` request starts per second across threads (None: unlimited)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.lock = threading.Lock()
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


class OpenAIExplainer:
    """An OpenAI-compatible chat-completions endpoint (OpenAI, OpenRouter, vLLM, llama.cpp server), via urllib."""

    probabilities = False

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 6, retry_base: float = 1.0,
                 rate_limit: float | None = None, max_wait: float = 120.0):
        self.model = model
        self.name = f"openai:{model}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.max_wait = max_wait
        self.limiter = RateLimiter(rate_limit)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            wait = self.retry_base * 2 ** attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:200].replace("\n", " ")
                last = f"HTTP {exc.code} {detail}".strip()
                if exc.code != 429 and exc.code < 500:
                    raise ExplainerError(f"{self.url} answered {last}: check --base-url, the model name and "
                                         "the API key variable") from None
                hint = _retry_after(exc.headers)
                wait = hint if hint is not None else wait
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
                last = str(getattr(exc, "reason", exc))
            if attempt < self.max_retries:
                time.sleep(min(wait, self.max_wait))
        raise ExplainerError(f"{self.url} failed {self.max_retries + 1} times (last: {last}): check the server, "
                             "or rerun later (answers so far are cached)")

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        data = self._post({"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ExplainerError(f"{self.url} sent no choices[0].message.content: is it a chat-completions "
                                 "endpoint?") from None

    def choose(self, messages: list[dict[str, str]], prefix: str, options: Sequence[str]) -> list[float]:
        raise NotImplementedError


class LocalExplainer:
    """A local transformers causal LM: greedy explanations, scorer answers from the next-token probabilities."""

    probabilities = True

    def __init__(self, model: str, device: str = "auto", loaded: tuple[Any, Any] | None = None):
        from langfeat.models import load_model

        self.name = f"local:{model}"
        self.model, self.tokenizer = loaded if loaded is not None else load_model(model, device=device)
        self.lock = threading.Lock()
        self.max_len = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def _ids(self, messages: list[dict[str, str]], prefix: str = "") -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = tok(text + prefix, add_special_tokens=False)["input_ids"]
        else:
            text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
            ids = tok(f"{text}\n\nAssistant: {prefix}")["input_ids"]
        return list(ids)

    def _check_len(self, ids: list[int], new: int) -> None:
        if len(ids) + new > self.max_len:
            raise UsageError(f"a prompt of {len(ids)} tokens exceeds {self.name}'s context of {self.max_len}: "
                             "lower --n-examples-train or --example-ctx-len")

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        import torch

        ids = self._ids(messages)
        self._check_len(ids, max_tokens)
        with self.lock, torch.inference_mode():
            device = next(self.model.parameters()).device
            x = torch.tensor([ids], device=device)
            out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)

    def choose(self, messages: list[dict[str, str]], prefix: str, options: Sequence[str]) -> list[float]:
        """The probability of each option as the next token after ``prefix`` (renormalised over the options)."""
        import torch

        ids = self._ids(messages, prefix)
        self._check_len(ids, 1)
        option_ids = [self.tokenizer(o, add_special_tokens=False)["input_ids"][0] for o in options]
        with self.lock, torch.inference_mode():
            device = next(self.model.parameters()).device
            logits = self.model(torch.tensor([ids], device=device)).logits[0, -1].float()
        return torch.softmax(logits[option_ids], dim=0).tolist()


def api_key(env: str | None) -> str | None:
    """The API key from ``env`` (required to be set) or from the first of KEY_ENVS that is set."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise UsageError(f"${env} is not set: export the API key in it, or drop --api-key-env")
        return value
    return next((os.environ[e] for e in KEY_ENVS if os.environ.get(e)), None)


def make_explainer(opts: InterpretOptions) -> Any:
    """The explainer named by ``opts.explainer`` (``openai:MODEL`` or ``local:MODEL``)."""
    kind, _, model = opts.explainer.partition(":")
    if kind == "openai" and model:
        return OpenAIExplainer(model, opts.base_url, api_key(opts.api_key_env), opts.timeout, opts.max_retries,
                               opts.retry_base, opts.rate_limit)
    if kind == "local" and model:
        return LocalExplainer(model, opts.device)
    raise UsageError(f"bad --explainer {opts.explainer!r}: use openai:MODEL (with --base-url) or local:MODEL "
                     "(a folder, GGUF file or 'smollm2')")


# ---------------------------------------------------------------------------------------------------------------
# cached requests


@dataclass
class Request:
    """One explainer call: ``mode`` chat (messages -> text) or choose (messages + prefix -> option probs)."""

    kind: str  # explain | detection | fuzz
    layer: int
    feature: int
    messages: list[dict[str, str]]
    mode: str = "chat"
    max_tokens: int = 200
    prefix: str = ""
    options: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "messages": self.messages}
        if self.mode == "chat":
            out["max_tokens"] = self.max_tokens
        else:
            out.update(prefix=self.prefix, options=list(self.options))
        return out

    def key(self, explainer: str) -> str:
        blob = json.dumps({"explainer": explainer, "request": self.payload()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """The ``interpret_cache`` rows of the store, and new answers appended as part files (never rewritten)."""

    def __init__(self, store: Any, name: str, explainer: str):
        self.layout = store.layout
        self.name = name
        self.explainer = explainer
        rows = store.sql("SELECT key, response FROM interpret_cache WHERE explainer = ?", [explainer])
        self.answers: dict[str, str] = dict(zip(rows["key"].to_list(), rows["response"].to_list(), strict=True))
        self.pending: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sent = 0
        self.flushed_at = time.monotonic()

    def add(self, req: Request, key: str, response: str) -> None:
        with self.lock:
            self.answers[key] = response
            self.pending.append({
                "key": key, "explainer": self.explainer, "kind": req.kind, "layer": req.layer,
                "feature": req.feature, "request": json.dumps(req.payload(), ensure_ascii=False),
                "response": response, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
            full = len(self.pending) >= FLUSH_EVERY or time.monotonic() - self.flushed_at >= FLUSH_SECONDS
        if full:
            self.flush()

    def flush(self) -> None:
        """Write the pending answers as one new part file (temporary name, then renamed)."""
        import pyarrow.parquet as pq

        from langfeat.store.results import check_name, to_arrow

        with self.lock:
            rows, self.pending = self.pending, []
            self.flushed_at = time.monotonic()
        if not rows:
            return
        folder = self.layout.result_dir(CACHE_TABLE, check_name(self.name))
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        tmp = folder / f".part-{stamp}.tmp"
        pq.write_table(to_arrow(pl.DataFrame(rows), CACHE_TABLE), tmp, compression="zstd")
        os.replace(tmp, folder / f"part-{stamp}.parquet")


def run_requests(explainer: Any, cache: Cache, requests: Sequence[Request], concurrency: int,
                 progress: Callable[[int], None] | None = None) -> list[str]:
    """The answer to each request, from the cache or the explainer (``concurrency`` threads); new answers are
    cached as they arrive, and flushed even when a request fails."""
    keys = [r.key(explainer.name) for r in requests]
    out: list[str | None] = [cache.answers.get(k) for k in keys]
    todo = [i for i, v in enumerate(out) if v is None]
    if progress is not None and len(requests) - len(todo):
        progress(len(requests) - len(todo))

    def call(i: int) -> str:
        req = requests[i]
        if req.mode == "chat":
            answer = explainer.chat(req.messages, req.max_tokens)
        else:
            answer = json.dumps(explainer.choose(req.messages, req.prefix, req.options))
        cache.add(req, keys[i], answer)
        return answer

    try:
        workers = 1 if isinstance(explainer, LocalExplainer) else max(1, concurrency)
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(call, i): i for i in todo}
            try:
                for fut in cf.as_completed(futures):
                    out[futures[fut]] = fut.result()
                    cache.sent += 1
                    if progress is not None:
                        progress(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        cache.flush()
    return [v if v is not None else "" for v in out]


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class InterpretResult:
    """What a run produced: the result name, its explanations and predictions, and the requests it sent."""

    name: str
    explanations: pl.DataFrame
    predictions: pl.DataFrame
    n_requests: int
    n_cached: int


def resolve_tokenizer(store: Any, opts: InterpretOptions, run_ids: Sequence[str]) -> Any:
    """The tokenizer that wrote the runs' token ids: ``opts.tokenizer``, else the runs' recorded model."""
    from transformers import AutoTokenizer

    from langfeat.models import OFFLINE_DEFAULT, model_id, model_source

    name = opts.tokenizer
    if name is None:
        models = store.sql("SELECT DISTINCT model FROM runs WHERE list_contains(?, run_id)", [list(run_ids)])
        found = sorted(m for m in models["model"].to_list() if m)
        if len(found) != 1:
            raise UsageError(f"the examples come from runs of {len(found)} models ({', '.join(found)}): "
                             "pass --tokenizer (the model whose tokens they are)")
        name = OFFLINE_DEFAULT if found[0] == model_id(OFFLINE_DEFAULT) else found[0]
    try:
        return AutoTokenizer.from_pretrained(model_source(name))
    except OSError:
        raise UsageError(f"cannot load the tokenizer {name!r}: pass --tokenizer (a local model folder, GGUF file "
                         "or 'smollm2')") from None


def load_examples(store: Any, opts: InterpretOptions, tokenizer: Any = None
                  ) -> tuple[pl.DataFrame, dict[tuple[int, int], list[Example]]]:
    """``(features, examples)``: the set's features (layer, feature, langs, pick) and each one's examples."""
    from langfeat.experiments.check import token_pieces

    feats = store.sql(
        f"SELECT * FROM interpret_features(?, max_features := "
        f"{'NULL' if opts.max_features is None else int(opts.max_features)}) ORDER BY pick", [opts.feature_set])
    if feats.height == 0:
        raise UsageError(f"feature set {opts.feature_set!r} has no SAE features: run `langfeat sets` to list them")
    rows = store.sql(example_sql(opts))
    if rows.height == 0:
        raise UsageError(f"no events of the features of {opts.feature_set!r} in the store: ingest runs with "
                         "their SAE layers first")
    if tokenizer is None:
        tokenizer = resolve_tokenizer(store, opts, rows["run_id"].unique().to_list())
    out: dict[tuple[int, int], list[Example]] = {}
    keys = ["layer", "feature", "split", "example"]
    for key, part in rows.sort([*keys, "pos"]).group_by(keys, maintain_order=True):
        layer, feature, split, example = key
        pieces, _ = token_pieces(tokenizer, part["token_id"].to_list())
        out.setdefault((int(layer), int(feature)), []).append(Example(
            split=str(split), example=int(example), quantile=part["quantile"][0], max_act=float(part["max_act"][0]),
            pieces=pieces, acts=[float(a) for a in part["act"].to_list()],
        ))
    return feats, out


def default_name(feature_set: str, explainer: str) -> str:
    """``SET-MODEL`` (the model's last path component, unsafe characters replaced)."""
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", explainer.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1]).strip("-")
    return f"{feature_set}-{slug or 'explainer'}"


def interpret(opts: InterpretOptions, explainer: Any = None, progress: Any = None, tokenizer: Any = None
              ) -> InterpretResult:
    """Explain and score the features of ``opts.feature_set``; store the result tables; return them."""
    from langfeat.experiments.check import EXPLANATIONS_TABLE
    from langfeat.store import open_store
    from langfeat.store.results import check_name, write_result

    unknown = [s for s in opts.scorers if s not in SCORERS]
    if unknown:
        raise UsageError(f"unknown --scorers {', '.join(unknown)}: use {' and/or '.join(SCORERS)}")
    if not 0 < opts.threshold <= 1:
        raise UsageError("--threshold must be in (0, 1]")
    if opts.name is not None:
        check_name(opts.name)
    store = open_store(opts.store)
    try:
        feats, examples = load_examples(store, opts, tokenizer)
        if explainer is None:
            explainer = make_explainer(opts)
        name = check_name(opts.name or default_name(opts.feature_set, explainer.name))
        cache = Cache(store, name, explainer.name)
        task = progress.add_task("interpret", total=None) if progress is not None else None

        def tick(n: int) -> None:
            if progress is not None:
                progress.advance(task, n)

        # 1. explanations
        order = [(int(r["layer"]), int(r["feature"])) for r in feats.iter_rows(named=True)]
        order = [k for k in order if any(ex.split == "train" for ex in examples.get(k, []))]
        train = {k: [ex for ex in examples[k] if ex.split == "train"] for k in order}
        requests = [Request("explain", k[0], k[1], explain_messages(train[k], opts.threshold),
                            max_tokens=opts.explain_max_tokens) for k in order]
        if progress is not None:
            progress.update(task, total=len(requests))
        answers = run_requests(explainer, cache, requests, opts.concurrency, tick)
        explanations = {k: parse_explanation(a) for k, a in zip(order, answers, strict=True)}

        # 2. scoring
        per_prompt = 1 if explainer.probabilities else max(1, opts.examples_per_prompt)
        jobs: list[tuple[str, tuple[int, int], list[tuple[Example, str]]]] = []
        for k in order:
            test = [ex for ex in examples[k] if ex.split == "test"]
            quiet = [ex for ex in examples[k] if ex.split == "non_activating"]
            for scorer in opts.scorers:
                items = scoring_items(scorer, test, quiet, opts.threshold, opts.seed, *k)
                jobs += [(scorer, k, items[i:i + per_prompt]) for i in range(0, len(items), per_prompt)]
        requests = []
        for scorer, k, chunk in jobs:
            msgs = score_messages(scorer, explanations[k], [text for _, text in chunk])
            if explainer.probabilities:
                requests.append(Request(scorer, k[0], k[1], msgs, mode="choose", prefix="[", options=("0", "1")))
            else:
                requests.append(Request(scorer, k[0], k[1], msgs, max_tokens=8 * len(chunk) + 8))
        if progress is not None:
            progress.update(task, total=len(order) + len(requests))
        answers = run_requests(explainer, cache, requests, opts.concurrency, tick)
        pred_rows = []
        for (scorer, k, chunk), answer in zip(jobs, answers, strict=True):
            if explainer.probabilities:
                p_yes = float(json.loads(answer)[1])
                preds: list[bool | None] = [p_yes > 0.5]
                probs: list[float | None] = [p_yes]
            else:
                preds = parse_answers(answer, len(chunk))
                probs = [None] * len(chunk)
            for (ex, _), pred, prob in zip(chunk, preds, probs, strict=True):
                pred_rows.append({
                    "scorer": scorer, "layer": k[0], "feature": k[1],
                    "example": ex.example + (0 if ex.activating else opts.n_examples_test),
                    "quantile": ex.quantile, "activating": ex.activating, "prediction": pred, "prob": prob,
                })
        expl = pl.DataFrame(
            [{"feature_set": opts.feature_set, "layer": k[0], "feature": k[1], "explainer": explainer.name,
              "n_train": len(train[k]), "explanation": explanations[k]} for k in order],
            schema={"feature_set": pl.String, "layer": pl.Int32, "feature": pl.Int32, "explainer": pl.String,
                    "n_train": pl.Int32, "explanation": pl.String})
        preds_df = pl.DataFrame(pred_rows, schema={
            "scorer": pl.String, "layer": pl.Int32, "feature": pl.Int32, "example": pl.Int32, "quantile": pl.Int32,
            "activating": pl.Boolean, "prediction": pl.Boolean, "prob": pl.Float64})
        params = {k: v for k, v in asdict(opts).items() if k not in ("store", "api_key_env")}
        params.update(name=name, explainer=explainer.name, n_features=len(order))
        layout = store.layout
    finally:
        store.close()
    write_result(layout, "interpret_predictions", name, preds_df, params)
    write_result(layout, "interpret_explanations", name, expl, params)
    write_result(layout, EXPLANATIONS_TABLE, name,
                 expl.select("layer", "feature", "explanation",
                             pl.lit(f"langfeat interpret {explainer.name}").alias("source")), params)
    from langfeat.store import refresh_catalog

    refresh_catalog(layout.root)
    return InterpretResult(name, expl, preds_df, cache.sent, len(order) + len(jobs) - cache.sent)


# ---------------------------------------------------------------------------------------------------------------
# reports


def list_results(store: Any) -> pl.DataFrame:
    """One row per stored interpret result: name, feature set, explainer, features."""
    return store.sql("SELECT name, any_value(feature_set) AS feature_set, any_value(explainer) AS explainer, "
                     "count(*) AS n_features FROM interpret_explanations GROUP BY name ORDER BY name")


def lang_scores(store: Any, name: str) -> pl.DataFrame:
    """The ``interpret_lang_scores`` rows of result ``name`` in the paper's layout (Language, Score Type, ...),
    languages in English-name order."""
    rows = store.sql("SELECT * FROM interpret_lang_scores WHERE name = ?", [name])
    if rows.height == 0:
        raise UsageError(f"no interpret result named {name!r}: run `langfeat report interpret` to list them")
    key = pl.col("lang").map_elements(langs.sort_key, return_dtype=pl.String)
    return rows.sort(key, "scorer").select(
        pl.col("lang"),
        pl.col("lang").map_elements(_english, return_dtype=pl.String).alias("language"),
        pl.col("scorer").alias("score_type"), "n_features", "accuracy", pl.col("f1").alias("f1_score"),
        "precision", "recall", "roc_auc", "n_invalid",
    )


def _english(tag: str) -> str:
    try:
        return langs.english_name(tag)
    except ValueError:
        return tag


def feature_scores(store: Any, name: str) -> pl.DataFrame:
    """Per feature of result ``name``: explanation and each scorer's accuracy / F1."""
    return store.sql(
        "SELECT x.layer, x.feature, s.scorer, s.accuracy, s.f1, s.roc_auc, s.n_invalid, x.explanation "
        "FROM interpret_explanations x JOIN interpret_scores s USING (name, layer, feature) WHERE x.name = ? "
        "ORDER BY x.layer, x.feature, s.scorer", [name])
