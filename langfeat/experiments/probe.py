"""Sparse linear probes over SAE features or MLP neurons (``classify --classifier-type sae-probe | neuron-probe``).

An L1-regularised multinomial logistic regression (scikit-learn, ``saga``) over per-document feature values, fit on
the documents of identification runs and scored on other (evaluation) runs. The matrix is the SQL macro
``probe_doc_units`` (value ``binary`` = fired or not, ``count`` = ln(1 + firings) or ``max`` = the largest
activation, ``probe_value``; with ``--probe-window W`` the training documents are cut into overlapping windows of W
tokens, each one example);
``--max-features-per-language k`` keeps, per language, the k features of largest mean difference between the
language's documents and the others' (``probe_mean_diff``, the k-sparse probing of SAEBench, Karvonen et al. 2025)
before the fit. scikit-learn only fits: the coefficients are stored (``classify_units.weight``,
``classify_langs.bias``) and the scores of the evaluated documents are the view ``classify_votes``.

The features with a positive weight for a language are also stored as feature set ``<result name>`` (algorithm
``sae-probe``, ``score`` = the weight, rank by weight), so ``report``, ``check`` and steering can use them.

``neuron-probe`` is the same probe over MLP neurons (kind ``neuron``): its matrix is ``probe_doc_neurons`` over the
stored per-document neuron values (``neuron_docs``, ingested with ``--neuron-docs``; value ``count`` = ln(1 + tokens
with output > 0, the default), ``mean`` = the sum of the positive outputs / the document's tokens, or ``binary``),
its k-sparse selection ``probe_neuron_mean_diff``, its feature set algorithm ``neuron-probe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from langfeat import langs
from langfeat.errors import UsageError

VALUES = ("binary", "count", "max")
NEURON_VALUES = ("count", "mean", "binary")
PROBE_CLASSIFIERS = ("sae-probe", "neuron-probe")
KINDS = {"sae-probe": "sae", "neuron-probe": "neuron"}  # classifier -> the units it fits on
DEFAULT_VALUES = {"sae": "count", "neuron": "count"}  # --probe-value when not given
CLASS_WEIGHTS = ("balanced", "none")


@dataclass
class Probe:
    """A fitted probe: languages (class order), the units (layer, feature) of the columns, coefficients
    ``[langs, units]`` and intercepts ``[langs]``."""

    langs: list[str]
    units: list[tuple[int, int]]
    coef: np.ndarray
    intercept: np.ndarray
    value: str
    kind: str = "sae"  # sae (features) | neuron

    @property
    def algorithm(self) -> str:
        """The feature set's algorithm: ``sae-probe`` or ``neuron-probe``."""
        return f"{self.kind}-probe"

    def units_frame(self) -> pl.DataFrame:
        """classify_units rows: every non-zero coefficient (kind, lang, layer, feature, weight, value)."""
        li, ui = np.nonzero(self.coef)
        return pl.DataFrame({
            "kind": [self.kind] * len(li), "lang": [self.langs[i] for i in li],
            "layer": [self.units[j][0] for j in ui], "feature": [self.units[j][1] for j in ui],
            "weight": self.coef[li, ui].astype(np.float64), "value": [self.value] * len(li),
        }, schema={"kind": pl.String, "lang": pl.String, "layer": pl.Int32, "feature": pl.Int32,
                   "weight": pl.Float64, "value": pl.String}).sort("lang", "layer", "feature")

    def langs_frame(self) -> pl.DataFrame:
        """classify_langs rows: lang, n_units (non-zero coefficients), bias, in the paper's language order."""
        frame = pl.DataFrame({
            "lang": self.langs, "n_units": (self.coef != 0).sum(axis=1).astype(np.int32),
            "bias": self.intercept.astype(np.float64),
        }, schema={"lang": pl.String, "n_units": pl.Int32, "bias": pl.Float64})
        return langs.sort_frame(frame, "lang")

    def feature_set(self, unit_stats: pl.DataFrame | None = None) -> pl.DataFrame:
        """feature_sets rows (algorithm sae-probe | neuron-probe): per language the units of positive weight, rank
        by weight. ``unit_stats`` (``probe_unit_stats``: layer, feature, act_max, act_min, act_avg, prob) fills in
        the activation statistics steering reads (α · act_max)."""
        units = self.units_frame().filter(pl.col("weight") > 0)
        out = units.select(
            pl.lit(self.algorithm).alias("algorithm"), "kind", "lang", "layer", "feature",
            pl.col("weight").alias("score"),
            pl.col("weight").rank("ordinal", descending=True).over("lang").cast(pl.Int32).alias("rank"),
        )
        if unit_stats is not None:
            out = out.join(unit_stats.select("layer", "feature", "prob", "act_max", "act_min", "act_avg"),
                           on=["layer", "feature"], how="left")
        return out.sort("lang", "rank")


def check_k(k: int | None) -> int | None:
    """``--max-features-per-language``: None (all) or a positive integer."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise UsageError(f"--max-features-per-language {k!r} is not a positive integer: pass 1, 2, 5, … or all")
    return k


def parse_k(text: str | None) -> int | None:
    """The CLI value of ``--max-features-per-language``: ``all`` (or nothing) → None, else a positive integer."""
    if text is None or str(text).strip().lower() == "all":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UsageError(f"--max-features-per-language {text!r} is not a number: pass 1, 2, 5, … or all") from None
    return check_k(value)


def check_value(value: str | None, kind: str = "sae") -> str:
    """``--probe-value`` for a probe over ``kind`` units (None: the kind's default)."""
    if value is None:
        return DEFAULT_VALUES[kind]
    if kind == "neuron":
        if value not in NEURON_VALUES:
            raise UsageError(f"--probe-value {value!r} does not apply to neurons: use count (ln(1 + tokens with "
                             "output > 0)), mean (positive outputs summed / tokens) or binary")
        return value
    if value not in VALUES:
        raise UsageError(f"unknown --probe-value {value!r}: use binary (fired), count (ln(1 + firings)) or max "
                         "(largest activation)")
    return value


def check_class_weight(value: str) -> str:
    """``--probe-class-weight``: balanced (each language weighs the same in the loss) or none."""
    if value not in CLASS_WEIGHTS:
        raise UsageError(f"unknown --probe-class-weight {value!r}: use balanced (every language weighs the same) "
                         "or none (every example weighs 1)")
    return value


def class_weights(y: np.ndarray, n_classes: int, class_weight: str) -> np.ndarray:
    """Per-example weights of the fit: ``balanced`` gives an example of language c the weight n / (L · n_c) (n
    examples, L languages present, n_c of language c), so each language's examples sum to n / L; ``none`` gives 1."""
    check_class_weight(class_weight)
    if class_weight == "none":
        return np.ones(len(y), dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    return len(y) / (present * counts[y])


def check_window(size: int | None, stride: int | None) -> tuple[int | None, int | None]:
    """``--probe-window`` / ``--probe-stride``: None (whole documents) or positive token counts."""
    for flag, v in (("--probe-window", size), ("--probe-stride", stride)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UsageError(f"{flag} {v!r} is not a positive number of tokens: pass e.g. 32, or leave it out")
    if stride is not None and size is None:
        raise UsageError("--probe-stride needs --probe-window: pass the window size too")
    return size, stride


Matrix = tuple[Any, np.ndarray, list[str], list[tuple[int, int]], np.ndarray]


def _training_langs(store: Any, ids: list[str]) -> list[str]:
    """The languages of the training runs' documents, in the paper's order; one-line errors for no documents or a
    single language."""
    found = store.sql("SELECT DISTINCT lang FROM docs WHERE list_contains(?, run_id)", [ids])["lang"].to_list()
    if not found:
        raise UsageError("the training runs hold no documents: ingest identification texts first")
    lang_list = sorted(found, key=langs.sort_key)
    if len(lang_list) < 2:
        raise UsageError(f"the training runs cover one language ({lang_list[0]}): a probe needs at least two")
    return lang_list


def training_matrix(store: Any, run_ids: Sequence[str], layers: Sequence[int], value: str, k: int | None,
                    window: int | None = None, stride: int | None = None) -> Matrix:
    """The training examples of ``run_ids``: (sparse X [examples, units], y (language index), languages, units,
    doc_ids (one per example)). An example is a document, or with ``window`` each window of ``window`` tokens every
    ``stride`` tokens of one (``probe_doc_units``). Units: every (layer, feature) that fired in a training example,
    or with ``k`` the union of each language's first k of ``probe_mean_diff``. Every number comes from the SQL
    macros."""
    ids = list(run_ids)
    lang_list = _training_langs(store, ids)
    args = "?, layers := ?, value := ?, window_size := ?, window_stride := ?"
    params = [ids, [int(x) for x in layers], value, window, stride]
    if k is None:
        units_query, units_params = "SELECT DISTINCT layer, feature FROM probe_cells", []
    else:  # the union of each language's first k (the examples are still every window of every cell)
        units_query = f"SELECT DISTINCT layer, feature FROM probe_mean_diff({args}) WHERE rank <= ?"
        units_params = [*params, int(k)]
    return _matrix(store, ids, lang_list, f"SELECT doc_id, win, layer, feature, x FROM probe_doc_units({args})",
                   params, units_query, units_params, windows=window is not None,
                   empty="no SAE feature fired in the training documents at these layers: check --layer")


def _matrix(store: Any, ids: list[str], lang_list: list[str], cells_query: str, params: list[Any],
            units_query: str, units_params: list[Any], windows: bool, empty: str) -> Matrix:
    """The Matrix of the cells ``cells_query`` (doc_id, win, layer, feature, x) over the columns ``units_query``
    (layer, feature; it may read the cells as ``probe_cells``) sorted, and the rows: every document of ``ids``
    (``windows`` false) or every (document, window) with a cell, by language, document, window. The cells, rows
    and columns stay inside DuckDB as temporary tables; only the (row, col, x) triplets come out, as arrays.
    ``empty`` is the error when there is no column."""
    if windows:
        rows_query = ("SELECT row_number() OVER (ORDER BY d.lang, c.doc_id, c.win) - 1 AS row, c.doc_id, c.win, d.lang "
                      "FROM (SELECT DISTINCT doc_id, win FROM probe_cells) c "
                      "JOIN (SELECT doc_id, lang FROM docs WHERE list_contains(?, run_id)) d USING (doc_id)")
    else:  # every document is one example (win 0), also one where nothing fired
        rows_query = ("SELECT row_number() OVER (ORDER BY lang, doc_id) - 1 AS row, doc_id, 0::BIGINT AS win, lang "
                      "FROM docs WHERE list_contains(?, run_id)")
    cols_query = f"SELECT row_number() OVER (ORDER BY layer, feature) - 1 AS col, layer, feature FROM ({units_query})"
    with store.temporary("probe_cells", cells_query, params), store.temporary("probe_rows", rows_query, [ids]), \
            store.temporary("probe_cols", cols_query, units_params):
        unit_frame = store.sql("SELECT layer, feature FROM probe_cols ORDER BY col")
        if unit_frame.height == 0:
            raise UsageError(empty)
        examples = store.sql("SELECT doc_id, lang FROM probe_rows ORDER BY row")
        at = store.arrays("SELECT r.row::BIGINT AS row, u.col::BIGINT AS col, c.x::DOUBLE AS x FROM probe_cells c "
                          "JOIN probe_rows r USING (doc_id, win) JOIN probe_cols u USING (layer, feature)")
    return _sparse(at, examples, unit_frame, lang_list)


def _sparse(at: dict[str, np.ndarray], examples: pl.DataFrame, unit_frame: pl.DataFrame, lang_list: list[str]
            ) -> Matrix:
    """The Matrix of the triplets ``at`` (row, col, x) over ``examples`` (doc_id, lang, by row) and ``unit_frame``
    (layer, feature, by column)."""
    from scipy import sparse

    x = sparse.csr_matrix((at["x"], (at["row"], at["col"])), shape=(examples.height, unit_frame.height))
    units = list(zip(unit_frame["layer"].to_list(), unit_frame["feature"].to_list(), strict=True))
    lang_index = {lang: i for i, lang in enumerate(lang_list)}
    y = np.array([lang_index[lang] for lang in examples["lang"].to_list()], dtype=np.int64)
    return x, y, lang_list, units, examples["doc_id"].to_numpy()


def matrix(kind: str, store: Any, run_ids: Sequence[str], layers: Sequence[int], value: str, k: int | None,
           window: int | None = None, stride: int | None = None) -> Matrix:
    """:func:`training_matrix` of SAE features (``kind`` sae; ``window``/``stride``: training windows) or
    :func:`neuron_training_matrix` (neuron; whole documents only)."""
    if kind == "neuron":
        return neuron_training_matrix(store, run_ids, layers, value, k)
    return training_matrix(store, run_ids, layers, value, k, window, stride)


def neuron_training_matrix(store: Any, run_ids: Sequence[str], layers: Sequence[int], value: str, k: int | None
                           ) -> Matrix:
    """:func:`training_matrix` over MLP neurons: the rows of ``probe_doc_neurons`` (every (layer, neuron) with an
    output > 0 in a training document) or, with ``k``, those of each language's first k of
    ``probe_neuron_mean_diff``. Units are (layer, neuron)."""
    ids = list(run_ids)
    lang_list = _training_langs(store, ids)
    params = [ids, [int(x) for x in layers], value]
    if k is None:
        units_query, units_params = "SELECT DISTINCT layer, feature FROM probe_cells", []
    else:
        units_query = ("SELECT DISTINCT layer, feature FROM probe_neuron_mean_diff(?, layers := ?, value := ?) "
                       "WHERE rank <= ?")
        units_params = [*params, int(k)]
    return _matrix(store, ids, lang_list, "SELECT doc_id, 0::BIGINT AS win, layer, feature, x "
                   "FROM probe_doc_neurons(?, layers := ?, value := ?)", params, units_query, units_params,
                   windows=False,
                   empty="no MLP neuron had an output > 0 in the training documents at these layers: check --layer")


def fit(x: Any, y: np.ndarray, lang_list: Sequence[str], units: Sequence[tuple[int, int]], value: str,
        c: float = 1.0, max_iter: int = 200, seed: int = 0, kind: str = "sae", class_weight: str = "balanced"
        ) -> Probe:
    """Fit the L1 multinomial logistic regression (``saga``) with the per-example weights :func:`class_weights`
    (``balanced``: every language weighs the same); two classes give ±coef/2 (same argmax, softmax)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if not (c > 0 and np.isfinite(c)):
        raise UsageError(f"--probe-c {c} must be a positive number (the inverse L1 strength)")
    weights = class_weights(np.asarray(y), len(lang_list), class_weight)
    model = LogisticRegression(l1_ratio=1.0, solver="saga", C=float(c), max_iter=max_iter, tol=1e-3,
                               random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sample_weight=weights)
    coef, intercept = np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)
    present = [lang_list[i] for i in model.classes_]
    if coef.shape[0] == 1:  # binary: sklearn keeps one row for the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return Probe(list(present), list(units), coef, intercept, value, kind)
