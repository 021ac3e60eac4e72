"""The typer application object and the shared CLI helpers every command module uses."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from langfeat.errors import LangfeatError
from langfeat.progress import console as err_console

app = typer.Typer(
    name="langfeat",
    help="A database of language-specific SAE features and MLP neurons: ingest, identify, query, experiment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

report_app = typer.Typer(help="Rich reports over the store (features, languages, experiments).", no_args_is_help=True)
app.add_typer(report_app, name="report")

# Human-facing output (progress, tables, messages) goes to stderr (err_console) unless a command renders a
# report; machine-readable results go to stdout only.
out_console = Console()

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on one line to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn :class:`LangfeatError` (and bad files) into a one-line error and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LangfeatError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt as exc:  # SIGTERM during a write arrives as one too (exit 143)
            err_console.print(f"[yellow]{exc or 'interrupted'}[/]", highlight=False)
            sys.exit(getattr(exc, "exit_code", 130))

    return wrapper  # type: ignore[return-value]
