"""Commands that run no model import no torch / transformers / sparsify (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "sparsify", "datasets", "ray")

PROBE = """
import json, sys
from typer.testing import CliRunner
from langfeat.cli import app
res = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": res.exit_code, "output": res.output,
                  "heavy": sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))}))
""".replace("HEAVY", repr(HEAVY))


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [
    ["--help"], ["ppl", "--help"], ["generate", "--help"], ["ingest", "--help"], ["train-sae", "--help"],
    ["runs"], ["sql", "SELECT 1 AS one", "--format", "csv"], ["sets"],
])
def test_no_heavy_imports(args, tmp_path):
    if args[0] in ("runs", "sql", "sets"):
        from langfeat.store import ensure_store

        ensure_store(tmp_path / "store")
        args = [*args, "--store", str(tmp_path / "store")]
    got = _run(*args)
    assert got["heavy"] == [], (args, got["heavy"])
    if args[0] != "--help" and args[-1] != "--help":
        assert got["code"] == 0, got["output"]
    if args[0] == "sql":
        assert got["output"] == "one\n1\n"
