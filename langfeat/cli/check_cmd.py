"""CLI commands: check."""

from langfeat.cli.app import app  # noqa: F401
