"""CLI commands: identify."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from langfeat.cli.app import app, err_console, handle_errors, out_console
from langfeat.cli.output import StoreOption
from langfeat.layers import compact
from langfeat.options import identify_defaults

_D = identify_defaults()  # the defaults of the identify macros (one definition, in SQL)

if TYPE_CHECKING:
    import polars as pl


def _report(df: pl.DataFrame, params: dict[str, Any], name: str, path: Path) -> None:
    """The summary on stdout: per-language counts, candidates and entropy range."""
    table = Table(title=f"feature set {name}", header_style="bold")
    for col in ("lang", "language", "docs", "tokens", "units", "entropy min", "median", "max"):
        table.add_column(col, justify="left" if col in ("lang", "language") else "right")

    def num(v: Any) -> str:
        return "" if v is None else f"{v:.3f}"

    for r in df.iter_rows(named=True):
        table.add_row(r["lang"], r["lang_name"] or "", str(r["docs"] or ""), str(r["tokens"] or ""), str(r["n"]),
                      num(r["entropy_min"]), num(r["entropy_median"]), num(r["entropy_max"]))
    out_console.print(table)
    counts = params.get("counts") or {}
    bits = [f"algorithm {params.get('algorithm')} ({params.get('kind')})",
            f"{counts.get('units', 0)} units, {counts.get('memberships', 0)} (language, unit) memberships"]
    if "candidates" in params:
        bits.append(f"{params['candidates']} candidates")
    if params.get("algorithm") == "lape":
        bits.append(f"{params.get('units_per_layer')} units per layer")
    ent = df["entropy_min"].drop_nulls()
    if ent.len():
        bits.append(f"entropy {df['entropy_min'].min():.4f} – {df['entropy_max'].max():.4f}")
    bits.append(f"{len(params.get('runs') or [])} runs, layers {compact(params.get('layers') or [])}")
    out_console.print("; ".join(bits), highlight=False, soft_wrap=True)
    merged = zip(params.get("runs") or [], params.get("dataset_configs") or [], strict=False)
    out_console.print("merged runs: " + ", ".join(f"{r} ({dc})" for r, dc in merged), highlight=False, soft_wrap=True)
    out_console.print(f"stored in {path}", highlight=False, soft_wrap=True)


@app.command("identify")
@handle_errors
def identify_cmd(
    model: Annotated[str | None, typer.Option(help="Model of the runs (default: the only one in the store).")] = None,
    sae_model: Annotated[str | None, typer.Option(help="SAE of the runs (default: the only one).")] = None,
    layer: Annotated[list[str] | None, typer.Option(
        help="Layers, bracex: 'model.layers.{0..15}.mlp' (SAE features) or '...mlp.act_fn' (neurons; "
             "'.mlp' with --algorithm lape also selects neurons). Default: the layers all runs hold.")] = None,
    dataset_configs: Annotated[list[str] | None, typer.Option(
        help="Runs to merge as DATASET:CONFIG, bracex: 'facebook/xnli:{en,de}'. Default: every complete run.")
    ] = None,
    algorithm: Annotated[str, typer.Option(
        help="sae-lape (or sae_lape) | lape | nu (Deng et al.'s monolinguality score ν: rank by ν, keep --top per "
             "language) | diffmean (steering vectors: re-runs the runs' model over their stored tokens; see "
             "`langfeat report diffmean`).")] = "sae-lape",
    topk_threshold_ratio: Annotated[float, typer.Option(
        help="SAE-LAPE: assign a unit to every language with p ≥ ratio · max p.")] = _D["ratio"],
    example_rate: Annotated[float, typer.Option(
        help="SAE-LAPE: some language must have the unit in ≥ ⌊rate · docs⌋ of its documents.")] = _D["example_rate"],
    hfl_rate: Annotated[float, typer.Option(
        help="SAE-LAPE: some language must have tok_count > ⌊rate · tokens⌋.")] = _D["hfl_rate"],
    lang_specific: Annotated[bool, typer.Option(help="Keep units assigned to exactly one language.")] = False,
    lang_shared: Annotated[bool, typer.Option(help="Keep units assigned to exactly --shared-count languages.")] = False,
    shared_count: Annotated[int, typer.Option(help="Languages per unit for --lang-shared.")] = _D["shared_count"],
    top: Annotated[int | None, typer.Option(help="Keep the first N units per language (0 = all).")] = None,
    top_per_layer: Annotated[bool, typer.Option(help="--top counts per layer of each language.")] = False,
    top_by_frequency: Annotated[bool, typer.Option(
        help="Order each language's units by its p (descending) instead of ascending entropy.")] = False,
    entropy_threshold: Annotated[float | None, typer.Option(help="Keep units with entropy ≤ this.")] = None,
    filter_rate: Annotated[float, typer.Option(
        help="LAPE: percentile of p a language must exceed.")] = _D["filter_rate"],
    top_rate: Annotated[float, typer.Option(
        help="LAPE: fraction of all units kept (lowest entropy).")] = _D["top_rate"],
    activation_bar_ratio: Annotated[float, typer.Option(
        help="LAPE: percentile bar for language assignment.")] = _D["activation_bar_ratio"],
    units_per_layer: Annotated[int | None, typer.Option(
        help="LAPE: units per layer for the percentiles (default: the largest unit index seen + 1).")] = None,
    name: Annotated[str | None, typer.Option(
        help="Feature set name (default from the parameters, e.g. sae-lape-r0.8-specific).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing set of that name.")] = False,
    export_pt: Annotated[Path | None, typer.Option(help="Also write the set in the paper's .pt schema.")] = None,
    export_csv: Annotated[Path | None, typer.Option(help="Also write the set as CSV.")] = None,
    local_sae_dir: Annotated[Path | None, typer.Option(
        help="With --export-pt: add decoder rows (sae_features) from SAEs in this folder.")] = None,
    role: Annotated[str, typer.Option(
        help="Merge runs of this role: identify | eval (texts classify ingested) | all.")] = "identify",
    run: Annotated[list[str] | None, typer.Option("--run", help="Merge exactly these runs (ids), any role.")] = None,
    store: StoreOption = None,
) -> None:
    """Identify language-specific SAE features (SAE-LAPE), neurons (LAPE) or either by ν, and store a named set.

    Counts of the selected runs are merged per language (XNLI 'en' and FLORES 'eng_Latn' are one language).

    Example: langfeat identify --layer 'model.layers.{0..15}.mlp' --dataset-configs 'facebook/xnli:{en,de,fr}'
    'openlanguagedata/flores_plus:{eng_Latn,deu_Latn}' --topk-threshold-ratio 0.5 --lang-specific
    """
    if algorithm.strip().lower() == "diffmean":
        from langfeat.cli.diffmean_cmd import identify_diffmean

        identify_diffmean(store, model=model, layers=layer or None, dataset_configs=dataset_configs or None,
                          role=None if role == "all" else role, runs=run or None, name=name, overwrite=overwrite)
        return
    from langfeat.identify import identify_named, summary
    from langfeat.stats import opened

    with opened(store) as st:
        set_name, df = identify_named(
            st, algorithm=algorithm, model=model, sae_model=sae_model, layers=layer or None,
            dataset_configs=dataset_configs or None, top=top, top_per_layer=top_per_layer,
            topk_threshold_ratio=topk_threshold_ratio, top_by_frequency=top_by_frequency, example_rate=example_rate,
            hfl_rate=hfl_rate, entropy_threshold=entropy_threshold, lang_specific=lang_specific,
            lang_shared=lang_shared, shared_count=shared_count, filter_rate=filter_rate, top_rate=top_rate,
            activation_bar_ratio=activation_bar_ratio, units_per_layer=units_per_layer, name=name,
            overwrite=overwrite, role=None if role == "all" else role, runs=run or None,
        )
        table, params = summary(st, set_name)
        if export_csv is not None:
            export_csv.parent.mkdir(parents=True, exist_ok=True)
            df.write_csv(export_csv)
            err_console.print(f"wrote {export_csv}", highlight=False)
        if export_pt is not None:
            from langfeat.formats.paper import export_pt as write_pt

            write_pt(st, set_name, export_pt, local_sae_dir=local_sae_dir)
            err_console.print(f"wrote {export_pt}", highlight=False)
        _report(table, params, set_name, st.layout.set_dir(set_name))

