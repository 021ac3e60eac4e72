"""Ingestion throughput vs the model forward alone, and bytes per stored event (CPU).

    .venv/bin/python benchmarks/ingest_cpu.py [--model toy|smollm2] [--docs N] [--layers N] [--batch N]

``toy`` is the test model scaled up (d_model 256, MLP 1024, 8 layers, random SAEs of 4096 latents, k=32);
``smollm2`` is the offline SmolLM2-135M truncated to its first ``--layers`` layers with random SAEs
(576 -> 9216 latents, k=32). Text: FLORES-200 devtest sentences of several scripts. Both timings include
tokenization and stop the forward after the last hooked layer; ingestion also SAE-encodes, aggregates and writes.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from langfeat.activations import Probe, pad_batch, plan_batches
from langfeat.ingest import IngestConfig, ingest
from langfeat.layers import mlp_path, parse

SHARED = Path(os.environ.get("LANGFEAT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CODES = ["eng_Latn", "deu_Latn", "rus_Cyrl", "hin_Deva", "tha_Thai", "jpn_Jpan", "kor_Hang", "zho_Hans"]


def flores_texts(n: int) -> list[str]:
    """``n`` FLORES devtest sentences, round-robin over several scripts."""
    per = {}
    for code in CODES:
        with gzip.open(SHARED / "data" / "flores200_devtest" / f"{code}.devtest.gz", "rt", encoding="utf-8") as fh:
            per[code] = fh.read().splitlines()
    return [per[CODES[i % len(CODES)]][(i // len(CODES)) % 1012] for i in range(n)]


def model_only(model, tokenizer, texts: list[str], last_module: str, batch: int, shard_docs: int,
               max_batch_tokens: int | None = None, saes: dict | None = None, fast: bool = False
               ) -> tuple[float, int]:
    """Seconds and tokens of tokenize + batched forward stopped after ``last_module`` (the same batching).

    With ``saes`` (layer -> SAE) every hooked MLP output is also ``encode``d (the compute ceiling of ingestion);
    ``fast``: with :func:`langfeat.sae_topk.sae_topk` instead of sparsify's ``encode``.
    """
    from langfeat.sae_topk import sae_topk

    state = {}

    def encode(layer):
        def read(out):
            x = out[state["valid"]].to(saes[layer].dtype)
            state["top"] = sae_topk(saes[layer], x)[0] if fast else saes[layer].encode(x).top_acts

        return read

    readers = [(mlp_path("model", i), encode(i)) for i in (saes or {})]
    probe = Probe(model, [*readers, (last_module, lambda _out: None)])
    device = next(model.parameters()).device
    tokens = 0
    with probe.attached():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for lo in range(0, len(texts), shard_docs):
            ids = tokenizer(texts[lo : lo + shard_docs], add_special_tokens=True)["input_ids"]
            for idx in plan_batches([len(x) for x in ids], batch, max_batch_tokens):
                inp, mask = pad_batch([ids[i] for i in idx], 0, device)
                tokens += int(mask.sum())
                state["valid"] = mask.bool()
                probe.run(inp, mask)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, tokens


def run_ingest(config: IngestConfig, model, tokenizer, saes=None) -> tuple[float, dict, int, int]:
    """Seconds, manifest, events and bytes of events files of one ingest run."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    (manifest,) = ingest(config, model=model, tokenizer=tokenizer, progress=False, saes=saes)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    import pyarrow.parquet as pq

    files = list(Path(config.store).glob(f"data/run_id={manifest['run_id']}/*/events/layer=*/*.parquet"))
    events = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = sum(f.stat().st_size for f in files)
    return seconds, manifest, events, size


def report(name: str, t_model: float, n_model: int, t_enc: float, t_ingest: float, manifest: dict, events: int,
           size: int) -> str:
    m_rate, i_rate = n_model / t_model, manifest["n_tokens"] / t_ingest
    lines = [
        f"{name}: {manifest['n_docs']} docs, {manifest['n_tokens']} tokens, {len(manifest['layers'])} hooked layers",
        f"  model only      {m_rate:12,.0f} tok/s  ({t_model:.2f} s)",
        f"  model + encode  {n_model / t_enc:12,.0f} tok/s  ({t_enc:.2f} s; SAE encode only, nothing kept)",
        f"  storage cost    {t_ingest / t_enc - 1:+.1%} vs model + encode (events, aggregates, Parquet writing)",
        f"  ingest (total)  {i_rate:12,.0f} tok/s  ({t_ingest:.2f} s; includes store setup, compaction, commit)",
        f"  overhead        {t_ingest / t_model - 1:+.1%} vs model only (goal <= +25 %)",
        f"  events          {events:,} ({events / manifest['n_tokens']:.1f} per token)",
        f"  bytes/event     {size / max(events, 1):.2f} B (goal <= 3.5 B)  [{size / 1e6:.1f} MB]",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["toy", "smollm2"], default="toy")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--shard-docs", type=int, default=1024)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from sparsify import SparseCoder, SparseCoderConfig

    from langfeat.models import load_model
    from langfeat.toy import build_model

    tmp = Path(tempfile.mkdtemp(prefix="langfeat-bench-"))
    texts = flores_texts(args.docs)
    if args.model == "toy":
        model, tokenizer = build_model(tmp / "model", texts=texts[:400], n_layers=args.layers, d_model=256,
                                       d_mlp=1024, vocab_size=4096)
        latents = 4096
    else:
        model, tokenizer = load_model("smollm2", device="cpu")
        latents = 16 * model.config.hidden_size
    model.eval()
    d = model.config.hidden_size
    torch.manual_seed(0)
    saes = {i: SparseCoder(d, SparseCoderConfig(num_latents=latents, k=32)).eval() for i in range(args.layers)}
    (tmp / "data").mkdir()
    pattern = mlp_path("model", f"{{0..{args.layers - 1}}}")
    last = parse([pattern])[-1].mlp_path
    model_only(model, tokenizer, texts[:64], last, args.batch, args.shard_docs)  # warm-up
    t_model, n_model = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs)
    t_enc, _ = model_only(model, tokenizer, texts, last, args.batch, args.shard_docs, saes=saes)
    config = IngestConfig(
        model=args.model, dataset=str(tmp / "data" / "{lang}.txt"), langs=["mul"],
        layers=[pattern], sae_model=f"random-{latents}-k32", batch=args.batch, shard_docs=args.shard_docs,
        store=str(tmp / "store"), device="cpu",
    )
    (tmp / "data" / "mul.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    t_ingest, manifest, events, size = run_ingest(config, model, tokenizer, saes)
    print(f"machine: {os.cpu_count()}-core CPU, torch {torch.__version__}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    print(report(f"{args.model} (d={d}, {latents} latents, k=32)", t_model, n_model, t_enc, t_ingest, manifest,
                 events, size))


if __name__ == "__main__":
    main()
