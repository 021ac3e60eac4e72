"""SAE top-k encoding with a Triton kernel that never materialises the ``[rows, latents]`` pre-activations.

:func:`tile_topk` computes ``pre = x @ W_enc.T + b_enc`` block by block and keeps only candidates per row:

- Each program owns ``BLOCK_M`` rows and a span of ``SPAN`` consecutive latents, walked in tiles of ``BLOCK_N``
  latents. A tile is a GEMM over ``d_model`` in chunks of ``BLOCK_D`` (``tl.dot``, fp32 accumulation; fp32
  inputs with ``input_precision="ieee"``, no TF32), plus the bias, rounded once to the SAE's dtype as
  ``F.linear`` returns it (bf16: round to nearest even, done on the integer bits).
- Each value is packed with its latent into one int64 ordered like the value (the fp32 bits mapped to an
  order-preserving int32 in the high word, the latent in the low word: all keys of a row differ). The running
  k largest keys of the span are updated by rounds of max-and-mask over the tile, only as many rounds as the
  most keys of one row above its current k-th (``tl.topk``/``tl.sort`` are bitonic networks: exact too, but
  about 300 times slower under the interpreter, which the tests run: 30 s for one 64 x 128 block).
- Only ``[rows, spans * K]`` candidates are written (K: k rounded up to a power of two; 1,024 int64 per row at
  131,072 latents and k=32, against 131,072 dense values); :func:`topk_triton` selects each row's top-k among
  them with ``torch.topk`` (the spans' top-k together always hold the row's top-k) and unpacks value and latent
  exactly.

Exactness against ``SparseCoder.encode`` in the same dtype: ``x - b_dec`` is the same torch operation, so the
kernel reads bit-identical inputs, and the selection over the kernel's values is exact (the k largest, ties
broken towards the larger latent). The GEMM sums in another order than cuBLAS or the CPU's ``F.linear``, so a
pre-activation can differ in its last bits: in fp32 by rounding error (about 1e-6 relative), in bf16/fp16 by
at most one unit in the last place where the fp32 sums fall on different sides of a rounding boundary. The
selected latents are thus sparsify's except where two pre-activations are that close at the k-th value (exact
ties, near-ties); the activations are the kernel's values, within that error of sparsify's. Nothing beyond the
input is bit-identical by construction. ReLU is folded as in :mod:`langfeat.sae_topk` (top-k of the raw
pre-activations, clamped at 0; zeros are not events).

The path is opt-in (``LANGFEAT_TOPK_TRITON=1``) and taken only for CUDA tensors with triton importable
(:func:`langfeat.sae_topk.use_triton`); CPU ingestion never takes it, so its stores stay bit-identical to
sparsify's encode. The kernel runs on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before
this module is imported); there bf16/fp16 tiles are widened to fp32 before ``tl.dot`` (the interpreter's dot
misreads bf16; the products are the same, exact in fp32). It has not been measured on a GPU.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is not installed
    triton = None
    tl = None

BLOCK_M = 64  # rows per program
BLOCK_N = 128  # latents per tile
BLOCK_D = 64  # d_model per tl.dot step
SPAN = 4096  # latents per program: a row gets ceil(latents / SPAN) * K candidates
NUM_WARPS = 8  # the fp32 tile and its int64 keys are 96 KiB of registers per program (untuned, like the blocks)


def available() -> bool:
    """Whether triton is importable."""
    return triton is not None


def interpreted() -> bool:
    """Whether the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1`` when this module was imported)."""
    return available() and type(_tile_topk_kernel).__name__ == "InterpretedFunction"


if triton is not None:
    _INT64_MIN: tl.constexpr = tl.constexpr(-(2**63))
    _INT64_MAX: tl.constexpr = tl.constexpr(2**63 - 1)

    @triton.jit
    def _tile_topk_kernel(
        x_ptr, w_ptr, b_ptr, out_ptr, N, M, D, span, k,
        stride_xn, stride_xd, stride_wm, stride_wd, stride_on,
        K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
        ROUND: tl.constexpr, UPCAST: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        slot = tl.arange(0, K)
        # the running k largest keys of each row (slots >= k hold the maximum: never the minimum, never replaced)
        run = tl.where(slot[None, :] < k, tl.full((BLOCK_M, K), _INT64_MIN, tl.int64), _INT64_MAX)
        lo = pid_s * span
        hi = tl.minimum(lo + span, M)
        for n0 in range(lo, hi, BLOCK_N):
            cols = n0 + offs_n
            col_ok = cols < hi
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + offs_d
                d_ok = dd < D
                xt = tl.load(x_ptr + rows[:, None] * stride_xn + dd[None, :] * stride_xd,
                             mask=row_ok[:, None] & d_ok[None, :], other=0.0)
                wt = tl.load(w_ptr + cols[None, :] * stride_wm + dd[:, None] * stride_wd,
                             mask=col_ok[None, :] & d_ok[:, None], other=0.0)
                if UPCAST:  # the interpreter's tl.dot reads bf16 as raw bits; the fp32 products are the same
                    xt = xt.to(tl.float32)
                    wt = wt.to(tl.float32)
                if ROUND == 0:  # fp32: no TF32
                    acc = tl.dot(xt, wt, acc, input_precision="ieee")
                else:
                    acc = tl.dot(xt, wt, acc)
            bias = tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            value = acc + bias[None, :]
            bits = value.to(tl.int32, bitcast=True)
            if ROUND == 1:  # to bfloat16, round to nearest even, in integers (exact in the interpreter too)
                bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & -65536
            elif ROUND == 2:  # to float16
                bits = value.to(tl.float16).to(tl.float32).to(tl.int32, bitcast=True)
            key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # order-preserving int32 of the float
            packed = (key.to(tl.int64) << 32) | cols.to(tl.int64)[None, :]
            packed = tl.where(row_ok[:, None] & col_ok[None, :], packed, _INT64_MIN)
            # merge: only keys above a row's current k-th can enter; as many rounds as the most such keys
            kth = tl.min(run, 1)
            rounds = tl.minimum(tl.max(tl.sum((packed > kth[:, None]).to(tl.int32), 1), 0), k)
            for _ in range(rounds):
                best = tl.max(packed, 1)
                kth = tl.min(run, 1)
                pos = tl.argmin(run, 1)
                take = best > kth
                run = tl.where((slot[None, :] == pos[:, None]) & take[:, None], best[:, None], run)
                packed = tl.where(packed == best[:, None], _INT64_MIN, packed)
        run = tl.where(slot[None, :] < k, run, _INT64_MIN)
        outs = pid_s * K + slot
        tl.store(out_ptr + rows[:, None] * stride_on + outs[None, :], run, mask=row_ok[:, None])


_ROUND = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}  # how the kernel rounds a value to the dtype


def tile_topk(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: int, span: int = SPAN,
              block_m: int = BLOCK_M, block_n: int = BLOCK_N, block_d: int = BLOCK_D) -> torch.Tensor:
    """The packed int64 candidates ``[N, spans * K]`` of ``x @ weight.T + bias`` (``x`` ``[N, D]``, ``weight``
    ``[M, D]``, ``bias`` ``[M]``, one dtype): each span's K largest per row, K = k rounded up to a power of two.
    Padding slots hold int64's minimum."""
    if triton is None:
        raise RuntimeError("the Triton top-k needs triton: pip install triton")
    if x.dtype not in _ROUND or weight.dtype != x.dtype or bias.dtype != x.dtype:
        raise ValueError(f"x, weight and bias must share one of {list(_ROUND)}, got {x.dtype}, "
                         f"{weight.dtype}, {bias.dtype}")
    if not x.is_cuda and not interpreted():
        raise RuntimeError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before importing "
                           "langfeat.sae_topk_triton")
    n, d = x.shape
    m = weight.shape[0]
    if weight.shape[1] != d or bias.shape != (m,):
        raise ValueError(f"shapes do not match: x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias "
                         f"{tuple(bias.shape)}")
    if not 0 < k <= m:
        raise ValueError(f"k={k} must be in 1..{m} (the number of latents)")
    kk = triton.next_power_of_2(k)
    span = max(span, block_n)
    spans = triton.cdiv(m, span)
    out = torch.empty((n, spans * kk), dtype=torch.int64, device=x.device)
    if n == 0:
        return out
    grid = (triton.cdiv(n, block_m), spans)
    _tile_topk_kernel[grid](
        x, weight, bias, out, n, m, d, span, k,
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), out.stride(0),
        K=kk, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        ROUND=_ROUND[x.dtype], UPCAST=interpreted() and x.dtype != torch.float32, num_warps=NUM_WARPS,
    )
    return out


def unpack(packed: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Values (in ``dtype``, exact: the kernel rounded them to it) and latents (int64) of packed keys."""
    key = (packed >> 32).to(torch.int32)
    bits = torch.where(key >= 0, key, key ^ 0x7FFFFFFF)
    return bits.view(torch.float32).to(dtype), packed & 0xFFFFFFFF


def topk_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: int,
                **blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of ``x @ weight.T + bias`` (in ``x``'s dtype) and their latents, unsorted,
    without the dense matrix: :func:`tile_topk`, then ``torch.topk`` over the candidates."""
    cand = tile_topk(x, weight, bias, k, **blocks)
    best = torch.topk(cand, k, dim=1, sorted=False).values
    return unpack(best, x.dtype)


def sae_topk_triton(sae, x: torch.Tensor, **blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(top_acts, top_indices)`` of a sparsify TopK SAE's ``encode(x)`` through the kernel (see the module)."""
    if not getattr(sae.cfg, "transcode", False):
        x = x - sae.b_dec
    values, indices = topk_triton(x.contiguous(), sae.encoder.weight, sae.encoder.bias, int(sae.cfg.k), **blocks)
    return values.clamp_min_(0), indices
