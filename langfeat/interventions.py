"""Interventions on a model's MLPs, applied with forward hooks: steering, SAE-feature ablation, neuron edits.

Every intervention is built for ONE language from a feature frame (columns ``lang, layer, feature, act_max,
act_min, act_avg``, as returned by ``langfeat.features.load_feature_set``) and is used as
a context manager: ``with intervention.applied(model): model(...)``.

* :class:`Steering` (``sae-features``, the paper's edit): at each layer, MLP output += s with
  s = α · Σ_f v_f · W_dec[f], at every position (or, with ``last_token_only``, at the newest position only).
* :class:`SaeAblation` (``sae-ablate``): encode the MLP output with the SAE, scale the set's latents by (1 + α)
  where they fire (α = −1 sets them to 0), decode, and add back the SAE error (x − x̂); nothing else changes.
* :class:`NeuronEdit` (``neuron``): LAPE neurons of ``mlp.act_fn`` set to a value (``fixed``) or shifted by
  α · max (``scaling``).
* ``diffmean`` (:func:`diffmean_steering`, a :class:`Steering`): MLP output += α · v_L at each layer, v_L the
  language's DiffMean vector (``langfeat.diffmean``), built from vectors instead of a feature frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import polars as pl
import torch

from langfeat import langs
from langfeat.activations import Hook, forward_hooks
from langfeat.errors import UsageError
from langfeat.layers import LayerSpec, mlp_path, parse_option
from langfeat.models import base_prefix, get_module, sae_decode
from langfeat.models import load_saes as load_layer_saes

INTERVENTION_TYPES = ("none", "sae-features", "sae-ablate", "neuron", "diffmean")
VALUE_TYPES = {"max": "act_max", "min": "act_min", "avg": "act_avg"}
NEURON_METHODS = ("fixed", "scaling")

@dataclass
class Intervention:
    """A set of forward hooks (module path → hook) plus how many units it edits."""

    intervention_type: str = "none"
    lang: str | None = None
    n_units: int = 0

    def hooks(self) -> dict[str, Hook]:
        return {}

    def applied(self, model: torch.nn.Module) -> AbstractContextManager[None]:
        """Register this intervention's hooks on ``model`` for the duration of the block."""
        return forward_hooks(model, self.hooks().items())


@dataclass
class Steering(Intervention):
    """Add a fixed vector to the output of each module (all positions, or only the last one)."""

    vectors: dict[str, torch.Tensor] = field(default_factory=dict)
    last_token_only: bool = False

    def hooks(self) -> dict[str, Hook]:
        return {path: self._hook(vec) for path, vec in self.vectors.items()}

    def _hook(self, vec: torch.Tensor) -> Hook:
        last = self.last_token_only

        def hook(module, inputs, output):
            v = vec.to(device=output.device, dtype=output.dtype)
            if not last:
                return output + v
            out = output.clone()
            out[:, -1, :] += v
            return out

        return hook


@dataclass
class SaeAblation(Intervention):
    """Scale SAE latents ``ids`` by (1 + multiplier) where they fire, keeping the SAE's reconstruction error."""

    saes: dict[str, tuple[torch.nn.Module, torch.Tensor]] = field(default_factory=dict)
    multiplier: float = -1.0

    def hooks(self) -> dict[str, Hook]:
        if self.multiplier == 0:
            return {}
        return {path: self._hook(sae, ids) for path, (sae, ids) in self.saes.items() if len(ids)}

    def _hook(self, sae: torch.nn.Module, ids: torch.Tensor) -> Hook:
        alpha = self.multiplier

        def hook(module, inputs, output):
            shape = output.shape
            x = output.reshape(-1, shape[-1]).to(sae.W_dec.dtype)
            with torch.no_grad():
                enc = sae.encode(x)
                top_acts, top_idx = enc.top_acts, enc.top_indices
                del enc  # drops the dense pre-activations
                x_hat = sae_decode(sae, top_acts, top_idx)
                hit = torch.isin(top_idx, ids.to(top_idx.device))
                edited = torch.where(hit, top_acts * (1.0 + alpha), top_acts)
                x_new = sae_decode(sae, edited, top_idx) + (x - x_hat)
            return x_new.reshape(shape).to(output.dtype)

        return hook


@dataclass
class NeuronEdit(Intervention):
    """Set neurons of ``mlp.act_fn`` to fixed values, or add per-neuron shifts to them."""

    edits: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    method: str = "fixed"

    def hooks(self) -> dict[str, Hook]:
        return {path: self._hook(idx, vals) for path, (idx, vals) in self.edits.items() if len(idx)}

    def _hook(self, idx: torch.Tensor, vals: torch.Tensor) -> Hook:
        scaling = self.method == "scaling"

        def hook(module, inputs, output):
            i = idx.to(output.device)
            v = vals.to(device=output.device, dtype=output.dtype)
            out = output.clone()
            out[..., i] = out[..., i] + v if scaling else v.expand(*out.shape[:-1], len(i))
            return out

        return hook


def select_lang(features: pl.DataFrame, lang: str) -> pl.DataFrame:
    """The rows of ``features`` for ``lang`` (any alias), sorted by (layer, feature)."""
    tag = langs.canonical(lang)
    return features.filter(pl.col("lang") == tag).sort("layer", "feature")


def set_langs(features: pl.DataFrame) -> list[str]:
    """The languages of a feature frame, in the paper's order (by English name)."""
    return sorted(features["lang"].unique().to_list(), key=langs.sort_key)


def _values(rows: pl.DataFrame, value_type: str) -> torch.Tensor:
    if value_type not in VALUE_TYPES:
        raise UsageError(f"unknown --lape-value-type {value_type!r}: use max, min or avg")
    col = VALUE_TYPES[value_type]
    if col not in rows.columns or rows[col].null_count():
        raise UsageError(f"the feature set has no {col} for some units: re-run identify with statistics, "
                         "or pick another --lape-value-type")
    return torch.tensor(rows[col].cast(pl.Float64).to_list(), dtype=torch.float32)


def _by_layer(rows: pl.DataFrame, specs: list[LayerSpec]) -> Iterator[tuple[LayerSpec, pl.DataFrame]]:
    for spec in specs:
        part = rows.filter(pl.col("layer") == spec.layer)
        if part.height:
            yield spec, part


def steering_vectors(
    features: pl.DataFrame,
    lang: str,
    specs: list[LayerSpec],
    saes: dict[int, torch.nn.Module],
    multiplier: float,
    value_type: str = "max",
) -> dict[str, torch.Tensor]:
    """Per MLP path, s = multiplier · Σ_f v_f · W_dec[f] over ``lang``'s features at that layer."""
    out = {}
    for spec, part in _by_layer(select_lang(features, lang), specs):
        w_dec = saes[spec.layer].W_dec.detach()
        ids = torch.tensor(part["feature"].to_list(), dtype=torch.long, device=w_dec.device)
        _check_ids(ids, w_dec.shape[0], spec)
        vals = _values(part, value_type).to(device=w_dec.device, dtype=torch.float32)
        out[spec.mlp_path] = multiplier * (vals[:, None] * w_dec[ids].float()).sum(0)
    return out


def _check_ids(ids: torch.Tensor, size: int, spec: LayerSpec) -> None:
    if len(ids) and (int(ids.max()) >= size or int(ids.min()) < 0):
        raise UsageError(
            f"unit id {int(ids.max())} is out of range for layer {spec.layer} (size {size}): "
            "the feature set belongs to another SAE or model"
        )


def build(
    intervention_type: str,
    features: pl.DataFrame,
    lang: str,
    specs: list[LayerSpec],
    saes: dict[int, torch.nn.Module] | None = None,
    *,
    multiplier: float | None = None,
    value: float = 0.0,
    value_type: str = "max",
    neuron_method: str = "fixed",
    last_token_only: bool = False,
    n_neurons: int | None = None,
) -> Intervention:
    """The intervention of type ``intervention_type`` for ``lang`` at the layers ``specs``.

    ``multiplier`` defaults to −1 for ``sae-ablate`` (features set to 0) and is required otherwise.
    For ``neuron``: ``fixed`` sets the units to ``value``; ``scaling`` adds multiplier · act_max.
    """
    tag = langs.canonical(lang)
    if intervention_type == "none":
        return Intervention()
    if intervention_type not in INTERVENTION_TYPES:
        raise UsageError(
            f"unknown --intervention-type {intervention_type!r}: use one of {', '.join(INTERVENTION_TYPES)}"
        )
    if intervention_type == "diffmean":
        raise UsageError("--intervention-type diffmean steers with vectors, not features: use diffmean_steering")
    rows = select_lang(features, tag)
    used = pl.concat([p for _, p in _by_layer(rows, specs)]) if rows.height else rows
    if intervention_type == "sae-ablate":
        alpha = -1.0 if multiplier is None else float(multiplier)
        saes = saes or {}
        sel = {}
        for spec, part in _by_layer(rows, specs):
            sae = saes[spec.layer]
            ids = torch.tensor(part["feature"].to_list(), dtype=torch.long, device=sae.W_dec.device)
            _check_ids(ids, sae.W_dec.shape[0], spec)
            sel[spec.mlp_path] = (sae, ids)
        return SaeAblation(intervention_type, tag, used.height, saes=sel, multiplier=alpha)
    if intervention_type == "sae-features":
        if multiplier is None:
            raise UsageError("--intervention-type sae-features needs --multiplier (e.g. -0.2)")
        vecs = steering_vectors(rows, tag, specs, saes or {}, float(multiplier), value_type)
        return Steering(intervention_type, tag, used.height, vectors=vecs, last_token_only=last_token_only)
    if neuron_method not in NEURON_METHODS:
        raise UsageError(f"unknown --neuron-intervention-method {neuron_method!r}: use fixed or scaling")
    if neuron_method == "scaling" and multiplier is None:
        raise UsageError("--neuron-intervention-method scaling needs --multiplier (e.g. -0.2)")
    edits = {}
    for spec, part in _by_layer(rows, specs):
        idx = torch.tensor(part["feature"].to_list(), dtype=torch.long)
        if n_neurons is not None:
            _check_ids(idx, n_neurons, spec)
        if neuron_method == "fixed":
            vals = torch.full((len(idx),), float(value))
        else:
            vals = float(multiplier) * _values(part, "max")
        edits[spec.act_fn_path] = (idx, vals)
    return NeuronEdit(intervention_type, tag, used.height, edits=edits, method=neuron_method)


def diffmean_steering(
    vectors: dict[int, torch.Tensor], lang: str, specs: list[LayerSpec], multiplier: float,
    last_token_only: bool = False,
) -> Steering:
    """MLP output += ``multiplier`` · ``vectors[layer]`` at every layer of ``specs`` that has a vector (a DiffMean
    vector set's vectors of ``lang``, see :func:`langfeat.diffmean.load_vectors`); ``n_units`` counts those layers."""
    tag = langs.canonical(lang)
    hooked = [s for s in specs if s.layer in vectors]
    vecs = {s.mlp_path: float(multiplier) * vectors[s.layer].float() for s in hooked}
    return Steering("diffmean", tag, len(hooked), vectors=vecs, last_token_only=last_token_only)


def layer_specs(model: torch.nn.Module, patterns: list[str] | None, features: pl.DataFrame) -> list[LayerSpec]:
    """The hooked layers: ``--layer`` patterns, else every layer of the feature set (``<base>.layers.N.mlp``)."""
    if not patterns:
        prefix = base_prefix(model)
        patterns = [mlp_path(prefix, n) for n in sorted(set(features["layer"]))]
    specs = parse_option(patterns, neurons=False)
    for spec in specs:
        get_module(model, spec.mlp_path)
    return specs


def vector_layer_specs(model: torch.nn.Module, patterns: list[str] | None, vectors: dict[str, dict[int, torch.Tensor]]
                       ) -> list[LayerSpec]:
    """The hooked layers of a vector intervention: ``--layer`` patterns, else every layer some language has a vector
    at; a layer without a vector, or a vector of another width than the model's, is a one-line error."""
    have = sorted({layer for per_lang in vectors.values() for layer in per_lang})
    prefix = base_prefix(model)
    specs = parse_option(patterns or [mlp_path(prefix, n) for n in have], neurons=False)
    width = getattr(model.config, "hidden_size", None)
    for spec in specs:
        get_module(model, spec.mlp_path)
        if spec.layer not in have:
            raise UsageError(f"the vector set has no vector at layer {spec.layer}: pick --layer from {have}")
        for vec in (v[spec.layer] for v in vectors.values() if spec.layer in v):
            if width is not None and vec.shape[-1] != width:
                raise UsageError(f"the vectors have {vec.shape[-1]} dimensions, the model {width}: the set belongs "
                                 "to another model")
    return specs


def load_saes(
    model: torch.nn.Module,
    specs: list[LayerSpec],
    features: pl.DataFrame,
    sae_model: str | None,
    local_sae_dir: str | None,
) -> dict[int, torch.nn.Module]:
    """One SAE per hooked layer that has features in the set, on the model's device."""
    wanted = set(features["layer"].to_list())
    device = next(model.parameters()).device
    return load_layer_saes([s for s in specs if s.layer in wanted], sae_model, local_sae_dir, device,
                           prefix=base_prefix(model))


def check_kind(features: pl.DataFrame, intervention_type: str) -> None:
    """Refuse a neuron set for an SAE intervention and vice versa (when the frame says which it is)."""
    if "kind" not in features.columns or intervention_type == "none":
        return
    want = "neuron" if intervention_type == "neuron" else "sae"
    kinds = set(features["kind"].drop_nulls().to_list())
    if kinds and kinds != {want}:
        raise UsageError(
            f"--intervention-type {intervention_type} needs a set of {want} units but this one holds "
            f"{', '.join(sorted(kinds))}: pick a matching set or intervention type"
        )
