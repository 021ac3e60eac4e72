"""The ``langfeat`` command line: a thin typer layer over the Python API (one module per command group)."""

from langfeat.cli import (  # noqa: F401  (each module registers its commands on ``app``)
    check_cmd,
    classify_cmd,
    formats_cmd,
    generate_cmd,
    identify_cmd,
    ingest_cmd,
    ppl_cmd,
    reports_cmd,
    store_cmd,
    train_cmd,
)
from langfeat.cli.app import app

__all__ = ["app"]
