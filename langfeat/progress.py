"""The one progress bar and the stderr console that long-running library calls and CLI commands draw on."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["console", "progress_bar"]

# Human-facing output (progress, tables, messages) goes to stderr; machine-readable results go to stdout only.
console = Console(stderr=True)


def progress_bar(rate: bool = False, transient: bool = True) -> Progress:
    """A rich progress bar on stderr: description, bar, done/total, (a ``rate`` field), time remaining."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]}"))
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, transient=transient)
