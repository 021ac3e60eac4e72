"""The methods side by side (``langfeat report methods`` and the HTML report's "methods" section).

Each section is one view: ``methods_lid`` (language identification per method vs fastText on the same documents,
``queries/classify/40_methods_lid.sql``) and, where the store's catalog defines them, ``methods_steering`` (steering
score per method and language) and ``methods_ppl`` (ΔPPL diagonal dominance per method). A section whose view is
absent or empty is left out.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from langfeat.errors import UsageError

SECTIONS = {  # section name -> (view, title)
    "methods_lid": ("methods_lid", "language identification: accuracy per method vs fastText on the same texts"),
    "methods_steering": ("methods_steering", "steering: best α, success rate, fluency and steering score"),
    "methods_ppl": ("methods_ppl", "ΔPPL: diagonal dominance per method"),
}
LID_COLUMNS = ["method", "classifier", "feature_set", "dataset", "n_docs", "accuracy", "fasttext_accuracy"]


def _views(store: Any) -> set[str]:
    return set(store.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"].to_list())


def methods(store: Any) -> dict[str, pl.DataFrame]:
    """The non-empty sections, in :data:`SECTIONS` order: ``{name: frame read from its view}``."""
    views = _views(store)
    out: dict[str, pl.DataFrame] = {}
    for section, (view, _title) in SECTIONS.items():
        if view not in views:
            continue
        frame = store.sql(f"SELECT * FROM {view}")
        if section == "methods_lid":
            frame = frame.select([c for c in LID_COLUMNS if c in frame.columns])
        if frame.height:
            out[section] = frame
    return out


def title(section: str) -> str:
    """The display title of ``section``."""
    return SECTIONS[section][1] if section in SECTIONS else section


def compare_sets(store: Any, a: str, b: str) -> pl.DataFrame:
    """``report_set_compare(a, b)``: per language and layer the units of each set, both, and the Jaccard index
    (layer NULL: the language over every layer; lang NULL: all memberships). Raises UsageError on an unknown set."""
    from langfeat import langs

    known = set(store.sql("SELECT DISTINCT name FROM feature_sets")["name"].to_list())
    for name in (a, b):
        if name not in known:
            raise UsageError(f"no feature set named {name!r}: list them with `langfeat sets`")
    frame = store.sql("SELECT * FROM report_set_compare(?, ?)", [a, b])
    order = sorted({x for x in frame["lang"].to_list() if x is not None}, key=langs.sort_key)
    rank = {lang: i for i, lang in enumerate(order)}
    return frame.with_columns(
        pl.col("lang").replace_strict(rank, default=len(order), return_dtype=pl.Int64).alias("_o"),
        pl.col("layer").is_null().alias("_t"),
    ).sort("_o", "_t", "layer").drop("_o", "_t")
