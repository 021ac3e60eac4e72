"""What ``ingest --neuron-docs`` costs: seconds over a neurons-only ingestion, and the bytes of ``neuron_docs``
(with the Parquet settings of other layouts, to justify :data:`langfeat.store.writer.NEURON_DOC_OPTIONS`).

    .venv/bin/python benchmarks/neuron_docs.py [--model gemma3-270m|toy] [--docs N] [--timing-docs N] [--layers 2,4,6]

The timing compares two ingestions of ``--timing-docs`` texts (neurons; neurons + neuron docs) after a warm-up;
the sizes come from one ingestion of ``--docs`` texts with neuron docs.

Text: the shipped corpus' synthetic identification split, round-robin over its languages, cut at ``--max-length``
tokens. Both ingestions hook the same ``mlp.act_fn`` modules (no SAE) and stop the forward after the last one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from langfeat import corpus
from langfeat.ingest import IngestConfig, ingest_texts
from langfeat.models import load_model
from langfeat.store.writer import NEURON_DOC_OPTIONS


def corpus_texts(n: int) -> list[str]:
    """``n`` identification texts of the shipped corpus, round-robin over its languages."""
    per = {lang: corpus.texts("synthetic", "identify", lang) for lang in corpus.LANGUAGES}
    langs = list(per)
    return [per[langs[i % len(langs)]][(i // len(langs)) % len(per[langs[i % len(langs)]])] for i in range(n)]


def variants(table: pa.Table) -> dict[str, dict]:
    """Alternative Parquet settings of the same rows."""
    f16 = table.set_column(3, "act_sum", table["act_sum"].cast(pa.float16()))
    return {
        "chosen (delta ids, dict counts, byte-split float32 sums, zstd 3)": (table, NEURON_DOC_OPTIONS),
        "zstd 3, default encodings": (table, {"compression": "zstd", "compression_level": 3}),
        "chosen, act_sum as float16": (f16, {**NEURON_DOC_OPTIONS, "column_encoding": {
            "doc_id": "DELTA_BINARY_PACKED", "neuron": "DELTA_BINARY_PACKED"}}),
        "chosen, zstd 9": (table, {**NEURON_DOC_OPTIONS, "compression_level": 9}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--docs", type=int, default=1000, help="documents of the size measurement")
    ap.add_argument("--timing-docs", type=int, default=200, help="documents of the two timed ingestions")
    ap.add_argument("--layers", default="2,4,6")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.model == "toy":
        from langfeat.toy import build_model

        folder = Path(tempfile.mkdtemp(prefix="nd-toy-"))
        build_model(folder)
        args.model = str(folder)
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model, device=args.device)
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    texts = corpus_texts(args.docs)
    layers = "model.layers.{" + args.layers + "}.mlp" if "," in args.layers else f"model.layers.{args.layers}.mlp"

    def run(store: Path, docs: bool, subset: list[str]) -> tuple[float, dict]:
        cfg = IngestConfig(model=args.model, dataset="bench", langs=[], layers=[layers], neurons=True,
                           neuron_docs=docs, batch=args.batch, max_length=args.max_length, store=str(store),
                           device=args.device)
        t0 = time.perf_counter()
        m = ingest_texts(subset, "en", "bench", cfg, model=model, tokenizer=tokenizer)
        return time.perf_counter() - t0, m

    with tempfile.TemporaryDirectory() as tmp:
        timing = texts[: args.timing_docs]
        if timing:
            timed(run, Path(tmp), timing, args)
        store = Path(tmp) / "docs"
        seconds, m = run(store, True, texts)
        files = sorted(store.glob("data/run_id=*/lang=*/neuron_docs/layer=*/*.parquet"))
        table = pa.concat_tables([pq.read_table(f).append_column("layer", pa.array(
            [int(f.parent.name.split("=")[1])] * pq.read_metadata(f).num_rows, pa.int32())) for f in files])
        print(f"{m['n_docs']} docs, {m['n_tokens']} tokens ({m['n_tokens'] / m['n_docs']:.1f} per doc), ingested with "
              f"neuron docs in {seconds:.1f} s: {table.num_rows:,} neuron_docs rows", flush=True)
        stored = sum(f.stat().st_size for f in files)
        print(f"  stored neuron_docs: {stored:,} bytes ({stored / table.num_rows:.2f} bytes/row)")
        for name, (tab, options) in variants(table.select(["doc_id", "neuron", "tok_count", "act_sum"])).items():
            path = Path(tmp) / "variant.parquet"
            pq.write_table(tab, path, **options)
            size = path.stat().st_size
            print(f"  {name}: {size:,} bytes ({size / table.num_rows:.2f} bytes/row)")
        sizes = {}
        for p in store.glob("data/run_id=*/lang=*/*/**/*.parquet"):
            table_name = p.relative_to(store / "data").parts[2]
            sizes[table_name] = sizes.get(table_name, 0) + p.stat().st_size
        print("  bytes per table of that run: " + ", ".join(f"{k} {v:,}" for k, v in sorted(sizes.items())))
        fit_time(table, m["run_num"], len(corpus.LANGUAGES))


def timed(run, tmp: Path, texts: list[str], args: argparse.Namespace) -> None:
    """Two ingestions of ``texts`` after a warm-up: neurons, then neurons + neuron docs."""
    run(tmp / "warm", False, texts[: args.batch])
    plain, m = run(tmp / "plain", False, texts)
    with_docs, _ = run(tmp / "docs-timing", True, texts)
    print(f"timing on {m['n_docs']} docs ({m['n_tokens'] / m['n_docs']:.1f} tokens per doc), layers {args.layers}: "
          f"neurons {plain:.2f} s, neurons + neuron docs {with_docs:.2f} s, "
          f"neuron docs add {with_docs - plain:.2f} s ({(with_docs - plain) / plain:+.1%})", flush=True)


def fit_time(table: pa.Table, run_num: int, n_langs: int) -> None:
    """The neuron probe's fit (k = all, value count) on these documents, labelled by their corpus language (the
    texts are round-robin over the languages)."""
    import numpy as np
    from scipy import sparse

    from langfeat.experiments import probe
    from langfeat.store.layout import RUN_BITS

    doc = table["doc_id"].to_numpy() - (run_num << RUN_BITS)
    width = int(table["neuron"].to_numpy().max()) + 1
    layer_files = np.unique(table["layer"].to_numpy()) if "layer" in table.column_names else None
    col = table["neuron"].to_numpy() + (np.searchsorted(layer_files, table["layer"].to_numpy()) * width
                                        if layer_files is not None else 0)
    x = sparse.csr_matrix((np.log1p(table["tok_count"].to_numpy().astype(np.float64)), (doc, col)))
    y = np.arange(x.shape[0]) % n_langs
    t0 = time.perf_counter()
    fitted = probe.fit(x, y, [str(i) for i in range(n_langs)], [(0, j) for j in range(x.shape[1])], "count",
                       kind="neuron")
    print(f"  neuron-probe fit (k = all, count, C = 1): {x.shape[0]} docs x {x.shape[1]} neurons, {n_langs} "
          f"languages: {time.perf_counter() - t0:.1f} s, {int((fitted.coef != 0).sum())} non-zero weights")

if __name__ == "__main__":
    main()
