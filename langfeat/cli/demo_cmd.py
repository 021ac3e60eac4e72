"""CLI: ``langfeat demo``, the whole job on the shipped corpus and an offline model (``make demo``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from langfeat.cli.app import app, err_console, handle_errors, out_console
from langfeat.cli.options import Progress, quiet_progress
from langfeat.options import DemoConfig as D

if TYPE_CHECKING:
    from langfeat.demo import DemoSummary


@app.command("demo")
@handle_errors
def demo_command(
    store: Annotated[str, typer.Option(help="Store folder; the SAEs go to <store>-saes.")] = D.store,
    model: Annotated[str, typer.Option(help="Model: gemma3-270m (multilingual), smollm2, a folder or a hub id.")
                     ] = D.model,
    quick: Annotated[bool, typer.Option("--quick", help="Less text and fewer samples (a few minutes).")] = False,
    layers: Annotated[Optional[list[int]], typer.Option(  # noqa: UP045
        "--layer", help="Layer numbers to train SAEs on and hook (default 1 2 3 4 5 6).")] = None,
    num_latents: Annotated[int, typer.Option(help="SAE width.")] = D.num_latents,
    k: Annotated[int, typer.Option(help="Active latents per token (TopK).")] = D.k,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = D.device,
    dtype: Annotated[str, typer.Option(
        help="Model precision: auto (bfloat16 where the device computes it natively: a CUDA GPU, or a CPU with AMX "
             "or AVX-512 BF16; else float32) | float32 | bfloat16 | float16.")] = D.dtype,
    progress: Progress = True,
) -> None:
    """Train SAEs, ingest, identify, classify, ΔPPL, steer, check and write the HTML report; reruns skip
    finished steps.

    Example: langfeat demo --store demo-store --model gemma3-270m
    """
    from dataclasses import replace

    from langfeat.demo import run_demo
    from langfeat.progress import progress_bar

    quiet_progress(progress)
    config = replace(D(), store=store, model=model, num_latents=num_latents, k=k, device=device,
                     dtype=dtype, layers=tuple(layers) if layers else D.layers)
    if quick:
        config = config.quick()
    with progress_bar() as bar:
        bar.disable = not progress
        summary = run_demo(config, bar, log=lambda msg: err_console.print(msg, highlight=False))
    for block in render_summary(summary):
        out_console.print(block)


def render_summary(summary: DemoSummary) -> list[Any]:
    """The final screen: SAE quality, features per language, own-vs-other firing, LID, ΔPPL, switch rates."""
    import polars as pl
    from rich.panel import Panel

    from langfeat.cli.output import rich_table
    from langfeat.demo import ppl_note

    cfg = summary.config
    sae = pl.DataFrame([vars(s) for s in summary.sae_stats]) if summary.sae_stats else pl.DataFrame()
    feats = summary.features.join(summary.own_vs_other.select("lang", "own_rate", "top_other_rate",
                                                              "top_other_lang", "ratio"), on="lang", how="left")
    blocks: list[Any] = [
        rich_table(sae, title=f"SAEs ({cfg.model}): FVU, dead and dense latents on held-out tokens"),
        rich_table(feats, title="specific units per language; SAE features' firing rate in own vs top other "
                                "language", max_rows=feats.height),
        rich_table(summary.lid, title="language identification of held-out UDHR text"),
        rich_table(summary.methods_lid, title="LID per method vs fastText on the same texts (report methods)"),
        rich_table(summary.ppl, title="ΔPPL (mean): diagonal vs off-diagonal median"),
        rich_table(summary.switch, title="steered generation: switch rate (fastText judge)"),
        rich_table(summary.steering, title="steering sweep: best α per method (steering score = harmonic mean of "
                                           "success and fluency)", max_rows=summary.steering.height),
        rich_table(summary.methods_ppl, title="ΔPPL per method: diagonal = row maximum in n_diag_rowmax of n_rows"),
        rich_table(pl.DataFrame(summary.check) if summary.check else pl.DataFrame(), title="check"),
    ]
    lines = [ppl_note(cfg),
             f"ran: {' '.join(summary.ran) or 'nothing'}; already done: {' '.join(summary.skipped) or 'nothing'}",
             "seconds: " + ", ".join(f"{k} {v:g}" for k, v in summary.seconds.items()),
             f"report: {summary.report}"]
    blocks.append(Panel("\n".join(lines), title="langfeat demo", expand=False))
    return blocks
