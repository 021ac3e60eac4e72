"""Which language-specific features fire on a text, on which tokens, and what language they vote for.

The paper's ``check_active_features.py``: each text is run through the model, its MLP outputs are SAE-encoded
(the ingestion code path, in memory), and the events are matched against a feature set. The votes and the
prediction come from the same SQL as ``langfeat classify`` (``queries/classify/10_classify_votes.sql`` and
``20_classify_predictions.sql``, run on in-memory frames), so ties and empty texts predict ``unknown``. With
``--classifier-type sae-probe`` the set must be one a sparse probe wrote (``classify --classifier-type sae-probe``
stores it under its result's name): the text is scored with that result's coefficients and intercepts, exactly as
``classify`` scores a held-out document. Fired features are listed per language with the tokens they fired on
(for a probe: its features of positive weight) and, when the store holds ``feature_explanations``, their
explanations.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from langfeat.errors import UsageError
from langfeat.experiments.classify import SAE_CLASSIFIERS, candidate_langs, check_minmax, select_units
from langfeat.features import FeatureSource, load_feature_set
from langfeat.layers import mlp_specs, parse_option
from langfeat.models import base_prefix, load_model, load_saes
from langfeat.options import CheckOptions
from langfeat.store.layout import sql_text

VOTE_SQL = ("classify/01_probe_value.sql", "classify/03_probe_neuron_value.sql", "classify/10_classify_votes.sql",
            "classify/20_classify_predictions.sql")
_RUN = "memory"
CHECK_CLASSIFIERS = (*SAE_CLASSIFIERS, "sae-probe")


@dataclass(frozen=True)
class ProbeWeights:
    """A stored sae-probe result's model: ``units`` (lang, layer, feature, weight, value: every non-zero
    coefficient, classify_units rows) and ``langs`` (lang, n_units, bias: the intercepts)."""

    units: pl.DataFrame
    langs: pl.DataFrame


def probe_weights(store: Any, name: str) -> ProbeWeights:
    """The coefficients and intercepts of the sae-probe result ``name`` (an open Store)."""
    units = store.sql("SELECT lang, layer, feature, weight, value FROM classify_units "
                      "WHERE name = ? AND kind = 'sae' ORDER BY lang, layer, feature", [name])
    langs = store.sql("SELECT lang, n_units, bias FROM classify_langs WHERE name = ?", [name])
    if units.height == 0 or langs.height == 0 or langs["bias"].null_count():
        raise UsageError(f"feature set {name!r} is not a sparse probe's: --classifier-type sae-probe needs a set "
                         "that `langfeat classify --classifier-type sae-probe` wrote (named as its result)")
    return ProbeWeights(units.with_columns(pl.col("layer").cast(pl.Int32), pl.col("feature").cast(pl.Int32)),
                        langs.with_columns(pl.col("n_units").cast(pl.Int32)))


@dataclass
class CheckResult:
    """Per text: ``predictions`` (doc, pred, score, n_best), ``scores`` (doc, lang, votes, score), ``fired``
    (doc, lang, layer, feature, n_fired, positions, tokens, explanation) and ``tokens`` (doc, pos, token_id, token).
    """

    texts: list[str]
    predictions: pl.DataFrame
    scores: pl.DataFrame
    fired: pl.DataFrame
    tokens: pl.DataFrame

    def to_json(self) -> list[dict[str, Any]]:
        """One object per text: text, prediction, scores by language, and the fired features."""
        out = []
        for doc, text in enumerate(self.texts):
            pred = self.predictions.filter(pl.col("doc") == doc)
            scores = self.scores.filter(pl.col("doc") == doc)
            fired = self.fired.filter(pl.col("doc") == doc).drop("doc")
            out.append({
                "text": text,
                "prediction": pred["pred"][0] if pred.height else "unknown",
                "scores": dict(zip(scores["lang"].to_list(), scores["score"].to_list(), strict=True)),
                "features": fired.to_dicts(),
            })
        return out


def score_events(events: pl.DataFrame, units: pl.DataFrame, cand: pl.DataFrame, n_docs: int, classifier: str
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(scores, predictions)`` of in-memory events (doc, layer, feature, act) by the classify SQL views.

    For ``sae-probe``, ``units`` carry ``weight`` and ``value`` and ``cand`` carries ``bias`` (:class:`ProbeWeights`).
    """
    if classifier not in CHECK_CLASSIFIERS:
        raise UsageError(f"check scores with SAE features: use --classifier-type {' | '.join(CHECK_CLASSIFIERS)}")
    if classifier == "sae-probe":
        units = units.with_columns(kind=pl.lit("sae"), act_min=pl.lit(None, pl.Float32),
                                   act_max=pl.lit(None, pl.Float32))
        bias, weight, value = pl.col("bias").cast(pl.Float64), pl.col("weight").cast(pl.Float64), pl.col("value")
    else:
        bias, weight, value = pl.lit(None, pl.Float64), pl.lit(None, pl.Float64), pl.lit(None, pl.String)
    docs = pl.DataFrame({
        "name": _RUN, "classifier": classifier, "doc": list(range(n_docs)), "label": "", "config": "",
        "row": list(range(n_docs)), "run_id": _RUN, "doc_id": list(range(n_docs)), "text": "",
    }, schema={"name": pl.String, "classifier": pl.String, "doc": pl.Int32, "label": pl.String, "config": pl.String,
               "row": pl.Int64, "run_id": pl.String, "doc_id": pl.Int64, "text": pl.String})
    tables = {
        "events": events.select(pl.lit(_RUN).alias("run_id"), pl.col("doc").cast(pl.Int64).alias("doc_id"),
                                pl.col("layer").cast(pl.Int32), pl.col("feature").cast(pl.Int32),
                                pl.col("act").cast(pl.Float32)),
        "classify_docs": docs,
        "classify_langs": cand.select(pl.lit(_RUN).alias("name"), "lang", "n_units", bias.alias("bias")),
        "classify_units": units.select(pl.lit(_RUN).alias("name"), "kind", "lang", "layer", "feature", "act_min",
                                       "act_max", weight.alias("weight"), value.alias("value")),
        "classify_scores": pl.DataFrame(schema={"name": pl.String, "doc": pl.Int32, "lang": pl.String,
                                                "score": pl.Float64}),
        # the neuron probe's inputs (no rows: check votes with SAE features)
        "docs": pl.DataFrame(schema={"run_id": pl.String, "doc_id": pl.Int64, "n_tokens": pl.Int32}),
        "neuron_docs": pl.DataFrame(schema={"run_id": pl.String, "doc_id": pl.Int64, "layer": pl.Int32,
                                            "neuron": pl.Int32, "tok_count": pl.Int32, "act_sum": pl.Float32}),
    }
    with duckdb.connect(":memory:") as con:
        for name, frame in tables.items():
            con.register(name, frame.to_arrow())
        for filename in VOTE_SQL:
            con.execute(sql_text("queries", filename))
        scores = con.sql("SELECT doc, lang, votes, score FROM classify_votes ORDER BY doc, score DESC, lang").pl()
        preds = con.sql("SELECT doc, pred, score, n_best FROM classify_predictions ORDER BY doc").pl()
    return scores, preds


def fired_features(events: pl.DataFrame, units: pl.DataFrame, tokens: pl.DataFrame,
                   explanations: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per (doc, lang, layer, feature) of the set that fired: count, positions and token strings (by position)."""
    hits = events.join(units.select("lang", "layer", "feature"), on=["layer", "feature"])
    hits = hits.join(tokens.select("doc", "pos", "token"), on=["doc", "pos"], how="left").sort("doc", "pos")
    fired = hits.group_by("doc", "lang", "layer", "feature", maintain_order=True).agg(
        pl.len().alias("n_fired"), pl.col("pos").alias("positions"), pl.col("token").alias("tokens"),
    )
    if explanations is not None and explanations.height:
        expl = explanations.select(pl.col("layer").cast(pl.Int32), pl.col("feature").cast(pl.Int32), "explanation")
        fired = fired.join(expl.unique(["layer", "feature"], keep="first", maintain_order=True),
                           on=["layer", "feature"], how="left")
    else:
        fired = fired.with_columns(pl.lit(None, pl.String).alias("explanation"))
    return fired.sort("doc", "lang", "layer", "feature")


def check_texts(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    units: pl.DataFrame,
    saes: dict[int, Any],
    classifier: str = "sae-count",
    explanations: pl.DataFrame | None = None,
    batch: int = 16,
    max_length: int | None = None,
    probe: ProbeWeights | None = None,
) -> CheckResult:
    """Encode ``texts`` at the layers of ``saes`` and match the events with the SAE ``units`` (classify_units rows);
    ``sae-probe`` scores with ``probe`` (whose layers must all be in ``saes``) and lists ``units`` as fired."""
    from langfeat.ingest import encode_texts

    if not texts:
        raise UsageError("no text given: pass --text \"...\" (repeat for several)")
    if classifier == "sae-min-max":
        check_minmax(units)
    if (classifier == "sae-probe") != (probe is not None):
        raise UsageError("--classifier-type sae-probe scores with a probe's weights, and only it does: pass a set "
                         "that `classify --classifier-type sae-probe` wrote")
    if probe is not None and not set(probe.units["layer"].to_list()) <= set(saes):
        raise UsageError("the probe has coefficients at layers without an SAE here: drop --layer, or pass every "
                         "layer the probe was trained on")
    specs = mlp_specs(base_prefix(model), saes)
    events, tokens = encode_texts(list(texts), model, tokenizer, specs, saes, batch, max_length)
    units = units.filter(pl.col("layer").is_in(sorted(saes)))
    if probe is None:
        scores, preds = score_events(events, units, candidate_langs(units), len(texts), classifier)
    else:
        scores, preds = score_events(events, probe.units, probe.langs, len(texts), classifier)
    tokens = token_frame(tokenizer, tokens)
    return CheckResult(list(texts), preds, scores, fired_features(events, units, tokens, explanations), tokens)


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> tuple[list[str], list[int]]:
    """The text each token contributes, and a group id per token.

    Byte-level tokens that only together form a character (Thai, CJK, emoji) share that character and one group.
    """
    pieces: list[str] = []
    groups: list[int] = []
    done, pending, group = "", 0, 0
    for i in range(len(ids)):
        cur = tokenizer.decode(list(ids[: i + 1]))
        if cur.endswith("\ufffd") and i + 1 < len(ids):
            pending += 1
            continue
        piece = cur[len(done):] if cur.startswith(done) else tokenizer.decode([ids[i]])
        pieces += [piece] * (pending + 1)
        groups += [group] * (pending + 1)
        done, pending, group = cur, 0, group + 1
    pieces += [tokenizer.decode([ids[-1]])] * pending if pending else []
    groups += [group] * pending
    return pieces, groups


def token_frame(tokenizer: Any, tokens: pl.DataFrame) -> pl.DataFrame:
    """``tokens`` (doc, pos, token_id) with each token's text piece and character group (see token_pieces)."""
    parts = []
    for _key, part in tokens.sort("doc", "pos").group_by("doc", maintain_order=True):
        pieces, groups = token_pieces(tokenizer, part["token_id"].to_list())
        parts.append(part.with_columns(pl.Series("token", pieces, pl.String), pl.Series("group", groups, pl.Int32)))
    if not parts:
        return tokens.with_columns(pl.lit(None, pl.String).alias("token"), pl.lit(None, pl.Int32).alias("group"))
    return pl.concat(parts)


def load_explanations(store: Any, name: str | None = None) -> pl.DataFrame:
    """Rows of the ``feature_explanations`` view (of import ``name`` when given)."""
    if name is None:
        return store.sql("SELECT layer, feature, explanation FROM feature_explanations ORDER BY name")
    df = store.sql("SELECT layer, feature, explanation FROM feature_explanations WHERE name = ?", [name])
    if df.height == 0:
        raise UsageError(f"no explanations named {name!r}: load them with `langfeat import-explanations DIR --name`")
    return df


def check(opts: CheckOptions) -> CheckResult:
    """Run ``langfeat check``: load the set, model and SAEs, encode the texts and match the set's features."""
    from langfeat.store.layout import store_path

    source = FeatureSource.of(opts).check()
    if opts.sae_model is None and opts.local_sae_dir is None:
        raise UsageError("check encodes MLP outputs: pass --sae-model HUB_ID or --local-sae-dir DIR")
    if opts.classifier not in CHECK_CLASSIFIERS:
        raise UsageError(f"unknown --classifier-type {opts.classifier!r}: use one of {', '.join(CHECK_CLASSIFIERS)}")
    if opts.classifier == "sae-probe" and source.feature_set is None:
        raise UsageError("--classifier-type sae-probe reads a probe's weights from the store: pass --feature-set "
                         "NAME (a set `classify --classifier-type sae-probe` wrote), not --lape-result-path")
    wanted = sorted({s.layer for s in parse_option(opts.layers)}) if opts.layers else None
    units = select_units(load_feature_set(opts.store, source), "sae", wanted)
    explanations = None
    probe = None
    if store_path(opts.store).joinpath("runs").is_dir():
        from langfeat.store import open_store

        with open_store(opts.store) as store:
            explanations = load_explanations(store, opts.explanations)
            if opts.classifier == "sae-probe":
                probe = probe_weights(store, str(source.feature_set))
    elif opts.explanations is not None:
        raise UsageError(f"no store at {store_path(opts.store)} to read explanations from: pass --store")
    if opts.classifier == "sae-probe":
        if probe is None:
            raise UsageError(f"no store at {store_path(opts.store)} to read the probe from: pass --store")
        if wanted is not None and not set(probe.units["layer"].to_list()) <= set(wanted):
            raise UsageError("the probe has coefficients at layers --layer leaves out: drop --layer, or pass every "
                             "layer the probe was trained on")
    model, tokenizer = load_model(opts.model, opts.gguf_file, opts.dtype, opts.device)
    prefix = base_prefix(model)
    layers = units["layer"].to_list() + (probe.units["layer"].to_list() if probe is not None else [])
    specs = mlp_specs(prefix, layers)
    saes = load_saes(specs, opts.sae_model, opts.local_sae_dir, next(model.parameters()).device, prefix=prefix)
    return check_texts(opts.texts, model, tokenizer, units, saes, opts.classifier, explanations, opts.batch,
                       opts.max_length, probe)


# ---------------------------------------------------------------------------------------------------------------
# feature explanations

EXPLANATIONS_TABLE = "feature_explanations"
_EXPLANATION_FILE = re.compile(r"(?:^|\.)layers\.(\d+)\.mlp_latent(\d+)\.txt$")


def read_explanations(folder: str | os.PathLike) -> pl.DataFrame:
    """Explanations from delphi-style files ``<folder>/layers.N.mlp_latent<id>.txt`` (layer, feature, explanation,
    source). A file holding a JSON string (delphi writes them so) is decoded; any other text is taken as is.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder: pass the folder holding layers.N.mlp_latent<id>.txt files")
    rows = []
    for path in sorted(root.rglob("*.txt")):
        match = _EXPLANATION_FILE.search(path.name)
        if match is None:
            continue
        raw = path.read_text(encoding="utf-8").strip()
        try:
            value = json.loads(raw)
            text = value if isinstance(value, str) else raw
        except json.JSONDecodeError:
            text = raw
        if text.strip():
            rows.append((int(match.group(1)), int(match.group(2)), text.strip(), str(path.resolve())))
    if not rows:
        raise UsageError(f"no layers.N.mlp_latent<id>.txt files in {root}: pass delphi's explanations/ folder")
    return pl.DataFrame(rows, orient="row", schema={"layer": pl.Int32, "feature": pl.Int32, "explanation": pl.String,
                                                    "source": pl.String})


def import_explanations(store: str | None, folder: str | os.PathLike, name: str) -> int:
    """Store the explanations of ``folder`` as ``feature_explanations`` result ``name``; return the row count."""
    from langfeat.store import ensure_store
    from langfeat.store.results import check_name, write_result

    check_name(name)
    frame = read_explanations(folder)
    write_result(ensure_store(store), EXPLANATIONS_TABLE, name, frame, {"folder": str(Path(folder).resolve())})
    return frame.height
