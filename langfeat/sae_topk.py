"""SAE top-k encoding without sparsify's separate ReLU pass and without a full-width ``torch.topk``.

``sae_topk(sae, x)`` returns the same (activation, latent) pairs as ``SparseCoder.encode(x)`` (``top_acts``,
``top_indices``) for TopK SAEs, in the same dtype:

- The pre-activations come from the same ``F.linear(x - b_dec, W_enc, b_enc)`` call on the same rows, so every
  value is bit-identical to sparsify's.
- ReLU is folded: the top-k of the raw pre-activations, clamped at 0, has the same values as the top-k of
  ``relu(pre)``. Where a row has fewer than k positive pre-activations both hold zeros in the remaining slots
  (sparsify picks arbitrary zero-valued latents, this picks the largest negative ones); zeros are not events.
- Wide SAEs use a two-pass selection (:func:`topk_rows` with ``group``): the maximum of each group of ``group``
  consecutive latents, the top-k groups by that maximum, then the exact top-k over those ``k * group``
  candidates. The top-k groups always contain a top-k of the row (if an element of the top-k lay in another
  group, that group's maximum would be at least the k-th group maximum), so the selected values are exactly the
  row's k largest, ties included.

With ``LANGFEAT_TOPK_TRITON=1``, CUDA inputs and triton installed, :func:`sae_topk` runs the Triton kernel of
:mod:`langfeat.sae_topk_triton` instead (no dense pre-activations; same pairs up to the last bits of the GEMM,
see there). Off by default: it has not been measured on a GPU. CPU inputs never take it.

Ties: where several latents share the k-th largest value, which of them is selected may differ from
``torch.topk`` over the whole row (its choice among equal values is unspecified too). Values never differ.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

GROUP = 32  # latents per group of the two-pass selection
GROUPED_MIN_LATENTS = 32768  # narrower SAEs use one torch.topk (measured on CPU: benchmarks/RESULTS.md)


def default_group(n_latents: int, k: int) -> int | None:
    """The group size :func:`sae_topk` uses for ``n_latents`` (None: one ``torch.topk`` over the row).

    ``LANGFEAT_TOPK_GROUP`` overrides it (0 disables the two-pass selection), for benchmarking.
    """
    env = os.environ.get("LANGFEAT_TOPK_GROUP")
    group = int(env) if env else (GROUP if n_latents >= GROUPED_MIN_LATENTS else 0)
    if group <= 1 or n_latents % group or n_latents // group <= k:
        return None
    return group


def topk_rows(pre: torch.Tensor, k: int, group: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of ``pre`` ``[N, M]`` and their column indices (int64), unsorted.

    With ``group`` (dividing M, M / group > k) the selection runs in two passes over groups of ``group`` columns;
    the values are exactly those of ``torch.topk(pre, k)``, the indices may differ only among equal values.
    """
    if group is None or group <= 1:
        values, indices = torch.topk(pre, k, dim=1, sorted=False)
        return values, indices
    n, m = pre.shape
    if m % group or m // group <= k:
        raise ValueError(f"group {group} must divide the {m} columns into more than k={k} groups")
    grouped = pre.reshape(n, m // group, group)
    best = torch.topk(grouped.amax(dim=2), k, dim=1, sorted=False).indices  # [N, k] group numbers
    cand = grouped.gather(1, best.unsqueeze(2).expand(n, k, group)).view(n, k * group)
    values, pick = torch.topk(cand, k, dim=1, sorted=False)
    indices = best.gather(1, pick // group) * group + pick % group
    return values, indices


def supports(sae: Any) -> bool:
    """Whether :func:`sae_topk` reproduces ``sae.encode`` (a sparsify TopK SAE with an encoder and bias)."""
    cfg = getattr(sae, "cfg", None)
    enc = getattr(sae, "encoder", None)
    return (
        cfg is not None and getattr(cfg, "activation", "topk") == "topk" and isinstance(enc, torch.nn.Linear)
        and enc.bias is not None
    )


def use_triton(x: torch.Tensor) -> bool:
    """Whether :func:`sae_topk` runs the Triton kernel for ``x``: ``LANGFEAT_TOPK_TRITON=1`` (read at each call),
    ``x`` on a CUDA device and triton importable."""
    if os.environ.get("LANGFEAT_TOPK_TRITON", "0") != "1" or not x.is_cuda:
        return False
    from langfeat import sae_topk_triton

    return sae_topk_triton.available()


def sae_topk(sae: Any, x: torch.Tensor, group: int | str | None = "auto",
             triton: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(top_acts, top_indices)`` of ``sae.encode(x)`` (``x`` ``[N, d_in]`` in the SAE's dtype), see the module.

    ``group``: "auto" (:func:`default_group`), None (one ``torch.topk``) or a group size. ``triton``: None
    (:func:`use_triton`) or whether to run the Triton kernel (True on CPU tensors needs Triton's interpreter).
    SAEs that :func:`supports` rejects go through ``sae.encode``.
    """
    if not supports(sae):
        enc = sae.encode(x)
        return enc.top_acts, enc.top_indices
    if use_triton(x) if triton is None else triton:
        from langfeat.sae_topk_triton import sae_topk_triton

        return sae_topk_triton(sae, x)
    k = int(sae.cfg.k)
    if not getattr(sae.cfg, "transcode", False):
        x = x - sae.b_dec
    pre = F.linear(x, sae.encoder.weight, sae.encoder.bias)
    if group == "auto":
        group = default_group(pre.shape[1], k)
    values, indices = topk_rows(pre, k, group)  # type: ignore[arg-type]
    del pre
    return values.clamp_min_(0), indices
