"""``langfeat report html``: one self-contained static HTML page of whatever a store holds.

Sections (each omitted when the store has nothing for it): runs; feature sets (units per layer × language,
units per language, entropy distributions, a table of each language's first units with their top-activating
contexts shaded by activation and explanations); language identification (metrics, confusion matrices); ΔPPL
matrices with their diagonal / off-diagonal summary; steering switch rate by α per language.

Every number comes from the SQL views (``report_*``, ``classify_*``, ``ppl_*``, ``generate_*`` and
``queries/html/``); charts are plotly figures (plotly.js inlined once, in the page's head), tables
a jinja2 template with autoescaping. The page loads nothing from the network. It is written to a temporary file
and renamed into place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from langfeat import langs
from langfeat.errors import UsageError
from langfeat.stats import opened

__all__ = ["REPORT_FILE", "write_html_report"]

REPORT_FILE = "index.html"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


# ---------------------------------------------------------------------------------------------------------------
# labels and ordering


def _lang_label(tag: str) -> str:
    """``'English'`` for ``'en'``; anything unknown (``'unknown'``) as is."""
    try:
        return langs.english_name(tag)
    except langs.UnknownLanguageError:
        return tag


def _lang_order(tags: list[str]) -> list[str]:
    """Distinct ``tags`` by English name (the paper's order); unknown tags last."""
    def key(tag: str) -> tuple[int, str, str]:
        try:
            return (0, langs.sort_key(tag), tag)
        except langs.UnknownLanguageError:
            return (1, tag, tag)
    return sorted(dict.fromkeys(tags), key=key)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


@dataclass
class Table:
    """Rows for the template: column names, formatted cells, a CSS class per column."""

    columns: list[str]
    rows: list[list[str]]
    classes: list[str]  # CSS class per column: 'num' for numbers, 'long' for text that may wrap

    @classmethod
    def of(cls, df: pl.DataFrame) -> Table:
        rows = [[_fmt(v) for v in row] for row in df.iter_rows()]
        widths = [max((len(r[i]) for r in rows), default=0) for i in range(df.width)]
        return cls(list(df.columns), rows, ["num" if dtype.is_numeric() else "long" if width > 60 else ""
                                            for dtype, width in zip(df.dtypes, widths, strict=True)])


@dataclass
class Figure:
    """One plotly figure rendered to an HTML fragment."""

    id: str
    title: str
    html: str
    note: str = ""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)  # {"figure": Figure} | {"table": Table, ...}


class _Figures:
    """Renders plotly figures as fragments without plotly.js (the page inlines it once, in its head)."""

    def __init__(self) -> None:
        self.count = 0

    def render(self, fig: Any, fid: str, title: str, note: str = "") -> Figure:
        fig.update_layout(template="plotly_white", margin={"l": 10, "r": 10, "t": 40, "b": 10},
                          title={"text": title, "font": {"size": 15}})
        html = fig.to_html(full_html=False, include_plotlyjs=False, div_id=fid, config=PLOT_CONFIG,
                           include_mathjax=False)
        self.count += 1
        return Figure(fid, title, html, note)


def _plotly_js() -> str:
    """plotly.js itself, to inline in the page (the page then works offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


# ---------------------------------------------------------------------------------------------------------------
# figures (plotly: no chart code of our own)


def _heatmap(z: list[list[Any]], x: list[Any], y: list[str], colorscale: str, zfmt: str, hover: str,
             zmid: float | None = None, xtitle: str = "", ytitle: str = "") -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, colorscale=colorscale, zmid=zmid, texttemplate=f"%{{z:{zfmt}}}", hovertemplate=hover,
        xgap=1, ygap=1, colorbar={"thickness": 12},
    ))
    fig.update_layout(height=max(260, 90 + 24 * len(y)))
    fig.update_xaxes(type="category", title=xtitle, side="bottom")
    fig.update_yaxes(type="category", title=ytitle, autorange="reversed")
    return fig


def _set_figures(st: Any, figs: _Figures, sets: pl.DataFrame) -> list[dict[str, Any]]:
    import plotly.graph_objects as go

    from langfeat.reports import features_report

    blocks: list[dict[str, Any]] = []
    per_lang = go.Figure()
    n_bars = 0
    for i, name in enumerate(sets["name"].to_list()):
        rep = features_report(st, name).filter(pl.col("lang") != "all")
        layer_cols = [c for c in rep.columns if c.startswith("L") and c[1:].isdigit()]
        used = [c for c in layer_cols if rep[c].sum() > 0]
        if used:
            lo, hi = int(used[0][1:]), int(used[-1][1:])
            cols = [f"L{n}" for n in range(lo, hi + 1)]
            fig = _heatmap(
                [list(r) for r in rep.select(cols).iter_rows()], list(range(lo, hi + 1)),
                [_lang_label(t) for t in rep["lang"].to_list()], "Blues", "d",
                "layer %{x}, %{y}: %{z} units<extra></extra>", xtitle="layer",
            )
            blocks.append({"figure": figs.render(fig, f"fig-set-layers-{i}", f"{name}: units per layer × language")})
        per_lang.add_trace(go.Bar(name=name, x=[_lang_label(t) for t in rep["lang"].to_list()],
                                  y=rep["n"].to_list(), hovertemplate="%{x}: %{y} units<extra>" + name + "</extra>"))
        n_bars += rep.height
    if n_bars:
        per_lang.update_layout(barmode="group", height=360, legend={"title": "feature set"})
        per_lang.update_yaxes(title="units")
        blocks.insert(0, {"figure": figs.render(per_lang, "fig-set-langs", "units per language")})

    ent = st.sql("SELECT * FROM html_set_entropy")
    if ent.height:
        box = go.Figure()
        for name in sets["name"].to_list():
            part = ent.filter(pl.col("name") == name)
            if part.height == 0:
                continue
            order = _lang_order(part["lang"].to_list())
            part = part.with_columns(pl.col("lang").replace_strict(order, list(range(len(order)))).alias("_o")) \
                .sort("_o")
            box.add_trace(go.Box(
                name=name, x=[_lang_label(t) for t in part["lang"].to_list()],
                lowerfence=part["entropy_min"].to_list(), q1=part["entropy_q1"].to_list(),
                median=part["entropy_median"].to_list(), q3=part["entropy_q3"].to_list(),
                upperfence=part["entropy_max"].to_list(),
            ))
        box.update_layout(boxmode="group", height=380, legend={"title": "feature set"})
        box.update_yaxes(title="entropy (nats)")
        blocks.append({"figure": figs.render(
            box, "fig-set-entropy", "entropy of the units per language",
            "box: quartiles of the entropies of the language's units; whiskers: min and max")})
    return blocks


# ---------------------------------------------------------------------------------------------------------------
# the feature table with contexts


@dataclass
class Context:
    lang: str
    tokens: list[tuple[str, float, str, bool]]  # (text, activation, background css, is the maximum)
    undecoded: str | None = None  # the run's model when no tokenizer loaded for it (tokens are ids)


def _contexts(st: Any, top: int, n_contexts: int, around: int, tokenizer: str | None
              ) -> dict[tuple[int, int], list[Context]]:
    """Contexts per (layer, feature) from html_feature_contexts, decoded with each run's tokenizer."""
    rows = st.sql("SELECT * FROM html_feature_contexts(top := ?, n_contexts := ?, tokens_around := ?)",
                  [top, n_contexts, around])
    if rows.height == 0:
        return {}
    from langfeat.experiments.check import token_pieces
    from langfeat.reports import _tokenizer

    run_ids = rows["run_id"].unique().to_list()
    models = dict(st.sql("SELECT run_id, model FROM runs WHERE list_contains(?, run_id)", [run_ids]).iter_rows())
    toks: dict[str | None, Any] = {}
    out: dict[tuple[int, int], list[Context]] = {}
    for (layer, feature, _k), part in rows.partition_by(["layer", "feature", "k"], as_dict=True,
                                                        maintain_order=True).items():
        model = models.get(part["run_id"][0])
        if model not in toks:
            toks[model] = _tokenizer(model, tokenizer)
        tok = toks[model]
        ids = part["token_id"].to_list()
        pieces = token_pieces(tok, ids)[0] if tok is not None else [f"[{i}] " for i in ids]
        acts = part["act"].to_list()
        peak = float(part["center_act"][0]) or 1.0
        center = int(part["center"][0])
        cells = []
        for piece, act, pos in zip(pieces, acts, part["pos"].to_list(), strict=True):
            alpha = max(0.0, min(1.0, float(act) / peak))
            bg = f"rgba(255, 127, 14, {alpha:.3f})" if act > 0 else "transparent"
            cells.append((piece.replace("\n", "⏎"), float(act), bg, pos == center))
        out.setdefault((int(layer), int(feature)), []).append(
            Context(part["lang"][0], cells, None if tok is not None else str(model)))
    return out


def _feature_tables(st: Any, top: int, n_contexts: int, around: int, tokenizer: str | None
                    ) -> list[dict[str, Any]]:
    table = st.sql("SELECT * FROM html_feature_table(top := ?)", [top])
    if table.height == 0:
        return []
    contexts = _contexts(st, top, n_contexts, around, tokenizer) if n_contexts > 0 else {}
    blocks = []
    for (name,), part in table.partition_by("name", as_dict=True, maintain_order=True).items():
        order = _lang_order(part["lang"].to_list())
        rows = []
        for lang in order:
            for r in part.filter(pl.col("lang") == lang).sort("rank").iter_rows(named=True):
                rows.append({
                    "lang": _lang_label(lang), "tag": lang, "rank": r["rank"], "kind": r["kind"],
                    "unit": f"{r['layer']}:{r['feature']}", "entropy": _fmt(r["entropy"]), "prob": _fmt(r["prob"]),
                    "act_max": _fmt(r["act_max"]), "explanation": r["explanation"] or "",
                    "contexts": contexts.get((r["layer"], r["feature"]), []) if r["kind"] == "sae" else [],
                })
        undecoded = sorted({c.undecoded for r in rows for c in r["contexts"] if c.undecoded})
        blocks.append({"features": rows, "set": name, "undecoded": undecoded})
    return blocks


# ---------------------------------------------------------------------------------------------------------------
# experiments


def _classify_blocks(st: Any, figs: _Figures) -> list[dict[str, Any]]:
    import plotly.graph_objects as go

    metrics = st.sql("SELECT * FROM classify_metrics ORDER BY name")
    if metrics.height == 0:
        return []
    blocks: list[dict[str, Any]] = [{"table": Table.of(metrics), "caption": "metrics per classification result "
                                     "(macro averages over the evaluated languages; 'unknown' counts as an error)"}]
    bars = go.Figure([
        go.Bar(name=label, x=metrics["name"].to_list(), y=metrics[col].to_list(),
               hovertemplate="%{x}: %{y:.3f}<extra>" + label + "</extra>")
        for col, label in (("accuracy", "accuracy"), ("f1_macro", "macro F1"))
    ])
    bars.update_layout(barmode="group", height=340)
    bars.update_yaxes(range=[0, 1.02], title="", tickformat=".0%")
    blocks.append({"figure": figs.render(bars, "fig-classify-metrics", "accuracy and macro F1 per result")})
    conf = st.sql("SELECT name, label, pred, n FROM classify_confusion")
    for i, (name, classifier) in enumerate(metrics.select("name", "classifier").iter_rows()):
        part = conf.filter(pl.col("name") == name)
        labels = _lang_order(part["label"].to_list())
        preds = _lang_order([*labels, *part["pred"].to_list()])
        cell = {(r["label"], r["pred"]): r["n"] for r in part.iter_rows(named=True)}
        z = [[cell.get((lab, p), 0) for p in preds] for lab in labels]
        fig = _heatmap(z, [_lang_label(p) for p in preds], [_lang_label(lab) for lab in labels], "Blues", "d",
                       "true %{y}, predicted %{x}: %{z}<extra></extra>", xtitle="predicted", ytitle="true")
        blocks.append({"figure": figs.render(fig, f"fig-confusion-{i}", f"{name} ({classifier}): confusion matrix")})
    return blocks


def _ppl_blocks(st: Any, figs: _Figures) -> list[dict[str, Any]]:
    delta = st.sql("SELECT name, intervention, int_lang, lang, n_pairs, mean_delta FROM ppl_delta")
    base = st.sql("SELECT name, lang, n_sentences, mean_ppl, median_ppl, corpus_ppl FROM ppl_summary "
                  "WHERE intervention = 'none' ORDER BY name")
    if delta.height == 0 and base.height == 0:
        return []
    summary = st.sql("SELECT * FROM ppl_delta_summary ORDER BY name, intervention, metric")
    blocks: list[dict[str, Any]] = []
    keys = sorted(set(delta.select("name", "intervention").iter_rows()))
    for i, (name, intervention) in enumerate(keys):
        part = delta.filter((pl.col("name") == name) & (pl.col("intervention") == intervention))
        rows = _lang_order(part["int_lang"].to_list())
        cols = _lang_order(part["lang"].to_list())
        cell = {(r["int_lang"], r["lang"]): r["mean_delta"] for r in part.iter_rows(named=True)}
        z = [[cell.get((a, b)) for b in cols] for a in rows]
        fig = _heatmap(z, [_lang_label(c) for c in cols], [_lang_label(r) for r in rows], "RdBu_r", ".3g",
                       "intervened %{y}, evaluated %{x}: ΔPPL %{z:.4g}<extra></extra>", zmid=0.0,
                       xtitle="evaluated language", ytitle="intervened language")
        blocks.append({"figure": figs.render(
            fig, f"fig-ppl-{i}", f"{name} ({intervention}): mean ΔPPL = mean(PPL intervened − PPL baseline)")})
        s = summary.filter((pl.col("name") == name) & (pl.col("intervention") == intervention)).drop(
            "name", "intervention")
        if s.height:
            blocks.append({"table": Table.of(s), "caption": f"{name}: diagonal vs off-diagonal cells (rowmax: rows "
                           "whose own language is the largest cell, of n_rows)"})
    if base.height:
        order = {t: i for i, t in enumerate(_lang_order(base["lang"].to_list()))}
        base = base.with_columns(pl.col("lang").replace_strict(order).alias("_o")).sort("name", "_o").drop("_o")
        blocks.append({"table": Table.of(base), "caption": "baseline perplexity per language (no intervention)"})
    return blocks


def _generate_blocks(st: Any, figs: _Figures) -> list[dict[str, Any]]:
    import plotly.graph_objects as go

    sw = st.sql("SELECT * FROM generate_switch ORDER BY name, lang, last_token, multiplier")
    if sw.height == 0:
        return []
    blocks: list[dict[str, Any]] = []
    for i, (name,) in enumerate(sw.select("name").unique(maintain_order=True).iter_rows()):
        part = sw.filter(pl.col("name") == name)
        fig = go.Figure()
        methods = sorted(part["method"].unique().to_list())
        for lang, method in ((x, m) for x in _lang_order(part["lang"].to_list()) for m in methods):
            for last in sorted(part.filter(pl.col("lang") == lang)["last_token"].unique().to_list()):
                line = part.filter((pl.col("lang") == lang) & (pl.col("last_token") == last)
                                   & (pl.col("method") == method))
                if line.height == 0:
                    continue
                label = _lang_label(lang) + (" (last token)" if last else "") + (f" {method}" if len(methods) > 1
                                                                                  else "")
                fig.add_trace(go.Scatter(
                    name=label, x=line["multiplier"].to_list(), y=line["switch_rate"].to_list(),
                    mode="lines+markers", customdata=line.select("n_switched", "n_judged").rows(),
                    hovertemplate="α %{x}: %{y:.0%} (%{customdata[0]} of %{customdata[1]})<extra>" + label
                    + "</extra>",
                ))
        fig.update_layout(height=380, legend={"title": "language"})
        fig.update_xaxes(title="α (multiplier)")
        fig.update_yaxes(title="switch rate", range=[-0.02, 1.02], tickformat=".0%")
        blocks.append({"figure": figs.render(
            fig, f"fig-generate-{i}", f"{name}: switch rate by α",
            "α ≥ 0: share of judged samples identified as the language; α < 0: share identified as another one")})
        cols = ["lang", "method", "multiplier", "last_token", "n", "n_judged", "n_switched", "switch_rate",
                "target_rate", "base_target_rate", "top_lid_lang", "mean_new_tokens"]
        blocks.append({"table": Table.of(part.select(cols)), "caption": f"{name}: per language and α"})
    return blocks


def _interpret_blocks(st: Any, figs: _Figures) -> list[dict[str, Any]]:
    scores = st.sql("SELECT * FROM interpret_lang_scores ORDER BY name, scorer")
    if scores.height == 0:
        return []
    blocks: list[dict[str, Any]] = []
    for i, (name,) in enumerate(scores.select("name").unique(maintain_order=True).iter_rows()):
        part = scores.filter(pl.col("name") == name)
        langs = _lang_order(part["lang"].to_list())
        scorers = sorted(set(part["scorer"].to_list()))
        cell = {(r["lang"], r["scorer"]): r["accuracy"] for r in part.iter_rows(named=True)}
        z = [[cell.get((lang, sc)) for sc in scorers] for lang in langs]
        fig = _heatmap(z, scorers, [_lang_label(lang) for lang in langs], "Viridis", ".2f",
                       "%{y}, %{x}: accuracy %{z:.3f}<extra></extra>", xtitle="scorer", ytitle="language")
        blocks.append({"figure": figs.render(
            fig, f"fig-interpret-{i}", f"{name}: mean scorer accuracy of the explanations per language",
            "0.5 is chance: detection and fuzzing score balanced sets of activating and non-activating examples")})
        order = {t: j for j, t in enumerate(langs)}
        table = part.with_columns(pl.col("lang").replace_strict(order).alias("_o")).sort("_o", "scorer").drop(
            "_o", "name")
        blocks.append({"table": Table.of(table), "caption": f"{name}: mean scores per language and scorer (the "
                       "explanations themselves are in the feature tables above)"})
    return blocks


def _methods_blocks(st: Any, figs: _Figures) -> list[dict[str, Any]]:
    """The methods side by side (``langfeat.experiments.methods``): one table per non-empty section view, and the
    LID accuracy of each method beside fastText's on the same texts."""
    import plotly.graph_objects as go

    from langfeat.experiments.methods import methods, title

    frames = methods(st)
    blocks: list[dict[str, Any]] = []
    lid = frames.get("methods_lid")
    if lid is not None:
        labels = [f"{m} ({s or '-'})" for m, s in zip(lid["method"], lid["feature_set"], strict=True)]
        bars = go.Figure([
            go.Bar(name=name, x=labels, y=lid[col].to_list(), hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>")
            for col, name in (("accuracy", "method"), ("fasttext_accuracy", "fastText, same texts"))
        ])
        bars.update_layout(barmode="group", height=340)
        bars.update_yaxes(range=[0, 1.02], tickformat=".0%")
        blocks.append({"figure": figs.render(bars, "fig-methods-lid", "LID accuracy per method vs fastText")})
    for section, frame in frames.items():
        blocks.append({"table": Table.of(frame), "caption": f"{section}: {title(section)}", "section": section})
    return blocks


# ---------------------------------------------------------------------------------------------------------------
# the page


def _sections(st: Any, top: int, n_contexts: int, around: int, tokenizer: str | None) -> tuple[list[Section], int]:
    from langfeat.reports import sets_report

    figs = _Figures()
    sections = []
    runs = st.sql("SELECT * FROM html_runs")
    if runs.height:
        sections.append(Section("runs", "Runs", f"{runs.height} run(s) in the store (every status).",
                                [{"table": Table.of(runs)}]))
    sets = sets_report(st)
    if sets.height:
        blocks = [{"table": Table.of(sets), "caption": "feature sets"}]
        blocks += _set_figures(st, figs, sets)
        blocks += _feature_tables(st, top, n_contexts, around, tokenizer)
        sections.append(Section(
            "features", "Language-specific features",
            f"The first {top} units of each language by rank, with their top-activating contexts (token shade = "
            "the feature's activation relative to the context's maximum, which is outlined).", blocks))
    for sid, title, intro, blocks in (
        ("classify", "Language identification", "Classifiers voting with the feature sets (and fastText).",
         _classify_blocks(st, figs)),
        ("ppl", "Perplexity under interventions", "ΔPPL per intervened × evaluated language, paired sentence by "
         "sentence with the baseline; a language-specific edit should raise its own language's PPL most.",
         _ppl_blocks(st, figs)),
        ("generate", "Steered generation", "Samples judged by the fastText language identifier.",
         _generate_blocks(st, figs)),
        ("methods", "Methods side by side", "Language identification per method against fastText on the same "
         "texts, steering score per method and language, ΔPPL diagonal dominance per method (docs/methods.md).",
         _methods_blocks(st, figs)),
        ("interpret", "Auto-interpretation", "Explanations written from each feature's top-activating contexts, "
         "scored by an LLM deciding which held-out contexts activate it (`langfeat interpret`).",
         _interpret_blocks(st, figs)),
    ):
        if blocks:
            sections.append(Section(sid, title, intro, blocks))
    return sections, figs.count


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>langfeat report: {{ store }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222; }
  header { background: #1f3b57; color: #fff; padding: 14px 24px; }
  header h1 { margin: 0 0 4px 0; font-size: 22px; }
  header p { margin: 0; opacity: 0.85; font-size: 13px; }
  nav { padding: 8px 24px; border-bottom: 1px solid #ddd; font-size: 14px; }
  nav a { margin-right: 16px; }
  main { padding: 0 24px 40px 24px; max-width: 1400px; }
  section { margin-top: 28px; }
  h2 { border-bottom: 2px solid #1f3b57; padding-bottom: 4px; }
  .figure { margin: 16px 0; border: 1px solid #eee; }
  .note, .caption { color: #555; font-size: 13px; margin: 4px 0; }
  .tablewrap { overflow-x: auto; margin: 12px 0; }
  table { border-collapse: collapse; font-size: 13px; }
  th, td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; }
  table.data td { white-space: nowrap; }
  table.data td.long { white-space: normal; min-width: 30em; }
  th { background: #f3f5f7; text-align: left; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .ctx { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; margin: 1px 0; }
  .ctx .lang { color: #777; font-size: 11px; margin-right: 6px; }
  .tok.max { outline: 1px solid #b35806; }
  .empty { color: #777; font-style: italic; }
  details > summary { cursor: pointer; font-weight: 600; margin: 10px 0; }
</style>
{% if plotly_js %}<script type="text/javascript">{{ plotly_js | safe }}</script>{% endif %}
</head>
<body>
<header>
  <h1>langfeat report</h1>
  <p>store {{ store }} · generated {{ generated }} · langfeat {{ version }}</p>
</header>
{% if sections %}
<nav>{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
{% endif %}
<main>
{% if not sections %}
<p class="empty" id="empty-store">The store holds no runs, feature sets or experiment results yet.</p>
{% endif %}
{% for s in sections %}
<section id="{{ s.id }}">
  <h2>{{ s.title }}</h2>
  {% if s.intro %}<p class="note">{{ s.intro }}</p>{% endif %}
  {% for b in s.blocks %}
    {% if 'figure' in b %}
    <div class="figure">{{ b.figure.html | safe }}
      {% if b.figure.note %}<p class="note">{{ b.figure.note }}</p>{% endif %}
    </div>
    {% elif 'table' in b %}
    <div class="tablewrap"{% if b.get('section') %} data-section="{{ b.section }}"{% endif %}>
      {% if b.get('caption') %}<p class="caption">{{ b.caption }}</p>{% endif %}
      <table class="data">
        <thead><tr>{% for c in b.table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
        <tbody>
        {% for row in b.table.rows %}
        <tr>{% for v in row %}<td class="{{ b.table.classes[loop.index0] }}">{{ v }}</td>{% endfor %}</tr>
        {% endfor %}
        </tbody>
      </table>
    </div>
    {% elif 'features' in b %}
    <details open class="feature-table" data-set="{{ b.set }}">
      <summary>{{ b.set }}: first units per language</summary>
      {% if b.undecoded %}<p class="note">token ids shown for {{ b.undecoded | join(", ") }}: no tokenizer loaded
      (pass --tokenizer)</p>{% endif %}
      <div class="tablewrap">
      <table class="features">
        <thead><tr><th>language</th><th>rank</th><th>unit</th><th>entropy</th><th>p</th><th>act max</th>
        <th>explanation</th><th>top contexts</th></tr></thead>
        <tbody>
        {% for f in b.features %}
        <tr data-unit="{{ f.unit }}" data-lang="{{ f.tag }}">
          <td>{{ f.lang }}</td><td class="num">{{ f.rank }}</td><td>{{ f.kind }} {{ f.unit }}</td>
          <td class="num">{{ f.entropy }}</td><td class="num">{{ f.prob }}</td><td class="num">{{ f.act_max }}</td>
          <td class="explanation">{{ f.explanation }}</td>
          <td>
          {% for c in f.contexts %}
            <div class="ctx"><span class="lang">{{ c.lang }}</span>{% for t in c.tokens -%}
            <span class="tok{{ ' max' if t[3] else '' }}" data-act="{{ '%.4g' % t[1] }}" title="{{ '%.4g' % t[1] }}"
                  style="background: {{ t[2] }}">{{ t[0] }}</span>
            {%- endfor %}</div>
          {% else %}
            <span class="empty">{{ 'no events stored' if f.kind == 'sae' else 'neurons: no stored contexts' }}</span>
          {% endfor %}
          </td>
        </tr>
        {% endfor %}
        </tbody>
      </table>
      </div>
    </details>
    {% endif %}
  {% endfor %}
</section>
{% endfor %}
</main>
</body>
</html>
"""


def _render(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    return env.from_string(TEMPLATE).render(**context)


def _out_dir(out: str | os.PathLike | None, store_root: Path) -> Path:
    folder = Path(out).expanduser().resolve() if out is not None else store_root / "report"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write the report to {folder}: it is a file, not a folder: pass --out pointing at a "
                         "writable folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot write the report to {folder}: {reason}: pass --out pointing at a writable folder") \
            from None
    return folder


def write_html_report(
    store: Any = None, out: str | os.PathLike | None = None, *, top: int = 5, contexts: int = 3,
    window: int = 8, tokenizer: str | os.PathLike | None = None,
) -> Path:
    """Write the HTML report of ``store`` to ``out/index.html`` (default ``<store>/report/``) and return its path.

    ``top`` units per (feature set, language) are listed, each with up to ``contexts`` top-activating contexts
    of ``window`` tokens either side, decoded with the run's tokenizer (or ``tokenizer``) when one loads from
    local files, else shown as token ids.
    """
    for value, what in ((top, "--top"), (contexts, "--contexts"), (window, "--window")):
        if value < 0:
            raise UsageError(f"{what} must be ≥ 0, got {value}")
    from langfeat import __version__

    with opened(store) as st, st.materialized("classify_votes"):  # read by three sections' views
        folder = _out_dir(out, st.root)
        sections, n_figures = _sections(st, top, contexts, window, None if tokenizer is None else str(tokenizer))
        html = _render({
            "store": str(st.root), "sections": sections, "version": __version__,
            "plotly_js": _plotly_js() if n_figures else "",
            "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        })
    target = folder / REPORT_FILE
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{REPORT_FILE}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write the report to {folder}: {exc.strerror or exc}: pass --out pointing at a "
                         "writable folder") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
