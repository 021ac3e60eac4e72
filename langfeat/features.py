"""Where the experiments get their features: a feature set stored by ``langfeat identify`` (``--feature-set``) or a
paper LAPE result file (``--lape-result-path``), as one frame in the ``feature_sets`` columns.

Used by classify, check, ppl, generate and the ``.pt`` export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from langfeat.errors import UsageError

EXACTLY_ONE = "pass exactly one of --feature-set NAME and --lape-result-path FILE.pt"


@dataclass(frozen=True)
class FeatureSource:
    """A stored set (``feature_set``, its name) or a paper LAPE file (``lape_result_path``): exactly one."""

    feature_set: str | None = None
    lape_result_path: str | os.PathLike | None = None

    @classmethod
    def of(cls, opts: Any) -> FeatureSource:
        """The source named by an options object's ``feature_set`` / ``lape_result_path`` fields."""
        return cls(getattr(opts, "feature_set", None), getattr(opts, "lape_result_path", None))

    @property
    def given(self) -> bool:
        """Whether either option is set."""
        return self.feature_set is not None or self.lape_result_path is not None

    def check(self) -> FeatureSource:
        """Refuse none or both (before anything is loaded)."""
        if (self.feature_set is None) == (self.lape_result_path is None):
            raise UsageError(EXACTLY_ONE)
        return self

    @property
    def label(self) -> str:
        """A short name for result names: the set's name or the file's stem."""
        return self.feature_set or Path(self.lape_result_path or "").stem


def load_feature_set(store: Any, source: FeatureSource) -> pl.DataFrame:
    """The rows of ``source`` (``feature_sets`` columns; ``layer`` and ``feature`` as Int64), never empty.

    ``store`` is an open Store (left open) or a store path (opened and closed here) for a stored set.
    """
    source.check()
    if source.lape_result_path is not None:
        from langfeat.formats.paper import read_lape

        frame = read_lape(source.lape_result_path)
    else:
        from langfeat.stats import feature_set

        frame = feature_set(store, source.feature_set)
    if frame.height == 0:
        raise UsageError("the feature set is empty: identify features first or pick another set")
    return frame.with_columns(pl.col("layer").cast(pl.Int64), pl.col("feature").cast(pl.Int64))
