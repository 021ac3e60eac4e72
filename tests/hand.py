"""Independent reference computations on the toy model: plain forward hooks on ``model.model.layers[n].mlp``
(or its ``act_fn``) capturing one text's outputs, then ``SparseCoder.encode`` on them, one text at a time, with
none of langfeat's batching, padding, hook or early-stop code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def capture(model, ids: torch.Tensor | Sequence[int], layers: Iterable[int], part: str = "mlp"
            ) -> dict[int, torch.Tensor]:
    """One forward of ``ids`` (a single text) with hooks on the MLP (``part='mlp'``) or its activation function
    (``part='act_fn'``) of each of ``layers``: ``{layer: output [T, width]}``."""
    ids = torch.as_tensor(ids).reshape(1, -1)
    outs: dict[int, torch.Tensor] = {}
    handles = []
    for layer in layers:
        module = model.model.layers[layer].mlp
        module = module.act_fn if part == "act_fn" else module
        handles.append(module.register_forward_hook(lambda m, a, o, k=layer: outs.__setitem__(k, o[0].detach())))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in handles:
            h.remove()
    return outs


def fired(sae, x: torch.Tensor) -> list[tuple[int, int, float]]:
    """``(pos, feature, act)`` of every top-k latent of ``sae.encode(x)`` whose float16 activation is > 0."""
    enc = sae.encode(x)
    acts = enc.top_acts.to(torch.float16)
    out = []
    for pos in range(acts.shape[0]):
        for a, f in zip(acts[pos].tolist(), enc.top_indices[pos].tolist(), strict=True):
            if a > 0:
                out.append((pos, f, a))
    return out


def fired_positions(model, tokenizer, saes: dict, texts: Sequence[str]
                    ) -> tuple[list[dict[tuple[int, int], list[int]]], list[list[int]]]:
    """Per text, ``{(layer, feature): sorted positions where it fired}``, and the token ids of each text."""
    out, ids_all = [], []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        ids_all.append(ids)
        outs = capture(model, ids, saes)
        positions: dict[tuple[int, int], list[int]] = {}
        for layer, sae in saes.items():
            for pos, f, _ in fired(sae, outs[layer]):
                positions.setdefault((layer, f), []).append(pos)
        out.append({k: sorted(v) for k, v in positions.items()})
    return out, ids_all


def vote(votes: dict[str, float]) -> str:
    """The language with the single highest vote, or 'unknown' for a tie or no vote at all."""
    best = max(votes.values())
    winners = [lang for lang, v in votes.items() if v == best]
    return winners[0] if len(winners) == 1 and any(v != 0 for v in votes.values()) else "unknown"
