"""CLI commands: ingest."""

from langfeat.cli.app import app  # noqa: F401
