"""The ``langfeat`` command line: a thin typer layer over the Python API (one module per command group).

Each module registers its commands on ``app`` when imported; the import order is the order of ``--help``.
"""
# ruff: noqa: I001, F401
from langfeat.cli import ingest_cmd, store_cmd, identify_cmd, formats_cmd, reports_cmd
from langfeat.cli import classify_cmd, ppl_cmd, generate_cmd, diffmean_cmd, check_cmd, train_cmd
from langfeat.cli import html_cmd, methods_cmd
from langfeat.cli import demo_cmd
from langfeat.cli import interpret_cmd
from langfeat.cli.app import app

__all__ = ["app"]
