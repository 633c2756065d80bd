"""The forecaster's features, defined once in `_feature_set` and computed two ways: with numpy
for the many rows of a training (`features`), and from plain floats for the one row of a
tick (`feature_row`), where numpy's per-call cost would dominate.

A forecast made at the index `end` (the last value known) of a log1p series is for
`end + horizon`. Its features: the level now; the recent changes (lags); rolling means; the
value the same time a day and a week before the target time; time-of-day and day-of-week
terms of the target time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

LAGS = (1, 2, 3, 5, 10, 15, 30, 60)
"""Recent changes, in steps."""
WINDOWS = (5, 15, 60)
"""Rolling means, in steps."""

Column = TypeVar("Column", float, NDArray[np.float64])
"""A feature of one row (a float) or of many (an array, a row a forecast)."""


def _feature_set(
    now: Column, at: Callable[[int], Column], mean: Callable[[int], Column], seconds: Column,
    sin: Callable[[Column], Column], cos: Callable[[Column], Column], *, horizon: int,
    day: int, week: int,
) -> list[Column]:
    """The features in their order, from the level `now`, `at(offset)` (the value at
    end + offset, NaN where unknown), `mean(window)` (the mean of the known values of the
    last `window` steps, unknown ones counted as 0) and the target time in Unix seconds."""
    columns = [now]
    columns += [now - at(-lag) for lag in LAGS]
    columns += [mean(window) - now for window in WINDOWS]
    for season in (day, week):
        columns.append(at(horizon - season) - now)
        columns.append(at(horizon - season) - at(-season))
    day_phase = 2 * math.pi * (seconds % 86400) / 86400
    week_phase = 2 * math.pi * (seconds % (7 * 86400)) / (7 * 86400)
    for harmonic in (1, 2, 3):
        columns += [sin(harmonic * day_phase), cos(harmonic * day_phase)]
    columns += [sin(week_phase), cos(week_phase)]
    return columns


def features(
    logged: NDArray[np.float64], ends: NDArray[np.int64], *, horizon: int, day: int, week: int,
    start: datetime, step: timedelta,
) -> NDArray[np.float64]:
    """Feature rows for forecasts made at the indices `ends` of the log1p series `logged`
    (NaN where unknown), whose first value is at `start`."""
    n = len(logged)
    cumulative: NDArray[np.float64] = np.concatenate([[0.0], np.cumsum(np.nan_to_num(logged))])

    def at(offset: int) -> NDArray[np.float64]:
        indices = ends + offset
        valid = (indices >= 0) & (indices < n)
        out = np.full(len(indices), np.nan)
        out[valid] = logged[indices[valid]]
        return out

    def mean(window: int) -> NDArray[np.float64]:
        first = np.maximum(ends - window + 1, 0)
        return (cumulative[ends + 1] - cumulative[first]) / (ends + 1 - first)

    seconds = np.asarray(start.timestamp() + (ends + horizon) * step.total_seconds(), np.float64)
    return np.column_stack(_feature_set(logged[ends], at, mean, seconds, np.sin, np.cos,
                                        horizon=horizon, day=day, week=week))


def feature_row(
    logged: Sequence[float], end: int, *, horizon: int, day: int, week: int, start: datetime,
    step: timedelta,
) -> list[float]:
    """The row `features` makes for the one forecast made at `end`."""
    n = len(logged)

    def at(offset: int) -> float:
        index = end + offset
        return logged[index] if 0 <= index < n else math.nan

    def mean(window: int) -> float:
        part = [v if v == v else 0.0 for v in logged[max(end - window + 1, 0):end + 1]]
        return sum(part) / len(part)

    seconds = start.timestamp() + (end + horizon) * step.total_seconds()
    return _feature_set(logged[end], at, mean, seconds, math.sin, math.cos, horizon=horizon,
                        day=day, week=week)
