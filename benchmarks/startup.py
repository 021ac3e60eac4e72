"""Start-up time of commands that run no model: ``langfeat --help``, ``runs`` and ``sql 'SELECT 1'``.

``sql`` runs twice: on a store whose ``catalog.duckdb`` is current (opened read-only, as after any writing
command) and on one whose catalog is stale (every view file bound on an in-memory connection per open).

Each command runs ``--repeat`` times in a fresh interpreter (the console script); the median and min wall
times are printed with the heavy modules the command imported (none expected).

    python benchmarks/startup.py [--repeat 7] [--store DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "sparsify", "datasets")


def _heavy(args: list[str]) -> list[str]:
    code = ("import sys; from typer.testing import CliRunner; from langfeat.cli import app; "
            f"CliRunner().invoke(app, {args!r}); "
            f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().splitlines()[-1].split(",") if m] if out.stdout.strip() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--store", default=None, help="store to query (default: a new empty one)")
    args = parser.parse_args()
    exe = shutil.which("langfeat") or str(Path(sys.executable).with_name("langfeat"))
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or str(Path(tmp) / "store")
        cases = {
            "langfeat --help": ["--help"],
            "langfeat runs": ["runs", "--store", store],
            "langfeat sql 'SELECT 1'": ["sql", "SELECT 1", "--store", store, "--format", "csv"],
        }
        stale = str(Path(tmp) / "stale")
        if args.store is None:
            import duckdb

            from langfeat.store import build_catalog

            build_catalog(store)  # as every writing command leaves a store: catalog.duckdb current
            shutil.copytree(store, stale)
            build_catalog(stale)
            with duckdb.connect(str(Path(stale) / "catalog.duckdb")) as con:  # as after a langfeat upgrade
                con.execute("UPDATE langfeat_meta SET value = 'old' WHERE key = 'sql_hash'")
            cases["langfeat sql (stale catalog)"] = ["sql", "SELECT 1", "--store", stale, "--format", "csv"]
        print(f"{'command':<28} {'median s':>9} {'min s':>7}  heavy imports")
        for label, argv in cases.items():
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                subprocess.run([exe, *argv], capture_output=True, check=True)
                times.append(time.perf_counter() - t0)
            heavy = ",".join(_heavy(argv)) or "none"
            print(f"{label:<28} {statistics.median(times):>9.3f} {min(times):>7.3f}  {heavy}")


if __name__ == "__main__":
    main()
