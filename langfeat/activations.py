"""Batched forward with hooks: SAE events and per-unit aggregates, computed on the model's device.

One code path serves streaming ingestion and in-memory encoding. Texts are tokenized with the model's special
tokens (BOS at position 0, prepended when the tokenizer has a BOS but does not add it), right-padded with an
attention mask; padded positions are dropped before anything is encoded, so they cannot leak into events or
counts, and a causal model's real positions never attend to them. The forward stops once the last hooked
module has run. For each hooked MLP the **output** is SAE-encoded (the pairs of sparsify's ``encode``, computed
by :mod:`langfeat.sae_topk`); an event is a (token, latent) pair of the top-k with activation > 0 (in float16,
as stored). For ``mlp.act_fn`` modules the positive outputs are aggregated per neuron (no events: they are
dense), and with ``neuron_docs`` also per (document, neuron): the count and the sum of the positive outputs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from langfeat.errors import UsageError
from langfeat.layers import LayerSpec
from langfeat.models import bos_policy, get_module
from langfeat.sae_topk import sae_topk
from langfeat.store.writer import AGGREGATES

PRE_ACTS_BUDGET = 1 << 27  # elements of the dense pre-activation matrix per SAE encode call
# langfeat.sae_topk (same pairs as sparsify's encode, no ReLU pass, two-pass top-k on wide SAEs); 0: sparsify's
FAST_ENCODE = os.environ.get("LANGFEAT_FAST_ENCODE", "1") != "0"


class StopForward(Exception):
    """Raised by a hook to end the forward early (after the last module of interest has run)."""


@dataclass
class Aggregates:
    """Per-unit aggregates of one layer over positive activations (device tensors)."""

    tok_count: torch.Tensor
    doc_count: torch.Tensor
    act_sum: torch.Tensor
    act_max: torch.Tensor
    act_min: torch.Tensor

    @classmethod
    def zeros(cls, n: int, device: torch.device) -> Aggregates:
        """``n`` units before anything was seen (the initial values of :data:`langfeat.store.writer.AGGREGATES`)."""
        return cls(**{
            col: torch.full((n,), init, dtype=getattr(torch, dtype), device=device)
            for col, (dtype, init) in AGGREGATES.items()
        })

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The units that fired at least once: ``unit`` and the five aggregates."""
        fired = self.tok_count > 0
        unit = fired.nonzero().squeeze(1)
        return {
            "unit": unit.to(torch.int32).cpu().numpy(),
            "tok_count": self.tok_count[unit].cpu().numpy(),
            "doc_count": self.doc_count[unit].cpu().numpy(),
            "act_sum": self.act_sum[unit].cpu().numpy(),
            "act_max": self.act_max[unit].cpu().numpy(),
            "act_min": self.act_min[unit].cpu().numpy(),
        }


@dataclass
class BatchEvents:
    """Events of one layer for one batch (CPU numpy): batch-local doc index, pos, feature, act (float16)."""

    doc: np.ndarray
    pos: np.ndarray
    feature: np.ndarray
    act: np.ndarray


class PendingEvents:
    """Events of one layer for one batch on their way to host memory; :meth:`result` waits for them.

    On CUDA the device tensors are copied into pinned host buffers on a side stream (asynchronously: the next
    layers' kernels are queued meanwhile) and :meth:`result` waits on the copy's event, typically in a writer
    thread. On CPU the tensors are the result (no copy).
    """

    def __init__(self, doc: torch.Tensor, pos: torch.Tensor, feature: torch.Tensor, act: torch.Tensor,
                 copier: HostCopier | None = None):
        if copier is None or doc.device.type != "cuda":
            self._ints = [doc.to(torch.int32).cpu(), pos.to(torch.int32).cpu(), feature.to(torch.int32).cpu()]
            self._act = act.cpu()
            self._done = None
        else:
            ints = torch.stack([doc.to(torch.int32), pos.to(torch.int32), feature.to(torch.int32)])
            (host_ints, self._act), self._done = copier.copy([ints, act])
            self._ints = list(host_ints)

    def result(self) -> BatchEvents:
        """The events as numpy arrays (waits for the copy)."""
        if self._done is not None:
            self._done.synchronize()
            self._done = None
        doc, pos, feature = (t.numpy() for t in self._ints)
        return BatchEvents(doc=doc, pos=pos, feature=feature, act=self._act.numpy())


class HostCopier:
    """Device-to-host copies into pinned buffers on a side stream of ``device`` (CUDA only)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def copy(self, tensors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], Any]:
        """Start copying ``tensors`` (produced on the current stream); return the host tensors and a CUDA event
        that is done when they hold the data."""
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
            for h, t in zip(host, tensors, strict=True):
                h.copy_(t, non_blocking=True)
                t.record_stream(self.stream)  # keep the device memory until the copy has read it
            done = torch.cuda.Event()
            done.record(self.stream)
        return host, done


def output_tensor(output: Any) -> torch.Tensor:
    """A module's output tensor (the first element of a tuple output)."""
    return output[0] if isinstance(output, (tuple, list)) else output


Hook = Callable[[torch.nn.Module, tuple, Any], Any]


@contextlib.contextmanager
def forward_hooks(model, hooks: Iterable[tuple[str | torch.nn.Module, Hook]]) -> Iterator[None]:
    """Register forward hooks (module path or module, hook) on ``model`` for the block; removed afterwards."""
    handles = []
    try:
        for target, hook in hooks:
            module = get_module(model, target) if isinstance(target, str) else target
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (``[len(seqs), longest]``, long) of token-id lists."""
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, x in enumerate(seqs):
        ids[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return ids.to(device), mask.to(device)


class Probe:
    """Reads module outputs during a forward and stops the forward once every reader has run.

    ``readers`` are ``(module path, fn(output tensor))`` pairs; each module must run once per forward.
    """

    def __init__(self, model, readers: Sequence[tuple[str, Callable[[torch.Tensor], None]]]):
        self.model = model
        self.readers = list(readers)
        self.modules = [get_module(model, path) for path, _ in self.readers]
        self._left = 0

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Register the readers' hooks for the duration of the block (the model is left as it was)."""

        def make(fn: Callable[[torch.Tensor], None]) -> Hook:
            def hook(_module, _args, output):
                fn(output_tensor(output))
                self._left -= 1
                if self._left == 0:
                    raise StopForward

            return hook

        with forward_hooks(self.model, [(m, make(fn)) for m, (_, fn) in zip(self.modules, self.readers, strict=True)]):
            yield

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
        """One forward without KV cache, in inference mode, up to the last reader (call inside :meth:`attached`)."""
        if not self.readers:
            return
        self._left = len(self.readers)
        with torch.inference_mode(), contextlib.suppress(StopForward):
            self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)


def mlp_outputs(model, seqs: Sequence[Sequence[int]], layers: Sequence[int], batches: Sequence[Sequence[int]],
                sink: Callable[[int, torch.Tensor], None], pad_id: int = 0, bos_id: int | None = None,
                on_batch: Callable[[int], None] | None = None) -> int:
    """Run the token-id lists ``seqs`` through ``model`` in ``batches`` (lists of indices into ``seqs``, e.g. from
    :func:`plan_batches`) and hand ``sink(layer, out)`` each layer's MLP output at the real positions of the batch,
    ``[positions, d_model]`` in batch order (padding and a leading BOS left out); ``on_batch(n_seqs)`` after each
    batch. Returns the number of positions handed per layer. The one loop behind the DiffMean means and the
    demo's held-out SAE measurements."""
    from langfeat.layers import mlp_path
    from langfeat.models import base_prefix

    prefix = base_prefix(model)
    device = next(model.parameters()).device
    keep: list[torch.Tensor] = []

    def reader(layer: int) -> Callable[[torch.Tensor], None]:
        return lambda out: sink(layer, out[keep[-1]])

    n_positions = 0
    probe = Probe(model, [(mlp_path(prefix, layer), reader(layer)) for layer in layers])
    with probe.attached():
        for idx in batches:
            input_ids, mask = pad_batch([seqs[i] for i in idx], pad_id, device)
            sel = mask.bool()
            if bos_id is not None:
                sel[:, 0] &= input_ids[:, 0] != bos_id
            keep.append(sel)
            n_positions += int(sel.sum())
            probe.run(input_ids, mask)
            if on_batch is not None:
                on_batch(len(idx))
    return n_positions


def probe_widths(model, paths: Sequence[str], token_id: int = 0) -> dict[str, int]:
    """The last dimension of each module's output, from a one-token forward that stops after the last one."""
    widths: dict[str, int] = {}

    def reader(path: str) -> Callable[[torch.Tensor], None]:
        return lambda out: widths.__setitem__(path, int(out.shape[-1]))

    probe = Probe(model, [(path, reader(path)) for path in paths])
    device = next(model.parameters()).device
    with probe.attached():
        probe.run(torch.tensor([[token_id]], device=device))
    return widths


class Encoder:
    """Encodes batches of token ids: SAE events per layer and running per-unit aggregates.

    ``saes`` maps a layer number to its sparsify SAE (for specs without ``neurons``); specs with ``neurons``
    hook ``mlp.act_fn``. ``neuron_events`` additionally returns neuron activations > 0 as events (in-memory use);
    ``neuron_docs`` returns, under key ``('neuron_docs', layer)``, one row per (document, neuron) with an output > 0
    as :class:`BatchEvents` whose ``pos`` is the count of those tokens and ``act`` their sum (float32), sorted by
    (document, neuron).
    """

    def __init__(
        self,
        model,
        tokenizer,
        specs: Sequence[LayerSpec],
        saes: Mapping[int, Any],
        neuron_layers: Sequence[int] = (),
        max_length: int | None = None,
        neuron_events: bool = False,
        neuron_docs: bool = False,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.neuron_events = neuron_events
        self.neuron_docs = neuron_docs
        self.device = next(model.parameters()).device
        by_layer = {s.layer: s for s in specs}
        self.sae_layers = sorted(saes)
        self.neuron_layers = sorted(neuron_layers)
        self.saes = dict(saes)
        self.hooks: list[tuple[str, int, str]] = []  # (module path, layer, 'sae' | 'neuron')
        for layer in self.sae_layers:
            self.hooks.append((by_layer[layer].mlp_path, layer, "sae"))
        for layer in self.neuron_layers:
            self.hooks.append((by_layer[layer].act_fn_path, layer, "neuron"))
        self._probe = Probe(model, [(path, self._reader(layer, kind)) for path, layer, kind in self.hooks])
        if len({id(m) for m in self._probe.modules}) != len(self.hooks):
            raise UsageError("two --layer entries hook the same module: list each module once")
        adds_bos, prepend_bos = bos_policy(tokenizer)
        self.bos = adds_bos or prepend_bos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.stats: dict[tuple[str, int], Aggregates] = {}
        self._ctx: dict[str, Any] = {}
        self._copier: HostCopier | None = None

    # -- aggregates ----------------------------------------------------------------------------------------
    def _agg(self, kind: str, layer: int, n: int) -> Aggregates:
        key = (kind, layer)
        if key not in self.stats:
            self.stats[key] = Aggregates.zeros(n, self.device)
        return self.stats[key]

    def take_stats(self) -> dict[tuple[str, int], dict[str, np.ndarray]]:
        """The aggregates since the last call (``(kind, layer) -> columns``), then reset them."""
        out = {key: agg.to_numpy() for key, agg in self.stats.items()}
        self.stats = {}
        return out

    # -- hooks ---------------------------------------------------------------------------------------------
    def _sae_hook(self, layer: int, out: torch.Tensor) -> None:
        ctx = self._ctx
        sae = self.saes[layer]
        x = out[ctx["valid"]].to(sae.dtype)  # [N, d]: real positions only, row-major (doc, pos)
        m = int(sae.num_latents)
        step = max(1, PRE_ACTS_BUDGET // m)
        acts, idx = [], []
        for lo in range(0, x.shape[0], step):  # the same row chunks either way: bit-identical pre-activations
            if FAST_ENCODE:
                a, i = sae_topk(sae, x[lo : lo + step])
            else:
                enc = sae.encode(x[lo : lo + step])
                a, i = enc.top_acts, enc.top_indices
                del enc
            acts.append(a)
            idx.append(i)
        top_acts = torch.cat(acts) if len(acts) > 1 else acts[0]
        top_idx = torch.cat(idx) if len(idx) > 1 else idx[0]
        top_idx, order = top_idx.sort(dim=1)
        act16 = top_acts.gather(1, order).to(torch.float16)
        r, c = (act16 > 0).nonzero(as_tuple=True)
        feature = top_idx[r, c]
        act = act16[r, c]
        doc = ctx["rows_b"][r]
        agg = self._agg("sae", layer, m)
        agg.tok_count += torch.bincount(feature, minlength=m)
        seen = torch.zeros((ctx["n_docs"], m), dtype=torch.bool, device=x.device)
        seen[doc, feature] = True
        agg.doc_count += seen.sum(0)
        act32 = act.float()
        agg.act_sum.index_add_(0, feature, act32.double())
        agg.act_max.scatter_reduce_(0, feature, act32, "amax")
        agg.act_min.scatter_reduce_(0, feature, act32, "amin")
        ctx["events"][("sae", layer)] = (doc, ctx["rows_t"][r], feature, act)

    def _neuron_hook(self, layer: int, out: torch.Tensor) -> None:
        ctx = self._ctx
        valid = ctx["valid"]
        a = out.float()
        positive = (a > 0) & valid.unsqueeze(-1)  # [B, T, d]
        agg = self._agg("neuron", layer, a.shape[-1])
        agg.tok_count += positive.sum((0, 1))
        agg.doc_count += positive.any(1).sum(0)
        agg.act_sum += torch.where(positive, a, 0.0).sum((0, 1), dtype=torch.float64)
        agg.act_max = torch.maximum(agg.act_max, torch.where(positive, a, -torch.inf).amax((0, 1)))
        agg.act_min = torch.minimum(agg.act_min, torch.where(positive, a, torch.inf).amin((0, 1)))
        if self.neuron_docs:  # per (document, neuron) over the same positions: count and sum of the outputs > 0
            n = positive.sum(1)  # [B, d]
            b, c = n.nonzero(as_tuple=True)  # row-major: sorted by (document, neuron)
            s = torch.where(positive, a, 0.0).sum(1, dtype=torch.float64)[b, c].float()
            ctx["events"][("neuron_docs", layer)] = (b, n[b, c], c, s)
        if self.neuron_events:
            flat = a[valid]
            r, c = (flat > 0).nonzero(as_tuple=True)
            ctx["events"][("neuron", layer)] = (ctx["rows_b"][r], ctx["rows_t"][r], c, flat[r, c].to(torch.float16))

    def _reader(self, layer: int, kind: str) -> Callable[[torch.Tensor], None]:
        fn = self._sae_hook if kind == "sae" else self._neuron_hook
        return lambda out: fn(layer, out)

    def hooked(self) -> contextlib.AbstractContextManager[None]:
        """Register the hooks for the duration of the block (the model is left as it was)."""
        return self._probe.attached()

    def encode_batch(self, batch: Sequence[Sequence[int]]) -> dict[tuple[str, int], BatchEvents]:
        """Run one batch of token-id lists (each non-empty); return its events and update the aggregates.

        Call inside :meth:`hooked`.
        """
        return {key: pending.result() for key, pending in self.encode_batch_async(batch).items()}

    def encode_batch_async(self, batch: Sequence[Sequence[int]]) -> dict[tuple[str, int], PendingEvents]:
        """:meth:`encode_batch` whose events are still being copied to the host (on CUDA); call ``result()``."""
        ids, mask = pad_batch(batch, self.pad_id, self.device)
        valid = mask.bool()
        rows_b, rows_t = valid.nonzero(as_tuple=True)
        self._ctx = {"valid": valid, "rows_b": rows_b, "rows_t": rows_t, "n_docs": len(batch), "events": {}}
        self._probe.run(ids, mask)
        if self.device.type == "cuda" and self._copier is None:
            self._copier = HostCopier(self.device)
        out = {key: PendingEvents(*ev, copier=self._copier) for key, ev in self._ctx["events"].items()}
        self._ctx = {}
        return out


def plan_batches(lengths: Sequence[int], batch: int, max_tokens: int | None = None) -> list[list[int]]:
    """Group document indices into batches of similar length (longest first), deterministic.

    Documents of length 0 are left out. ``max_tokens`` caps ``len(batch) * longest`` (padding included).
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch or (max_tokens is not None and (len(cur) + 1) * longest > max_tokens)):
            out.append(sorted(cur))
            cur = []
        cur.append(i)
    if cur:
        out.append(sorted(cur))
    return out
