"""CLI commands: ppl."""

from langfeat.cli.app import app  # noqa: F401
