"""Help that reads at 80 columns: every option name whole, a description for each, no `<bool>` metavars, no
braces in usage lines; `langfeat runs` fits 80 columns."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from langfeat.cli import app


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_listed():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"ingest", "identify", "classify", "check", "ppl", "generate", "train-sae", "sql", "runs",
            "report ppl"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_at_80_columns(path, cmd):
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert res.exit_code == 0, res.output
    out = res.output
    assert max(len(line) for line in out.splitlines()) <= 80
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "<bool>" not in out and "<str>" not in out and "<int>" not in out
    for param in cmd.params:
        if param.param_type_name != "option":
            continue
        assert (param.help or "").strip(), f"{'/'.join(param.opts)} has no description"
        for opt in (*param.opts, *param.secondary_opts):
            assert re.search(re.escape(opt) + r"(?![\w-])", out), f"{opt} not shown whole:\n{out}"


def test_runs_fit_80_columns(tmp_path):
    from langfeat.store import ensure_store
    from langfeat.store.runs import write_json_atomic

    root = tmp_path / "store"
    layout = ensure_store(root)
    for i, lang in enumerate(["en", "de"]):
        write_json_atomic(layout.manifest(f"run{i}-0123456789abcdef"), {"run_num": i + 1,
            "run_id": f"run{i}-0123456789abcdef", "model": "meta-llama/Llama-3.2-1B",
            "sae_model": "EleutherAI/sae-Llama-3.2-1B-131k", "dataset": "openlanguagedata/flores_plus",
            "config": f"{lang}_Latn_long_config", "lang": lang, "split": "dev", "start": 0, "end": 997,
            "layers": list(range(16)), "n_docs": 997, "n_tokens": 123456, "status": "complete", "kind": "sae",
            "created_at": "2026-01-01T00:00:00+00:00",
        })
    res = CliRunner().invoke(app, ["runs", "--store", str(root)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in res.output
    for value in ("run0-0123456789abcdef", "run1-0123456789abcdef", "123456", "complete", "Llama-3.2-1B"):
        assert value in res.output


def test_sets_fit_80_columns(tmp_path):
    from factories import write_set

    from langfeat.store import ensure_store

    root = tmp_path / "store"
    ensure_store(root)
    name = "lape_top_1_per_layer_by_entropy"
    write_set(root, name, [("en", 3, 1234), ("de", 15, 99)])
    res = CliRunner().invoke(app, ["sets", "--store", str(root)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
    assert "…" not in res.output
    assert name in "".join(line.split("│")[1].strip() for line in res.output.splitlines() if line.count("│") > 2)
    wide = CliRunner().invoke(app, ["sets", "--store", str(root)], env={"COLUMNS": "200"})
    assert "params" in wide.output and "…" not in wide.output


def test_stdout_console_width_follows_columns_at_each_call(monkeypatch):
    """Tables take the width of the moment they print, not that of the environment when the CLI was imported."""
    from langfeat.cli.app import out_console

    for columns in (80, 200, 123):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert out_console.width == columns
