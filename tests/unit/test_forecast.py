"""The forecaster: features, the fast tree evaluation, training on the past only, the margin
and the fall-backs; and the predictive strategy's use of a forecast."""

from __future__ import annotations

import math
import sys
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pytest
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor

from autoscaler.core.decide import decide
from autoscaler.core.memory import ServiceMemory, remember
from autoscaler.core.model import Reason
from autoscaler.core.strategies import MetricForecast
from autoscaler.predictive.accuracy import smape_term
from autoscaler.predictive.book import ForecastBook
from autoscaler.predictive.features import feature_row, features
from autoscaler.predictive.forecaster import (
    MAX_TRAINING_ROWS,
    Forecast,
    ForecastSettings,
    LargestMiss,
    MetricForecaster,
    NaiveComparison,
    RecentValues,
    WindowTop,
    missed_share,
    rows_to_fit,
    typical_miss,
)
from autoscaler.predictive.planner import raise_held_to, target_alone_step
from autoscaler.predictive.trees import Trees
from tests.unit.conftest import build_policy

START = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=1)


def daily(days: int, *, noise: float = 0.05, seed: int = 1) -> list[float]:
    """A load with a daily cycle (100 .. 1000 a minute) and some noise."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * 1440)
    cycle = 550 + 450 * np.sin(2 * np.pi * minutes / 1440)
    return (cycle * (1 + noise * rng.standard_normal(len(minutes)))).clip(0).tolist()


def scaled_on(forecast: float | None) -> dict[str, MetricForecast]:
    """What decide gets for the metric `rps` forecast at `forecast`, margin included."""
    return {"rps": MetricForecast(forecast, forecast)}


def settings(**changes: object) -> ForecastSettings:
    base = {"step": STEP, "horizon_steps": 5, "history": timedelta(days=14),
            "min_history": timedelta(days=1), "margin_quantile": 0.75, "max_error_pct": 50.0,
            "retrain_every": timedelta(days=1)}
    base.update(changes)
    return ForecastSettings(**base)  # type: ignore[arg-type]


def test_the_row_of_one_forecast_is_the_batch_row() -> None:
    logged = np.log1p(np.array(daily(9)))
    logged[100] = np.nan
    ends = np.array([20, 200, 1500, 12000], dtype=np.int64)

    batch = features(logged, ends, horizon=5, day=1440, week=10080, start=START, step=STEP)

    for row, end in zip(batch, ends, strict=True):
        single = feature_row(logged.tolist(), int(end), horizon=5, day=1440, week=10080,
                             start=START, step=STEP)
        assert np.allclose(row, single, equal_nan=True)


def test_the_fast_trees_agree_with_scikit_learn() -> None:
    """`Trees` reads private attributes of scikit-learn's fitted model: this test is what says
    that a version of scikit-learn laid its trees out differently."""
    changed = (
        f"autoscaler/predictive/trees.py no longer reads scikit-learn {sklearn.__version__}'s "
        "fitted trees right: their private layout changed. Adapt `Trees` to it, then set the "
        "scikit-learn bound in pyproject.toml to the versions this test passed with; or keep "
        "scikit-learn within that bound"
    )
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((2000, 6))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    targets = np.nan_to_num(rows[:, 0]) * 2 + np.sin(np.nan_to_num(rows[:, 1]))
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(rows, targets)
    try:
        trees = Trees(model)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        pytest.fail(f"{changed} ({error!r})")

    probe = rng.standard_normal((200, 6))
    probe[::7, 2] = np.nan

    walked = [trees.predict(row.tolist()) for row in probe]
    assert np.allclose(walked, model.predict(probe)), changed


def test_a_forecast_of_a_daily_cycle_is_close_and_the_margin_raises_it() -> None:
    load = daily(10)
    forecaster = MetricForecaster(settings())
    history = 9 * 1440
    assert forecaster.train([START + i * STEP for i in range(history)], load[:history]) is None

    errors = []
    for index in range(history, history + 600):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        point, with_margin, _, reason = forecaster.forecast(now)[:4]
        assert reason is None and point is not None and with_margin is not None
        assert with_margin >= point
        actual = load[index + 5]
        errors.append(200 * abs(actual - point) / (actual + point))

    assert sum(errors) / len(errors) < 15


def test_a_training_keeps_the_values_seen_since_its_history_ended() -> None:
    """Ticks that ran while the history was fetched (the agent fetches it without the tick
    lock) follow the history's last point after the training, not a gap in the lags: the
    forecast is the one of the same model that saw them after its training."""
    load = daily(3)
    history = 2 * 1440
    times = [START + i * STEP for i in range(history + 3)]
    seen_after = MetricForecaster(settings())
    seen_during = MetricForecaster(settings())
    assert seen_after.train(times[:history], load[:history]) is None
    for index in range(history, history + 3):
        seen_after.observe(times[index], load[index])
        seen_during.observe(times[index], load[index])
    assert seen_during.train(times[:history], load[:history]) is None

    after, during = seen_after.forecast(times[-1]), seen_during.forecast(times[-1])
    assert during.point is not None and during.point == pytest.approx(after.point)


def test_a_long_history_is_fitted_on_at_most_the_row_budget_the_newest_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fitted: list[tuple[int, float]] = []
    fit = HistGradientBoostingRegressor.fit

    def recording_fit(self: HistGradientBoostingRegressor, rows: np.ndarray, targets: np.ndarray
                      ) -> HistGradientBoostingRegressor:
        fitted.append((len(rows), float(targets[-1])))
        return fit(self, rows, targets)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", recording_fit)
    load = daily(14)
    horizon = settings().horizon_steps

    MetricForecaster(settings()).train([START + i * STEP for i in range(len(load))], load)

    [(rows, newest_target)] = fitted
    assert MAX_TRAINING_ROWS // 2 < rows <= MAX_TRAINING_ROWS
    assert newest_target == pytest.approx(np.log1p(load[-1]) - np.log1p(load[-1 - horizon]))


@pytest.mark.parametrize(("count", "day"), [
    (MAX_TRAINING_ROWS + 1, 1440), (2 * MAX_TRAINING_ROWS, 1440),
    (2 * MAX_TRAINING_ROWS + 1, 1440), (3 * MAX_TRAINING_ROWS, 1440), (20_096, 1440),
    (14 * 1440, 1440), (80_576, 5760), (14 * 288, 288),
])
def test_a_sample_of_a_long_history_fits_on_every_time_of_day(count: int, day: int) -> None:
    """Every time of day at least once, whatever the history's length (one a day longer or
    shorter, or a day of 5,760 ticks of 15 s), the newest row kept; the same rows again for
    the same history."""
    slots = np.arange(count, dtype=np.int64) % day
    fitted = rows_to_fit(slots)

    assert len(fitted) == min(count, MAX_TRAINING_ROWS) == len(set(fitted.tolist()))
    assert fitted[-1] == count - 1 and (np.diff(fitted) > 0).all()
    assert set(slots[fitted].tolist()) == set(range(day))
    assert (rows_to_fit(slots) == fitted).all()


@pytest.mark.parametrize("day", [1440, 4000, 6000])
def test_a_sample_takes_each_time_of_day_once_before_any_twice(day: int) -> None:
    """Of the rows but the newest (kept anyway), no time of day is taken twice more than
    another."""
    slots = np.arange(2 * MAX_TRAINING_ROWS + 17, dtype=np.int64) % day
    older = rows_to_fit(slots)[:-1]
    taken = np.bincount(slots[older], minlength=day)

    assert taken.max() - taken.min() <= 1 and taken.sum() == MAX_TRAINING_ROWS - 1


def test_a_job_at_the_same_minutes_of_every_hour_is_forecast_better_than_the_day_before(
) -> None:
    """150 requests a minute, and 750 in the first five minutes of each hour: a history of
    more rows than MAX_TRAINING_ROWS must still teach the model both edges of the job."""
    rng = np.random.default_rng(3)
    minutes = np.arange(16 * 1440)
    load = rng.poisson(np.where(minutes % 60 < 5, 750.0, 150.0)).astype(float).tolist()
    forecaster = MetricForecaster(settings(horizon_steps=2))
    history = 14 * 1440
    assert forecaster.train([START + i * STEP for i in range(history)], load[:history]) is None

    reasons = []
    for index in range(history, len(load)):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        reasons.append(forecaster.forecast(now).reason)

    assert reasons[1440:] == [None] * 1440


def daylight(days: int) -> list[float]:
    """Nothing at night, a noisy day with empty minutes (30 %)."""
    rng = np.random.default_rng(0)
    minutes = np.arange(days * 1440)
    sun = np.clip(np.sin(2 * np.pi * minutes / 1440), 0, None)
    load = (400 * sun * (1 + 0.3 * rng.standard_normal(len(minutes)))).clip(0)
    load[rng.random(len(load)) < 0.3] = 0
    return load.tolist()


def test_a_metric_that_drops_to_zero_is_never_forecast_below_zero() -> None:
    """From a level of 0 the model's change can point below 0; a negative forecast would be
    shown in the decision and scored at an sMAPE of 200 where the load is 0."""
    load = daylight(10)
    forecaster = MetricForecaster(settings())
    history = 9 * 1440
    forecaster.train([START + i * STEP for i in range(history)], load[:history])

    points = []
    for index in range(history, history + 1430):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        point = forecaster.forecast(now).point
        assert point is not None
        points.append(point)

    assert min(points) == 0.0


def test_the_margin_seeded_at_training_scores_the_forecasts_floored_at_zero() -> None:
    """A history that ends in a night of zeros: the training's last errors, which seed the
    margin (over the night's last half hour here), are those of forecasts of 0 for a load
    of 0, so the first forecast has none."""
    load = daylight(10)[:9 * 1440]
    forecaster = MetricForecaster(settings(margin_window=timedelta(minutes=30)))
    forecaster.train([START + i * STEP for i in range(len(load))], load)
    now = START + len(load) * STEP
    forecaster.observe(now, 0.0)

    point, with_margin, _, _ = forecaster.forecast(now)[:4]

    assert point is not None and with_margin == point


@pytest.mark.parametrize(
    ("days", "reason"),
    [pytest.param(0.5, "InsufficientHistory", id="under-min-history")],
)
def test_too_little_history_falls_back(days: float, reason: str) -> None:
    forecaster = MetricForecaster(settings())
    steps = int(days * 1440)

    assert forecaster.train([START + i * STEP for i in range(steps)], daily(1)[:steps]) == reason
    forecaster.observe(START + steps * STEP, 500.0)
    assert forecaster.forecast(START + steps * STEP) == Forecast(None, None, None, reason)


def test_a_bad_recent_error_falls_back() -> None:
    load = daily(3)
    forecaster = MetricForecaster(settings(max_error_pct=1.0))
    history = 2 * 1440
    forecaster.train([START + i * STEP for i in range(history)], load[:history])

    reasons = []
    for index in range(history, history + 60):
        now = START + index * STEP
        forecaster.observe(now, load[index] * (3 if index % 2 else 0.3))
        reasons.append(forecaster.forecast(now).reason)

    assert reasons[-1] == "ForecastError"


def test_the_smape_term_is_never_above_200() -> None:
    """It is 200 wherever the load is 0 and the forecast is not; rounding made 200 f / f come
    out a hair over 200, where `max_error_pct: 200` fell back after half an hour at 0."""
    forecasts = np.random.default_rng(0).uniform(0.01, 1e6, 10_000).tolist()

    assert max(200 * f / f for f in forecasts) > 200
    assert max(smape_term(0.0, f) for f in forecasts) == 200


def test_load_back_from_nothing_adds_no_more_than_the_largest_shortfall() -> None:
    """Forecasts made during an outage (0) miss the load that comes back by a ratio of
    hundreds; as a margin, that ratio would multiply the next forecasts. The margin adds no
    more than the largest shortfall seen, in the metric's units (a half hour's window here,
    where the outage's misses are most of the errors)."""
    load = daily(10)
    seen = [0.0] * 20 + load[NINE_DAYS + 20:NINE_DAYS + 40]

    served = served_after_nine_days(load, seen, timedelta(minutes=30))

    raised = [with_margin - point for point, with_margin in served]
    assert max(raised) <= max(seen) + 1e-6
    assert max(raised) > 0.5 * max(seen)


NINE_DAYS = 9 * 1440


def served_after_nine_days(load: list[float], seen: list[float], margin_window: timedelta
                           ) -> list[tuple[float, float]]:
    """(point, with margin) of each forecast while `seen` follows nine days of `load` that a
    forecaster with a 0.95 margin over `margin_window` was trained on."""
    forecaster = MetricForecaster(settings(margin_quantile=0.95, margin_window=margin_window))
    forecaster.train([START + i * STEP for i in range(NINE_DAYS)], load[:NINE_DAYS])
    served = []
    for index, value in enumerate(seen, start=NINE_DAYS):
        now = START + index * STEP
        forecaster.observe(now, value)
        point, with_margin, _, _ = forecaster.forecast(now)[:4]
        assert point is not None and with_margin is not None
        served.append((point, with_margin))
    return served


@pytest.mark.parametrize(("window", "most"), [
    pytest.param(timedelta(days=1), 1.25, id="a-day-of-errors-hardly-moves"),
    pytest.param(timedelta(minutes=30), None, id="a-half-hour-of-errors-is-the-burst"),
])
def test_one_burst_moves_the_margin_of_a_day_of_errors_little(
        window: timedelta, most: float | None) -> None:
    """A ten-minute burst at five times the load, then the daily cycle again: with a day of
    errors the margin (with_margin / point - 1) of the next half hour stays within 1.25 x
    what it was before the burst (two hours' errors would double it); with a half hour's,
    the burst's misses are the margin (ten times as much)."""
    load = daily(10)
    seen = load[NINE_DAYS:NINE_DAYS + 60]
    seen[20:30] = [5 * value for value in seen[20:30]]

    margins = [with_margin / point - 1
               for point, with_margin in served_after_nine_days(load, seen, window)]

    before, after = margins[19], max(margins[35:])
    assert before > 0
    if most is None:
        assert after > 10 * before
    else:
        assert after <= most * before


def test_a_retraining_keeps_the_real_errors_of_the_margin() -> None:
    """The margin's errors are seeded at the first training only: a retraining, successful
    or not, leaves the resolved forecasts' errors in place of its own training rows'."""
    load = daily(10)
    history = 8 * 1440
    forecaster = MetricForecaster(settings())
    forecaster.train([START + i * STEP for i in range(history)], load[:history])
    for index in range(history, history + 600):
        now = START + index * STEP
        forecaster.observe(now, load[index] * (2 if index % 7 == 0 else 1))
        forecaster.forecast(now)
    kept = forecaster._errors.values().copy()

    end = history + 600
    assert forecaster.train([START + i * STEP for i in range(end)], load[:end]) is None
    assert np.array_equal(forecaster._errors.values(), kept)
    assert forecaster.train([START + i * STEP for i in range(60)], load[:60]) \
        == "InsufficientHistory"
    assert np.array_equal(forecaster._errors.values(), kept)


def test_a_first_training_that_failed_leaves_the_margin_to_seed() -> None:
    """Too short a history trains nothing and seeds nothing; the next training that works
    seeds a day of errors."""
    load = daily(10)
    forecaster = MetricForecaster(settings())
    assert forecaster.train([START + i * STEP for i in range(300)], load[:300]) \
        == "InsufficientHistory"
    assert len(forecaster._errors) == 0

    history = 3 * 1440
    assert forecaster.train([START + i * STEP for i in range(history)], load[:history]) is None
    assert len(forecaster._errors) == 1440


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        pytest.param(1440, None, id="a-whole-day"),
        pytest.param(1439, "InsufficientHistory", id="a-step-short"),
    ],
)
def test_a_history_as_long_as_min_history_trains(points: int, reason: str | None) -> None:
    """A range query over `history` ([start, end) at the step) holds a day of points
    between its first and last but one step: `min_history` equal to `history`, which the
    policy check allows, must train on a whole one."""
    forecaster = MetricForecaster(settings(history=timedelta(days=1)))

    assert forecaster.train([START + i * STEP for i in range(points)], daily(1)[:points]) \
        == reason


def test_an_empty_history_trains_nothing_even_with_no_minimum() -> None:
    """`min_history: 0s` and a service with no samples yet."""
    forecaster = MetricForecaster(settings(min_history=timedelta(0)))

    assert forecaster.train([], []) == "InsufficientHistory"
    assert forecaster.forecast(START).reason == "InsufficientHistory"


def test_a_training_that_finds_too_little_history_keeps_the_model_it_has() -> None:
    """A clock set days ahead for one training (or a Prometheus that lost its history)
    finds too little: the model of the last training goes on forecasting."""
    load = daily(4)
    forecaster = MetricForecaster(settings())
    history = 3 * 1440
    forecaster.train([START + i * STEP for i in range(history)], load[:history])

    assert forecaster.train([START + i * STEP for i in range(60)], load[:60]) \
        == "InsufficientHistory"
    now = START + history * STEP
    forecaster.observe(now, load[history])
    point, _, _, reason = forecaster.forecast(now)[:4]
    assert reason is None and point is not None and point > 0


def test_a_metric_at_the_largest_float_is_forecast_without_overflow() -> None:
    """An exporter's "unlimited" (about 1.8e308) passes the checks for NaN, inf and negative
    values; a model that learnt a growing load forecasts more than that, which must not
    overflow."""
    load = (100 * np.exp(0.001 * np.arange(3 * 1440))).tolist()
    forecaster = MetricForecaster(settings(limit=500.0))
    forecaster.train([START + i * STEP for i in range(len(load))], load)
    now = START + len(load) * STEP
    forecaster.observe(now, sys.float_info.max)

    forecast = forecaster.forecast(now)

    assert all(value is not None and math.isfinite(value) for value in forecast[:3])


def test_a_clock_set_years_ahead_costs_no_more_than_what_is_kept() -> None:
    """At a 15 s tick ten years are 21 million steps: the gap is not filled one by one."""
    tick = timedelta(seconds=15)
    load = daily(4)
    forecaster = MetricForecaster(settings(step=tick))
    steps = 3 * 1440 * 4
    forecaster.train([START + i * tick for i in range(steps)], [load[i // 4] for i in range(steps)])
    later = START + timedelta(days=3650)

    tracemalloc.start()
    forecaster.observe(later, 500.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    forecaster.observe(later + tick, 510.0)

    assert peak < 5_000_000
    assert forecaster.forecast(later + tick).point is not None


def test_recent_values_keep_the_newest() -> None:
    kept = RecentValues(3)
    kept.extend(np.array([1.0, 2.0]))
    assert sorted(kept.values().tolist()) == [1.0, 2.0]
    for value in (3.0, 4.0, 5.0):
        kept.append(value)
    assert len(kept) == 3 and sorted(kept.values().tolist()) == [3.0, 4.0, 5.0]
    kept.extend(np.arange(10.0))
    assert sorted(kept.values().tolist()) == [7.0, 8.0, 9.0]


@pytest.mark.parametrize("q", [0.0, 0.5, 0.75, 0.95, 1.0])
def test_the_quantile_of_recent_values_is_numpys_over_the_window(q: float) -> None:
    rng = np.random.default_rng(7)
    added = np.round(rng.standard_normal(500), 2)  # ties, as log errors of counts have
    kept = RecentValues(60)
    for count, value in enumerate(added.tolist(), start=1):
        kept.append(value)
        window = added[max(0, count - 60):count]
        assert kept.quantile(q) == pytest.approx(float(np.quantile(window, q)), abs=1e-12)
        assert kept.largest() == window.max()


def log_misses(point: float, actuals: list[float]) -> RecentValues:
    """The errors (log1p terms) of forecasts of `point` that saw `actuals`."""
    kept = RecentValues(len(actuals))
    for actual in actuals:
        kept.append(math.log1p(actual) - math.log1p(point))
    return kept


@pytest.mark.parametrize(
    ("point", "actuals", "share"),
    [
        pytest.param(1000.0, [900.0, 950.0, 1000.0, 1050.0, 1100.0], 0.051,
                     id="a-busy-service-a-share-of-its-misses"),
        pytest.param(0.4, [0.0, 0.0, 1.0, 1.0, 2.0], 1.45,
                     id="a-quiet-service-a-request-either-way-is-more-than-its-point"),
        pytest.param(0.0, [0.0, 1.0, 3.0], 0.0, id="none-for-a-point-of-nothing"),
        pytest.param(500.0, [500.0] * 5, 0.0, id="none-for-a-forecast-that-never-missed"),
    ],
)
def test_the_typical_miss_is_half_the_errors_interquartile_range_a_share_of_the_point(
    point: float, actuals: list[float], share: float,
) -> None:
    """Half the forecasts missed by less, either way: the quartiles of the errors, half
    their distance above the point, read back as a share of it."""
    assert typical_miss(log_misses(point, actuals), math.log1p(point)) == pytest.approx(
        share, abs=0.005)


def typical_miss_after(load: list[float], history: int, ticks: int) -> float:
    """A forecaster trained on `history` steps of `load`, then fed `ticks` more: its forecast's
    typical miss."""
    forecaster = MetricForecaster(settings())
    assert forecaster.train([START + i * STEP for i in range(history)], load[:history]) is None
    for index in range(history, history + ticks):
        forecaster.observe(START + index * STEP, load[index])
        forecaster.forecast(START + index * STEP)
    return forecaster.forecast(START + (history + ticks) * STEP).spread


def test_the_typical_miss_is_narrow_on_a_busy_cycle_and_wide_on_a_few_requests() -> None:
    """A busy daily cycle with 5 % noise misses by less than the default tolerance (0.1),
    which then stays the raise band; a service of half a request a minute misses by more
    than its forecast, a request either way."""
    busy = typical_miss_after(daily(10), 9 * 1440, 600)
    rng = np.random.default_rng(3)
    quiet = rng.poisson(0.5, 10 * 1440).astype(float).tolist()
    few = typical_miss_after(quiet, 9 * 1440, 600)

    assert 0.0 < busy < 0.1
    assert few > 1.0


@pytest.mark.parametrize(
    ("actual", "forecast", "share"),
    [
        pytest.param(400, 300, 0.25, id="a-quarter-missed"),
        pytest.param(300, 0, 1.0, id="load-back-from-nothing-is-all-of-it"),
        pytest.param(200, 300, -0.5, id="over-forecast"),
        pytest.param(0, 5, -0.05, id="no-load-a-share-of-the-floor"),
        pytest.param(3, 0.5, 0.025, id="a-quiet-nights-miss-is-a-share-of-the-floor"),
        pytest.param(0, 0, 0.0, id="nothing"),
    ],
)
def test_missed_share(actual: float, forecast: float, share: float) -> None:
    assert missed_share(actual, forecast, floor=100) == pytest.approx(share)


def test_a_clock_set_back_keeps_a_miss_no_shorter() -> None:
    misses = LargestMiss(timedelta(hours=1), floor=1)
    misses.add(START + 10 * STEP, 100, 50)
    misses.add(START + 10 * STEP, 100, 50)
    misses.add(START + 9 * STEP, 100, 90)

    assert misses.largest(START + 69 * STEP) == pytest.approx(0.5)


def test_the_window_top_forgets_whole_buckets_at_most_a_bucket_late() -> None:
    top = WindowTop(timedelta(hours=24), keep=1)
    top.add(START, 5.0)
    top.add(START + timedelta(minutes=30), 1.0)

    assert top.top(START + timedelta(hours=24, minutes=10)) == 5.0, "its bucket is still in"
    assert top.top(START + timedelta(hours=24, minutes=30)) is None


def test_a_forecast_worse_than_the_seasonal_naive_one_falls_back() -> None:
    """A load that repeats each day exactly: the day-before value is a perfect forecast, and
    a model that misses by any amount is worse than it."""
    load = daily(9, noise=0.0)
    forecaster = MetricForecaster(settings(max_error_pct=200.0))
    history = 8 * 1440
    forecaster.train([START + i * STEP for i in range(history)], load[:history])
    reasons = []
    for index in range(history, history + 1440):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        reasons.append(forecaster.forecast(now).reason)

    assert reasons[0] is None, "judged only once a quarter of a day is resolved"
    assert reasons[-1] == "WorseThanNaive"


@pytest.mark.parametrize("pairs, mase", [
    pytest.param([(2.0, 1.0)] * 8, 2.0, id="twice-the-naive-error"),
    pytest.param([(2.0, 1.0)] * 7 + [(2.0, 1000.0)], 2.0,
                 id="an-outlier-the-naive-forecast-repeats-a-day-later"),
    pytest.param([(2.0, 1.0)] * 7 + [(1000.0, 1.0)], 2.0, id="an-outlier-the-forecast-missed"),
    pytest.param([(2.0, 1000.0)] + [(2.0, 1.0)] * 8, 2.0, id="an-outlier-a-day-old-is-gone"),
    pytest.param([(2.0, 1.0)] * 3 + [(2.0, 1000.0), (5.0, 3.0)] + [(2.0, 1.0)] * 3, 14 / 9,
                 id="the-day-but-its-largest-on-each-side"),
])
def test_the_naive_comparison_leaves_each_sides_largest_error_of_the_day_out(
        pairs: list[tuple[float, float]], mase: float) -> None:
    comparison = NaiveComparison(day=8)
    for error, naive in pairs:
        comparison.add(error, naive)

    assert comparison.mase() == pytest.approx(mase)


@pytest.mark.parametrize("naive", [
    pytest.param((0.1, 0.2), id="both-sides-none-left"),
    pytest.param((0.0, 0.2), id="the-naive-side-exactly-none-left"),
])
def test_a_day_of_no_errors_but_the_largest_is_not_judged(naive: tuple[float, float]) -> None:
    """A quiet service, every forecast and naive forecast exact but two spikes, the first a
    day old: the day but each side's largest has no error to compare, but the running sums,
    having added and taken off 0.1, kept a rounding of 5.6e-17 and read as a MASE of 1.0 or
    inf, worse than naive."""
    comparison = NaiveComparison(day=10)
    for pair in [(0.1, naive[0]), (0.2, naive[1])] + [(0.0, 0.0)] * 9:
        comparison.add(*pair)

    assert comparison.mase() is None


def test_one_outlier_does_not_turn_a_forecast_worse_than_naive_on_for_a_day() -> None:
    """A load that repeats each day exactly, but for one minute at ten times the load: the
    naive forecast repeats that minute a day later, one large error among a day of none."""
    load = daily(10, noise=0.0)
    history = 8 * 1440
    load[history + 600] *= 10
    forecaster = MetricForecaster(settings(max_error_pct=200.0))
    forecaster.train([START + i * STEP for i in range(history)], load[:history])
    reasons = []
    for index in range(history, history + 2 * 1440):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        reasons.append(forecaster.forecast(now).reason)

    assert set(reasons[1440 + 600:]) == {"WorseThanNaive"}


def test_a_forecast_better_than_the_seasonal_naive_one_stays() -> None:
    load = daily(9, noise=0.05)
    forecaster = MetricForecaster(settings(max_error_pct=200.0))
    history = 8 * 1440
    forecaster.train([START + i * STEP for i in range(history)], load[:history])
    reasons = set()
    for index in range(history, history + 720):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        reasons.add(forecaster.forecast(now).reason)

    assert reasons == {None}


def test_a_training_after_a_silence_longer_than_the_window_starts_it_again() -> None:
    """Misses older than the window are forgotten before a training looks whether to seed,
    even when no forecast ran in between to forget them."""
    load = daily(10)
    forecaster = MetricForecaster(settings(worst_case_window=timedelta(hours=2), limit=500.0))
    first = 8 * 1440
    forecaster.train([START + i * STEP for i in range(first)], load[:first])
    now = START + first * STEP
    forecaster.observe(now, load[first] * 3)
    for minute in range(1, 8):
        forecaster.observe(now + minute * STEP, load[first + minute] * 3)
        forecaster.forecast(now + minute * STEP)
    later = first + 6 * 60
    forecaster.train([START + i * STEP for i in range(later)], load[:later])
    forecaster.observe(START + later * STEP, load[later])

    point, _, worst, _ = forecaster.forecast(START + later * STEP)[:4]

    assert point is not None and worst is not None and 1.01 * point < worst < 1.5 * point


def test_over_forecasts_alone_raise_nothing() -> None:
    misses = LargestMiss(timedelta(hours=1), floor=1)
    misses.add(START, 80, 100)

    assert misses and misses.largest(START) == 0.0


def test_no_limit_no_worst_case_and_a_worst_case_from_the_first_training() -> None:
    """The first training seeds the misses with the model's errors on its history; a noisy
    history makes some, so the first worst case is above the forecast."""
    load = daily(10)
    history = 9 * 1440
    times = [START + i * STEP for i in range(history)]
    plain, limited = MetricForecaster(settings()), MetricForecaster(settings(limit=500.0))
    now = START + history * STEP
    for forecaster in (plain, limited):
        forecaster.train(times, load[:history])
        forecaster.observe(now, load[history])

    assert plain.forecast(now).worst_case is None
    point, _, worst, _ = limited.forecast(now)[:4]
    assert point is not None and worst is not None and 1.02 * point < worst <= 2 * point


def test_the_forecast_settings_follow_the_policy_and_the_metrics_limit() -> None:
    policy = build_policy(strategy="predictive", predictive={"worst_case_window": "6h"},
                          metrics=[{"name": "rps", "query": "q", "target": 5, "limit": 8},
                                   {"name": "cpu", "query": "q", "target": 0.5}])
    book = ForecastBook(tick=STEP)

    rps, cpu = (book.forecaster(policy, metric).settings for metric in policy.metrics)

    assert (rps.worst_case_window, rps.limit) == (timedelta(hours=6), 8)
    assert cpu.limit is None


def test_the_worst_case_remembers_a_miss_for_its_window_across_trainings() -> None:
    """A surge the model missed (the load doubled for ten minutes) raises the worst case for
    the next `worst_case_window`. A training keeps the misses seen: here its history lacks
    the surge (a gap in Prometheus), so its own errors would not show it."""
    window = timedelta(hours=2)
    load = daily(10)
    history = 9 * 1440
    surge = range(history + 30, history + 40)
    seen = [v * 2 if i in surge else v for i, v in enumerate(load)]
    forecaster = MetricForecaster(settings(worst_case_window=window, limit=50.0))
    forecaster.train([START + i * STEP for i in range(history)], seen[:history])

    ratios = {}
    for index in range(history, history + 240):
        now = START + index * STEP
        if index == history + 60:
            gap = [None if i in surge else v for i, v in enumerate(seen[:index])]
            assert forecaster.train([START + i * STEP for i in range(index)], gap) is None
        forecaster.observe(now, seen[index])
        point, _, worst, _ = forecaster.forecast(now)[:4]
        assert point is not None and worst is not None
        ratios[index - history] = worst / point

    assert ratios[20] < 1.3
    assert min(ratios[m] for m in range(50, 150)) > 1.4
    assert ratios[239] < 1.3


@pytest.mark.parametrize(
    ("value", "forecast", "desired", "reason"),
    [
        pytest.param(300, 900, 9, Reason.PREDICTED_LOAD, id="forecast-raises"),
        pytest.param(900, 300, 9, Reason.DESIRED_WITHIN_RANGE, id="reactive-wins-when-higher"),
        pytest.param(300, None, 3, Reason.WITHIN_TOLERANCE, id="no-forecast-is-reactive"),
    ],
)
def test_predictive_takes_the_larger_of_forecast_and_target_rule(
    value: float, forecast: float | None, desired: int, reason: Reason
) -> None:
    policy = build_policy(strategy="predictive", behavior={
        "scale_up": {"max_step": 10}, "scale_down": {"stabilization": "0s"}})
    now = START

    outcome = decide(policy, current=3, metrics={"rps": value},
                     memory=ServiceMemory.first_seen(replicas=3, now=now), last_change_at=None,
                     now=now, forecasts=scaled_on(forecast))

    assert (outcome.desired, outcome.reason) == (desired, reason)


def test_a_forecast_never_scales_down_alone() -> None:
    policy = build_policy(strategy="predictive", behavior={"scale_down": {"stabilization": "0s"}})

    outcome = decide(policy, current=6, metrics={"rps": 600}, now=START,
                     memory=ServiceMemory.first_seen(replicas=6, now=START), last_change_at=None,
                     forecasts=scaled_on(100))

    assert (outcome.desired, outcome.reason) == (6, Reason.WITHIN_TOLERANCE)


@pytest.mark.parametrize(
    ("strategy", "forecast", "alone_changed", "expected"),
    [
        pytest.param("target", None, None, (4, Reason.COOLDOWN),
                     id="target-held-by-the-cooldown"),
        pytest.param("predictive", None, None, (8, Reason.PREDICTED_LOAD),
                     id="predictive-in-fall-back-the-rule-passes"),
        pytest.param("predictive", 1200, None, (8, Reason.PREDICTED_LOAD),
                     id="predictive-the-rule-passes-the-forecasts-share-held"),
        pytest.param("predictive", 700, None, (8, Reason.PREDICTED_LOAD),
                     id="predictive-a-lower-forecast-the-rule-passes"),
        pytest.param("predictive", None, 45, (8, Reason.PREDICTED_LOAD),
                     id="predictive-target-alone-changed-before-its-cooldown-the-rule-passes"),
        pytest.param("predictive", None, 10, (4, Reason.COOLDOWN),
                     id="predictive-target-alone-in-its-own-cooldown-the-rule-held"),
        pytest.param("predictive", 1200, 10, (4, Reason.COOLDOWN),
                     id="predictive-target-alone-in-its-own-cooldown-the-forecast-held"),
    ],
)
def test_a_cooldown_holds_back_the_forecasts_share_of_a_raise_not_the_rules(
    strategy: str, forecast: float | None, alone_changed: int | None,
    expected: tuple[int, Reason],
) -> None:
    """The forecast's raises and their release are changes the target rule alone would not
    have made: a cooldown they start must not keep predictive below the rule's count. A
    cooldown the target-alone run is in (`alone_changed` minutes ago) holds the rule's raise
    as it holds `target`'s."""
    policy = build_policy(strategy=strategy,
                          behavior={"scale_up": {"cooldown": "30m", "max_step": 10}})

    outcome = decide(policy, current=4, metrics={"rps": 800}, now=START,
                     memory=ServiceMemory.first_seen(replicas=4, now=START - timedelta(hours=1)),
                     last_change_at=START - timedelta(minutes=10),
                     forecasts=None if forecast is None else scaled_on(forecast),
                     target_alone_changed_at=None if alone_changed is None
                     else START - timedelta(minutes=alone_changed))

    assert (outcome.desired, outcome.reason) == expected


def memory_with(current: int, *recommendations: tuple[int, int]) -> ServiceMemory:
    """A memory whose seed is long gone, with (seconds ago, count) recommendations."""
    return ServiceMemory(seed=(START - timedelta(days=1), current), shadow=current,
                         seen_spec=current,
                         recommendations=tuple((START - timedelta(seconds=ago), count)
                                               for ago, count in recommendations))


QUEUE = {"name": "queue", "query": "q", "target": 10}


@pytest.mark.parametrize(("target_alone", "desired"), [(None, 20), (22, 22)])
def test_the_count_never_goes_below_where_target_alone_would_be(
    target_alone: int | None, desired: int,
) -> None:
    """A forecast's raise took the count to 23 on a load of 100 (target 5 each): the rule now
    reads 100 / 115, outside its 10 % band, and asks for 20, where `target` alone, held at
    22 by that band, would have stayed."""
    policy = build_policy(strategy="predictive", max_replicas=50,
                          metrics=[{"name": "rps", "query": "q", "target": 5}],
                          behavior={"scale_down": {"stabilization": "0s"}})

    outcome = decide(policy, current=23, metrics={"rps": 100}, memory=memory_with(23),
                     last_change_at=None, now=START, forecasts=scaled_on(99),
                     target_alone=target_alone)

    assert outcome.desired == desired
    assert ("where `target` alone would be" in outcome.message) == (target_alone is not None)


def test_target_alone_keeps_its_own_count_until_someone_else_changes_the_spec() -> None:
    policy = build_policy(strategy="predictive", max_replicas=50,
                          metrics=[{"name": "rps", "query": "q", "target": 5}])
    step = partial(target_alone_step, policy, metrics={"rps": 100}, seeded=False,
                   keep=timedelta(minutes=5))

    count, alone = step(None, spec=22, now=START)
    assert count == 22
    count, alone = step(replace(alone, seen_spec=23), spec=23, now=START + STEP)
    assert (count, alone.shadow) == (22, 22)
    count, alone = step(replace(alone, seen_spec=23), spec=10, now=START + 2 * STEP)
    assert (count, alone.seen_spec) == (20, 10)


@pytest.mark.parametrize(
    ("keys", "current", "memory", "values", "forecast", "expected"),
    [
        pytest.param({}, 6, memory_with(6, (60, 6)), {"rps": 300}, 400,
                     (4, 6, Reason.SCALE_DOWN_STABILIZED, 3),
                     id="down-window-holds-the-target-rules-counts"),
        pytest.param({"behavior": {"scale_up": {"max_step": 10}}}, 3,
                     memory_with(3, (60, 5)), {"rps": 300}, 900,
                     (9, 9, Reason.PREDICTED_LOAD, 3),
                     id="forecast-raises-above-the-stabilized-count"),
        pytest.param({"behavior": {"scale_up": {"stabilization": "1m", "max_step": 10}}}, 3,
                     memory_with(3, (30, 3)), {"rps": 600}, 800,
                     (8, 8, Reason.PREDICTED_LOAD, 6),
                     id="up-window-delays-the-rule-not-the-forecast"),
        pytest.param({"behavior": {"scale_up": {"stabilization": "1m", "max_step": 10}}}, 3,
                     memory_with(3, (30, 3)), {"rps": 600}, 500,
                     (6, 5, Reason.PREDICTED_LOAD, 6),
                     id="floor-between-the-stabilized-and-the-rules-count"),
        pytest.param({"metrics": [{"name": "rps", "query": "q", "target": 100}, QUEUE]}, 6,
                     memory_with(6), {"rps": 300, "queue": None}, 900,
                     (9, 9, Reason.PREDICTED_LOAD, None),
                     id="a-hold-for-a-missing-metric-is-not-remembered"),
        pytest.param({}, 3, memory_with(3), {"rps": 300}, 1500,
                     (15, 7, Reason.SCALE_UP_LIMIT, 3), id="floor-still-rate-limited"),
        pytest.param({"max_replicas": 5, "behavior": {"scale_up": {"max_step": 10}}}, 3,
                     memory_with(3), {"rps": 300}, 900,
                     (9, 5, Reason.TOO_MANY_REPLICAS, 3), id="floor-still-clamped"),
    ],
)
def test_stabilization_windows_hold_the_target_rules_counts_only(
    keys: dict[str, object], current: int, memory: ServiceMemory,
    values: dict[str, float | None], forecast: float,
    expected: tuple[int, int, Reason, int | None],
) -> None:
    """A forecast already looks a start-up ahead: its count is a floor on the stabilized
    count, and the windows remember the target rule's count (`remembered`)."""
    policy = build_policy(strategy="predictive", **keys)

    outcome = decide(policy, current=current, metrics=values, memory=memory,
                     last_change_at=None, now=START, forecasts=scaled_on(forecast))

    assert (outcome.recommended, outcome.desired, outcome.reason,
            outcome.remembered) == expected


@pytest.mark.parametrize(
    ("scale_down", "counts"),
    [
        pytest.param({}, [9, 3, 3, 3], id="released-at-once"),
        pytest.param({"cooldown": "2m"}, [9, 9, 3, 3], id="scale-down-cooldown-damps-it"),
    ],
)
def test_a_forecasts_raise_lasts_as_long_as_the_forecast(
    scale_down: dict[str, str], counts: list[int]
) -> None:
    """Ticks a minute apart, memory kept as the engine keeps it: the forecast raises 3 to 9,
    then foresees nothing more and the count returns to the target rule's, where the
    down-window would have held 9 for five minutes had it remembered the forecast."""
    policy = build_policy(strategy="predictive", behavior={
        "scale_up": {"max_step": 10}, "scale_down": scale_down})
    memory, current, last_change = memory_with(3), 3, None
    seen = []
    for minute, forecast in enumerate([900, 300, 300, 300]):
        now = START + minute * STEP
        outcome = decide(policy, current=current, metrics={"rps": 300}, memory=memory,
                         last_change_at=last_change, now=now, forecasts=scaled_on(forecast))
        change = outcome.desired - current
        memory = remember(memory, now=now, recommended=outcome.remembered, change=change,
                          keep=timedelta(minutes=5))
        last_change = now if change else last_change
        current = outcome.desired
        seen.append(current)

    assert seen == counts


def test_errors_are_resolved_at_the_nearest_step_when_ticks_jitter() -> None:
    load = daily(3)
    forecaster = MetricForecaster(settings(max_error_pct=20.0))
    history = 2 * 1440
    forecaster.train([START + i * STEP for i in range(history)], load[:history])

    reason = None
    for index in range(history, history + 120):
        now = START + index * STEP + timedelta(milliseconds=(index * 37) % 400)
        forecaster.observe(now, load[index] * (3 if index % 2 else 0.3))
        reason = forecaster.forecast(now).reason

    assert reason == "ForecastError"


def test_after_a_clock_set_back_the_forecast_follows_the_values_seen_since() -> None:
    """Three flat days at 100, then the load falls to 5 as the clock goes back an hour:
    each value seen after is the newest, so the forecast follows it, as it would without
    the set-back (it kept forecasting from the last value before it for the hour)."""
    forecaster = MetricForecaster(settings())
    times = [START + i * STEP for i in range(3 * 1440)]
    assert forecaster.train(times, [100.0] * len(times)) is None
    back = times[-1] - timedelta(hours=1)
    for minute in range(1, 11):
        forecaster.observe(back + minute * STEP, 5.0)

    found = forecaster.forecast(back + 10 * STEP)

    assert found.point is not None and found.point < 10


def test_one_missed_minute_does_not_raise_the_worst_case_for_its_window() -> None:
    """A single minute at five times the load, which no forecast saw coming: its miss is
    the window's largest, left out, so the worst case an hour later is what it was before;
    ten such minutes in a row (a surge) raise it, as the test above shows."""
    window = timedelta(hours=2)
    load = daily(10)
    history = 9 * 1440
    spike = history + 30
    seen = [v * 5 if i == spike else v for i, v in enumerate(load)]
    forecaster = MetricForecaster(settings(worst_case_window=window, limit=50.0))
    forecaster.train([START + i * STEP for i in range(history)], seen[:history])

    ratios = {}
    for index in range(history, history + 120):
        forecaster.observe(START + index * STEP, seen[index])
        point, _, worst, _ = forecaster.forecast(START + index * STEP)[:4]
        assert point is not None and worst is not None
        ratios[index - history] = worst / point

    assert max(ratios[m] for m in range(40, 120)) < ratios[20] * 1.1


def test_the_target_alone_run_keeps_an_earlier_raise_when_this_tick_changed_nothing() -> None:
    """Only this tick's raise is cut to the count in force (it failed, or was held): a
    raise of an earlier tick, applied then, stays."""
    earlier = START - 5 * STEP
    memory = ServiceMemory(seed=None, changes=((earlier, 3),), last_change_at=earlier,
                           shadow=8, seen_spec=8)

    assert raise_held_to(memory, 6, earlier) is memory
    cut = raise_held_to(memory, 6, START - 10 * STEP)
    assert (cut.shadow, cut.changes, cut.last_change_at) == (6, ((earlier, 1),), earlier)


def trained_before_an_outage() -> tuple[list[float], int, range, MetricForecaster]:
    """A daily load with 20 minutes at 0 at midday of its ninth day, and a forecaster trained
    on its first eight: (load, history length, the outage's indices, forecaster)."""
    load = daily(9)
    history = 8 * 1440
    outage = range(history + 360, history + 380)
    for index in outage:
        load[index] = 0.0
    forecaster = MetricForecaster(settings(max_error_pct=200.0))
    forecaster.train([START + i * STEP for i in range(history)], load[:history])
    return load, history, outage, forecaster


def test_a_forecast_the_load_contradicts_for_a_horizon_says_so_until_the_load_comes_back(
) -> None:
    """An outage of 20 minutes at midday on a daily load: the forecasts made before it are
    resolved against nothing, so a horizon (5 steps) into it every forecast of the last
    horizon was more than twice the load; the first value back resolves one that was not."""
    load, history, _, forecaster = trained_before_an_outage()
    contradicted = {}
    for index in range(history, history + 400):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        contradicted[index - history] = forecaster.forecast(now).contradicted

    assert not any(contradicted[i] for i in range(360 + 4)), "before a horizon of misses"
    assert all(contradicted[i] for i in range(360 + 4, 380))
    assert not any(contradicted[i] for i in range(380, 400)), "the load came back"


@pytest.mark.parametrize("break_kind", ["metric-gap", "clock-set-back"])
def test_a_contradiction_is_not_carried_over_a_horizon_with_nothing_resolved(
    break_kind: str,
) -> None:
    """An outage contradicts the forecasts; then the metric is missing for half an hour (or
    the clock is set back an hour) and comes back at the usual load. No forecast was resolved
    over the horizon just after (the ones made before were for the gap, or for the old
    clock's times): the resolutions from before the break say nothing of the last horizon,
    and must not keep the forecast from raising the count when the load comes back."""
    load, history, outage, forecaster = trained_before_an_outage()
    for index in range(history, outage[-1] + 1):
        now = START + index * STEP
        forecaster.observe(now, load[index])
        forecaster.forecast(now)
    assert forecaster.forecast(now).contradicted, "the outage contradicts the forecast"
    if break_kind == "metric-gap":
        for index in range(outage[-1] + 1, outage[-1] + 31):
            forecaster.observe(START + index * STEP, None)
        back = outage[-1] + 31
        when = START + back * STEP
    else:
        back = outage[-1] + 1
        when = START + (back - 60) * STEP
    contradicted = []
    for offset in range(4):  # within a horizon (5 steps) of the break: nothing resolved yet
        now = when + offset * STEP
        forecaster.observe(now, load[back + offset])
        contradicted.append(forecaster.forecast(now).contradicted)

    assert contradicted == [False] * 4


def test_a_target_alone_run_at_0_when_the_min_is_raised_starts_again_from_the_spec() -> None:
    """The run scaled to 0 under a min of 0 while a forecast held the service at 3; the min is
    then raised to 1. A service at 0 with a min above is left alone, so the run would stay at
    0 for good, and `decide` would hold back every raise of the target rule at 3 (the count
    the rule's raise goes no further than); it starts again from the spec instead."""
    policy = build_policy(strategy="predictive", min_replicas=1, max_replicas=50,
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    at_zero = ServiceMemory(seed=None, shadow=0, seen_spec=3)

    count, alone = target_alone_step(policy, at_zero, spec=3, metrics={"rps": 2000.0},
                                     now=START, seeded=False, keep=timedelta(minutes=5))
    outcome = decide(policy, current=3, metrics={"rps": 2000.0},
                     memory=ServiceMemory(seed=None), last_change_at=None, now=START,
                     forecasts=None, target_alone=count)

    assert count > 3 and alone.shadow == count
    assert outcome.desired == count
