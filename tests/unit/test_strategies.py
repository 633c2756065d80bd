"""The strategies before any limit: the HPA target rule, threshold bounds, several metrics,
missing metrics."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from autoscaler.core.queries import MetricValues
from autoscaler.core.spec import Policy
from autoscaler.core.strategies import (
    MetricForecast,
    forecast_count,
    recommend,
    target_count,
    threshold_count,
)
from tests.unit.conftest import build_policy

MakePolicy = Callable[..., Policy]


@pytest.mark.parametrize(
    ("value", "current", "target", "tolerance", "expected"),
    [
        pytest.param(300, 3, 100, 0.1, (3, True), id="on-target"),
        pytest.param(330, 3, 100, 0.1, (3, True), id="upper-edge-holds-with-slack"),
        pytest.param(270, 3, 100, 0.1, (3, True), id="lower-edge-holds"),
        pytest.param(331, 3, 100, 0.1, (4, False), id="just-above-tolerance"),
        pytest.param(269, 3, 100, 0.1, (3, False), id="just-below-tolerance-ceil-is-current"),
        pytest.param(260, 4, 100, 0.1, (3, False), id="below-tolerance-scales-down"),
        pytest.param(500, 3, 100, 0.1, (5, False), id="scale-up"),
        pytest.param(50, 4, 50, 0.1, (1, False), id="scale-down"),
        pytest.param(0, 3, 100, 0.1, (0, False), id="zero-load"),
        pytest.param(2.1, 1, 0.7, 0.1, (3, False), id="ceil-2.1-over-0.7-is-3"),
        pytest.param(2.1, 3, 0.7, 0.1, (3, True), id="2.1-on-3x0.7-on-target"),
        pytest.param(300, 3, 100, 0.0, (3, True), id="zero-tolerance-exact"),
        pytest.param(301, 3, 100, 0.0, (4, False), id="zero-tolerance-just-above"),
        pytest.param(100.0001, 1, 100, 0.0, (2, False), id="slack-does-not-swallow-real-excess"),
        pytest.param(450, 3, 100, 0.5, (3, True), id="wide-tolerance"),
        pytest.param(250, 0, 100, 0.1, (3, False), id="from-zero-ceil-value-over-target"),
        pytest.param(0, 0, 100, 0.1, (0, False), id="from-zero-no-load"),
    ],
)
def test_target_count(
    value: float, current: int, target: float, tolerance: float, expected: tuple[int, bool]
) -> None:
    assert target_count(value=value, current=current, target=target, tolerance=tolerance) == (
        expected
    )


def test_python_ceil_would_be_wrong() -> None:
    """Guards the table above: without the slack these two would go the other way."""
    assert math.ceil(2.1 / 0.7) == 4
    assert abs(330 / (3 * 100) - 1) > 0.1


@pytest.mark.parametrize(
    ("value", "current", "step", "expected"),
    [
        pytest.param(130, 2, 1, (3, False), id="above-adds-step"),
        pytest.param(130, 2, 3, (5, False), id="above-adds-larger-step"),
        pytest.param(120, 2, 1, (2, True), id="on-upper-bound-holds"),
        pytest.param(80, 2, 1, (2, True), id="between-holds"),
        pytest.param(40, 2, 1, (2, True), id="on-lower-bound-holds"),
        pytest.param(30, 2, 1, (1, False), id="below-removes-step"),
        pytest.param(30, 4, 2, (2, False), id="below-removes-larger-step"),
        pytest.param(5, 1, 2, (0, False), id="never-below-zero"),
        pytest.param(0, 3, 1, (2, False), id="zero-load-removes-step"),
        pytest.param(0.5, 0, 2, (2, False), id="from-zero-with-load-adds-step"),
        pytest.param(0, 0, 2, (0, False), id="from-zero-no-load-stays"),
    ],
)
def test_threshold_count(value: float, current: int, step: int, expected: tuple[int, bool]) -> None:
    assert threshold_count(
        value=value, current=current, up_above=60, down_below=20, step=step
    ) == expected


@pytest.mark.parametrize(
    ("value", "current", "up_above", "down_below"),
    [
        pytest.param(0.9, 3, 0.3, 0.1, id="float-upper-bound"),
        pytest.param(0.3, 3, 0.5, 0.1, id="float-lower-bound"),
        pytest.param(2.1, 3, 0.7, 0.2, id="2.1-on-3-at-0.7"),
    ],
)
def test_threshold_bounds_use_slack(
    value: float, current: int, up_above: float, down_below: float
) -> None:
    assert threshold_count(
        value=value, current=current, up_above=up_above, down_below=down_below, step=1
    ) == (current, True)


TWO_TARGETS = [
    {"name": "rps", "query": "q", "target": 100},
    {"name": "queue", "query": "q", "target": 10},
]
TWO_THRESHOLDS = [
    {"name": "rps", "query": "q", "scale_up_above": 60, "scale_down_below": 20},
    {"name": "cpu", "query": "q", "scale_up_above": 0.8, "scale_down_below": 0.3},
]


@pytest.mark.parametrize(
    ("strategy", "metrics", "current", "values", "expected"),
    [
        pytest.param("target", TWO_TARGETS, 4, {"rps": 500, "queue": 80}, (8, False, False),
                     id="target-largest-wins"),
        pytest.param("target", TWO_TARGETS, 4, {"rps": 900, "queue": 20}, (9, False, False),
                     id="target-largest-wins-other-metric"),
        pytest.param("target", TWO_TARGETS, 3, {"rps": 310, "queue": 10}, (3, True, False),
                     id="target-one-within-other-lower"),
        pytest.param("target", TWO_TARGETS, 5, {"rps": 100, "queue": 10}, (1, False, False),
                     id="target-both-lower"),
        pytest.param("target", TWO_TARGETS, 4, {"rps": None, "queue": None}, (4, False, True),
                     id="all-missing-holds"),
        pytest.param("target", TWO_TARGETS, 4, {}, (4, False, True),
                     id="absent-from-mapping-is-missing"),
        pytest.param("target", TWO_TARGETS, 5, {"rps": 100, "queue": None}, (5, False, True),
                     id="missing-blocks-decrease"),
        pytest.param("target", TWO_TARGETS, 4, {"rps": 700, "queue": None}, (7, False, False),
                     id="missing-does-not-block-increase"),
        pytest.param("target", TWO_TARGETS, 3, {"rps": 300, "queue": None}, (3, True, False),
                     id="missing-with-other-within-tolerance"),
        pytest.param("target", TWO_TARGETS, 0, {"rps": 250, "queue": 5}, (3, False, False),
                     id="from-zero"),
        pytest.param("threshold", TWO_THRESHOLDS, 2, {"rps": 130, "cpu": 0.2},
                     (3, False, False), id="threshold-up-beats-down"),
        pytest.param("threshold", TWO_THRESHOLDS, 2, {"rps": 80, "cpu": 1.0}, (2, True, False),
                     id="threshold-within-beats-down"),
        pytest.param("threshold", TWO_THRESHOLDS, 2, {"rps": 30, "cpu": 0.2}, (1, False, False),
                     id="threshold-both-down"),
        pytest.param("threshold", TWO_THRESHOLDS, 2, {"rps": 30, "cpu": None}, (2, False, True),
                     id="threshold-missing-blocks-decrease"),
        pytest.param("threshold", TWO_THRESHOLDS, 2, {"rps": 200, "cpu": None},
                     (3, False, False), id="threshold-missing-does-not-block-increase"),
    ],
)
def test_recommend(
    make_policy: MakePolicy,
    strategy: str,
    metrics: list[dict[str, object]],
    current: int,
    values: dict[str, float | None],
    expected: tuple[int, bool, bool],
) -> None:
    policy = make_policy(strategy=strategy, metrics=metrics)
    result = recommend(policy, current, values)
    assert (result.replicas, result.within_tolerance, result.missing_blocked) == expected
    assert result.explanation


@pytest.mark.parametrize(
    ("strategy", "metrics"),
    [pytest.param("target", TWO_TARGETS, id="target"),
     pytest.param("threshold", TWO_THRESHOLDS, id="threshold")],
)
@pytest.mark.parametrize(
    "bad", [pytest.param(math.nan, id="nan"), pytest.param(math.inf, id="inf")],
)
def test_recommend_treats_nan_and_inf_as_missing(
    make_policy: MakePolicy, strategy: str, metrics: list[dict[str, object]], bad: float
) -> None:
    """Contract: NaN and Inf are missing data, like an empty result: all missing holds."""
    policy = make_policy(strategy=strategy, metrics=metrics)
    values: dict[str, float | None] = {str(m["name"]): bad for m in metrics}
    result = recommend(policy, 3, values)
    assert (result.replicas, result.missing_blocked) == (3, True)


NEGATIVE_RPS = "rps: -50 is negative: treated as missing"


@pytest.mark.parametrize(
    ("strategy", "metrics", "current", "values", "expected", "explanation"),
    [
        pytest.param("target", TWO_TARGETS, 4, {"rps": None, "queue": None},
                     (4, False, True),
                     f"{NEGATIVE_RPS}; queue is missing: hold at 4", id="all-missing-holds"),
        pytest.param("target", TWO_TARGETS, 5, {"rps": None, "queue": 10}, (5, False, True),
                     f"{NEGATIVE_RPS}; queue 10 over 5 replicas (target 10 each) -> 1: "
                     "a missing metric blocks scaling down", id="blocks-decrease"),
        pytest.param("target", TWO_TARGETS, 4, {"rps": None, "queue": 70}, (7, False, False),
                     f"{NEGATIVE_RPS}; queue 70 over 4 replicas (target 10 each) -> 7",
                     id="does-not-block-increase"),
        pytest.param("threshold", TWO_THRESHOLDS, 2, {"rps": None, "cpu": 0.2},
                     (2, False, True), f"{NEGATIVE_RPS}; cpu 0.1 per replica (scale down "
                     "below 0.3, up above 0.8) -> 1: a missing metric blocks scaling down",
                     id="threshold-blocks-decrease"),
    ],
)
def test_a_rejected_value_is_missing_and_the_explanation_says_why(
    make_policy: MakePolicy,
    strategy: str,
    metrics: list[dict[str, object]],
    current: int,
    values: dict[str, float | None],
    expected: tuple[int, bool, bool],
    explanation: str,
) -> None:
    """`assign_values` rejects a value that makes no sense as load (here rps at -50): the
    strategy reads it as missing, with the same hold, and says why."""
    policy = make_policy(strategy=strategy, metrics=metrics)
    rejected = MetricValues(values, {"rps": NEGATIVE_RPS})

    result = recommend(policy, current, rejected)

    assert (result.replicas, result.within_tolerance, result.missing_blocked) == expected
    assert result.explanation == explanation
    plain = recommend(policy, current, values)
    assert (plain.replicas, plain.within_tolerance, plain.missing_blocked) == expected
    assert plain.explanation == explanation.replace(NEGATIVE_RPS, "rps is missing")


@pytest.mark.parametrize(
    ("limit", "forecast", "expected"),
    [
        pytest.param(None, MetricForecast(280, 300, 600), 3, id="no-limit-the-margin-alone"),
        pytest.param(150, MetricForecast(280, 300, 400), 3, id="worst-case-fits-the-limit"),
        pytest.param(150, MetricForecast(280, 300, 451), 4, id="worst-case-over-the-limit"),
        pytest.param(150, MetricForecast(280, 300, None), 3, id="no-worst-case"),
        pytest.param(150, MetricForecast(280, None, None), None, id="fall-back-no-count"),
    ],
)
def test_the_forecasts_count_carries_the_worst_case_at_the_limit(
    make_policy: MakePolicy, limit: float | None, forecast: MetricForecast,
    expected: int | None,
) -> None:
    """ceil(forecast with margin / target), and ceil(worst case / limit) where it is more."""
    metric: dict[str, object] = {"name": "rps", "query": "q", "target": 100}
    if limit is not None:
        metric["limit"] = limit
    policy = make_policy(strategy="predictive", metrics=[metric])

    count = forecast_count(policy, {"rps": forecast})

    assert (count.replicas if count else None) == expected
    if expected == 4:
        assert count is not None and "worst case 451 at limit 150 each -> 4" in count.explanation


@pytest.mark.parametrize(
    ("limit", "forecast", "expected", "note"),
    [
        pytest.param(None, MetricForecast(280, 400), 4, "rps 400 -> 4", id="no-limit-at-target"),
        pytest.param(150, MetricForecast(280, 400), 3,
                     "rps 280 -> 3, with margin 400 at limit 150 each -> 3",
                     id="the-margin-within-the-limits-room"),
        pytest.param(150, MetricForecast(280, 600), 4,
                     "rps 280 -> 3, with margin 600 at limit 150 each -> 4",
                     id="the-margin-past-the-limit"),
        pytest.param(100, MetricForecast(280, 400), 4,
                     "rps 280 -> 3, with margin 400 at limit 100 each -> 4",
                     id="limit-at-the-target"),
    ],
)
def test_the_margin_is_carried_at_the_limit_the_forecast_at_the_target(
    make_policy: MakePolicy, limit: float | None, forecast: MetricForecast, expected: int,
    note: str,
) -> None:
    """A miss costs the SLO only past the limit: with one, the point forecast is counted at
    the target (100) and the forecast with its margin at the limit."""
    metric: dict[str, object] = {"name": "rps", "query": "q", "target": 100}
    if limit is not None:
        metric["limit"] = limit
    policy = make_policy(strategy="predictive", metrics=[metric])

    count = forecast_count(policy, {"rps": forecast})

    assert count is not None and count.replicas == expected
    assert note in count.explanation


def test_the_largest_metric_count_wins_with_a_limit(make_policy: MakePolicy) -> None:
    policy = make_policy(strategy="predictive", metrics=[
        {"name": "rps", "query": "q", "target": 100, "limit": 120},
        {"name": "queue", "query": "q", "target": 10}])

    count = forecast_count(policy, {"rps": MetricForecast(300, 300, 700),
                                    "queue": MetricForecast(50, 50, 90)})

    assert count is not None and count.replicas == 6


@pytest.mark.parametrize(
    ("values", "driver"),
    [
        pytest.param({"rps": 150, "cpu": 2.0}, "cpu", id="cpu-asks-more"),
        pytest.param({"rps": 900, "cpu": 0.2}, "rps", id="requests-ask-more"),
        pytest.param({"rps": None, "cpu": None}, None, id="all-missing"),
    ],
)
def test_the_decision_names_the_metric_that_set_the_count(
    values: dict[str, float | None], driver: str | None,
) -> None:
    policy = build_policy(metrics=[{"name": "rps", "query": "q", "target": 100},
                                   {"name": "cpu", "query": "c", "target": 0.5}])
    assert recommend(policy, 2, values).driver == driver


def test_a_forecast_too_large_for_any_count_asks_for_the_largest(
        make_policy: MakePolicy) -> None:
    """A forecast that divides past any count (a hostile or broken exporter) gives the
    largest count, for the bounds to cut, not an OverflowError that stops the service."""
    policy = make_policy(strategy="predictive")
    huge = MetricForecast(1.5e308, 1e308, None, cap_base=1.5e308)

    count = forecast_count(policy, {"rps": huge})

    assert count is not None and count.replicas == 2**53
