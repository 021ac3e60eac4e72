"""CLI commands: ``langfeat generate`` (steered generation) and ``langfeat report generate``."""

from __future__ import annotations

from pathlib import Path

import typer

from langfeat.cli.app import app, err_console, handle_errors, out_console, report_app
from langfeat.cli.output import Format, FormatOption, OutputOption, StoreOption, emit, rich_table
from langfeat.cli.ppl_cmd import split_values
from langfeat.errors import UsageError
from langfeat.experiments import generate as gen
from langfeat.progress import progress_bar


def _floats(values: list[str]) -> list[float]:
    out = []
    for v in split_values(values):
        try:
            out.append(float(v))
        except ValueError:
            raise UsageError(f"--multiplier {v!r} is not a number: pass values like 0.4 or -0.2") from None
    return out


@app.command("generate")
@handle_errors
def generate_command(
    model: str = typer.Argument(..., help="Model: hub id, local folder, GGUF file, or 'smollm2'."),
    lang: list[str] = typer.Option(..., "--lang", "-l", help="Target language(s); repeat, comma-separate, or 'all'."),
    multiplier: list[str] = typer.Option(
        ..., "--multiplier", "-a", help="α value(s); repeat or comma-separate; 0 = unsteered baseline."
    ),
    layer: list[str] | None = typer.Option(None, help="MLP module pattern(s); default: the feature set's layers."),
    prompt: str = typer.Option("", help="Prompt; empty (the paper's setting) starts from BOS alone."),
    times: int = typer.Option(100, help="Samples per (language, α)."),
    max_new_token: int = typer.Option(256, help="Most new tokens per sample."),
    seed: int = typer.Option(42, help="Sample i is drawn after seeding seed + i (batch: the batch's first i)."),
    last_token_only: bool = typer.Option(False, help="Steer only the newest position (else every position)."),
    temperature: float = typer.Option(0.6, help="Sampling temperature."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling mass."),
    top_k: int = typer.Option(50, help="Top-k cut-off (0 = none)."),
    greedy: bool = typer.Option(False, help="Greedy decoding instead of sampling."),
    batch: int = typer.Option(1, help="Samples generated together (1 = per-sample seeds, as in the paper)."),
    feature_set: str | None = typer.Option(None, help="Named feature set in the store."),
    lape_result_path: Path | None = typer.Option(None, help="A paper LAPE result .pt file instead of a stored set."),
    sae_model: str | None = typer.Option(None, help="Hub repo of the SAEs (sparsify layout)."),
    local_sae_dir: Path | None = typer.Option(None, help="Local SAE folder holding <hookpoint>/cfg.json."),
    judge: bool = typer.Option(True, help="Judge each sample's language with the fastText identifier."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    gguf_file: str | None = typer.Option(None, help="GGUF file name inside MODEL (a folder)."),
    name: str | None = typer.Option(None, help="Result name in the store (default: derived from the options)."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Generate with SAE-feature steering, store every sample, judge its language; print switch rates."""
    opts = gen.GenerateOptions(
        model=model, langs=split_values(lang), multipliers=_floats(multiplier), layers=layer or None,
        prompt=prompt, times=times, seed=seed, last_token_only=last_token_only, feature_set=feature_set,
        lape_result_path=str(lape_result_path) if lape_result_path else None, sae_model=sae_model,
        local_sae_dir=str(local_sae_dir) if local_sae_dir else None,
        sampling=gen.Sampling(do_sample=not greedy, temperature=temperature, top_p=top_p, top_k=top_k,
                              max_new_tokens=max_new_token),
        batch=batch, dtype=dtype, device=device, gguf_file=gguf_file, store=str(store) if store else None,
        name=name, judge=judge,
    )
    with progress_bar() as progress:
        result, rows = gen.run_generate(opts, progress)
    err_console.print(f"stored generate result [bold]{result}[/] ({rows.height} samples)", highlight=False)
    from langfeat.store import open_store

    emit(gen.switch_rates(open_store(store), result), fmt, output, title=f"generate {result}")


@report_app.command("generate")
@handle_errors
def report_generate(
    name: str | None = typer.Argument(None, help="Result name; omitted: list the stored generate results."),
    column: str = typer.Option("switch_rate", help="Matrix value: switch_rate | target_rate | n_switched | ..."),
    samples: int = typer.Option(0, help="Also show this many samples per (language, α)."),
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    """Switch rates by language and α (the automatic version of the paper's human 'changed' counts)."""
    from langfeat.store import open_store

    st = open_store(store)
    if name is None:
        emit(gen.list_results(st), fmt, output, title="generate results")
        return
    rates = gen.switch_rates(st, name)
    if column not in rates.columns or column in ("lang", "multiplier", "last_token"):
        raise UsageError(f"unknown --column {column!r}: use one of {', '.join(rates.columns[3:])}")
    if fmt is not Format.table or output is not None:
        emit(rates, fmt, output, title=f"generate {name}")
        return
    out_console.print(rich_table(gen.switch_matrix(rates, column), title=f"{column} by α ({name})"))
    out_console.print(rich_table(rates, title="per (language, α)"))
    if samples > 0:
        shown = gen.sample_texts(st, name, samples)
        out_console.print(rich_table(shown, title="samples", max_rows=shown.height))
