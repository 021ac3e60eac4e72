"""The typer application object, the command class every command uses, and the shared CLI helpers.

The command class (:class:`Command`) gives every command the same argument handling:

* a multi-value option takes its values the argparse ``nargs='+'`` way (``--lang en de fr``, so an unquoted
  ``--layer model.layers.{0..15}.mlp`` that bash expanded into 16 words works), repeated (``--lang en --lang
  de``) or comma-separated (``--lang en,de``), all with the same meaning (:func:`gather_values`);
* a flag of the paper's scripts that has no meaning in a store (``--out-dir`` …) stops with a one-line error
  saying what to use instead (:data:`langfeat.cli.options.PAPER_ONLY_FLAGS`);
* a :class:`~langfeat.errors.LangfeatError` becomes ``error: …`` on one line and exit code 2;
* help shows every option name whole at any width (names in one column, descriptions wrapped beside them).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
import typer.core
import typer.rich_utils
from rich.console import Console

from langfeat.errors import LangfeatError
from langfeat.progress import console as err_console

F = TypeVar("F", bound=Callable)

# A word that starts with '-' but is a value (a negative number such as -0.2 or -1e-3), not an option.
_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def split_values(values: Sequence[str] | str | None) -> list[str]:
    """Comma-separated values split at top-level commas (not inside ``{…}`` brace patterns), blanks dropped."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        depth, part = 0, []
        for ch in str(value):
            if ch == "," and depth == 0:
                out.append("".join(part))
                part = []
                continue
            depth += (ch == "{") - (ch == "}")
            part.append(ch)
        out.append("".join(part))
    return [v.strip() for v in out if v.strip()]


def _is_option(word: str) -> bool:
    return word.startswith("-") and word != "-" and not _NUMBER.match(word)


def gather_values(args: list[str], multi: dict[str, str], no_split: set[str] = frozenset()) -> list[str]:
    """Rewrite ``args`` so click sees every value of a multi-value option as one repeated option.

    ``multi`` maps each option string of a multi-value option (``--lang``, ``-l``) to the string to repeat;
    the words after such an option up to the next option are its values (argparse ``nargs='+'``), and each value
    is split at top-level commas unless the option is in ``no_split`` (free text such as ``--text``).
    ``--`` ends option processing as usual.
    """
    out: list[str] = []
    current: str | None = None
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            out.extend(args[i:])
            break
        if _is_option(word):
            name, eq, value = word.partition("=")
            current = multi.get(name) if name.startswith("--") or len(name) == 2 else None
            i += 1
            if current is None:
                out.append(word)
                continue
            if not eq:  # the option's first value is the next word, whatever it looks like
                if i >= len(args):
                    out.append(word)
                    break
                value = args[i]
                i += 1
            out.extend(_values(current, value, no_split))
            continue
        if current is not None:
            out.extend(_values(current, word, no_split))
        else:
            out.append(word)
        i += 1
    return out


def _values(option: str, value: str, no_split: set[str]) -> list[str]:
    parts = [value] if option in no_split else (split_values(value) or [value])
    return [w for part in parts for w in (option, part)]


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


_TYPE_METAVARS = {"int": "INT", "float": "FLOAT", "Path": "PATH", "str": "TEXT"}


def _metavar(param: Any) -> str:
    """The value placeholder shown in help: TEXT, INT, FLOAT, PATH or the choices (``…`` when repeatable)."""
    if getattr(param, "is_flag", False):
        return ""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_choice:
        label = "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    else:
        bare = param.bare_type() if hasattr(param, "bare_type") else "str"
        bare = bare.removeprefix("list[").removesuffix("]")
        label = _TYPE_METAVARS.get(bare, "TEXT")
    return label + ("…" if getattr(param, "multiple", False) else "")


class Command(typer.core.TyperCommand):
    """A typer command with argparse-style multi-value options, paper-flag errors and one-line errors."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from langfeat.cli.options import NO_SPLIT, PAPER_ONLY_FLAGS

        declared = {o for p in self.params for o in (*p.opts, *p.secondary_opts)}
        for word in args:
            if word == "--":
                break
            flag = word.partition("=")[0]
            if flag in PAPER_ONLY_FLAGS and flag not in declared:
                raise fail(f"{flag} has no meaning here: {PAPER_ONLY_FLAGS[flag]}")
        multi: dict[str, str] = {}
        no_split: set[str] = set()
        for p in self.params:
            if isinstance(p, typer.core.TyperOption) and p.multiple:
                long = next((o for o in p.opts if o.startswith("--")), p.opts[0])
                multi.update({o: long for o in p.opts})
                if p.name in NO_SPLIT:
                    no_split.add(long)
        return super().parse_args(ctx, gather_values(list(args), multi, no_split))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LangfeatError as exc:
            if os.environ.get("LANGFEAT_DEBUG"):  # the full traceback, for debugging langfeat itself
                raise
            raise fail(str(exc)) from None
        except KeyboardInterrupt as exc:  # SIGTERM during a write arrives as one too (exit 143)
            err_console.print(f"[yellow]{exc or 'interrupted'}[/]", highlight=False)
            sys.exit(getattr(exc, "exit_code", 130))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if isinstance(p, typer.core.TyperArgument):
                name = (p.metavar or p.name or "").upper() + ("…" if p.nargs != 1 else "")
                pieces.append(name if p.required else f"[{name}]")
        return pieces


def _print_options_panel(*, name: str, params: list, ctx: Any, markup_mode: Any, console: Console) -> None:
    """Typer's options panel, laid out so names are never cut: one column of names (each alias, the
    ``--no-…`` form and the value placeholder on lines of their own), descriptions wrapped beside it."""
    from rich import box
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    rows = []
    for param in params:
        if isinstance(param, typer.core.TyperArgument):
            label = Text((param.metavar or param.name or "").upper() + ("…" if param.nargs != 1 else ""),
                         style=typer.rich_utils.STYLE_OPTION)
        else:
            names = sorted(param.opts, key=lambda o: (not o.startswith("--"), 0))
            longs = [o for o in names if o.startswith("--")]
            shorts = [o for o in names if not o.startswith("--")]
            first = longs[0] if longs else shorts[0]
            label = Text(first, style=typer.rich_utils.STYLE_OPTION)
            if shorts and longs:
                label.append(", " + ", ".join(shorts), style=typer.rich_utils.STYLE_SWITCH)
            metavar = _metavar(param)
            if metavar:
                label.append(" " + metavar, style=typer.rich_utils.STYLE_TYPES)
            for alias in longs[1:]:
                label.append("\n" + alias, style=typer.rich_utils.STYLE_OPTION)
            for neg in param.secondary_opts:
                label.append("\n" + neg, style=typer.rich_utils.STYLE_NEGATIVE_OPTION)
        rows.append((label, typer.rich_utils._get_parameter_help(param=param, ctx=ctx, markup_mode=markup_mode)))
    if not rows:
        return
    table = Table(show_header=False, expand=True, box=None, padding=(0, 1), pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(ratio=1)
    for row in rows:
        table.add_row(*row)
    console.print(Panel(table, border_style=typer.rich_utils.STYLE_OPTIONS_PANEL_BORDER, title=name,
                        title_align=typer.rich_utils.ALIGN_OPTIONS_PANEL, box=box.ROUNDED))


typer.rich_utils._print_options_panel = _print_options_panel  # the one layout change to typer's rich help


def _one_line_usage_error(exc: Any) -> None:
    """A click usage error (unknown option, bad value, missing argument) as one ``error:`` line with the fix."""
    if exc.__class__.__name__ == "NoArgsIsHelpError":
        return
    ctx = getattr(exc, "ctx", None)
    message = " ".join(str(exc.format_message()).split()).rstrip(".")
    where = f"`{ctx.command_path} --help`" if ctx is not None else "`langfeat --help`"
    err_console.print(f"[bold red]error:[/] {message}: see {where}", highlight=False, soft_wrap=True, markup=True)


typer.rich_utils.rich_format_error = _one_line_usage_error  # usage errors on one line, like every other error


class App(typer.Typer):
    """``typer.Typer`` whose commands are :class:`Command` (multi-value options, one-line errors)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


app = App(
    name="langfeat",
    help="A database of language-specific SAE features and MLP neurons: ingest, identify, query, experiment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

report_app = App(help="Rich reports over the store (features, languages, experiments).", no_args_is_help=True)
app.add_typer(report_app, name="report")

# Human-facing output (progress, tables, messages) goes to stderr (err_console) unless a command renders a
# report; machine-readable results go to stdout only.


class _StdoutConsole:
    """The stdout console, made afresh at each use: its width follows ``$COLUMNS`` and the terminal at the time of
    the call (a console made once at import keeps the width the environment had then)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(Console(), name)


out_console = _StdoutConsole()
