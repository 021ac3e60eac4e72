"""CLI commands: ``langfeat interpret`` (explain and score features) and ``langfeat report interpret``."""

from __future__ import annotations

from typing import Annotated

import typer

from langfeat.cli.app import app, err_console, handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.cli.ppl_cmd import split_values
from langfeat.options import DEFAULT_BASE_URL
from langfeat.progress import progress_bar


@app.command("interpret")
@handle_errors
def interpret_command(
    feature_set: Annotated[str, typer.Option(
        help="Feature set whose SAE features are explained (see `langfeat sets`).")],
    explainer: Annotated[str, typer.Option(help="openai:MODEL (any chat-completions endpoint) or "
                                  "local:MODEL (folder, GGUF file or 'smollm2').")] = "local:smollm2",
    base_url: Annotated[str, typer.Option(help="Endpoint of openai:MODEL, e.g. "
                                 "https://openrouter.ai/api/v1 or http://127.0.0.1:8000/v1.")] = DEFAULT_BASE_URL,
    api_key_env: Annotated[str | None, typer.Option(help="Variable holding the API key (default: the first set of "
                                           "LANGFEAT_API_KEY, OPENAI_API_KEY, OPENROUTER_API_KEY).")] = None,
    n_examples_train: Annotated[int, typer.Option(help="Top-activating examples shown to the explainer.")] = 40,
    n_examples_test: Annotated[int, typer.Option(help="Activating test examples (n-quantiles equal draws).")] = 50,
    n_quantiles: Annotated[int, typer.Option(help="Activation quantiles of the test draw.")] = 10,
    n_non_activating: Annotated[int, typer.Option(help="Random non-activating test examples.")] = 50,
    example_ctx_len: Annotated[int, typer.Option(help="Tokens per example.")] = 32,
    scorers: Annotated[list[str] | None, typer.Option(
        help="detection and/or fuzz; repeat or comma-separate (default: both).")] = None,
    max_features: Annotated[int | None, typer.Option(help="Explain only this many features (round-robin over "
                                            "the set's languages).")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once (local models: 1).")] = 8,
    examples_per_prompt: Annotated[int, typer.Option(help="Examples per scorer prompt (local models: 1).")] = 5,
    rate_limit: Annotated[float | None, typer.Option(help="Most requests started per second.")] = None,
    max_retries: Annotated[int, typer.Option(help="Retries of a request answered 429 / 5xx or not at all.")] = 6,
    threshold: Annotated[float, typer.Option(
        help="Mark tokens with activation >= this x the example's maximum.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of every random draw (examples, fuzz marks, order).")] = 42,
    filter_bos: Annotated[bool, typer.Option(help="Ignore activations at position 0 (the paper did not).")] = False,
    tokenizer: Annotated[str | None, typer.Option(
        help="Tokenizer of the runs' token ids (default: their model).")] = None,
    device: Annotated[str, typer.Option(help="Device of a local explainer: auto | cpu | cuda | cuda:N.")] = "auto",
    name: Annotated[str | None, typer.Option(help="Result name (default: SET-MODEL).")] = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Explain the features of a set from their top-activating contexts and score the explanations
    (detection, fuzz); store everything, print the scores per language.

    Example: langfeat interpret --feature-set lape_all --explainer openai:openai/gpt-4.1
    --base-url https://openrouter.ai/api/v1
    """
    from langfeat.experiments import interpret as ip

    opts = ip.InterpretOptions(
        feature_set=feature_set, explainer=explainer, base_url=base_url, api_key_env=api_key_env,
        n_examples_train=n_examples_train, n_examples_test=n_examples_test, n_quantiles=n_quantiles,
        n_non_activating=n_non_activating, example_ctx_len=example_ctx_len,
        scorers=split_values(scorers or ["detection", "fuzz"]),
        max_features=max_features, concurrency=concurrency, examples_per_prompt=examples_per_prompt,
        rate_limit=rate_limit, max_retries=max_retries, threshold=threshold, seed=seed, filter_bos=filter_bos,
        tokenizer=tokenizer, device=device, name=name, store=str(store) if store else None,
    )
    with progress_bar() as progress:
        result = ip.interpret(opts, progress=progress)
    err_console.print(
        f"stored interpret result [bold]{result.name}[/] ({result.explanations.height} features; "
        f"{result.n_requests} requests sent, {result.n_cached} answered from the cache)", highlight=False)
    from langfeat.store import open_store

    with open_store(store) as st:
        emit(ip.lang_scores(st, result.name), fmt, output, title=f"interpret {result.name}")


@report_app.command("interpret")
@handle_errors
def report_interpret(
    name: Annotated[str | None, typer.Argument(help="Result name; omitted: list the stored interpret results.")] = None,
    features: Annotated[bool, typer.Option(help="Also list every feature's explanation and scores.")] = False,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Mean detection / fuzz scores per language (the paper's average_scores.csv) of an interpret result."""
    from langfeat.experiments import interpret as ip
    from langfeat.store import open_store

    with open_store(store) as st:
        if name is None:
            emit(ip.list_results(st), fmt, output, title="interpret results")
            return
        scores = ip.lang_scores(st, name)
        if fmt is not Format.table or output is not None:
            emit(ip.feature_scores(st, name) if features else scores, fmt, output, title=f"interpret {name}")
            return
        out_console.print(rich_table(scores.drop("lang"), title=f"scores per language ({name})"))
        if features:
            shown = ip.feature_scores(st, name)
            out_console.print(rich_table(shown, title="per feature", max_rows=shown.height))
