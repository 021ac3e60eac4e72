"""Layer patterns: bracex expansion of module paths and their mapping to layer numbers and SAE hookpoints.

A layer is named by its module path in the model (``model.layers.3.mlp``); patterns use bash braces
(``model.layers.{0..15}.mlp``). The SAE hookpoint is the path relative to the base model (``layers.3.mlp``),
as sparsify names them. ``...mlp.act_fn`` paths select neurons (LAPE's input).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import bracex

from langfeat.errors import UsageError

_LAYER_NUMBER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)(?:\.|$)")


class LayerPatternError(ValueError):
    """A layer pattern that does not parse or names no module."""


@dataclass(frozen=True)
class LayerSpec:
    """One hooked layer: the module ``path``, its number ``layer`` and whether it records ``neurons``."""

    path: str
    layer: int
    neurons: bool

    @property
    def mlp_path(self) -> str:
        """The MLP module path (the ``act_fn`` suffix removed)."""
        return self.path.removesuffix(".act_fn")

    @property
    def act_fn_path(self) -> str:
        """The path of the MLP's activation function (its output is what LAPE counts)."""
        return self.mlp_path + ".act_fn"

    def hookpoint(self, base_prefix: str = "model") -> str:
        """The sparsify hookpoint of this layer's MLP output, relative to the base model."""
        prefix = base_prefix + "."
        path = self.mlp_path
        return path[len(prefix) :] if base_prefix and path.startswith(prefix) else path


def mlp_path(prefix: str, layer: int | str, neurons: bool = False) -> str:
    """The module path of layer ``layer``'s MLP under the base model ``prefix`` (``'model'`` → ``model.layers.3.mlp``;
    ``''`` → the hookpoint ``layers.3.mlp``), its ``.act_fn`` with ``neurons``. ``layer`` may be a brace range."""
    path = f"{prefix + '.' if prefix else ''}layers.{layer}.mlp"
    return path + ".act_fn" if neurons else path


def mlp_specs(prefix: str, layers: Iterable[int], neurons: bool = False) -> list[LayerSpec]:
    """The :class:`LayerSpec` s of the MLPs of ``layers`` (sorted, de-duplicated) under ``prefix``."""
    return parse([mlp_path(prefix, n) for n in sorted(set(layers))], neurons=neurons)


def expand(patterns: list[str] | tuple[str, ...] | str) -> list[str]:
    """Expand bracex patterns (``model.layers.{0..3}.mlp``) to a de-duplicated list of module paths."""
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[str] = []
    for pattern in patterns:
        for part in str(pattern).replace(",", " ").split() if "{" not in str(pattern) else [str(pattern)]:
            try:
                expanded = bracex.expand(part)
            except Exception as exc:  # bracex raises plain exceptions on malformed patterns
                raise LayerPatternError(f"bad layer pattern {part!r}: {exc}") from exc
            for path in expanded:
                if path not in out:
                    out.append(path)
    return out


def layer_number(path: str) -> int:
    """The N of ``...layers.N...`` in a module path."""
    match = _LAYER_NUMBER.search(path)
    if match is None:
        raise LayerPatternError(
            f"cannot find a layer number in {path!r}: name modules like 'model.layers.3.mlp'"
        )
    return int(match.group(1))


def parse(patterns: list[str] | tuple[str, ...] | str, neurons: bool | None = None) -> list[LayerSpec]:
    """Expand patterns into :class:`LayerSpec` s, sorted by layer.

    ``neurons=None`` infers neuron layers from an ``.act_fn`` suffix; ``True`` forces neuron recording.
    """
    specs = []
    for path in expand(patterns):
        is_neuron = path.endswith(".act_fn") if neurons is None else neurons
        specs.append(LayerSpec(path=path, layer=layer_number(path), neurons=is_neuron))
    seen: dict[int, LayerSpec] = {}
    for spec in specs:
        if spec.layer in seen and seen[spec.layer].mlp_path != spec.mlp_path:
            raise LayerPatternError(f"two modules map to layer {spec.layer}: {seen[spec.layer].path}, {spec.path}")
        seen[spec.layer] = spec
    return sorted(seen.values(), key=lambda s: s.layer)


def parse_option(patterns: list[str] | tuple[str, ...] | str, neurons: bool | None = None) -> list[LayerSpec]:
    """:func:`parse` for user input: a bad pattern is a UsageError asking to fix ``--layer``."""
    try:
        return parse(patterns, neurons)
    except LayerPatternError as exc:
        raise UsageError(f"{exc}: fix --layer") from None


def compact(layers: Sequence[int] | None) -> str:
    """``[0,1,2,3,7]`` → ``'0-3,7'``."""
    if not layers:
        return ""
    nums = sorted(set(int(x) for x in layers))
    parts, start, prev = [], nums[0], nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(parts)
