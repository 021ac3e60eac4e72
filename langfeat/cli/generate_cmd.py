"""CLI commands: generate."""

from langfeat.cli.app import app  # noqa: F401
