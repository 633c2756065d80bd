"""Issue 19's needless-raise bound, kept by the agent itself: a forecast raise that the load
of its horizon never used (more than 1.5 x what its peak needed at `target`) limits the
forecast's raises, for a day per such raise, to what the load needs and half as much again
(`NeedlessRaises`), and the decision says so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from autoscaler.core.decide import decide
from autoscaler.core.memory import ServiceMemory, remember
from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.core.strategies import MetricForecast, forecast_count
from autoscaler.predictive.book import ForecastBook
from autoscaler.predictive.forecaster import Forecast
from autoscaler.predictive.needless import MEMORY, NeedlessRaises
from autoscaler.predictive.planner import PredictivePlanner
from tests.unit.conftest import build_policy

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HORIZON = 3 * MINUTE
TARGET = 100.0


def judged(replicas: int, values: list[float | None], *, before: int = 1,
           alone: int | None = None, tick: timedelta = MINUTE) -> NeedlessRaises:
    """A raise from `before` to `replicas` made at NOW, where the target rule alone asks for
    `alone`; `values[0]` is the value seen at NOW, the others a tick apart after it."""
    raises = NeedlessRaises(TARGET)
    raises.settled(NOW - tick, None, before, None)
    raises.observe(values[0], NOW, HORIZON, tick)
    raises.settled(NOW, replicas, replicas, alone)
    for ticks, value in enumerate(values[1:], start=1):
        raises.observe(value, NOW + ticks * tick, HORIZON, tick)
    return raises


@pytest.mark.parametrize(
    ("replicas", "values", "needless"),
    [
        pytest.param(4, [150] * 5, True, id="4-where-2-are-needed"),
        pytest.param(4, [150, 150, 290, 150, 150], False, id="3-needed-at-the-peak"),
        pytest.param(4, [100, 100, 100, 100, 260], False, id="the-horizons-last-value-counts"),
        pytest.param(4, [400, 100, 100, 100, 100], True, id="the-raises-own-tick-does-not"),
        pytest.param(4, [100] * 4, False, id="not-judged-before-the-horizon-passed"),
        pytest.param(4, [100] * 5 + [260], True, id="a-later-peak-does-not-count"),
        pytest.param(2, [80] * 5, True, id="2-where-1-is-needed"),
        pytest.param(6, [301] * 5, False, id="6-where-4-are-needed"),
        pytest.param(4, [None] * 5, False, id="no-value-nothing-judged"),
        pytest.param(4, [None, None, 150, float("nan"), 150], True,
                     id="judged-on-the-values-seen"),
    ],
)
def test_a_raise_is_needless_when_its_horizons_peak_needed_less_than_two_thirds_of_it(
    replicas: int, values: list[float | None], needless: bool,
) -> None:
    assert (judged(replicas, values).limit(None) is not None) is needless


@pytest.mark.parametrize(
    ("before", "alone"),
    [pytest.param(4, None, id="no-raise-of-the-count-in-force"),
     pytest.param(1, 4, id="the-target-rule-alone-asked-as-much")],
)
def test_only_a_raise_above_the_count_before_and_the_target_rules_is_judged(
    before: int, alone: int | None,
) -> None:
    assert judged(4, [100] * 5, before=before, alone=alone).limit(None) is None


def test_a_tick_that_comes_a_little_early_or_late_judges_the_same_values() -> None:
    early = judged(4, [100, 100, 100, 100, 260], tick=MINUTE - timedelta(seconds=5))
    late = judged(4, [100, 100, 100, 100, 260], tick=MINUTE + timedelta(seconds=5))

    assert early.limit(None) is None and late.limit(None) is None


def test_a_raise_judged_after_missed_ticks_counts_only_the_values_of_its_horizon() -> None:
    """Ticks missed from minute 2 to minute 9: the raise is judged at minute 10 on the value
    of minute 1; the value of minute 10, well past its horizon, does not count."""
    raises = judged(4, [100, 100])
    raises.observe(900, NOW + 10 * MINUTE, HORIZON, MINUTE)

    assert raises.limit(None) is not None


@pytest.mark.parametrize(
    ("seen", "last", "expected"),
    [
        pytest.param([250, 250], None, 4, id="1.5x-what-3-need-rounded-down"),
        pytest.param([250, 500], None, 4, id="the-lower-of-the-last-two-values"),
        pytest.param([150, 120], None, 3, id="1.5x-2"),
        pytest.param([80, 80], None, 1, id="a-replica-needs-no-more"),
        pytest.param([80, 80], 5, 5, id="the-count-of-the-tick-before-kept"),
        pytest.param([250, None], None, 4, id="a-missing-value-left-out"),
    ],
)
def test_after_a_needless_raise_the_forecast_asks_for_at_most_half_again_what_the_load_needs(
    seen: list[float | None], last: int | None, expected: int,
) -> None:
    raises = judged(9, [100] * 5)
    for minute, value in enumerate(seen, start=5):
        raises.observe(value, NOW + minute * MINUTE, HORIZON, MINUTE)

    assert raises.limit(last) == expected


def test_the_limit_lasts_a_day_per_needless_raise_from_the_first() -> None:
    raises = judged(9, [100] * 2)
    raises.settled(NOW + MINUTE, 12, 12, None)  # a second raise before the first is judged
    for minute in range(2, 6):
        raises.observe(100, NOW + minute * MINUTE, HORIZON, MINUTE)
    raises.observe(100, NOW + 2 * MEMORY - MINUTE, HORIZON, MINUTE)
    assert raises.limit(None) == 1
    raises.observe(100, NOW + 2 * MEMORY, HORIZON, MINUTE)
    assert raises.limit(None) is None


@pytest.mark.parametrize("pending", [False, True])
def test_the_clock_set_back_forgets_the_limit_and_the_raises_pending(pending: bool) -> None:
    raises = judged(9, [100] * 5)
    if pending:
        raises = judged(9, [100] * 2)
    raises.observe(100, NOW - timedelta(hours=1), HORIZON, MINUTE)
    raises.observe(100, NOW + 4 * MINUTE, HORIZON, MINUTE)

    assert raises.limit(None) is None and not raises.pending


def test_the_limit_holds_back_a_raise_and_says_so_but_not_the_band() -> None:
    """As `contradicted`: the count is held back, what the release band reads is not."""
    policy = build_policy(strategy="predictive", max_replicas=1000,
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    count = forecast_count(policy, {"rps": MetricForecast(880, 900, after_needless=4)})

    assert count is not None and count.replicas == 4 and count.releasing_at == 9
    assert "at most 4 after a raise the load never used" in count.explanation


class MixtureBook(ForecastBook):
    """A book whose forecasters forecast 200 (two replicas of 100) at each full hour, where
    a load that is off (50) may start but never does, and 50 otherwise."""

    def __init__(self) -> None:
        super().__init__(MINUTE)

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        point = 200.0 if now.minute == 0 else 50.0
        return Forecast(point, point, None, None)


def raises_through(book: ForecastBook, policy: Policy, minutes: range, *,
                   alone: int | None = None) -> list[int]:
    """The minutes at which the forecast's count rose."""
    counts = []
    for minute in minutes:
        found = forecast_count(policy, book.forecast(policy, {"rps": 50.0},
                                                     NOW + minute * MINUTE)[0])
        assert found is not None
        book.settled(policy.service, found.replicas, alone=alone)
        counts.append(found.replicas)
    return [minutes[i + 1] for i, (before, after) in enumerate(pairwise(counts))
            if after > before]


POLICY = build_policy(strategy="predictive", max_replicas=1000, predictive={"startup": "1m"},
                      metrics=[{"name": "rps", "query": "q", "target": 100}])
DAY = 24 * 60


def test_a_forecaster_whose_raises_go_unused_makes_one_a_day() -> None:
    """The load (50) needs a replica of 100. The first hour's forecast raises the count to 2
    (within the confirmation's prompt share), needless; for the day after, such forecasts
    raise nothing, as 1.5 x 1 rounds down to 1; then one raise is made, needless again."""
    assert raises_through(MixtureBook(), POLICY, range(-1, DAY + 62)) == [0, DAY]


def test_a_release_keeps_the_limit_and_a_new_target_or_service_drops_it() -> None:
    book = MixtureBook()
    raises_through(book, POLICY, range(-1, 5))
    book.release(POLICY.service)
    assert raises_through(book, POLICY, range(59, 62)) == []
    book.forget(POLICY.service)
    assert raises_through(book, POLICY, range(119, 122)) == [120]
    retargeted = build_policy(strategy="predictive", max_replicas=1000,
                              predictive={"startup": "1m"},
                              metrics=[{"name": "rps", "query": "q", "target": 90}])
    assert raises_through(book, retargeted, range(179, 182)) == [180]


def test_raises_the_target_rule_alone_makes_too_are_not_judged() -> None:
    assert raises_through(MixtureBook(), POLICY, range(-1, 62), alone=2) == [0, 60]


def test_the_planner_leaves_a_raise_the_target_rule_alone_made_too_unjudged() -> None:
    """A minute's load of 200 (two replicas of 100) while the forecast asks for 2 as well:
    `target` alone raises to 2 too, so the raise is not the forecast's to answer for, though
    the load falls back to 50 at once; the next hour's forecast of 200 raises the count
    again."""
    decided = agent_ticks(PredictivePlanner(MixtureBook()), POLICY, range(-1, 62),
                          lambda minute: 200.0 if minute == 0 else 50.0, current=1)

    assert [tick.minute for tick in decided if tick.after > tick.before] == [0, 60]


@dataclass(frozen=True)
class Tick:
    minute: int
    before: int
    after: int
    message: str
    """The decision's message, with the plan's note."""


def agent_ticks(planner: PredictivePlanner, policy: Policy, minutes: range,
                load_at: Callable[[int], float], *, current: int) -> list[Tick]:
    """The agent's ticks a minute apart from NOW, through the planner, `decide` and the
    settle, on the load `load_at` each minute gives (its one metric, `rps`)."""
    memory, ticks = ServiceMemory(seed=None), []
    for minute in minutes:
        now = NOW + minute * MINUTE
        load = {"rps": load_at(minute)}
        plan = planner.plan(policy, metrics=load, spec=current, now=now, leader=True)
        outcome = decide(policy, current=current, metrics=load, memory=memory,
                         last_change_at=None, now=now, forecasts=plan.forecasts,
                         target_alone=plan.target_alone,
                         target_alone_changed_at=plan.target_alone_changed_at)
        memory = remember(memory, now=now, recommended=outcome.remembered,
                          change=outcome.desired - current, keep=timedelta(hours=1))
        planner.settle(policy.service, spec=outcome.desired, in_force=outcome.desired)
        ticks.append(Tick(minute, current, outcome.desired, outcome.message + plan.note))
        current = outcome.desired
    return ticks


class PointsBook(ForecastBook):
    """A book whose forecasters forecast the given points in turn, without a margin."""

    def __init__(self, points: list[float]) -> None:
        super().__init__(MINUTE)
        self.points = iter(points)

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        point = next(self.points)
        return Forecast(point, point, None, None)


def test_after_a_release_no_raise_is_judged_against_the_count_from_before() -> None:
    """3 replicas in force; someone else sets 10 (a release of the held raises), while the
    forecast asks for 6 at a load that needs 3: the count did not rise, so nothing is judged,
    and a later forecast of 6, asked two ticks running, is made."""
    book = PointsBook([300, 600, 300, 300, 300, 600, 600])
    counts = []
    for minute, in_force in enumerate([3, 10, 10, 10, 10, 10, 10]):
        found = forecast_count(POLICY, book.forecast(POLICY, {"rps": 300.0},
                                                     NOW + minute * MINUTE)[0])
        assert found is not None
        counts.append(found.replicas)
        book.settled(POLICY.service, in_force)
        if minute == 0:
            book.release(POLICY.service)

    assert counts[-1] == 6


def test_a_metric_renamed_by_a_reload_leaves_nothing_of_the_old_name_behind() -> None:
    book = ForecastBook(MINUTE)
    book.forecast(POLICY, {"rps": 50.0}, NOW)
    old = book.forecaster(POLICY, POLICY.metrics[0])
    assert book.forecaster(POLICY, POLICY.metrics[0]) is old
    renamed = build_policy(strategy="predictive", max_replicas=1000,
                           predictive={"startup": "1m"},
                           metrics=[{"name": "requests", "query": "q", "target": 100}])

    book.forecast(renamed, {"requests": 50.0}, NOW + MINUTE)

    assert book.forecaster(POLICY, POLICY.metrics[0]) is not old
