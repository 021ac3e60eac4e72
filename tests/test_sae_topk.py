"""langfeat.sae_topk against sparsify's SparseCoder.encode: the same (latent, activation) pairs in the same dtype,
on random and on trained-like inputs, with the ReLU folded and the two-pass (grouped) selection; and the fp32 CPU
ingestion store identical to the one sparsify's encode produces."""

from __future__ import annotations

import hashlib

import pytest
import torch

from langfeat.models import import_sparsify
from langfeat.sae_topk import default_group, sae_topk, supports, topk_rows


def make_sae(d: int, m: int, k: int, dtype: torch.dtype, seed: int = 0, trained_like: bool = False):
    """A sparsify TopK SAE; ``trained_like``: encoder rows are a unit-norm dictionary, bias negative."""
    import_sparsify()
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(seed)
    sae = SparseCoder(d, SparseCoderConfig(num_latents=m, k=k)).eval()
    with torch.no_grad():
        if trained_like:
            atoms = torch.nn.functional.normalize(torch.randn(m, d), dim=1)
            sae.encoder.weight.copy_(atoms)
            # about 3.5 standard deviations of an unrelated atom's pre-activation on the inputs below: a row
            # has about k positive pre-activations, some fewer
            sae.encoder.bias.copy_(-(3.2 + 0.6 * torch.rand(m)) * 6.9 / d**0.5)
            sae.W_dec.copy_(atoms)
            sae.b_dec.normal_(0.0, 0.02)
        else:
            sae.encoder.bias.normal_(0.0, 0.05)
            sae.b_dec.normal_(0.0, 0.05)
    return sae.to(dtype)


def inputs(sae, n: int, trained_like: bool, seed: int = 1) -> torch.Tensor:
    """Random rows, or sparse combinations of a few of the SAE's atoms plus noise (what an SAE is trained on)."""
    g = torch.Generator().manual_seed(seed)
    d = int(sae.d_in)
    if not trained_like:
        return torch.randn(n, d, generator=g).to(sae.dtype)
    atoms = sae.W_dec.float()
    which = torch.randint(0, atoms.shape[0], (n, 6), generator=g)
    scale = torch.empty(n, 6).exponential_(1.0, generator=g) * 2.0
    x = (atoms[which] * scale.unsqueeze(2)).sum(1) + 0.05 * torch.randn(n, d, generator=g)
    return x.to(sae.dtype)


def check_same_pairs(acts: torch.Tensor, idx: torch.Tensor, ref) -> int:
    """Assert that (idx, acts) are sparsify's top-k pairs up to exact ties; return the rows with a tie at the
    k-th value (where the index sets may legitimately differ)."""
    pre = ref.pre_acts  # sparsify's ReLU'd pre-activations [N, M]
    assert acts.dtype == ref.top_acts.dtype and idx.dtype == torch.int64 and acts.shape == ref.top_acts.shape
    # the same values, exactly
    assert torch.equal(acts.sort(dim=1).values, ref.top_acts.sort(dim=1).values)
    # every pair is a real (latent, activation) pair of the row, each latent once
    assert torch.equal(pre.gather(1, idx), acts)
    assert (idx.sort(dim=1).values.diff(dim=1) > 0).all()
    # the latents above the k-th value are the same; below it nothing is selected
    kth = ref.top_acts.min(dim=1, keepdim=True).values
    ours = torch.zeros_like(pre, dtype=torch.bool).scatter_(1, idx, True)
    theirs = torch.zeros_like(pre, dtype=torch.bool).scatter_(1, ref.top_indices, True)
    above = pre > kth
    assert torch.equal(ours & above, above) and torch.equal(theirs & above, above)
    tied = ((pre == kth).sum(1) > (ref.top_acts == kth).sum(1)) & (kth.squeeze(1) > 0)
    positive_same = ((ours & (pre > 0)) == (theirs & (pre > 0))).all(1)
    assert positive_same[~tied].all()  # outside ties at a positive k-th value the events are identical
    return int(tied.sum())


CASES = [  # d, latents, k, rows
    (64, 4096, 16, 256),
    (32, 32768, 8, 128),  # wide: the grouped selection by default
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("trained_like", [False, True], ids=["random", "trained-like"])
@pytest.mark.parametrize("shape", CASES, ids=lambda s: f"{s[1]}x{s[2]}")
def test_same_pairs_as_sparsify(shape, trained_like, dtype):
    d, m, k, n = shape
    sae = make_sae(d, m, k, dtype, trained_like=trained_like)
    x = inputs(sae, n, trained_like)
    with torch.inference_mode():
        ref = sae.encode(x)
        ties = {}
        for group in ("auto", None, 16, 64):
            acts, idx = sae_topk(sae, x, group=group)
            ties[group] = check_same_pairs(acts, idx, ref)
    if trained_like:  # a negative bias leaves rows with fewer than k positive pre-activations: zeros are kept
        assert (ref.top_acts == 0).any()
    if dtype == torch.float32:
        assert max(ties.values()) == 0  # no exact ties at a positive k-th value in these fp32 inputs


def test_fp16_when_the_cpu_has_it():
    sae = make_sae(32, 2048, 8, torch.float16)
    x = inputs(sae, 64, False)
    with torch.inference_mode():
        ref = sae.encode(x)
        acts, idx = sae_topk(sae, x, group=32)
    check_same_pairs(acts, idx, ref)


def test_grouped_selection_with_heavy_ties():
    g = torch.Generator().manual_seed(3)
    pre = torch.randint(-3, 4, (64, 1024), generator=g).float()  # seven distinct values: ties everywhere
    ref_values = torch.topk(pre, 10, dim=1).values
    for group in (8, 32, 64):
        values, idx = topk_rows(pre, 10, group)
        assert torch.equal(values.sort(dim=1, descending=True).values, ref_values)
        assert torch.equal(pre.gather(1, idx), values)
        assert (idx.sort(dim=1).values.diff(dim=1) > 0).all()


def test_group_choice_and_bad_groups(monkeypatch):
    monkeypatch.delenv("LANGFEAT_TOPK_GROUP", raising=False)
    assert default_group(131072, 32) == 32 and default_group(4096, 32) is None
    assert default_group(32768 + 8, 8) is None  # not a multiple of the group
    monkeypatch.setenv("LANGFEAT_TOPK_GROUP", "0")
    assert default_group(131072, 32) is None
    monkeypatch.setenv("LANGFEAT_TOPK_GROUP", "64")
    assert default_group(8192, 32) == 64 and default_group(2048, 32) is None  # 32 groups <= k
    with pytest.raises(ValueError, match="must divide"):
        topk_rows(torch.zeros(2, 100), 4, 32)


def test_non_topk_saes_use_sparsify():
    sae = make_sae(16, 256, 8, torch.float32)
    sae.cfg.activation = "groupmax"
    assert not supports(sae)
    x = inputs(sae, 20, False)
    with torch.inference_mode():
        acts, idx = sae_topk(sae, x)
        ref = sae.encode(x)
    assert torch.equal(acts, ref.top_acts) and torch.equal(idx, ref.top_indices)


def fast_and_sparsify_digests(model, tokenizer, saes, texts, tmp_path, monkeypatch, device: str, batch: int,
                              shard_docs: int) -> dict[bool, dict[str, str]]:
    """The file digests of two ingestions of ``texts`` into fresh stores, with sparsify's encode (False) and the
    fast top-k (True)."""
    from langfeat import activations
    from langfeat.ingest import IngestConfig, ingest

    (tmp_path / "mul.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    digests = {}
    for fast in (False, True):
        monkeypatch.setattr(activations, "FAST_ENCODE", fast)
        cfg = IngestConfig(model="toy", dataset=str(tmp_path / "{lang}.txt"), langs=["mul"],
                           layers=["model.layers.{0..3}.mlp"], sae_model="toy-saes", batch=batch,
                           shard_docs=shard_docs, store=str(tmp_path / f"store-{fast}"), device=device)
        ingest(cfg, model=model, tokenizer=tokenizer, progress=False, saes=saes)
        digests[fast] = _store_digest(tmp_path / f"store-{fast}")
    return digests


def _store_digest(root) -> dict[str, str]:
    """sha256 of every Parquet file of the committed runs (run ids are identities: equal across stores)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "data").rglob("*.parquet"))
    }


def test_fp32_cpu_store_identical_to_sparsify_encode(toy, tmp_path, monkeypatch):
    """Ingestion with the fast encode writes byte-identical files to ingestion with sparsify's encode."""
    from langfeat.toy import DEFAULT_TEXTS

    model, tokenizer, saes = toy
    saes = dict(saes)
    saes[3] = make_sae(int(saes[3].d_in), 32768, 8, torch.float32, seed=5)  # wide: the grouped selection
    digests = fast_and_sparsify_digests(model, tokenizer, saes, DEFAULT_TEXTS * 2, tmp_path, monkeypatch, "cpu",
                                        batch=3, shard_docs=7)
    assert any("/events/layer=3/" in f for f in digests[True])
    assert len(digests[True]) > 10 and digests[True] == digests[False]
