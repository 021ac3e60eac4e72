"""CLI commands: classify."""

from langfeat.cli.app import app  # noqa: F401
