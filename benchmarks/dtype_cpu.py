"""bfloat16 against float32 for the demo model on this machine: speed of the forward and what changes in its outputs.

Loads the model twice (float32 and bfloat16), runs the same identification documents of the shipped synthetic corpus
through both, and prints in one run:

- the time of the forward up to the last demo layer (what ingestion runs) and of the full forward with the LM head,
  and their float32 / bfloat16 ratios;
- per layer, the relative L2 difference of the MLP outputs (‖bf16 − fp32‖ / ‖fp32‖ over all real positions);
- per layer, with the demo's SAEs (``--sae-dir``, default ``demo-store-saes`` when present), the share of each
  token's top-k latents that both precisions select;
- the share of real positions whose next-token argmax is the same.

    python benchmarks/dtype_cpu.py [--docs 48] [--layer 2 --layer 4 --layer 6] [--sae-dir demo-store-saes]

Whether bfloat16 is native here is printed first (``langfeat.models.fast_bfloat16``); on a CPU without AMX or
AVX-512 BF16 the ratio is below 1 (PyTorch emulates bf16 there), which is why ``--dtype auto`` picks float32.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from langfeat import corpus
from langfeat.activations import mlp_outputs, pad_batch, plan_batches
from langfeat.demo import interleaved
from langfeat.models import fast_bfloat16, load_model, load_sae, tokenize


def _timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--layer", type=int, action="append", dest="layers")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2, help="timings: best of this many runs")
    parser.add_argument("--sae-dir", default=None)
    args = parser.parse_args()
    layers = tuple(args.layers or (2, 4, 6))
    sae_dir = args.sae_dir or ("demo-store-saes" if Path("demo-store-saes").is_dir() else None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; native bfloat16: {fast_bfloat16('cpu')}")

    loaded = {dt: load_model(args.model, dtype=dt, device="cpu") for dt in ("float32", "bfloat16")}
    tokenizer = loaded["float32"][1]
    langs = tuple(corpus.languages("synthetic"))
    texts = interleaved("synthetic", "identify", langs, -(-args.docs // len(langs)))[: args.docs]
    ids = tokenize(tokenizer, texts, args.max_length)
    batches = plan_batches([len(x) for x in ids], args.batch)
    pad = tokenizer.pad_token_id or 0
    print(f"{len(ids)} documents, {sum(map(len, ids))} tokens, batches of {args.batch}, layers {layers}")

    mlp: dict[str, dict[int, torch.Tensor]] = {}
    argmax: dict[str, torch.Tensor] = {}
    times: dict[str, tuple[float, float]] = {}
    for dt, (model, _) in loaded.items():
        out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}

        def partial(model=model, out=out) -> None:
            for parts in out.values():
                parts.clear()
            mlp_outputs(model, ids, layers, batches, lambda lyr, t: out[lyr].append(t.float()), pad,
                        tokenizer.bos_token_id)

        preds: list[torch.Tensor] = []

        def full(model=model, preds=preds) -> None:
            preds.clear()
            with torch.inference_mode():
                for idx in batches:
                    input_ids, mask = pad_batch([ids[i] for i in idx], pad)
                    logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
                    preds.append(logits.argmax(-1)[mask.bool()])

        times[dt] = (_timed(partial, args.repeat), _timed(full, args.repeat))
        mlp[dt] = {layer: torch.cat(parts) for layer, parts in out.items()}
        argmax[dt] = torch.cat(preds)

    (p32, f32), (p16, f16) = times["float32"], times["bfloat16"]
    print(f"\nforward to layer {max(layers)}: float32 {p32:.2f} s, bfloat16 {p16:.2f} s, ratio {p32 / p16:.2f}")
    print(f"full forward (LM head):  float32 {f32:.2f} s, bfloat16 {f16:.2f} s, ratio {f32 / f16:.2f}")
    agree = float((argmax["float32"] == argmax["bfloat16"]).float().mean())
    print(f"next-token argmax agreement: {agree:.3f} of {argmax['float32'].numel()} positions\n")

    print(f"{'layer':>5} {'MLP rel. L2':>11} {'top-k kept':>10}")
    for layer in layers:
        a, b = mlp["float32"][layer], mlp["bfloat16"][layer]
        rel = float((b - a).norm() / a.norm())
        kept = "n/a"
        if sae_dir is not None:
            sae = load_sae(f"layers.{layer}.mlp", local_sae_dir=sae_dir)
            with torch.inference_mode():
                ia, ib = sae.encode(a).top_indices, sae.encode(b).top_indices
            same = (ia.unsqueeze(-1) == ib.unsqueeze(-2)).any(-1).float().mean()
            kept = f"{float(same):.3f}"
        print(f"{layer:>5} {rel:>11.4f} {kept:>10}")


if __name__ == "__main__":
    main()
