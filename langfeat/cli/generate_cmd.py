"""CLI commands: ``langfeat generate`` (steered generation) and ``langfeat report generate``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from langfeat.cli.app import app, err_console, out_console, report_app, split_values
from langfeat.cli.options import (
    Device,
    Dtype,
    FeatureSet,
    GgufFile,
    Langs,
    Layers,
    LocalSaeDir,
    ModelArg,
    Name,
    Progress,
    SaeModel,
    build,
    quiet_progress,
)
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.errors import UsageError
from langfeat.options import GenerateOptions as G
from langfeat.options import Sampling as S


@app.command("generate")
def generate_command(
    model: ModelArg,
    langs: Langs,
    multipliers: Annotated[list[float], typer.Option(
        "--multiplier", "-a", help="α value(s); 0 = unsteered baseline.")] = [1.0],  # noqa: B006
    layers: Layers = None,
    prompt: Annotated[str, typer.Option(help="Prompt; empty (the paper's setting) starts from BOS alone.")] = G.prompt,
    times: Annotated[int, typer.Option(
        help="Samples per (language, α); the paper's script defaulted to 5, its runs used 100.")] = G.times,
    max_new_tokens: Annotated[int, typer.Option(
        "--max-new-token", "--max-new-tokens",
        help="Most new tokens per sample; the paper's script defaulted to 50, its runs used 256.")
    ] = S.max_new_tokens,
    seed: Annotated[int, typer.Option(
        help="Sample i is drawn after seeding seed + i (with --batch: the batch's first i); the paper's script "
             "defaulted to 0.")] = G.seed,
    last_token_only: Annotated[bool, typer.Option(
        "--last-token-only", help="Steer only the newest position (else every position).")] = G.last_token_only,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = S.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = S.top_p,
    top_k: Annotated[int, typer.Option(help="Top-k cut-off (0 = none).")] = S.top_k,
    greedy: Annotated[bool, typer.Option("--greedy", help="Greedy decoding instead of sampling.")] = False,
    batch: Annotated[int, typer.Option(
        help="Samples generated together (1 = per-sample seeds, as in the paper).")] = G.batch,
    feature_set: FeatureSet = None,
    lape_result_path: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--lape-result-path", "--in-path", help="A paper LAPE result .pt file instead of --feature-set (the "
                                                "paper's --in-path).")] = None,
    sae_model: SaeModel = None,
    local_sae_dir: LocalSaeDir = None,
    judge: Annotated[bool, typer.Option(help="Judge each sample's language with the fastText identifier.")
                     ] = G.judge,
    methods: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--method", help="sae-features (the paper's steering) | diffmean (α · DiffMean vector, needs --diffmean) | "
                         "prompting ('Answer in <language>.' before the prompt, no steering); several = one sweep. "
                         "Default: sae-features.")] = None,
    diffmean: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="DiffMean vector set for --method diffmean (made by `identify --algorithm diffmean`).")] = None,
    instruction: Annotated[str, typer.Option(
        help="The prompting baseline's prefix; {language} becomes the language's English name.")] = G.instruction,
    fluency: Annotated[bool, typer.Option(
        help="Score each sample's per-character perplexity under the unsteered model (the fluency score).")
    ] = G.fluency,
    dtype: Dtype = G.dtype,
    device: Device = G.device,
    gguf_file: GgufFile = None,
    name: Name = None,
    progress: Progress = True,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Generate with steering (SAE features, DiffMean) or prompting, store every sample, judge its language and
    fluency; print switch rates (steering scores: `langfeat report generate NAME --scores`).

    Example: langfeat generate smollm2 --lang de fr --multiplier 0 0.4 --times 10 --feature-set lape_all
    --local-sae-dir saes --method sae-features diffmean prompting --diffmean dm
    """
    from langfeat.experiments import generate as gen
    from langfeat.progress import progress_bar
    from langfeat.store import open_store

    quiet_progress(progress)
    sampling = S(do_sample=not greedy, temperature=temperature, top_p=top_p, top_k=top_k,
                 max_new_tokens=max_new_tokens)
    opts = build(G, locals(), langs=split_values(langs), multipliers=list(multipliers), layers=layers or None,
                 sampling=sampling, store=str(store) if store else None,
                 methods=split_values(methods) or ["sae-features"])
    with progress_bar() as bar:
        bar.disable = not progress
        result, rows = gen.run_generate(opts, bar)
    err_console.print(f"stored generate result [bold]{result}[/] ({rows.height} samples)", highlight=False)
    with open_store(store) as st:
        emit(gen.switch_rates(st, result), fmt, output, title=f"generate {result}")


@report_app.command("generate")
def report_generate(
    name: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="Result name; omitted: list the stored generate results.")] = None,
    column: Annotated[str, typer.Option(help="Matrix value: switch_rate | target_rate | n_switched | ...")
                      ] = "switch_rate",
    samples: Annotated[int, typer.Option(help="Also show this many samples per (language, α).")] = 0,
    scores: Annotated[bool, typer.Option(
        "--scores", help="Show success rate, fluency and steering score per (method, language, α) and the best α "
                         "per language instead of switch rates.")] = False,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Switch rates by language and α (the automatic version of the paper's human 'changed' counts); with
    --scores the steering scores and the best α per language."""
    from langfeat.experiments import generate as gen
    from langfeat.store import open_store

    with open_store(store) as st:
        if name is None:
            emit(gen.list_results(st), fmt, output, title="generate results")
            return
        if scores:
            cells, best = gen.steering_scores(st, name), gen.best_alphas(st, name)
            if fmt is not Format.table or output is not None:
                emit(cells, fmt, output, title=f"generate {name}: steering scores")
                return
            out_console.print(rich_table(cells, title=f"steering scores per (method, language, α) ({name})",
                                         max_rows=cells.height))
            out_console.print(rich_table(best, title="best α per (method, language)", max_rows=best.height))
            return
        rates = gen.switch_rates(st, name)
        if column not in rates.columns or column in ("lang", "multiplier", "last_token", "method"):
            raise UsageError(f"unknown --column {column!r}: use one of {', '.join(rates.columns[4:])}")
        if fmt is not Format.table or output is not None:
            emit(rates, fmt, output, title=f"generate {name}")
            return
        out_console.print(rich_table(gen.switch_matrix(rates, column), title=f"{column} by α ({name})"))
        out_console.print(rich_table(rates, title="per (language, α)"))
        if samples > 0:
            shown = gen.sample_texts(st, name, samples)
            out_console.print(rich_table(shown, title="samples", max_rows=shown.height))
