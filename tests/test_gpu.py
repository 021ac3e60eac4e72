"""The CUDA code paths (skipped without a GPU): the fast SAE top-k against sparsify's encode on the device, at the
paper's width; ingestion with it against ingestion with sparsify's encode and against the CPU on the toy model
(events and the aggregates computed on the device); the asynchronous host copies; perplexity under an
intervention and unsteered generation; the Triton top-k kernel and ingestion with it against sparsify's encode."""

from __future__ import annotations

import copy

import numpy as np
import polars as pl
import pytest
import torch
from test_sae_topk import check_same_pairs, fast_and_sparsify_digests, inputs, make_sae

from langfeat import activations
from langfeat import interventions as iv
from langfeat.experiments import ppl
from langfeat.ingest import IngestConfig, ingest
from langfeat.models import load_model
from langfeat.sae_topk import sae_topk
from langfeat.store import open_store
from langfeat.toy import DEFAULT_TEXTS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TEXTS = DEFAULT_TEXTS * 3


@pytest.fixture(scope="module")
def stores(toy_model_dir, toy_sae_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    (tmp / "mul.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = {}
    for device in ("cpu", "cuda"):
        cfg = IngestConfig(model=str(toy_model_dir), dataset=str(tmp / "{lang}.txt"), langs=["mul"],
                           layers=["model.layers.{0..3}.mlp"], local_sae_dir=str(toy_sae_dir), neurons=True,
                           batch=4, store=str(tmp / device), device=device)
        ingest(cfg, progress=False)
        out[device] = open_store(tmp / device)
    return out


def test_events_and_aggregates_match_cpu(stores):
    q = "SELECT layer, doc_id & ((1::BIGINT << 40) - 1) AS row, pos, feature, act FROM events ORDER BY ALL"
    cpu, gpu = stores["cpu"].sql(q), stores["cuda"].sql(q)
    key = ["layer", "row", "pos", "feature"]
    joined = cpu.join(gpu, on=key, how="full", suffix="_gpu", coalesce=True)
    # TopK boundaries may flip where two activations are within float error: allow a handful of such events.
    mismatched = joined.filter(pl.col("act").is_null() | pl.col("act_gpu").is_null()).height
    assert mismatched <= 0.001 * cpu.height
    both = joined.drop_nulls()
    np.testing.assert_allclose(both["act"].to_numpy(), both["act_gpu"].to_numpy(), rtol=1e-2, atol=1e-3)
    for table, unit in (("feature_counts", "feature"), ("neuron_counts", "neuron")):
        q = f"SELECT layer, {unit}, tok_count, doc_count, act_max FROM {table} ORDER BY layer, {unit}"
        a, b = stores["cpu"].sql(q), stores["cuda"].sql(q)
        m = a.join(b, on=["layer", unit], suffix="_gpu")
        assert m.height >= 0.99 * a.height
        assert (m["tok_count"] - m["tok_count_gpu"]).abs().sum() <= 0.001 * a["tok_count"].sum()


def test_ppl_and_generation_match_cpu(toy_model_dir, toy_sae_dir):
    feats = pl.DataFrame({"lang": ["en"], "layer": [1], "feature": [5], "act_max": [2.0], "act_min": [0.5],
                          "act_avg": [1.0]})
    res = {}
    for device in ("cpu", "cuda"):
        model, tok = load_model(str(toy_model_dir), device=device)
        specs = iv.layer_specs(model, None, feats)
        saes = iv.load_saes(model, specs, feats, None, str(toy_sae_dir))
        for kind in ("sae-features", "sae-ablate"):
            plan = iv.build(kind, feats, "en", specs, saes, multiplier=-1.0)
            res[device, kind] = ppl.perplexities(model, tok, TEXTS[:8], plan, batch_size=4)["ppl"].to_numpy()
        ids = tok("The quick", return_tensors="pt").to(model.device)
        res[device, "gen"] = model.generate(**ids, do_sample=False, max_new_tokens=8)[0].tolist()
    for kind in ("sae-features", "sae-ablate"):
        np.testing.assert_allclose(res["cpu", kind], res["cuda", kind], rtol=1e-3)
    assert res["cpu", "gen"] == res["cuda", "gen"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("shape", [(2048, 131072, 32, 4096), (256, 4096, 16, 2048)], ids=["131072x32", "4096x16"])
@pytest.mark.parametrize("trained_like", [False, True], ids=["random", "trained-like"])
def test_fast_encode_matches_sparsify_on_cuda(shape, dtype, trained_like):
    d, m, k, n = shape
    sae = make_sae(d, m, k, dtype, trained_like=trained_like).to("cuda")
    x = inputs(sae, n, trained_like).to("cuda")
    with torch.inference_mode():
        ref = sae.encode(x)
        for group in ("auto", None, 32):
            acts, idx = sae_topk(sae, x, group=group)
            ties = check_same_pairs(acts, idx, ref)  # bf16 at 131072 latents: most rows tie at the k-th value
            if dtype == torch.float32:
                assert ties == 0


def test_fast_ingest_matches_sparsify_encode_on_cuda(toy, tmp_path, monkeypatch):
    model, tokenizer, cpu_saes = toy
    model = copy.deepcopy(model).to("cuda")
    saes = {layer: copy.deepcopy(sae).to("cuda") for layer, sae in cpu_saes.items()}
    saes[3] = make_sae(int(saes[3].d_in), 32768, 8, torch.float32, seed=5).to("cuda")
    digests = fast_and_sparsify_digests(model, tokenizer, saes, TEXTS, tmp_path, monkeypatch, "cuda", batch=4,
                                        shard_docs=8)
    assert len(digests[True]) > 10 and digests[True] == digests[False]


def test_host_copies_on_a_side_stream():
    g = torch.Generator(device="cuda").manual_seed(0)
    doc, pos, feature = (torch.randint(0, 1000, (50_000,), device="cuda", generator=g) for _ in range(3))
    act = torch.rand(50_000, device="cuda", generator=g).half()
    copier = activations.HostCopier(torch.device("cuda"))
    pending = activations.PendingEvents(doc, pos, feature, act, copier=copier)
    expect = [t.cpu().numpy() for t in (doc, pos, feature, act)]
    del doc, pos, feature, act  # the device memory must stay valid until the copy has read it
    torch.empty(10_000_000, device="cuda").fill_(7)
    ev = pending.result()
    for got, want in zip((ev.doc, ev.pos, ev.feature, ev.act), expect, strict=True):
        np.testing.assert_array_equal(got, want.astype(got.dtype))
    assert ev.doc.dtype == np.int32 and ev.act.dtype == np.float16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("trained_like", [False, True], ids=["random", "trained-like"])
def test_triton_encode_matches_sparsify_on_cuda(trained_like, dtype):
    """The Triton kernel at the paper's width: a top-k of the exact pre-activations, sparsify's events up to
    near-ties."""
    pytest.importorskip("triton")
    from test_sae_topk_triton import check_topk, exact_pre

    d, m, k, n = 2048, 131072, 32, 1024
    sae = make_sae(d, m, k, dtype, trained_like=trained_like).to("cuda")
    x = inputs(sae, n, trained_like).to("cuda")
    with torch.inference_mode():
        ref = sae.encode(x)
        acts, idx = sae_topk(sae, x, triton=True)
        pre = exact_pre(x - sae.b_dec, sae.encoder.weight, sae.encoder.bias)
    check_topk(acts, idx, pre, k, dtype, clamp=True)
    ours = torch.zeros(n, m, dtype=torch.bool, device="cuda").scatter_(1, idx, acts > 0)
    theirs = torch.zeros_like(ours).scatter_(1, ref.top_indices, ref.top_acts > 0)
    if dtype == torch.float32:
        assert int((ours != theirs).any(dim=1).sum()) <= n // 100  # near-ties only


def test_triton_ingest_matches_sparsify_encode_on_cuda(toy, tmp_path, monkeypatch):
    """Ingestion with LANGFEAT_TOPK_TRITON=1 against sparsify's encode: the same events up to near-ties at the
    k-th value, activations within float16 rounding."""
    pytest.importorskip("triton")
    model, tokenizer, cpu_saes = toy
    model = copy.deepcopy(model).to("cuda")
    saes = {layer: copy.deepcopy(sae).to("cuda") for layer, sae in cpu_saes.items()}
    saes[3] = make_sae(int(saes[3].d_in), 32768, 8, torch.float32, seed=5).to("cuda")
    monkeypatch.setenv("LANGFEAT_TOPK_TRITON", "1")
    fast_and_sparsify_digests(model, tokenizer, saes, TEXTS, tmp_path, monkeypatch, "cuda", batch=4, shard_docs=8)
    q = "SELECT layer, doc_id, pos, feature, act FROM events ORDER BY ALL"
    old, new = (open_store(tmp_path / f"store-{fast}").sql(q) for fast in (False, True))
    joined = old.join(new, on=["layer", "doc_id", "pos", "feature"], how="full", suffix="_triton", coalesce=True)
    assert old.height > 1000
    assert joined.filter(pl.col("act").is_null() | pl.col("act_triton").is_null()).height <= 0.001 * old.height
    both = joined.drop_nulls()
    np.testing.assert_allclose(both["act"].to_numpy(), both["act_triton"].to_numpy(), rtol=2e-3, atol=1e-4)
