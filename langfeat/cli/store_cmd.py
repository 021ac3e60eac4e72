"""CLI commands: store."""

from langfeat.cli.app import app  # noqa: F401
