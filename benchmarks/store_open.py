"""Time opening a store and querying its views as the number of Parquet files grows.

A synthetic store of ``runs`` runs x 16 layers x ``shards`` event files (100 events each) is written to a
temporary directory; then ``open_store`` (catalog missing, then current) and a few queries are timed.

    python benchmarks/store_open.py [--runs 20] [--shards 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from langfeat.store import ensure_store, open_store
from langfeat.store.layout import arrow_schemas


def build(root: Path, runs: int, shards: int, layers: int = 16, rows: int = 100) -> int:
    layout = ensure_store(root)
    schema = arrow_schemas()["events"]
    table = pa.Table.from_arrays([
        pa.array(np.arange(rows, dtype=np.int64)), pa.array(np.zeros(rows, np.int32)),
        pa.array(np.arange(rows, dtype=np.int32)), pa.array(np.ones(rows, np.float16)), pa.array(["d"] * rows),
    ], schema=schema)
    n = 0
    for r in range(runs):
        for layer in range(layers):
            folder = layout.data_dir / f"run_id=r{r:04d}" / "lang=en" / "events" / f"layer={layer}"
            folder.mkdir(parents=True, exist_ok=True)
            for s in range(shards):
                pq.write_table(table, folder / f"part-{s}.parquet")
                n += 1
    return n


def timed(label: str, fn) -> None:
    t0 = time.perf_counter()
    fn()
    print(f"{label:<55} {time.perf_counter() - t0:7.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--shards", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        n = build(root, args.runs, args.shards)
        print(f"{n} event files")
        timed("open_store (catalog built)", lambda: open_store(root).close())
        timed("open_store (catalog current)", lambda: open_store(root).close())
        with open_store(root) as store:
            timed("count(*) FROM events", lambda: store.sql("SELECT count(*) FROM events"))
            timed("count(*) FROM events WHERE run_id = .. AND layer = 3",
                  lambda: store.sql("SELECT count(*) FROM events WHERE run_id = 'r0001' AND layer = 3"))
            timed("per (layer, feature) counts over all events",
                  lambda: store.sql("SELECT layer, feature, count(*) FROM events GROUP BY ALL"))


if __name__ == "__main__":
    main()
