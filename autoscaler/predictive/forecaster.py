"""Forecasting a metric `horizon` ahead, for the predictive strategy. Pure: values in,
forecasts out; the clock is passed in and nothing is read from outside.

The model predicts the change of log1p(value) from now to the target time, from the
features of `features.py`. Working on log-changes makes it indifferent to the level, so a
site that grows tenfold is forecast as well as a flat one. A margin, the `margin_quantile`
of the forecast's own errors at the horizon over the last day's worth of resolved forecasts,
is added on top: a ratio, but never more than the largest shortfall of that day in the
metric's units. For a metric with a limit, the worst case raises the
forecast by the largest share of the load missed over a longer window (`LargestMiss`).
The measurements behind the constants are in docs/forecast-notes.md.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from autoscaler.core.strategies import ABOVE_LOAD
from autoscaler.predictive.accuracy import smape_term
from autoscaler.predictive.features import LAGS, feature_row, features
from autoscaler.predictive.trees import Trees

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
TRAINING_THREADS = 1
"""OpenMP threads for a training: they wait for each other by spinning, so beside other
busy processes (the agent shares its manager node with Swarm's own work) more threads train
slower, and on an idle machine they train no faster."""
MAX_TRAINING_ROWS = 10_000
"""Longer histories are trained on a sample of their forecast times (`rows_to_fit`): at one
point a minute, neighbouring rows nearly repeat each other, so leaving some out saves
training time at no cost in accuracy."""


@dataclass(frozen=True)
class ForecastSettings:
    step: timedelta
    horizon_steps: int
    history: timedelta
    min_history: timedelta
    margin_quantile: float
    max_error_pct: float
    retrain_every: timedelta
    error_window: timedelta = timedelta(minutes=30)
    """How far back the sMAPE that judges the model reaches: long enough to judge it, short
    enough to follow a change of regime (a quiet night, a match)."""
    margin_window: timedelta = DAY
    """How many errors the margin is a quantile of: a day's worth of resolved forecasts at
    the step (counted, not timed: forecasts not resolved in a gap of the metric leave the
    older ones in), so that one burst's misses are a few values among many and move the
    quantile little, where a half hour's window made them the margin for the next half
    hour."""
    worst_case_window: timedelta = timedelta(days=1)
    """How far back the worst case's largest miss reaches."""
    limit: float | None = None
    """The metric's `limit`: with one, each forecast also has a worst case."""


LARGEST_LOG1P = math.log1p(sys.float_info.max)


def rows_to_fit(slots: NDArray[np.int64]) -> NDArray[np.int64]:
    """Which training rows (oldest first; `slots[i]` the time of day of row i, in steps) a
    model is fitted on: all of them, or above MAX_TRAINING_ROWS a sample of that many, the
    newest kept. The sample takes every time of day once, at a random one of its days,
    before it takes any twice (seeded by the number of rows, so that a replay repeats):
    every k-th row left out the same times of day every day when k divides the day (k = 2
    at one point a minute), and a job at those minutes was never learnt; a plain random
    sample of a fixed-length history misses a few times of day at every training."""
    count = len(slots)
    if count <= MAX_TRAINING_ROWS:
        return np.arange(count, dtype=np.int64)
    older = slots[:-1]
    key = np.random.default_rng(count).random(count - 1)
    by_slot = np.lexsort((key, older))
    first = np.searchsorted(older[by_slot], older[by_slot], side="left")
    round_of = np.empty(count - 1, dtype=np.int64)
    round_of[by_slot] = np.arange(count - 1) - first
    chosen = np.lexsort((key, round_of))[:MAX_TRAINING_ROWS - 1]
    return np.append(np.sort(chosen), count - 1).astype(np.int64)


MIN_TRAINING_ROWS = 100
"""The fewest rows (a forecast time with its lags and the value a horizon later) the model
trains on; with fewer there is no model (`InsufficientHistory`)."""


def expm1_capped(logged: float) -> float:
    """expm1, at most the largest float: a metric at an exporter's "unlimited" (about 1.8e308)
    forecast to grow would overflow `math.expm1`."""
    return math.expm1(min(logged, LARGEST_LOG1P))


class Forecast(NamedTuple):
    """What a forecaster says for now + horizon: its values (None where it has none; still
    given in fall-back, for the record) and the reason not to use them."""

    point: float | None
    with_margin: float | None
    worst_case: float | None
    reason: str | None
    contradicted: bool = False
    """The load was under 1 / ABOVE_LOAD of every forecast made for the last horizon: the
    book lets this one keep the count, not raise it."""
    spread: float = 0.0
    """How far the forecast typically misses, as a share of `point` (`typical_miss`)."""


def missed_share(actual: float, forecast: float, floor: float) -> float:
    """(actual - forecast) / max(actual, floor): the share of the load a forecast missed;
    negative for a forecast above the load. Below `floor` (the metric's limit, one
    replica's worth) a miss counts as a share of the floor: a few requests in a quiet night
    over a forecast of nearly nothing are a miss of almost all the load, which would double
    the next day's forecasts, but not of a replica's worth."""
    scale = max(actual, floor)
    return (actual - forecast) / scale if scale > 0 else 0.0


OUTLIERS = 1
"""How many of the largest values in a window are taken for outliers and left out of the
worst case: one, so that a single missed minute does not raise the forecasts for a day; a
surge the forecast missed is several misses, and the next largest still says it
(docs/forecast-notes.md)."""
BUCKETS = 24
"""A window is kept as this many buckets of time, each with its own largest values: a
value leaves the window with its bucket, at most a bucket's length late."""
NAIVE_CHECK_SHARE = 0.25
"""The naive comparison judges a forecaster once it has resolved forecasts over this share
of a day."""


class WindowTop:
    """The (OUTLIERS + 1)-th largest value added within a window of time before now, kept as
    BUCKETS buckets of time with their largest values: constant work a value and a read,
    whatever the step, so a forecast costs the same at a 15 s tick as at a minute's."""

    def __init__(self, window: timedelta, keep: int = OUTLIERS + 1) -> None:
        self.window = window
        self.keep = keep
        self._width = max(window / BUCKETS, timedelta(seconds=1))
        self._buckets: deque[tuple[datetime, datetime, list[float]]] = deque()
        """(bucket's first time, its last time, its largest values, descending), oldest
        first."""

    def __bool__(self) -> bool:
        return bool(self._buckets)

    def add(self, time: datetime, value: float) -> None:
        """A value seen at `time`. A time before the last one (the clock set back) is taken
        as the last one, which keeps a value rather too long than too short."""
        if self._buckets:
            opened, last, top = self._buckets[-1]
            time = max(time, last)
            if time < opened + self._width:
                top.append(value)
                top.sort(reverse=True)
                del top[self.keep:]
                self._buckets[-1] = (opened, time, top)
                self.expire(time)
                return
        self._buckets.append((time, time, [value]))
        self.expire(time)

    def top(self, now: datetime) -> float | None:
        """The (keep)-th largest value within the window; None with fewer values."""
        self.expire(now)
        values = sorted((v for _, _, top in self._buckets for v in top), reverse=True)
        return values[self.keep - 1] if len(values) >= self.keep else None

    def expire(self, now: datetime) -> None:
        """Forget the buckets whose values all came at or before now - window."""
        while self._buckets and self._buckets[0][1] <= now - self.window:
            self._buckets.popleft()


class LargestMiss:
    """The largest `missed_share` of the forecasts resolved within a window of time before
    now, the OUTLIERS largest left out."""

    def __init__(self, window: timedelta, floor: float) -> None:
        self.window = window
        self.floor = floor
        self._top = WindowTop(window)

    def __bool__(self) -> bool:
        return bool(self._top)

    def add(self, time: datetime, actual: float, forecast: float) -> None:
        """A resolved forecast's miss."""
        self._top.add(time, missed_share(actual, forecast, self.floor))

    def largest(self, now: datetime) -> float:
        """The largest share resolved after now - window (OUTLIERS left out); 0 if none,
        or none was missed."""
        found = self._top.top(now)
        return max(found, 0.0) if found is not None else 0.0

    def expire(self, now: datetime) -> None:
        self._top.expire(now)


class NaiveComparison:
    """The resolved forecasts' absolute errors against those of the one-day seasonal naive
    forecast (the value a day before the target time) over the last day: their ratio is the
    MASE of the last day, with each side's largest error of the day left out. A single
    outlier is one error of each side, and the naive forecast repeats it a day later: kept,
    that one error of the naive side outweighed a day of small ones and turned a forecast
    worse than naive on (raising the count) for the whole next day."""

    def __init__(self, day: int) -> None:
        self.day = day
        self._pairs: deque[tuple[float, float]] = deque()
        self._errors = 0.0
        self._naive = 0.0
        self._added = 0
        self._largest: tuple[deque[tuple[int, float]], deque[tuple[int, float]]] = \
            (deque(), deque())
        """Per side (the forecasts', the naive ones'), the errors that may yet be the day's
        largest: (their count when added, error), the errors decreasing."""
        self._nonzero = [0, 0]
        """Per side, the day's errors other than 0: with one, the day but its largest has
        none, which the running sums, less the largest, read as their rounding."""

    def add(self, error: float, naive: float) -> None:
        self._pairs.append((error, naive))
        self._errors += error
        self._naive += naive
        self._added += 1
        self._count_nonzero((error, naive), 1)
        if len(self._pairs) > self.day:
            gone_error, gone_naive = self._pairs.popleft()
            self._errors -= gone_error
            self._naive -= gone_naive
            self._count_nonzero((gone_error, gone_naive), -1)
        if self._added % self.day == 0:  # no drift from the running sums
            self._errors = sum(e for e, _ in self._pairs)
            self._naive = sum(n for _, n in self._pairs)
        for largest, value in zip(self._largest, (error, naive), strict=True):
            while largest and largest[-1][1] <= value:
                largest.pop()
            largest.append((self._added, value))
            while largest[0][0] <= self._added - len(self._pairs):
                largest.popleft()

    def mase(self) -> float | None:
        """The last day's MASE, each side's largest error left out; None before a share of a
        day is resolved."""
        if len(self._pairs) < max(1, NAIVE_CHECK_SHARE * self.day):
            return None
        errors, naive = (
            total - largest[0][1] if nonzero > 1 else 0.0
            for total, largest, nonzero in zip((self._errors, self._naive), self._largest,
                                               self._nonzero, strict=True))
        if naive <= 0:
            return None if errors <= 0 else math.inf
        return errors / naive

    def _count_nonzero(self, pair: tuple[float, float], change: int) -> None:
        for side, error in enumerate(pair):
            if error != 0:
                self._nonzero[side] += change


class RecentValues:
    """The last `size` values added, for the margin's quantile and largest shortfall: a ring
    of them in the order added, and the same values sorted, so that a forecast reads its
    quantile without sorting a day of errors every tick."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring: list[float] = []
        self._next = 0
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._ring)

    def append(self, value: float) -> None:
        if len(self._ring) < self.size:
            self._ring.append(value)
        else:
            del self._sorted[bisect.bisect_left(self._sorted, self._ring[self._next])]
            self._ring[self._next] = value
            self._next = (self._next + 1) % self.size
        bisect.insort(self._sorted, value)

    def extend(self, values: np.ndarray) -> None:
        """Add `values` in order; only the newest `size` of them stay."""
        for value in values[-self.size:].tolist():
            self.append(value)

    def values(self) -> np.ndarray:
        """The values kept, in no particular order."""
        return np.array(self._ring)

    def largest(self) -> float:
        return self._sorted[-1]

    def quantile(self, q: float) -> float:
        """The `q` quantile of the values kept, interpolated between the two nearest as
        numpy's default (`linear`) method does."""
        position = q * (len(self._sorted) - 1)
        low = math.floor(position)
        high = min(low + 1, len(self._sorted) - 1)
        a, b, share = self._sorted[low], self._sorted[high], position - low
        return b - (b - a) * (1 - share) if share >= 0.5 else a + (b - a) * share


def typical_miss(errors: RecentValues, logged_point: float) -> float:
    """Half the interquartile range of the recent errors (log1p terms), as a share of the
    point forecast (`logged_point` in log1p terms): how far the forecasts spread about their
    usual error, half of them within it. The share is larger at a low level, where a request
    more or less is much of the load (a point of 0.4 requests a minute and errors of a
    request either way: about 1.5). 0 for a point of 0."""
    point = expm1_capped(logged_point)
    if point <= 0:
        return 0.0
    half = (errors.quantile(0.75) - errors.quantile(0.25)) / 2
    return (expm1_capped(logged_point + half) - point) / point


class MetricForecaster:
    """One metric of one service: its recent values, its model, its recent errors.

    Values are kept at the forecaster's step from the first one it was given (by `train`
    or `observe`); a tick that comes late or early is placed at the nearest step.
    """

    def __init__(self, settings: ForecastSettings) -> None:
        self.settings = settings
        self._day = max(1, round(DAY / settings.step))
        self._week = max(1, round(WEEK / settings.step))
        self._keep = self._week + settings.horizon_steps + max(LAGS) + 2
        self._start: datetime | None = None
        self._logged: list[float] = []
        self._trees: Trees | None = None
        self._failure: str | None = "NoModel"
        self._pending: deque[tuple[datetime, float]] = deque()
        """Forecasts made and not yet resolved: (target time, forecast without margin)."""
        error_points = max(1, round(settings.error_window / settings.step))
        margin_points = max(1, round(settings.margin_window / settings.step))
        self._errors = RecentValues(margin_points)
        """log1p(actual) - log1p(forecast) of resolved forecasts (floored at 0 like the ones
        served), seeded at the first training with those of the history's last forecasts
        (rows the model was partly fitted on, so the first day's margin is a little low)."""
        self._shortfalls = RecentValues(margin_points)
        """actual - forecast of the same forecasts, in the metric's units: the margin never
        adds more than the largest of them."""
        self._smape: deque[float] = deque(maxlen=error_points)
        self._misses = None if settings.limit is None \
            else LargestMiss(settings.worst_case_window, settings.limit)
        """The same forecasts' misses, for the worst case (metrics with a limit)."""
        self._naive = NaiveComparison(self._day)
        self._recent: deque[tuple[datetime, float, float]] = \
            deque(maxlen=settings.horizon_steps)
        """The last resolved forecasts, a horizon's worth: (resolved at, actual, forecast).
        Only those of the last horizon's every step say the load contradicts the forecast:
        older ones, left in by a gap of the metric or a skipped tick, say nothing of it."""

    @property
    def trained(self) -> bool:
        return self._trees is not None

    def train(self, times: Sequence[datetime], values: Sequence[float | None]) -> str | None:
        """Fit on the history (times at the step, oldest first); the reason it could not."""
        known = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
        span = (known[-1][0] - known[0][0]) if len(known) > 1 else timedelta(0)
        # Each point stands for a step: a whole `history` ([start, end) at the step) spans a
        # step less between its first and last points, and `min_history` may equal it.
        if not known or span + self.settings.step < self.settings.min_history:
            return self._not_trained("InsufficientHistory")
        first = known[0][0]
        size = round(span / self.settings.step) + 1
        series = np.full(size, np.nan)
        for t, v in known:
            series[round((t - first) / self.settings.step)] = v
        logged = np.log1p(np.maximum(series, 0.0))
        horizon = self.settings.horizon_steps
        ends = np.arange(max(LAGS), size - horizon, dtype=np.int64)
        targets = logged[ends + horizon] - logged[ends]
        usable = np.isfinite(targets) & np.isfinite(logged[ends])
        if usable.sum() < MIN_TRAINING_ROWS:
            return self._not_trained("InsufficientHistory")
        # The windows of errors are seeded with the errors of the history's last forecasts
        # only while empty (at the first training): a later training would put the new
        # model's errors on its own training rows, smaller than the ones it makes, in place
        # of a window of real ones.
        seed_errors = not self._errors
        seeded = self._errors.size if seed_errors else 0
        seed_misses = False
        if self._misses is not None:
            self._misses.expire(known[-1][0])
            seed_misses = not self._misses
            if seed_misses:
                seeded = max(seeded, math.ceil(self._misses.window / self.settings.step))
        usable_ends, usable_targets = ends[usable], targets[usable]
        count = len(usable_ends)
        fitted = rows_to_fit(usable_ends % self._day)
        recent = np.arange(count - min(count, seeded), count)
        # Rows are made only for the forecast times fitted or seeded: a long history's
        # every row would take memory in proportion to it.
        made = np.union1d(fitted, recent)
        rows = features(logged, usable_ends[made], horizon=horizon, day=self._day,
                        week=self._week, start=first, step=self.settings.step)
        rows[:, np.isnan(rows).all(axis=0)] = 0.0  # no week yet: scikit-learn cannot bin it
        # Early stopping off: above 10,000 rows scikit-learn would turn it on and hold a tenth
        # of the rows out.
        model = HistGradientBoostingRegressor(max_iter=80, learning_rate=0.1, max_leaf_nodes=15,
                                              early_stopping=False, random_state=0)
        with threadpool_limits(limits=TRAINING_THREADS):
            model.fit(rows[np.searchsorted(made, fitted)], usable_targets[fitted])
        self._trees, self._failure = Trees(model), None
        if seeded:
            seeding = rows[np.searchsorted(made, recent)]
            with threadpool_limits(limits=TRAINING_THREADS):
                predicted = model.predict(seeding)
            changes = np.maximum(predicted, -seeding[:, 0])  # as `forecast`
            level, seen_change = seeding[:, 0], usable_targets[recent]
            seen = np.expm1(np.minimum(level + seen_change, LARGEST_LOG1P))
            served = np.expm1(np.minimum(level + changes, LARGEST_LOG1P))
            if seed_errors:
                self._errors.extend(seen_change - changes)
                self._shortfalls.extend(seen - served)
            if seed_misses and self._misses is not None:
                resolved = usable_ends[recent] + horizon
                for index, actual, forecast in zip(resolved.tolist(), seen.tolist(),
                                                   served.tolist(), strict=True):
                    self._misses.add(first + index * self.settings.step, actual, forecast)
        # The values seen since the history's last point (ticks that ran while it was
        # fetched, without the tick lock) are kept after it, not left as a gap in the lags.
        step = self.settings.step
        newer = [] if self._start is None else [
            (self._start + index * step, value) for index, value in enumerate(self._logged)
            if self._start + index * step > known[-1][0] + step / 2]
        self._logged = logged.tolist()[-self._keep:]
        self._start = first + (size - len(self._logged)) * step
        for time, value in newer:
            self._log(time, value)
        return None

    def _not_trained(self, reason: str) -> str:
        """A training that could not be made keeps the model of the last one that was (a
        clock set ahead for one training, a Prometheus that lost its history), or else
        says why there is none."""
        if self._trees is None:
            self._failure = reason
        return reason

    def observe(self, time: datetime, value: float | None) -> None:
        """The value seen at `time`; resolves the forecasts that targeted it."""
        logged = math.nan if value is None else math.log1p(max(value, 0.0))
        self._log(time, logged)
        assert self._start is not None  # `_log` sets it
        index = round((time - self._start) / self.settings.step)
        naive = self._logged[index - self._day] \
            if value is not None and 0 <= index - self._day < len(self._logged) else math.nan
        half_step = self.settings.step / 2
        while self._pending and self._pending[0][0] <= time + half_step:
            target, forecast = self._pending.popleft()
            if abs(target - time) <= half_step and value is not None:
                self._errors.append(logged - math.log1p(forecast))
                self._shortfalls.append(value - forecast)
                if self._misses is not None:
                    self._misses.add(time, value, forecast)
                self._smape.append(smape_term(value, forecast))
                self._recent.append((time, value, forecast))
                if naive == naive:
                    self._naive.add(abs(value - forecast), abs(value - math.expm1(naive)))

    def _log(self, time: datetime, logged: float) -> None:
        """Keep the value (in log1p terms, NaN: missing) seen at `time`."""
        if self._start is None:
            self._start = time
        index = round((time - self._start) / self.settings.step)
        if index < len(self._logged) - 1:
            # The clock set back: its value is the newest all the same, and the forecasts
            # waiting for the old clock's later times would never be resolved.
            self._start = time - len(self._logged) * self.settings.step
            index = len(self._logged)
            self._pending.clear()
            self._recent.clear()
        if index < len(self._logged):
            if index >= 0:
                self._logged[index] = logged
        else:
            if index - len(self._logged) > self._keep:
                # A jump ahead past all that is kept (a clock set years on): the values
                # kept are all too old to use, and the gap is not filled step by step.
                self._start += (index - self._keep) * self.settings.step
                self._logged = [math.nan] * self._keep
            else:
                self._logged.extend([math.nan] * (index - len(self._logged)))
            self._logged.append(logged)
        if len(self._logged) > 2 * self._keep:
            drop = len(self._logged) - self._keep
            del self._logged[:drop]
            self._start += drop * self.settings.step

    def forecast(self, now: datetime) -> Forecast:
        """The forecast for now + horizon, or the reason there is none to use."""
        if self._trees is None or self._start is None:
            return Forecast(None, None, None, self._failure or "NoModel")
        end = len(self._logged) - 1
        level = self._logged[end]
        if level != level:
            return Forecast(None, None, None, "MetricsMissing")
        row = feature_row(self._logged, end, horizon=self.settings.horizon_steps,
                          day=self._day, week=self._week, start=self._start,
                          step=self.settings.step)
        # The model's change is learnt over all levels and can point below 0 from a level of
        # 0; a metric of requests or CPU never goes there.
        change = self._trees.predict(row)
        change = max(change, -level)
        point = expm1_capped(level + change)
        self._pending.append((now + self.settings.horizon_steps * self.settings.step, point))
        margin = max(self._errors.quantile(self.settings.margin_quantile), 0.0) \
            if self._errors else 0.0
        # The margin is a ratio, learnt from errors in log1p terms. Load that came back from
        # nothing (0 forecast, 300 seen) makes a ratio of 300 that says little about the
        # error at 300: no more than the largest shortfall seen is added.
        largest = self._shortfalls.largest() if self._shortfalls else 0.0
        with_margin = min(expm1_capped(level + change + margin), point + max(largest, 0.0))
        failing = bool(self._smape) \
            and sum(self._smape) / len(self._smape) > self.settings.max_error_pct
        worst_case = None if self._misses is None \
            else min(point * (1 + self._misses.largest(now)), sys.float_info.max)
        mase = self._naive.mase()
        reason = "ForecastError" if failing \
            else "WorseThanNaive" if mase is not None and mase >= 1 else None
        # Every step of the last horizon resolved a forecast (the oldest of them within
        # horizon - 1 steps, half a step's leeway for a late tick), and the load came in under
        # 1 / ABOVE_LOAD of each.
        horizon = self.settings.horizon_steps
        contradicted = len(self._recent) == horizon \
            and now - self._recent[0][0] < (horizon - 0.5) * self.settings.step \
            and all(actual * ABOVE_LOAD < forecast for _, actual, forecast in self._recent)
        spread = typical_miss(self._errors, level + change) if self._errors else 0.0
        return Forecast(point, with_margin, worst_case, reason, contradicted, spread)
