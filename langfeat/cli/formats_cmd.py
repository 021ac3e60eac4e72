"""CLI commands: formats."""

from langfeat.cli.app import app  # noqa: F401
