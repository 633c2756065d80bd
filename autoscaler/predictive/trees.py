"""A fitted HistGradientBoostingRegressor evaluated on one row in plain Python.

The agent makes one forecast a tick (the backtest, one a step), and `predict`'s per-call
overhead on one row is many times the cost of this walk. scikit-learn has no public API to
a fitted model's trees: this module reads its private attributes (`_baseline_prediction`,
`_predictors` and their `nodes`), the one place in the project that does. pyproject.toml
bounds scikit-learn to the versions this was checked with, and `tests/unit/test_forecast.py`
fails if the walk and `predict` ever disagree. Figures: docs/forecast-notes.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

_Tree = tuple[list[int], list[float], list[int], list[int], list[int], list[int], list[float]]
"""A tree's nodes as columns: feature, threshold, missing values go left (0 or 1), left child,
right child, is a leaf (0 or 1), value."""


class Trees:
    """The trees of a fitted model (one output, numeric features only), read once."""

    def __init__(self, model: HistGradientBoostingRegressor) -> None:
        self._baseline = float(np.ravel(model._baseline_prediction)[0])
        self._trees: list[_Tree] = []
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            self._trees.append((
                nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist(),
                nodes["missing_go_to_left"].tolist(), nodes["left"].tolist(),
                nodes["right"].tolist(), nodes["is_leaf"].tolist(), nodes["value"].tolist(),
            ))

    def predict(self, row: Sequence[float]) -> float:
        """What `model.predict` says for `row` (NaN where a value is unknown)."""
        total = self._baseline
        for feature, threshold, missing_left, left, right, leaf, value in self._trees:
            node = 0
            while not leaf[node]:
                x = row[feature[node]]
                if x != x:
                    node = left[node] if missing_left[node] else right[node]
                elif x <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            total += value[node]
        return total
