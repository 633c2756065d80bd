"""Predictive without thrashing (issue 19, point 2): a forecast's count is capped at
FORECAST_CAP x what its point forecast needs, a large raise waits for the tick after to ask
for it too, a raise is held for a horizon (as far as it was applied), and a release within
tolerance of the current count keeps it; the decision's message says when each applied."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.decide import Outcome, decide, rule_raise_capped
from autoscaler.core.memory import ServiceMemory, remember
from autoscaler.core.model import Reason
from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.core.strategies import (
    ForecastCount,
    HeldCount,
    MetricForecast,
    Recommendation,
    forecast_count,
)
from autoscaler.predictive.book import ForecastBook, RaiseHold
from autoscaler.predictive.forecaster import Forecast
from autoscaler.predictive.planner import PredictivePlanner
from tests.unit.conftest import build_policy

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
RPS = {"name": "rps", "query": "q", "target": 100, "limit": 150}


RPS_WITHOUT_LIMIT = {"name": "rps", "query": "q", "target": 100}
"""Its margin is read at the target, so that a test of the limits on a forecast's count
can set that count with the forecast with margin alone."""


def predictive(**keys: object) -> Policy:
    return build_policy(strategy="predictive", metrics=[RPS], max_replicas=1000, **keys)


def decide_fresh(policy: Policy, *, current: int, load: float, forecast: MetricForecast,
                 target_alone: int | None = None) -> Outcome:
    """`decide` at NOW on the metric `rps`, with no memory and no change yet."""
    return decide(policy, current=current, metrics={"rps": load},
                  memory=ServiceMemory(seed=None), last_change_at=None, now=NOW,
                  forecasts={"rps": forecast}, target_alone=target_alone)


@pytest.mark.parametrize(
    ("forecast", "expected", "note"),
    [
        pytest.param(MetricForecast(280, 300, 400, cap_base=280), 3, None, id="under-the-cap"),
        pytest.param(MetricForecast(500, 550, 1000, cap_base=500), 6,
                     "capped at 6 (1.2 x the 5 replicas' worth of the forecast 500)",
                     id="worst-case-capped"),
        pytest.param(MetricForecast(500, 2000, None, cap_base=500), 6,
                     "capped at 6 (1.2 x the 5 replicas' worth of the forecast 500)",
                     id="margin-capped"),
        pytest.param(MetricForecast(280, 2000, None, cap_base=280), 3,
                     "capped at 3 (1.2 x the 2.8 replicas' worth of the forecast 280)",
                     id="never-under-what-the-point-needs"),
        pytest.param(MetricForecast(0, 500, None, cap_base=0), 1,
                     "capped at 1 (1.2 x the 0 replicas' worth of the forecast 0)",
                     id="a-replica-at-least"),
        pytest.param(MetricForecast(780, 2000, None, cap_base=780), 9,
                     "capped at 9 (1.2 x the 7.8 replicas' worth of the forecast 780)",
                     id="rounded-down"),
        pytest.param(MetricForecast(280, 300, 900), 6, None, id="no-base-no-cap"),
    ],
)
def test_a_forecasts_count_is_capped_at_a_fifth_more_than_what_its_point_needs(
    forecast: MetricForecast, expected: int, note: str | None,
) -> None:
    """The cap is floor(1.2 x point / target), and never under ceil(point / target) or 1:
    a count the load of the point forecast would use less than five sixths of is not asked
    for."""
    count = forecast_count(predictive(), {"rps": forecast})

    assert count is not None and count.replicas == expected
    assert (note in count.explanation) if note else ("capped" not in count.explanation)


def test_a_held_raise_is_a_floor_under_the_forecasts_count_and_says_so() -> None:
    held = HeldCount(9, NOW - MINUTE, timedelta(minutes=3))
    count = forecast_count(predictive(), {"rps": MetricForecast(280, 300, None, held=held)})

    assert count is not None and count.replicas == 9
    assert "held at 9 (asked for at 11:59:00; a forecast's count is held for 3m)" \
        in count.explanation


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param([10, 14, 9, 9, 9, 12, 8], [10, 14, 14, 14, 9, 12, 12], id="jitter"),
        pytest.param([10, 20, 18, 16, 14, 12], [10, 20, 20, 20, 14, 12],
                     id="the-peak-held-the-descent-followed"),
        pytest.param([10, 11, 12, 13], [10, 11, 12, 13], id="a-ramp"),
        pytest.param([10, 30, None, 9], [10, 30, None, 30], id="held-across-a-fall-back"),
    ],
)
def test_a_raise_of_the_forecasts_count_is_held_for_a_horizon(
    counts: list[int | None], expected: list[int | None],
) -> None:
    """A tick a minute, a horizon of 3 minutes: a raise is a floor for the next two ticks;
    a count under the one in force the tick before (a falling forecast) is not held. The
    first count, with none in force before it, is a raise."""
    hold = RaiseHold((100, 150))
    found: list[int | None] = []
    for minute, count in enumerate(counts):
        forecast = MetricForecast(count, None if count is None else count * 100.0)
        served = hold.apply(forecast, count, NOW + minute * MINUTE, 3 * MINUTE)
        found.append(None if count is None else max(
            count, served.held.replicas if served.held else 0))
    assert found == expected


class StubBook(ForecastBook):
    """A book whose forecasters answer from a list: each point with a margin of 10 % and a
    worst case of 20 %, or (`margins` False) the point alone."""

    def __init__(self, points: list[float], *, margins: bool = True) -> None:
        super().__init__(MINUTE)
        self.points = iter(points)
        self.margins = margins

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        point = next(self.points)
        if not self.margins:
            return Forecast(point, point, None, None)
        return Forecast(point, point * 1.1, point * 1.2, None)


def test_the_book_serves_forecasts_with_their_cap_and_held_raise() -> None:
    """startup 2m and a minute's tick: a horizon, and a hold, of 3 minutes. The point
    forecast rises to 900 for two ticks: the second makes the raise (9, what the point
    forecast needs at the target of 100; its margin, 990, needs 7 at the limit of 150), held
    for two ticks after."""
    policy = predictive(predictive={"startup": "2m"})
    book = StubBook([300, 900, 900, 300, 300, 300])
    served = [book.forecast(policy, {"rps": 300.0}, NOW + minute * MINUTE)[0]["rps"]
              for minute in range(6)]

    assert [f.cap_base for f in served] == [300, 900, 900, 300, 300, 300]
    assert [f.held.replicas if f.held else None for f in served] \
        == [None, None, None, 9, 9, None]


def test_a_one_tick_spike_of_the_point_forecast_raises_nothing_beyond_the_prompt_share(
) -> None:
    """The point forecast jumps from 300 to 3000 for one tick (load 300): the confirmation
    takes the lower of this tick's point and the last, so the count goes from 3 (what the
    load needs; the margin, 330, needs 3 at the limit of 150) to 4 (1.25 x 3) and no
    further; that raise is held for the horizon."""
    policy = predictive(predictive={"startup": "5m"})
    book = StubBook([300, 300, 3000, 300, 300])
    counts = []
    for minute in range(5):
        found = forecast_count(
            policy, book.forecast(policy, {"rps": 300.0}, NOW + minute * MINUTE)[0])
        assert found is not None
        counts.append(found.replicas)

    assert counts == [3, 3, 4, 4, 4]


def test_a_decision_held_by_a_raise_says_so() -> None:
    """The forecast now asks for 3; a raise to 9 a minute ago is held."""
    policy = predictive(behavior={"scale_down": {"stabilization": "0s"}})
    held = HeldCount(9, NOW - MINUTE, timedelta(minutes=3))
    outcome = decide(policy, current=9, metrics={"rps": 280}, memory=ServiceMemory(seed=None),
                     last_change_at=None, now=NOW,
                     forecasts={"rps": MetricForecast(280, 300, None, cap_base=280, held=held)})

    assert (outcome.desired, outcome.reason) == (9, Reason.PREDICTED_LOAD)
    assert "held at 9 (asked for at 11:59:00" in outcome.message


@pytest.mark.parametrize(
    ("current", "forecast_asks", "expected", "note"),
    [
        pytest.param(20, 19, 20, "20: kept, the forecast's count 19 is within tolerance of it",
                     id="a-replica-less-kept"),
        pytest.param(20, 18, 20, "20: kept, the forecast's count 18 is within tolerance of it",
                     id="tolerance-less-kept"),
        pytest.param(20, 17, 17, "17: the forecast's count, a floor", id="more-less-followed"),
        pytest.param(20, 23, 23, "23: the forecast's count, a floor", id="a-raise-at-once"),
    ],
)
def test_a_forecasts_count_within_tolerance_under_the_current_count_keeps_it(
    current: int, forecast_asks: int, expected: int, note: str,
) -> None:
    """The load (300) asks the target rule for 3 at once (no down-window); a forecast that
    asks for a replica or two less than the current count keeps it (tolerance 0.1), one that
    asks for more than that less is followed, a raise is made at once."""
    policy = build_policy(strategy="predictive", metrics=[{"name": "rps", "query": "q",
                                                           "target": 100}],
                          max_replicas=1000, behavior={"scale_down": {"stabilization": "0s"}})
    point = forecast_asks * 100.0
    outcome = decide_fresh(policy, current=current, load=300, forecast=MetricForecast(point, point))

    assert (outcome.desired, outcome.reason) == (expected, Reason.PREDICTED_LOAD)
    assert note in outcome.message


@pytest.mark.parametrize(
    ("point", "expected", "note"),
    [
        pytest.param(710.0, 9, "9: kept, the forecast's count 8 (9 with its cap rounded up) is "
                     "within tolerance of it", id="the-cap-rounded-down-by-a-replica-keeps"),
        pytest.param(760.0, 9, "9: the forecast's count, a floor", id="under-the-cap"),
        pytest.param(560.0, 6, "6: the forecast's count, a floor",
                     id="a-cap-under-the-band-is-followed"),
    ],
)
def test_the_band_reads_the_cap_rounded_up(point: float, expected: int, note: str) -> None:
    """The worst case (1,300 at limit 150: 9 replicas) is capped at 1.2 x the point's worth
    rounded down: 8 for 7.1 replicas' worth (8.52); not at 7.6 (9.12). At 9 replicas the
    count that a point forecast jittering across that line would lower to 8 and raise again
    is kept, since the cap rounded up is 9; a cap of 6 (5.6 worth: 6.72, 7 rounded up) is
    under the band."""
    policy = predictive(behavior={"scale_down": {"stabilization": "0s"}})
    outcome = decide_fresh(policy, current=9, load=500.0,
                           forecast=MetricForecast(point, point, 1300.0, cap_base=point))

    assert (outcome.desired, outcome.reason) == (expected, Reason.PREDICTED_LOAD)
    assert note in outcome.message


def test_the_band_can_keep_a_tolerance_above_the_cap_rounded_up() -> None:
    """What the docs say of the band's reach at a steady load: a tolerance's worth of
    replicas above the forecast's count with its cap rounded up, a replica more than above
    the rule's where the cap binds. At 710 (7.1 replicas' worth) the rule and the capped
    forecast ask for 8, the cap rounded up for 9, and 9 is within 0.1 of 10: 10 is kept."""
    policy = predictive(behavior={"scale_down": {"stabilization": "0s"}})
    outcome = decide_fresh(policy, current=10, load=710.0,
                           forecast=MetricForecast(710.0, 710.0, 1300.0, cap_base=710.0))

    assert (outcome.rule_count, outcome.desired) == (8, 10)
    assert "10: kept, the forecast's count 8 (9 with its cap rounded up)" in outcome.message


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        pytest.param(850.0, 10, id="the-rules-drop-within-tolerance-held"),
        pytest.param(790.0, 8, id="the-rules-drop-beyond-tolerance-made"),
    ],
)
def test_the_band_holds_the_rules_own_drop_by_at_most_a_tolerance(load: float,
                                                                  expected: int) -> None:
    """At a steady load the rule and the forecast both ask for 9 of 10 (load 850, target
    100): the band keeps 10, a tolerance's worth (0.1) above; a drop to 8 is made."""
    policy = build_policy(strategy="predictive", metrics=[{"name": "rps", "query": "q",
                                                           "target": 100}],
                          max_replicas=1000, behavior={"scale_down": {"stabilization": "0s"}})
    outcome = decide_fresh(policy, current=10, load=load, forecast=MetricForecast(load, load))

    assert outcome.desired == expected


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        pytest.param([900.0, 300.0], [4, 3], id="a-one-tick-spike-raises-to-the-prompt-only"),
        pytest.param([900.0, 900.0], [4, 9], id="asked-twice-made"),
        pytest.param([380.0, 380.0], [4, 4], id="within-the-prompt-at-once"),
    ],
)
def test_a_large_raise_is_made_once_two_ticks_ask_for_it(
    asked: list[float], expected: list[int],
) -> None:
    """The load (300) and the point forecast (280) need 3 replicas of 100: up to
    ceil(1.25 x 3) = 4 is made at once, more only once the tick before asked for as much."""
    policy = build_policy(strategy="predictive", metrics=[RPS_WITHOUT_LIMIT], max_replicas=1000)
    hold = RaiseHold((100, None))
    counts = []
    for minute, with_margin in enumerate(asked):
        forecast = hold.confirm(MetricForecast(280, with_margin, cap_base=None),
                                policy.metrics[0], 300.0, NOW + minute * MINUTE, MINUTE)
        count = forecast_count(policy, {"rps": forecast})
        assert count is not None
        counts.append(count.replicas)
        if count.replicas < -(-with_margin // 100):
            assert f"{count.replicas} until the next tick asks for more too" \
                in count.explanation
    assert counts == expected


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        pytest.param(MINUTE, 9, id="the-tick-before-confirms"),
        pytest.param(MINUTE * 1.4, 9, id="a-late-tick-confirms"),
        pytest.param(2 * MINUTE, 4, id="a-tick-missed-confirms-nothing"),
        pytest.param(timedelta(days=1), 4, id="a-day-before-confirms-nothing"),
        pytest.param(-MINUTE, 4, id="the-clock-set-back-confirms-nothing"),
    ],
)
def test_only_the_forecast_of_the_tick_before_confirms_a_large_raise(
    gap: timedelta, expected: int,
) -> None:
    """An operator's pause, a switch of strategy or a failed tick between two forecasts: the
    earlier one, not a tick before, confirms nothing."""
    policy = build_policy(strategy="predictive", metrics=[RPS_WITHOUT_LIMIT], max_replicas=1000)
    hold = RaiseHold((100, None))
    hold.confirm(MetricForecast(280, 900.0), policy.metrics[0], 300.0, NOW, MINUTE)
    forecast = hold.confirm(MetricForecast(280, 900.0), policy.metrics[0], 300.0, NOW + gap,
                            MINUTE)
    count = forecast_count(policy, {"rps": forecast})

    assert count is not None and count.replicas == expected


@pytest.mark.parametrize("value", [sys.float_info.max, 1e306])
def test_a_huge_finite_value_asks_for_the_most_and_raises_nothing(value: float) -> None:
    """An exporter's "unlimited" (Go's math.MaxFloat64) passes the checks for NaN, inf and
    negative values: what it needs is counted without overflowing, for the value seen and
    for a forecast of it alike."""
    policy = build_policy(strategy="predictive", max_replicas=1000, metrics=[
        {"name": "rps", "query": "q", "target": 0.5, "limit": 0.75}])
    hold = RaiseHold((0.5, 0.75))
    for minute in range(2):
        forecast = hold.confirm(MetricForecast(value, value, value, cap_base=value),
                                policy.metrics[0], value, NOW + minute * MINUTE, MINUTE)
        count = forecast_count(policy, {"rps": forecast})
        assert count is not None and count.replicas >= 2**53


def test_a_service_no_longer_managed_is_forgotten_with_its_raises() -> None:
    """A service removed (or made again under its name) keeps nothing of its predecessor:
    neither its held raise nor its forecasters and training time; the others keep theirs."""
    policy = predictive(predictive={"startup": "10m"})
    other = policy.model_copy(update={"service": "api"})
    book = StubBook([1000, 1000, 1000, 1000, 100])
    planner = PredictivePlanner(book)
    for minute in range(2):
        book.forecast(policy, {"rps": 1000.0}, NOW + minute * MINUTE)
        book.forecast(other, {"rps": 1000.0}, NOW + minute * MINUTE)
    book.trained(policy, NOW, ok=True)
    book.trained(other, NOW, ok=True)

    planner.keep_only({"api"})
    served = book.forecast(policy, {"rps": 100.0}, NOW + 2 * MINUTE)[0]["rps"]

    assert served.held is None
    assert book.due(policy, NOW + 2 * MINUTE) and not book.due(other, NOW + 2 * MINUTE)
    assert set(book._holds) == {("web", "rps"), ("api", "rps")}


def test_a_raise_the_rate_limit_held_back_is_held_only_as_far_as_it_was_made() -> None:
    """scale_up max_step 1 a minute: the forecast asks for 15 for two ticks (11, then 12 are
    made), then falls back to 10. The hold keeps 12, what was applied, for the horizon (6m
    from the raise at minute 3), and never raises the count to 15 after the forecast fell."""
    policy = build_policy(strategy="predictive", max_replicas=1000,
                          predictive={"startup": "5m"},
                          behavior={"scale_up": {"max_step": 1, "period": "1m"},
                                    "scale_down": {"stabilization": "0s"}},
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    points = [1000.0, 1000, 1500, 1500, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
    book = StubBook(points, margins=False)
    planner = PredictivePlanner(book)
    memory, current, counts = ServiceMemory(seed=None), 10, []
    for minute in range(len(points)):
        now = NOW + minute * MINUTE
        outcome = decide(policy, current=current, metrics={"rps": 1000.0}, memory=memory,
                         last_change_at=None, now=now,
                         forecasts=book.forecast(policy, {"rps": 1000.0}, now)[0])
        memory = remember(memory, now=now, recommended=outcome.remembered,
                          change=outcome.desired - current, keep=timedelta(hours=1))
        planner.settle("web", spec=outcome.desired, in_force=outcome.desired)
        current = outcome.desired
        counts.append(current)

    assert counts == [10, 10, 11, 12, 12, 12, 12, 12, 12, 10, 10]


@pytest.mark.parametrize(
    ("forecast", "note"),
    [
        pytest.param(MetricForecast(300, 2000, cap_base=300),
                     "rps 2000 -> 20, capped at 3 (1.2 x the 3 replicas' worth of the "
                     "forecast 300): the target rule's 5 stands", id="capped"),
        pytest.param(MetricForecast(300, 2000, unconfirmed=4),
                     "rps 2000 -> 20, 4 until the next tick asks for more too", id="unconfirmed"),
        pytest.param(MetricForecast(300, 400, cap_base=300), None, id="no-limit-applied"),
    ],
)
def test_a_forecast_a_limit_brought_under_the_rule_is_still_said(
    forecast: MetricForecast, note: str | None,
) -> None:
    """The target rule keeps 5; a forecast that asked for more, capped down to 3 or
    unconfirmed down to 4, is named with its limit; one that asked for no more than 5 is
    not."""
    policy = build_policy(strategy="predictive", max_replicas=1000,
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    outcome = decide(policy, current=5, metrics={"rps": 480.0}, memory=ServiceMemory(seed=None),
                     last_change_at=None, now=NOW, forecasts={"rps": forecast})

    assert outcome.desired == 5
    if note is None:
        assert "forecast" not in outcome.message
    else:
        assert note in outcome.message and outcome.message.endswith("the target rule's 5 stands")


@pytest.mark.parametrize(
    ("contradicted", "expected", "note"),
    [
        pytest.param(None, 9, None, id="not-contradicted"),
        pytest.param(6, 6, "no raise above 6 while the load is under 1/2 of every forecast "
                     "made for the last horizon", id="no-raise-above-the-last-count"),
        pytest.param(0, 0, ", no raise while the load", id="none-the-tick-before"),
        pytest.param(12, 9, None, id="a-fall-is-let-through"),
    ],
)
def test_a_forecast_the_load_contradicts_raises_nothing(
    contradicted: int | None, expected: int, note: str | None,
) -> None:
    forecast = MetricForecast(880, 900, contradicted=contradicted)
    count = forecast_count(
        build_policy(strategy="predictive", metrics=[RPS_WITHOUT_LIMIT], max_replicas=1000),
        {"rps": forecast})

    assert count is not None and count.replicas == expected
    assert (note in count.explanation) if note else ("no raise" not in count.explanation)


class OutageBook(ForecastBook):
    """A book whose forecasters forecast 500 and 400 in turn, with no margin, contradicted
    by the load from the third tick on (an outage the time of day does not foresee)."""

    def __init__(self) -> None:
        super().__init__(MINUTE)
        self.ticks = 0

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        self.ticks += 1
        point = 400.0 + 100 * (self.ticks % 2)
        return Forecast(point, point, None, None, contradicted=self.ticks >= 3)


def test_through_an_outage_the_forecast_keeps_its_count_and_raises_it_no_more() -> None:
    """The forecast jitters between 5 and 4 replicas' worth. Before the outage it raises
    the count to 5, held for the horizon (2 minutes); contradicted, it asks for at most its
    count of the tick before, so once it fell to 4 it stays there, where it would have
    raised the count to 5 again every other tick."""
    policy = build_policy(strategy="predictive", metrics=[RPS_WITHOUT_LIMIT], max_replicas=1000,
                          predictive={"startup": "1m"})
    book = OutageBook()
    counts = []
    for minute in range(8):
        now = NOW + minute * MINUTE
        found = forecast_count(policy, book.forecast(policy, {"rps": 0.0}, now)[0])
        assert found is not None
        book.settled("web", found.replicas)
        counts.append(found.replicas)

    assert counts == [5, 5, 5, 4, 4, 4, 4, 4]


@pytest.mark.parametrize("contradicted", [8, 5])
def test_a_contradicted_forecast_holds_back_raises_not_the_band(contradicted: int) -> None:
    """As in the band's test above: at 9 replicas, a forecast capped at 8 (9 with its cap
    rounded up) keeps 9. Contradicted, it may raise no count, but what it asks for is the
    same, and the band keeps 9 as before: a contradiction that came and went would
    otherwise let the count fall and rise again."""
    policy = predictive(behavior={"scale_down": {"stabilization": "0s"}})
    forecast = MetricForecast(710.0, 710.0, 1300.0, cap_base=710.0, contradicted=contradicted)
    outcome = decide_fresh(policy, current=9, load=500.0, forecast=forecast)

    assert outcome.desired == 9
    assert ("no raise above 5 while the load" in outcome.message) == (contradicted == 5), \
        "said only where it held back the capped count, 8"


@pytest.mark.parametrize(
    ("rule", "current", "alone", "forecast", "expected"),
    [
        pytest.param(80, 12, 5, 11, 12, id="no-further-than-the-current-count"),
        pytest.param(80, 12, 5, 18, 18, id="as-far-as-the-forecast"),
        pytest.param(80, 12, 40, 18, 40, id="as-far-as-target-alone"),
        pytest.param(80, 12, 5, None, 12, id="in-fall-back-as-far-as-target-alone-or-current"),
        pytest.param(20, 12, 5, 25, 20, id="a-raise-under-the-cap-stands"),
        pytest.param(8, 12, 5, 3, 8, id="a-drop-is-not-this-limits"),
        pytest.param(80, 12, None, 11, 80, id="not-a-predictive-policy"),
    ],
)
def test_the_target_rules_raise_goes_no_further_than_target_alone_or_the_forecast(
    rule: int, current: int, alone: int | None, forecast: int | None, expected: int,
) -> None:
    recommended = Recommendation(rule, False, False, "rps -> rule")
    found = ForecastCount(forecast, "forecast") if forecast is not None else None

    capped = rule_raise_capped(recommended, current=current, target_alone=alone,
                               forecast=found, tolerance=0.1)

    assert capped.replicas == expected
    assert ("goes no further than" in capped.explanation) == (expected != rule)


def test_one_request_over_a_count_the_forecast_held_up_raises_no_further_than_target() -> None:
    """The forecast held the count at 12 where `target` alone, from its own count of 4,
    doubles to 8 on a minute of 2,000 requests. The rule, on 12, asks for 20 and its rate
    limit would let it double too; it goes no further than the current count."""
    policy = predictive()
    outcome = decide_fresh(policy, current=12, load=2000.0,
                           forecast=MetricForecast(1100.0, 1100.0), target_alone=8)

    assert outcome.desired == 12
    assert "the target rule's raise goes no further than 12, the most of the current count " \
        "12, `target` alone's 8 and the forecast's 11" in outcome.message


@pytest.mark.parametrize(
    ("with_margin", "worst_case", "point", "expected", "reason", "note"),
    [
        pytest.param(2100.0, None, 2100.0, 20, Reason.WITHIN_TOLERANCE,
                     ": 21 is within tolerance of the current count 20, which carries it: no "
                     "raise", id="a-replica-more-kept"),
        pytest.param(2200.0, None, 2200.0, 20, Reason.WITHIN_TOLERANCE,
                     ": 22 is within tolerance of the current count 20, which carries it: no "
                     "raise", id="a-tolerance-more-kept"),
        pytest.param(2300.0, None, 2300.0, 23, Reason.PREDICTED_LOAD,
                     "23: the forecast's count, a floor", id="more-raised"),
        pytest.param(3100.0, None, 2100.0, 21, Reason.PREDICTED_LOAD,
                     "21: the forecast's count, a floor",
                     id="a-margin-the-count-cannot-carry-at-the-limit-raised"),
        pytest.param(2100.0, 3100.0, 2100.0, 21, Reason.PREDICTED_LOAD,
                     "21: the forecast's count, a floor",
                     id="a-worst-case-the-count-cannot-carry-at-the-limit-raised"),
    ],
)
def test_a_forecasts_raise_within_tolerance_that_the_count_carries_is_not_made(
    with_margin: float, worst_case: float | None, point: float, expected: int, reason: Reason,
    note: str,
) -> None:
    """At 20 replicas (tolerance 0.1, target 100, limit 150) and a load the rule keeps at 20,
    a forecast whose point asks for 21 or 22 follows its noise, and the count carries its
    margin and worst case at the limit (20 x 150 = 3,000): no raise. A margin or worst case
    past what the count carries at the limit raises it at once."""
    policy = predictive()
    outcome = decide_fresh(policy, current=20, load=2000.0,
                           forecast=MetricForecast(point, with_margin, worst_case))

    assert (outcome.desired, outcome.reason) == (expected, reason)
    assert note in outcome.message


@pytest.mark.parametrize(
    ("spread", "expected", "note"),
    [
        pytest.param(0.0, 19, "19: the forecast's count, a floor", id="tolerance-alone-raises"),
        pytest.param(0.2, 19, "19: the forecast's count, a floor", id="a-narrower-miss-raises"),
        pytest.param(0.3, 15, ": 19 is within the forecast's typical miss (30%) of the current "
                     "count 15, which carries it: no raise", id="within-its-typical-miss-kept"),
        pytest.param(0.05, 19, "19: the forecast's count, a floor",
                     id="a-miss-under-tolerance-is-tolerance"),
    ],
)
def test_a_forecasts_raise_within_its_typical_miss_is_not_made(
    spread: float, expected: int, note: str,
) -> None:
    """At 15 replicas (tolerance 0.1, target 100, limit 150), a point forecast asking for 19
    is a raise of 27 %: past the tolerance, but within a typical miss of 30 % it is the
    forecast's noise, and the count carries its margin at the limit (15 x 150 = 2,250)."""
    policy = predictive()
    outcome = decide_fresh(policy, current=15, load=1500.0,
                           forecast=MetricForecast(1900.0, 1900.0, spread=spread))

    assert outcome.desired == expected
    assert note in outcome.message


def test_a_margin_the_count_cannot_carry_is_raised_whatever_the_typical_miss() -> None:
    """The band, however wide, is only for what the count carries at the limit: a margin past
    15 x 150 raises the count at once."""
    policy = predictive()
    outcome = decide_fresh(policy, current=15, load=1500.0,
                           forecast=MetricForecast(1900.0, 2400.0, spread=2.0))

    assert (outcome.desired, outcome.reason) == (19, Reason.PREDICTED_LOAD)


def test_the_rules_raise_is_capped_by_a_forecast_within_its_typical_miss() -> None:
    """A request over the count makes the rule ask for 40 at 15 replicas, `target` alone for
    5; the forecast asks for 19, within its typical miss: the count stays, and says why."""
    policy = predictive()
    outcome = decide_fresh(policy, current=15, load=4000.0,
                           forecast=MetricForecast(1900.0, 1900.0, spread=0.4),
                           target_alone=5)

    assert outcome.desired == 15
    assert "the forecast's 19 (within the forecast's typical miss (40%) of the current count: " \
        "no raise)" in outcome.message


JOBS = {"name": "jobs", "query": "q2", "target": 10, "limit": 15}


@pytest.mark.parametrize(
    ("rps", "jobs", "expected", "note"),
    [
        pytest.param(MetricForecast(1900.0, 1900.0, spread=0.05),
                     MetricForecast(0.4, 0.4, spread=1.5), 19,
                     "19: the forecast's count, a floor",
                     id="a-quiet-metrics-miss-widens-no-other"),
        pytest.param(MetricForecast(1900.0, 1900.0, spread=0.3),
                     MetricForecast(180.0, 180.0, spread=0.05), 19,
                     "19: the forecast's count, a floor",
                     id="each-count-within-its-own-band"),
        pytest.param(MetricForecast(1900.0, 1900.0, spread=0.3),
                     MetricForecast(160.0, 160.0, spread=0.05), 15,
                     ": 19 is within the forecast's typical miss (30%) of the current count 15",
                     id="the-driving-metrics-miss-names-the-band"),
    ],
)
def test_each_metrics_raise_is_within_its_own_typical_miss(
    rps: MetricForecast, jobs: MetricForecast, expected: int, note: str,
) -> None:
    """At 15 replicas, a metric whose forecast misses by 5 % asking for 19 is a real raise,
    whatever another metric's forecast, at a request or so, misses by; and a count within the
    driving metric's typical miss (19 within 30 %) is still raised where another metric asks
    for more than its own band (its 18 past 15 x 1.1; its 16 within it)."""
    policy = build_policy(strategy="predictive", metrics=[RPS, JOBS], max_replicas=1000)
    outcome = decide(policy, current=15, metrics={"rps": 1500.0, "jobs": 100.0},
                     memory=ServiceMemory(seed=None), last_change_at=None, now=NOW,
                     forecasts={"rps": rps, "jobs": jobs})

    assert outcome.desired == expected
    assert note in outcome.message


def test_a_metric_without_a_limit_keeps_the_tolerance_band_whatever_its_miss() -> None:
    """Without a `limit` nothing checks that the count carries the margin at the SLO line:
    a forecast's raise from 15 to 19 is made, however widely the forecast misses."""
    policy = build_policy(strategy="predictive", metrics=[RPS_WITHOUT_LIMIT], max_replicas=1000)
    outcome = decide_fresh(policy, current=15, load=1500.0,
                           forecast=MetricForecast(1900.0, 1900.0, spread=1.5))

    assert (outcome.desired, outcome.reason) == (19, Reason.PREDICTED_LOAD)


def test_a_drop_the_rule_asks_for_is_held_by_a_forecast_within_tolerance_above() -> None:
    """The load asks the rule for 15 at 20 replicas (no down-window); the forecast asks for
    21, within tolerance and carried at the limit: it raises nothing, but the count it
    needs is not given up either."""
    policy = predictive(behavior={"scale_down": {"stabilization": "0s"}})
    outcome = decide_fresh(policy, current=20, load=1500.0, forecast=MetricForecast(2100.0, 2100.0))

    assert (outcome.desired, outcome.reason) == (20, Reason.PREDICTED_LOAD)
    assert "20: kept, the forecast's count 21 is within tolerance of it" in outcome.message


def test_the_rules_raise_goes_no_further_than_a_forecast_within_tolerance() -> None:
    """The forecast asks for 16 at 15 replicas, within tolerance and carried at the limit; a
    request over the count makes the rule ask for 40, `target` alone for 5. The forecast's 16
    raises nothing, so neither does the rule: the count stays at 15."""
    policy = predictive()
    outcome = decide_fresh(policy, current=15, load=4000.0,
                           forecast=MetricForecast(1600.0, 1600.0), target_alone=5)

    assert outcome.desired == 15
    assert "goes no further than 15, the most of the current count 15, `target` alone's 5 " \
        "and the forecast's 16 (within tolerance of the current count: no raise)" \
        in outcome.message


def test_a_forecast_within_tolerance_caps_the_rules_raise_only_where_the_count_stays() -> None:
    """At 20 replicas the rule asks for 30 and `target` alone raises to 21: the count moves
    anyway, and the forecast's 22 (within tolerance of 20, carried at the limit) is the
    floor over that raise, as before the raise band. The rule's raise goes as far as it,
    and the message does not say the forecast raises nothing before it raises the count."""
    policy = predictive()
    outcome = decide_fresh(policy, current=20, load=3000.0,
                           forecast=MetricForecast(2150.0, 2150.0), target_alone=21)

    assert (outcome.desired, outcome.rule_count) == (22, 22)
    assert "no raise" not in outcome.message
    assert "the target rule's raise goes no further than 22, the most of the current count " \
        "20, `target` alone's 21 and the forecast's 22" in outcome.message
