"""A per-task metric: the service's value is the sum of its tasks', and how evenly the load
spreads over them is recorded; a lasting imbalance is said once it has lasted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.balance import Spread, is_imbalanced, least_even, spread, uneven_since
from autoscaler.core.model import Series
from autoscaler.core.queries import assign_values, plan_queries
from tests.unit.conftest import build_policy
from tests.unit.fakes import FakeMetrics, FakeSwarm, ListSink
from tests.unit.test_engine import engine_of

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PER_TASK = [{"name": "rps", "query": "q", "target": 100, "per_task": True}]


@pytest.mark.parametrize(
    ("loads", "expected"),
    [
        pytest.param([100, 100, 100], (0.0, 1 / 3), id="even"),
        pytest.param([300, 0, 0], (2 ** 0.5, 1.0), id="all-on-one"),
        pytest.param([150, 50], (0.5, 0.75), id="three-to-one"),
        pytest.param([100], None, id="one-task"),
        pytest.param([0, 0], None, id="no-load"),
        pytest.param([1e308, 1e308], (0.0, 0.5), id="a-sum-past-the-floats-range"),
        pytest.param([5e-324, 0, 0], (2 ** 0.5, 1.0), id="a-mean-under-the-floats-range"),
    ],
)
def test_spread(loads: list[float], expected: tuple[float, float] | None) -> None:
    found = spread("rps", loads)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.cv, found.hottest_share) == pytest.approx(expected)


def test_the_least_even_metric_and_how_long_it_has_been_uneven() -> None:
    worst = least_even({"rps": [100, 100], "cpu": [3, 1]})
    assert worst is not None and worst.metric == "cpu"
    since = uneven_since(None, worst, max_cv=0.4, now=NOW)
    assert since == NOW
    assert uneven_since(since, worst, max_cv=0.4, now=NOW + timedelta(minutes=1)) == NOW
    assert uneven_since(since, Spread("cpu", 2, 0.1, 0.55), max_cv=0.4, now=NOW) is None
    assert not is_imbalanced(since, lasting=timedelta(minutes=5), now=NOW + timedelta(minutes=4))
    assert is_imbalanced(since, lasting=timedelta(minutes=5), now=NOW + timedelta(minutes=5))


def task_series(service: str, *loads: float) -> list[Series]:
    return [Series({"service": service, "task": f"{service}.{i}"}, load)
            for i, load in enumerate(loads)]


def test_a_per_task_answer_is_summed_per_service_and_keeps_the_tasks_loads() -> None:
    policies = [build_policy(service=name, metrics=PER_TASK) for name in ("web", "api")]
    plan = plan_queries(policies)
    answer = task_series("web", 300, 100) + task_series("api", 50)
    values = assign_values(plan, {query: answer for query in plan})
    assert (values["web"]["rps"], values["web"].tasks["rps"]) == (400.0, (300.0, 100.0))
    assert (values["api"]["rps"], values["api"].tasks["rps"]) == (50.0, (50.0,))

    bad = assign_values(plan, {query: task_series("web", 300, -5) for query in plan})
    assert bad["web"]["rps"] is None and "rps" not in bad["web"].tasks
    assert bad["web"].rejected["rps"] == "rps: -5 is negative: treated as missing"
    assert bad["api"]["rps"] is None, "no task answered for api"


def test_a_lasting_imbalance_is_recorded_and_scaling_goes_on() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 4)
    sink = ListSink()
    metrics = FakeMetrics(lambda _: task_series("web", 340, 20, 20, 20))
    engine = engine_of(metrics=metrics, swarm=swarm, sink=sink, dry_run=True, policies={
        "web.yaml": build_policy(service="web", metrics=PER_TASK,
                                 balance={"max_cv": 0.5, "for": "5m"})})
    for minute in range(7):
        engine.tick(NOW + timedelta(minutes=minute))

    first, last = sink.decisions[0], sink.decisions[-1]
    assert first.metrics == {"rps": 400.0}
    assert first.balance is not None and first.balance.tasks == 4
    assert first.balance.hottest_share == pytest.approx(0.85)
    assert [d.imbalanced for d in sink.decisions] == [False] * 5 + [True] * 2
    assert last.desired_replicas == 4


@pytest.mark.parametrize("loads", [(1e308, 1e308), (5e-324, 0.0, 0.0)], ids=["huge", "tiny"])
def test_task_loads_at_the_floats_limits_do_not_block_another_metrics_raise(
    loads: tuple[float, ...],
) -> None:
    swarm = FakeSwarm()
    swarm.add("web", 2)
    sink = ListSink()

    def answer(query: str) -> list[Series]:
        return [Series({"service": "web"}, 5.0)] if query == "cpu" \
            else task_series("web", *loads)

    policy = build_policy(service="web", max_replicas=50, metrics=[
        {"name": "rps", "query": "rps", "target": 100, "per_task": True},
        {"name": "cpu", "query": "cpu", "target": 0.5}])
    engine_of(metrics=FakeMetrics(answer), swarm=swarm, sink=sink,
              policies={"web.yaml": policy}).tick(NOW)

    assert swarm.scaled == [("web", 6)], sink.decisions[-1].message
