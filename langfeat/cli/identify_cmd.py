"""CLI commands: identify."""

from langfeat.cli.app import app  # noqa: F401
