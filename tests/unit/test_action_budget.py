"""Issue 19's bound on scaling actions, kept by the agent itself: over any day a predictive
policy makes at most twice the actions of its `target` alone run plus one an hour; its
forecasts are not used while that budget is spent (`ActionBudget`), and the decision says
so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.predictive.actions import RESERVE, RESUME_MARGIN, WINDOW, ActionBudget
from autoscaler.predictive.book import TOO_MANY_ACTIONS, ForecastBook
from autoscaler.predictive.forecaster import Forecast
from autoscaler.predictive.planner import PredictivePlanner
from tests.unit.conftest import build_policy
from tests.unit.test_needless_limit import agent_ticks

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DAY_ALLOWANCE = 24
"""One action an hour, over the day."""


def budget_with(own: int, alone: int, *, at: datetime = NOW) -> ActionBudget:
    """A budget whose service changed its count `own` times and whose `target` alone run
    changed `alone` times, a minute apart, up to `at`."""
    budget = ActionBudget()
    budget.settled(at - (own + alone + 1) * MINUTE, 1, 1)
    for index in range(own + alone):
        when = at - (own + alone - index) * MINUTE
        if index < own:
            budget.settled(when, 2 if budget.in_force == 1 else 1, budget.alone_count)
        else:
            budget.settled(when, budget.in_force or 1,
                           2 if budget.alone_count == 1 else 1)
    return budget


@pytest.mark.parametrize(
    ("own", "alone", "allowed"),
    [
        pytest.param(0, 0, True, id="none-yet"),
        pytest.param(DAY_ALLOWANCE - RESERVE - 1, 0, True, id="one-above-the-reserve"),
        pytest.param(DAY_ALLOWANCE - RESERVE, 0, False, id="the-reserve-left"),
        pytest.param(DAY_ALLOWANCE + 2 * 10 - RESERVE - 1, 10, True,
                     id="twice-target-alones-count-too"),
        pytest.param(DAY_ALLOWANCE + 2 * 10 - RESERVE, 10, False,
                     id="twice-target-alones-and-the-reserve-left"),
    ],
)
def test_the_forecast_is_used_while_the_day_leaves_more_than_the_reserve(
    own: int, alone: int, allowed: bool,
) -> None:
    assert budget_with(own, alone).allows(NOW) is allowed


def test_once_spent_the_forecast_waits_until_the_actions_are_further_below_the_budget(
) -> None:
    budget = budget_with(DAY_ALLOWANCE - RESERVE, 0)
    assert not budget.allows(NOW)
    target_alone = budget.alone_count
    needed = 0
    while not budget.allows(NOW + needed * MINUTE):
        needed += 1
        budget.settled(NOW + needed * MINUTE, budget.in_force or 1,
                       2 if target_alone == 1 else 1)
        target_alone = budget.alone_count
    # Each change of `target` alone adds two to the budget.
    assert 2 * needed > RESUME_MARGIN
    assert 2 * (needed - 1) <= RESUME_MARGIN


def test_actions_older_than_the_window_are_forgotten() -> None:
    budget = budget_with(DAY_ALLOWANCE, 0)
    assert not budget.allows(NOW)
    assert budget.allows(NOW + WINDOW)
    assert len(budget.own) == 0


def test_the_clock_set_back_counts_the_actions_as_done_now() -> None:
    """As the windows have it (`as_of`): a step back does not lift a spent budget."""
    budget = budget_with(DAY_ALLOWANCE, 0)
    back = NOW - timedelta(hours=1)
    assert not budget.allows(back)
    assert not budget.allows(back + WINDOW - MINUTE)
    assert budget.allows(back + WINDOW)


@pytest.mark.parametrize(
    ("in_force", "alone", "own_actions", "alone_actions"),
    [
        pytest.param([3, 3, 3], [3, 3, 3], 0, 0, id="nothing-changed"),
        pytest.param([3, 5, 3], [3, 3, 3], 2, 0, id="the-service-up-and-down"),
        pytest.param([3, 3, 3], [3, 4, 4], 0, 1, id="target-alone-up"),
        pytest.param([3, 3, 3], [3, None, 4], 0, 1, id="target-alone-unknown-for-a-tick"),
    ],
)
def test_each_change_since_the_tick_before_is_an_action(
    in_force: list[int], alone: list[int | None], own_actions: int, alone_actions: int,
) -> None:
    budget = ActionBudget()
    for minute, (count, alone_count) in enumerate(zip(in_force, alone, strict=True)):
        budget.settled(NOW + minute * MINUTE, count, alone_count)
    assert (len(budget.own), len(budget.alone)) == (own_actions, alone_actions)


class JitterBook(ForecastBook):
    """A book whose forecasters forecast 500 (five replicas of 100) for two minutes of every
    four, and 300 otherwise, on a flat load of 300: the forecast's raise and its release
    every four minutes, which `target` alone never makes."""

    def __init__(self) -> None:
        super().__init__(MINUTE)

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        point = 500.0 if now.minute % 4 < 2 else 300.0
        return Forecast(point, point, None, None)


POLICY = build_policy(strategy="predictive", max_replicas=1000, predictive={"startup": "1m"},
                      metrics=[{"name": "rps", "query": "q", "target": 100}])


def test_a_jittering_forecast_makes_at_most_one_action_an_hour_over_any_day() -> None:
    """`target` alone holds 3 replicas on the flat load, so every action is the forecast's:
    at most 24 in any day, then the forecast is not used, and the message says why; once
    the first of them are a day old, it is used again."""
    ticks = agent_ticks(PredictivePlanner(JitterBook()), POLICY, range(2 * 24 * 60),
                        lambda _: 300.0, current=3)
    changed = [NOW + t.minute * MINUTE for t in ticks if t.after != t.before]

    def in_day_from(start: datetime) -> int:
        return sum(start <= at < start + WINDOW for at in changed)

    busiest = max(in_day_from(NOW + hour * timedelta(hours=1)) for hour in range(24))
    assert DAY_ALLOWANCE - RESERVE <= busiest <= DAY_ALLOWANCE
    assert any(at >= NOW + WINDOW for at in changed)
    spent = next(t.message for t in ticks if TOO_MANY_ACTIONS in t.message)
    assert (f"forecast not used ({TOO_MANY_ACTIONS}: {DAY_ALLOWANCE - RESERVE} scaling "
            f"actions in the last 1d, where 2 x `target` alone's 0 + 24 are allowed): the "
            "target rule alone") in spent


@pytest.mark.parametrize(("answer", "actions"), [(10, 0), (3, 1)],
                         ids=["left-as-set", "set-back-at-once"])
def test_a_count_set_by_someone_else_is_not_an_action_of_the_budget_the_answer_is(
    answer: int, actions: int,
) -> None:
    """Someone else sets 10 replicas; the agent leaves it so, or sets 3 again at once."""
    book = JitterBook()
    book.forecast(POLICY, {"rps": 300.0}, NOW)
    book.settled(POLICY.service, 3, alone=3)
    book.release(POLICY.service, in_force=10)
    book.forecast(POLICY, {"rps": 300.0}, NOW + MINUTE)
    book.settled(POLICY.service, answer, alone=3)
    assert book.budget_note(POLICY.service).startswith(f"{actions} scaling action")
    book.forget(POLICY.service)
    assert book.budget_note(POLICY.service) == ""


def test_a_service_forgotten_starts_its_budget_afresh() -> None:
    book = JitterBook()
    book.forecast(POLICY, {"rps": 300.0}, NOW)
    book.settled(POLICY.service, 3, alone=3)
    assert book.budget_note(POLICY.service) != ""
    book.forget(POLICY.service)
    assert book.budget_note(POLICY.service) == ""
