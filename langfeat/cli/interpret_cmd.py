"""CLI commands: ``langfeat interpret`` (explain and score features) and ``langfeat report interpret``."""

from __future__ import annotations

import typer

from langfeat.cli.app import app, err_console, handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.cli.ppl_cmd import split_values
from langfeat.experiments import interpret as ip
from langfeat.progress import progress_bar


@app.command("interpret")
@handle_errors
def interpret_command(
    feature_set: str = typer.Option(..., help="Feature set whose SAE features are explained (see `langfeat sets`)."),
    explainer: str = typer.Option("local:smollm2", help="openai:MODEL (any chat-completions endpoint) or "
                                  "local:MODEL (folder, GGUF file or 'smollm2')."),
    base_url: str = typer.Option(ip.DEFAULT_BASE_URL, help="Endpoint of openai:MODEL, e.g. "
                                 "https://openrouter.ai/api/v1 or http://127.0.0.1:8000/v1."),
    api_key_env: str | None = typer.Option(None, help="Variable holding the API key (default: the first set of "
                                           "LANGFEAT_API_KEY, OPENAI_API_KEY, OPENROUTER_API_KEY)."),
    n_examples_train: int = typer.Option(40, help="Top-activating examples shown to the explainer."),
    n_examples_test: int = typer.Option(50, help="Activating test examples (n-quantiles equal draws)."),
    n_quantiles: int = typer.Option(10, help="Activation quantiles of the test draw."),
    n_non_activating: int = typer.Option(50, help="Random non-activating test examples."),
    example_ctx_len: int = typer.Option(32, help="Tokens per example."),
    scorers: list[str] = typer.Option(["detection,fuzz"], help="detection and/or fuzz; repeat or comma-separate."),
    max_features: int | None = typer.Option(None, help="Explain only this many features (round-robin over "
                                            "the set's languages)."),
    concurrency: int = typer.Option(8, help="Requests in flight at once (local models: 1)."),
    examples_per_prompt: int = typer.Option(5, help="Examples per scorer prompt (local models: 1)."),
    rate_limit: float | None = typer.Option(None, help="Most requests started per second."),
    max_retries: int = typer.Option(6, help="Retries of a request answered 429 / 5xx or not at all."),
    threshold: float = typer.Option(0.3, help="Mark tokens with activation >= this x the example's maximum."),
    seed: int = typer.Option(42, help="Seed of every random draw (examples, fuzz marks, order)."),
    filter_bos: bool = typer.Option(False, help="Ignore activations at position 0 (the paper did not)."),
    tokenizer: str | None = typer.Option(None, help="Tokenizer of the runs' token ids (default: their model)."),
    device: str = typer.Option("auto", help="Device of a local explainer: auto | cpu | cuda | cuda:N."),
    name: str | None = typer.Option(None, help="Result name (default: SET-MODEL)."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Explain the features of a set from their top-activating contexts and score the explanations
    (detection, fuzz); store everything, print the scores per language.

    Example: langfeat interpret --feature-set lape_all --explainer openai:openai/gpt-4.1
    --base-url https://openrouter.ai/api/v1
    """
    opts = ip.InterpretOptions(
        feature_set=feature_set, explainer=explainer, base_url=base_url, api_key_env=api_key_env,
        n_examples_train=n_examples_train, n_examples_test=n_examples_test, n_quantiles=n_quantiles,
        n_non_activating=n_non_activating, example_ctx_len=example_ctx_len, scorers=split_values(scorers),
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
    name: str | None = typer.Argument(None, help="Result name; omitted: list the stored interpret results."),
    features: bool = typer.Option(False, help="Also list every feature's explanation and scores."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Mean detection / fuzz scores per language (the paper's average_scores.csv) of an interpret result."""
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
