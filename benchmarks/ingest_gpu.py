"""Ingestion at the paper's scale on one GPU: a Llama-3.2-1B-shaped model (random weights) and 16 random SAEs
of 131,072 latents, k=32, at ``layers.{0..15}.mlp`` — nothing is downloaded.

    python benchmarks/ingest_gpu.py            # --quick (default): 4096 docs, < 5 min on one H100
    python benchmarks/ingest_gpu.py --docs 20000
    python benchmarks/ingest_gpu.py --tiny     # CPU smoke run with small shapes (checks the script works)

Reports tokens/s of tokenize + forward (stopped after layer 15), of forward + SAE encode (the compute ceiling),
and of the whole ingestion (events, aggregates, Parquet, commit), plus bytes per stored event.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_cpu import model_only, report, run_ingest

from langfeat.ingest import IngestConfig
from langfeat.layers import parse


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Sentences of 20-60 pseudo-words (about 30-90 tokens with the small tokenizer)."""
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ren", "to", "sa", "ve", "nu", "pri", "da", "el", "or", "qua", "zi", "ho", "ba"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + "." for _ in range(n)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="ingestion throughput at the paper's scale")
    ap.add_argument("--quick", action="store_true", default=True, help="the default: 4096 documents")
    ap.add_argument("--tiny", action="store_true", help="small shapes on CPU (smoke run)")
    ap.add_argument("--docs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--shard-docs", type=int, default=1024)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
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
        latents, n_docs = 1024, args.docs or 256
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
    model_only(model, tokenizer, texts[:256], last, args.batch, args.shard_docs, saes=saes)  # warm-up
    t_model, n_model = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs)
    t_enc, _ = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs, saes=saes)
    ingest_config = IngestConfig(
        model="llama-3.2-1b-shaped-random", dataset=str(tmp / "data" / "{lang}.txt"), langs=["mul"],
        layers=[pattern], sae_model=f"random-{latents}-k32", batch=args.batch, shard_docs=args.shard_docs,
        dtype=args.dtype, store=str(tmp / "store"), device=device.type,
    )
    t_ingest, manifest, events, size = run_ingest(ingest_config, model, tokenizer, saes)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"{os.cpu_count()}-core CPU"
    print(f"machine: {name}, torch {torch.__version__}, dtype {args.dtype}, batch {args.batch}", file=sys.stderr)
    print(report(f"Llama-3.2-1B-shaped (d={config.hidden_size}, {latents} latents, k=32)", t_model, n_model, t_enc,
                 t_ingest, manifest, events, size))
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
