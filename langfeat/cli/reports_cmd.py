"""CLI commands: reports."""

from langfeat.cli.app import app  # noqa: F401
