"""CLI: ``langfeat report html``, the store as one self-contained HTML page."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated, Optional

import typer

from langfeat.cli.app import handle_errors, report_app
from langfeat.cli.output import StoreOption


@report_app.command("html")
@handle_errors
def report_html(
    store: StoreOption = None,
    out: Annotated[
        Optional[Path],  # noqa: UP045  (typer needs Optional on Python 3.10)
        typer.Option("--out", help="Folder to write index.html into (default: <store>/report)."),
    ] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in a web browser.")] = False,
    top: Annotated[int, typer.Option(help="Units listed per feature set and language.")] = 5,
    contexts: Annotated[int, typer.Option(help="Top-activating contexts per SAE feature.")] = 3,
    window: Annotated[int, typer.Option(help="Tokens of context either side.")] = 8,
    tokenizer: Annotated[Optional[str], typer.Option(help="Tokenizer folder / id for decoding contexts.")] = None,  # noqa: UP045
) -> None:
    """One static HTML page (works offline) of all the store holds: runs, features, LID, ΔPPL, steering.

    Writes DIR/index.html (default DIR: <store>/report) and prints its path.

    Example: langfeat report html --store demo-store --open
    """
    from langfeat.html_report import write_html_report

    path = write_html_report(store, out, top=top, contexts=contexts, window=window, tokenizer=tokenizer)
    typer.echo(str(path))
    if open_page:
        webbrowser.open(path.as_uri())
