"""Ingestion at the paper's scale on one GPU: a Llama-3.2-1B-shaped model (random weights) and 16 random SAEs
of 131,072 latents, k=32, at ``layers.{0..15}.mlp`` — nothing is downloaded.

    python benchmarks/ingest_gpu.py            # --quick (default): 4096 docs, < 10 min on one H100
    python benchmarks/ingest_gpu.py --docs 20000
    python benchmarks/ingest_gpu.py --tiny     # CPU smoke run with small shapes (checks the script works)

One run measures, on the same machine and data (tokenize + batched forward stopped after layer 15):

- model only;
- old pipeline: model + sparsify ``encode`` (nothing kept), and the whole ingestion with sparsify's encode
  (``langfeat.activations.FAST_ENCODE = False``: events, aggregates, Parquet, commit);
- new pipeline: model + :func:`langfeat.sae_topk.sae_topk` (also with one ``torch.topk`` per row instead of the
  two-pass selection), and the whole ingestion with it;
- on CUDA with triton installed, the same two with the Triton kernel (``LANGFEAT_TOPK_TRITON=1``:
  :mod:`langfeat.sae_topk_triton`, no dense pre-activations);
- the compute ceiling: FLOPs per token (2 x the hooked layers' parameters + 2 x d x latents per SAE; attention
  scores left out) over the bf16 GEMM rate measured here at the encoder's shape (and over ``--peak-tflops``);
- bytes per stored event and peak GPU memory of each ingestion.

The issue's goals are printed beside the figures: new ingestion >= 60k tok/s, >= 80 % of the ceiling, >= 2.2x
the old model + encode, <= 3.5 B/event.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_cpu import model_only, run_ingest

from langfeat import activations
from langfeat.ingest import IngestConfig
from langfeat.layers import parse


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Sentences of 20-60 pseudo-words (about 30-90 tokens with the small tokenizer)."""
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ren", "to", "sa", "ve", "nu", "pri", "da", "el", "or", "qua", "zi", "ho", "ba"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + "." for _ in range(n)]


def gemm_tflops(d: int, m: int, dtype: torch.dtype, device: torch.device, rows: int = 16384) -> float:
    """Measured TFLOP/s of ``[rows, d] @ [d, m]`` (the encoder GEMM) on ``device``."""
    a = torch.randn(rows, d, dtype=dtype, device=device)
    b = torch.randn(m, d, dtype=dtype, device=device)
    reps = 10 if device.type == "cuda" else 1
    torch.nn.functional.linear(a, b)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.nn.functional.linear(a, b)
    sync()
    return 2 * rows * d * m * reps / (time.perf_counter() - t0) / 1e12


def ingest_phase(label: str, fast: bool, base: IngestConfig, model, tokenizer, saes, tmp: Path) -> dict:
    """One whole ingestion into a fresh store with the old (sparsify) or the new encode."""
    activations.FAST_ENCODE = fast
    config = IngestConfig(**{**base.__dict__, "store": str(tmp / f"store-{label}")})
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seconds, manifest, events, size = run_ingest(config, model, tokenizer, saes)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"seconds": seconds, "tokens": manifest["n_tokens"], "events": events, "bytes": size, "peak": peak}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="ingestion throughput at the paper's scale, old vs new pipeline")
    ap.add_argument("--quick", action="store_true", default=True, help="the default: 4096 documents")
    ap.add_argument("--tiny", action="store_true", help="small shapes on CPU (smoke run)")
    ap.add_argument("--docs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--shard-docs", type=int, default=1024)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    ap.add_argument("--peak-tflops", type=float, default=790.0, help="dense peak of the GPU, for the ceiling")
    args = ap.parse_args(argv)
    from sparsify import SparseCoder, SparseCoderConfig
    from transformers import LlamaConfig, LlamaForCausalLM

    from langfeat.models import resolve_dtype
    from langfeat.toy import build_tokenizer

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = resolve_dtype(args.dtype)
    if args.tiny:
        shape = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=1024)
        latents, n_docs = 32768, args.docs or 128
    else:
        shape = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256)
        latents, n_docs = 131072, args.docs or 4096
    tmp = Path(tempfile.mkdtemp(prefix="langfeat-gpu-bench-"))
    texts = synthetic_texts(n_docs)
    tokenizer = build_tokenizer(tmp / "tok", texts[:500], vocab_size=1024)
    config = LlamaConfig(**shape, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
        layers = config.num_hidden_layers
        saes = {
            i: SparseCoder(config.hidden_size, SparseCoderConfig(num_latents=latents, k=32), device=device,
                           dtype=dtype).eval()
            for i in range(layers)
        }
    (tmp / "data").mkdir()
    (tmp / "data" / "mul.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    pattern = f"model.layers.{{0..{layers - 1}}}.mlp"
    last = parse([pattern])[-1].mlp_path
    d = config.hidden_size

    model_only(model, tokenizer, texts[:256], last, args.batch, args.shard_docs, saes=saes)  # warm-up
    model_only(model, tokenizer, texts[:256], last, args.batch, args.shard_docs, saes=saes, fast=True)
    t_model, n_tok = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs)
    t_old_enc, _ = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs, saes=saes)
    t_new_enc, _ = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs, saes=saes, fast=True)
    os.environ["LANGFEAT_TOPK_GROUP"] = "0"  # the fast encode with one torch.topk per row instead of two passes
    t_one_topk, _ = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs, saes=saes, fast=True)
    del os.environ["LANGFEAT_TOPK_GROUP"]
    base = IngestConfig(
        model="llama-3.2-1b-shaped-random", dataset=str(tmp / "data" / "{lang}.txt"), langs=["mul"],
        layers=[pattern], sae_model=f"random-{latents}-k32", batch=args.batch, shard_docs=args.shard_docs,
        dtype=args.dtype, store=str(tmp / "store"), device=device.type,
    )
    old = ingest_phase("old", False, base, model, tokenizer, saes, tmp)
    new = ingest_phase("new", True, base, model, tokenizer, saes, tmp)
    tri = None
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        os.environ["LANGFEAT_TOPK_TRITON"] = "1"
        model_only(model, tokenizer, texts[:256], last, args.batch, args.shard_docs, saes=saes, fast=True)  # compile
        t_triton_enc, _ = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs, saes=saes, fast=True)
        tri = ingest_phase("triton", True, base, model, tokenizer, saes, tmp)
        del os.environ["LANGFEAT_TOPK_TRITON"]
    activations.FAST_ENCODE = True

    layer_params = sum(p.numel() for p in model.model.layers.parameters())
    flop_token = 2 * layer_params + layers * 2 * d * latents
    tflops = gemm_tflops(d, latents, dtype, device, rows=16384 if device.type == "cuda" else 512)
    ceiling, ceiling_peak = tflops * 1e12 / flop_token, args.peak_tflops * 1e12 / flop_token

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"{os.cpu_count()}-core CPU"
    print(f"machine: {name}, torch {torch.__version__}, dtype {args.dtype}, batch {args.batch}", file=sys.stderr)
    rate = {k: n_tok / t for k, t in (("model", t_model), ("old_enc", t_old_enc), ("new_enc", t_new_enc),
                                      ("one_topk", t_one_topk))}
    rate["old"], rate["new"] = old["tokens"] / old["seconds"], new["tokens"] / new["seconds"]
    print(f"Llama-3.2-1B-shaped (d={d}, {layers} layers, {latents} latents, k=32): {n_tok:,} tokens, "
          f"{new['events']:,} events ({new['events'] / new['tokens']:.1f} per token)")
    print(f"  model only                  {rate['model']:12,.0f} tok/s")
    print(f"  old: model + sparsify encode{rate['old_enc']:12,.0f} tok/s")
    print(f"  old: ingest (sparsify)      {rate['old']:12,.0f} tok/s  {old['bytes'] / old['events']:.2f} B/event, "
          f"peak GPU {old['peak']:.1f} GiB")
    print(f"  new: model + fast encode    {rate['new_enc']:12,.0f} tok/s  ({rate['new_enc'] / rate['old_enc']:.2f}x)")
    print(f"  new, one torch.topk per row {rate['one_topk']:12,.0f} tok/s  (LANGFEAT_TOPK_GROUP=0)")
    print(f"  new: ingest (fast)          {rate['new']:12,.0f} tok/s  {new['bytes'] / new['events']:.2f} B/event, "
          f"peak GPU {new['peak']:.1f} GiB  (goal >= 60,000 tok/s, <= 3.5 B/event)")
    if tri is not None:
        rate["triton_enc"], rate["triton"] = n_tok / t_triton_enc, tri["tokens"] / tri["seconds"]
        print(f"  triton: model + encode      {rate['triton_enc']:12,.0f} tok/s  "
              f"({rate['triton_enc'] / rate['old_enc']:.2f}x; LANGFEAT_TOPK_TRITON=1)")
        print(f"  triton: ingest              {rate['triton']:12,.0f} tok/s  "
              f"{tri['bytes'] / tri['events']:.2f} B/event, peak GPU {tri['peak']:.1f} GiB")
    else:
        print("  triton: not run (needs CUDA and triton)")
    print(f"  compute ceiling             {ceiling:12,.0f} tok/s  ({flop_token / 1e9:.2f} GFLOP/token at the "
          f"measured {tflops:.1f} TFLOP/s; {ceiling_peak:,.0f} tok/s at {args.peak_tflops:.0f} TFLOP/s)")
    print(f"  new ingest / ceiling        {rate['new'] / ceiling:12.1%}  (goal >= 80 %; "
          f"{rate['new'] / ceiling_peak:.1%} of the peak-based ceiling)")
    print(f"  new ingest / old model+enc  {rate['new'] / rate['old_enc']:12.2f}x (goal >= 2.2x); "
          f"new / old ingest {rate['new'] / rate['old']:.2f}x")


if __name__ == "__main__":
    main()
