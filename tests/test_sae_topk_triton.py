"""The Triton top-k kernel (langfeat.sae_topk_triton) against exact pre-activations and sparsify's encode: on a
CUDA device when there is one, otherwise on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1, set by
conftest.py before anything imports triton). Skipped without triton."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from test_sae_topk import inputs, make_sae

from langfeat import sae_topk_triton as tri
from langfeat.sae_topk import sae_topk

if not torch.cuda.is_available() and not tri.interpreted():
    pytest.skip("without a GPU the kernel needs TRITON_INTERPRET=1 before triton is imported (tests/conftest.py sets "
                "it)", allow_module_level=True)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# about one unit in the last place of each dtype, relative to a row's largest magnitude
ULP = {torch.float32: 2.0**-21, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}


def exact_pre(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """float64 pre-activations of the same (dtype) inputs: within rounding error of any fp32-accumulated GEMM."""
    with torch.no_grad():
        return torch.nn.functional.linear(x.double(), weight.double(), bias.double()).detach()


def check_topk(values: torch.Tensor, idx: torch.Tensor, pre: torch.Tensor, k: int, dtype: torch.dtype,
               clamp: bool = False) -> int:
    """Assert that (idx, values) are a top-k of the exact ``pre`` ``[N, M]`` (float64) up to the dtype's
    rounding: returns the rows whose latent set differs from ``torch.topk``'s (only where a near-tie at the
    k-th value allows it)."""
    n, m = pre.shape
    assert values.dtype == dtype and idx.dtype == torch.int64 and values.shape == idx.shape == (n, k)
    assert ((idx >= 0) & (idx < m)).all() and (idx.sort(dim=1).values.diff(dim=1) > 0).all()
    tol = ULP[dtype] * pre.abs().amax(dim=1, keepdim=True) * 2  # the GEMM's error bound, generously
    got = pre.gather(1, idx)
    want = got.clamp_min(0) if clamp else got
    assert (values.double() - want).abs().le(tol).all()  # each value is its latent's pre-activation
    ref = torch.topk(pre, k, dim=1)
    kth = ref.values[:, -1:]
    assert (got >= kth - tol).all()  # nothing selected below the k-th value (beyond rounding)
    above = pre > kth + tol  # every latent clearly above the k-th value is selected
    ours = torch.zeros_like(pre, dtype=torch.bool).scatter_(1, idx, True)
    assert torch.equal(ours & above, above)
    sorted_vals = values.double().sort(dim=1, descending=True).values
    ref_vals = ref.values.clamp_min(0) if clamp else ref.values
    assert (sorted_vals - ref_vals).abs().le(tol).all()  # the k largest values
    theirs = torch.zeros_like(ours).scatter_(1, ref.indices, True)
    return int((ours != theirs).any(dim=1).sum())


CASES = [  # rows, d, latents, k, span
    (37, 64, 512, 8, 256),
    (37, 64, 1000, 8, 256),  # latents not a multiple of the tile or of the span
    (37, 64, 1024, 32, 4096),  # one span, k = 32
    (37, 48, 777, 20, 384),  # k not a power of two, d not a multiple of BLOCK_D
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}x{c[3]}")
def test_kernel_topk_of_exact_pre_activations(case, dtype):
    n, d, m, k, span = case
    g = torch.Generator().manual_seed(m + k)
    scale = torch.linspace(0.05, 2.0, n).unsqueeze(1)  # small rows: their top-k is negative
    x = (torch.randn(n, d, generator=g) * scale).to(dtype).to(DEVICE)
    w = torch.randn(m, d, generator=g).div(d**0.5).to(dtype).to(DEVICE)
    b = (torch.randn(m, generator=g) * 0.5 - 2.5).to(dtype).to(DEVICE)
    values, idx = tri.topk_triton(x, w, b, k, span=span)
    pre = exact_pre(x, w, b).cpu()
    differing = check_topk(values.cpu(), idx.cpu(), pre, k, dtype)
    if dtype == torch.float32:
        assert differing == 0  # no near-ties at the k-th value in these inputs
    assert (values < 0).any() and (values > 0).any()  # negatives are ordered too (the raw, unclamped top-k)


def test_candidates_hold_every_span_top_k():
    n, d, m, k, span = 5, 32, 600, 4, 256
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g), torch.randn(m, generator=g)
    cand = tri.tile_topk(x.to(DEVICE), w.to(DEVICE), b.to(DEVICE), k, span=span).cpu()
    assert cand.shape == (n, 3 * 4)  # ceil(600 / 256) spans of K = 4
    values, idx = tri.unpack(cand, torch.float32)
    pre = exact_pre(x, w, b)
    for s in range(3):
        block = slice(s * 4, s * 4 + 4)
        want = torch.topk(pre[:, s * span : (s + 1) * span], k, dim=1).indices + s * span
        assert torch.equal(idx[:, block].sort(dim=1).values, want.sort(dim=1).values)
        assert torch.allclose(values[:, block].double(), pre.gather(1, idx[:, block]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("trained_like", [False, True], ids=["random", "trained-like"])
def test_sae_path_matches_sparsify_encode(trained_like, dtype):
    d, m, k, n = 64, 1024, 16, 37
    sae = make_sae(d, m, k, dtype, trained_like=trained_like).to(DEVICE)
    x = inputs(sae, n, trained_like).to(DEVICE)
    with torch.inference_mode():
        ref = sae.encode(x)
        acts, idx = sae_topk(sae, x, triton=True)
        xin = x - sae.b_dec
    pre = exact_pre(xin, sae.encoder.weight, sae.encoder.bias).cpu()
    acts, idx = acts.cpu(), idx.cpu()
    differing = check_topk(acts, idx, pre, k, dtype, clamp=True)
    # against sparsify's own events (positive activations): the same latents except near-ties, close values
    ours = torch.zeros(n, m, dtype=torch.bool).scatter_(1, idx, acts > 0)
    theirs = torch.zeros(n, m, dtype=torch.bool).scatter_(1, ref.top_indices.cpu(), ref.top_acts.cpu() > 0)
    assert int((ours != theirs).any(dim=1).sum()) <= differing + (0 if dtype == torch.float32 else n // 10)
    ref_vals = ref.top_acts.cpu().double().sort(dim=1).values
    tol = ULP[dtype] * pre.abs().amax(dim=1, keepdim=True) * 2
    assert (acts.double().sort(dim=1).values - ref_vals).abs().le(tol).all()
    if trained_like:  # rows with fewer than k positive pre-activations: zeros in both, not events
        assert (ref.top_acts == 0).any() and torch.equal((acts == 0).sum(1), (ref.top_acts.cpu() == 0).sum(1))
    if dtype == torch.float32:
        assert differing == 0 and torch.equal(ours, theirs)


def test_cpu_ingestion_never_takes_the_kernel(monkeypatch):
    """With LANGFEAT_TOPK_TRITON=1 the CPU path stays today's: bit-identical to the dense top-k."""
    monkeypatch.setenv("LANGFEAT_TOPK_TRITON", "1")
    sae = make_sae(32, 512, 8, torch.float32)
    x = inputs(sae, 20, False)
    with torch.inference_mode():
        got = sae_topk(sae, x)
        want = sae_topk(sae, x, triton=False)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_bad_inputs():
    x, w, b = torch.zeros(4, 8), torch.zeros(16, 8), torch.zeros(16)
    with pytest.raises(ValueError, match="must share"):
        tri.tile_topk(x, w.double(), b, 4)
    with pytest.raises(ValueError, match="k=17"):
        tri.tile_topk(x, w, b, 17)
    with pytest.raises(ValueError, match="shapes do not match"):
        tri.tile_topk(x, w[:, :4], b, 4)
