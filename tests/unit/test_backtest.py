"""The backtest's semantics on traces small enough to check by hand."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.offline.memo import ForecastMemo
from autoscaler.offline.replay import (
    BacktestError,
    BacktestSettings,
    default_capacity,
    default_startup,
    replay,
)
from autoscaler.offline.scoring import demand, score
from autoscaler.offline.simulated import SimulatedCluster
from autoscaler.offline.traces import Trace
from tests.unit.conftest import build_policy

START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def trace(*values: float) -> Trace:
    return Trace(START, MINUTE, list(values), "test")


def test_scale_up_is_ready_after_startup_and_scale_down_cancels_the_latest_first() -> None:
    cluster = SimulatedCluster(service="web", service_label="service", ready=2, startup_steps=2,
                               trace=trace(1, 1, 1))
    cluster.begin_step(0, START, 1.0)
    state = cluster.list_services()["web"]

    cluster.scale(state, 5, labels={})
    assert (cluster.ready, cluster.pending) == (2, 3)
    cluster.begin_step(1, START + MINUTE, 1.0)
    cluster.scale(cluster.list_services()["web"], 7, labels={})
    assert (cluster.ready, cluster.pending) == (2, 5)
    cluster.begin_step(2, START + 2 * MINUTE, 1.0)
    assert (cluster.ready, cluster.pending) == (5, 2)

    cluster.scale(cluster.list_services()["web"], 4, labels={})
    assert (cluster.ready, cluster.pending) == (4, 0)
    assert cluster.actions == 3


def test_startup_zero_is_ready_at_once() -> None:
    cluster = SimulatedCluster(service="web", service_label="service", ready=1, startup_steps=0,
                               trace=trace(1, 1))
    cluster.begin_step(0, START, 1.0)

    cluster.scale(cluster.list_services()["web"], 3, labels={})

    assert (cluster.ready, cluster.pending) == (3, 0)


def test_a_replay_scored_by_hand() -> None:
    policy = build_policy(
        min_replicas=1, max_replicas=100, tolerance=0,
        behavior={"scale_down": {"stabilization": "0s"}},
        metrics=[{"name": "rps", "query": "q", "target": 10}],
    )
    settings = BacktestSettings(capacity=10, slo_utilisation=1.0, startup=MINUTE, warmup=MINUTE)

    run = replay(policy, "p.yaml", trace(10, 10, 50, 50, 10, 10), settings)

    assert run.demand == [1, 5, 5, 1, 1]
    assert run.supply == [1, 1, 1, 5, 1]
    assert run.billed == [1, 1, 5, 5, 1]
    scores = run.scores
    assert scores.replica_hours == pytest.approx(13 / 60)
    assert scores.oracle_replica_hours == pytest.approx(13 / 60)
    assert scores.slo_violation_pct == pytest.approx(40)
    assert scores.under_provisioned_time_pct == pytest.approx(40)
    assert scores.over_provisioned_time_pct == pytest.approx(20)
    assert scores.under_provisioning_accuracy == pytest.approx(32)
    assert scores.over_provisioning_accuracy == pytest.approx(80)
    assert scores.instability_pct == pytest.approx(75)
    assert scores.scaling_actions_per_hour == pytest.approx(24)
    assert [(c.current_replicas, c.desired_replicas) for c in run.changes] == [(1, 5), (5, 1)]
    assert run.reasons == {"DesiredWithinRange": 2, "WithinTolerance": 3}


def test_the_policys_limits_shape_the_replay() -> None:
    policy = build_policy(
        min_replicas=1, max_replicas=100,
        behavior={"scale_up": {"max_step": 1}, "scale_down": {"stabilization": "0s"}},
        metrics=[{"name": "rps", "query": "q", "target": 10}],
    )
    settings = BacktestSettings(capacity=10, slo_utilisation=1.0, startup=timedelta(0),
                                warmup=MINUTE)

    run = replay(policy, "p.yaml", trace(10, 40, 40, 40, 40), settings)

    assert run.supply == [1, 2, 3, 4]
    assert run.reasons["ScaleUpLimit"] == 2


def test_demand_and_the_default_capacity() -> None:
    assert demand(0, capacity=10, slo_utilisation=0.9, min_replicas=2) == 2
    assert demand(90, capacity=10, slo_utilisation=0.9, min_replicas=1) == 10
    assert demand(90.1, capacity=10, slo_utilisation=0.9, min_replicas=1) == 11
    target = build_policy(metrics=[{"name": "rps", "query": "q", "target": 7}])
    threshold = build_policy(strategy="threshold", metrics=[
        {"name": "rps", "query": "q", "scale_up_above": 2, "scale_down_below": 1}])
    assert default_capacity([threshold, target]) == pytest.approx(10)
    assert default_capacity([threshold]) is None


def test_the_simulated_startup_is_the_one_the_predictive_policies_set() -> None:
    metrics = [{"name": "rps", "query": "q", "target": 7}]
    target = build_policy(metrics=metrics)
    unset = build_policy(strategy="predictive", metrics=metrics)
    two, five = (build_policy(strategy="predictive", metrics=metrics,
                              predictive={"startup": startup}) for startup in ("2m", "5m"))

    assert default_startup([target, unset]) == timedelta(minutes=1)
    assert default_startup([target, two, unset]) == timedelta(minutes=2)
    with pytest.raises(BacktestError, match=r"different start-ups \(2m, 5m\): give --startup"):
        default_startup([five, two])


@pytest.mark.parametrize(("warmup", "message"), [
    (timedelta(hours=1), "leaves 0 steps after the warm-up (1h): scoring needs at least two"),
    (2 * MINUTE, "leaves 1 step after the warm-up (2m): scoring needs at least two"),
])
def test_a_trace_no_longer_than_the_warmup_and_a_step_is_refused(
        warmup: timedelta, message: str) -> None:
    settings = BacktestSettings(capacity=10, warmup=warmup)
    with pytest.raises(BacktestError, match=re.escape(message)):
        replay(build_policy(), "p.yaml", trace(1, 2, 3), settings)


@pytest.mark.parametrize(("capacity", "peak"), [(10, 1e308), (10, 10.0 ** 10), (5e-324, 30)],
                         ids=["a-value-near-the-floats-limit", "a-value-in-another-unit",
                              "a-capacity-near-zero"])
def test_a_load_that_needs_more_than_a_billion_replicas_is_refused(capacity: float,
                                                                   peak: float) -> None:
    settings = BacktestSettings(capacity=capacity, warmup=MINUTE)
    with pytest.raises(BacktestError, match="needs more than 1,000,000,000 replicas"):
        replay(build_policy(), "p.yaml", trace(30, peak, 30), settings)


def test_several_metrics_the_trace_feeds_the_named_one() -> None:
    policy = build_policy(metrics=[{"name": "cpu", "query": "c", "target": 1},
                                   {"name": "rps", "query": "r", "target": 10}])
    settings = BacktestSettings(capacity=10, slo_utilisation=1.0, warmup=MINUTE, metric="rps")

    assert replay(policy, "p.yaml", trace(30, 30, 30), settings).metric == "rps"
    with pytest.raises(BacktestError, match="no metric 'mem'"):
        replay(policy, "p.yaml", trace(30, 30, 30),
               BacktestSettings(capacity=10, warmup=MINUTE, metric="mem"))


def test_the_history_a_forecaster_gets_is_the_past_as_the_engine_saw_it() -> None:
    history = trace(5, 6, 7, 8, 9)
    cluster = SimulatedCluster(service="web", service_label="service", ready=1,
                               startup_steps=0, trace=history)
    cluster.begin_step(3, history.time(3), 7.0)

    times, values = cluster.history("q", service="web", service_label="service",
                                    per_service=False, start=history.time(0),
                                    end=history.time(5), step=MINUTE)

    # up to the current step, whose value (the load of the step before) the engine has seen
    assert times == [history.time(1), history.time(2), history.time(3)]
    assert values == [5, 6, 7]


def test_a_predictive_replay_scores_its_forecasts() -> None:
    rng = random.Random(3)
    minutes = range(3 * 1440)
    load = [(500 + 400 * math.sin(2 * math.pi * m / 1440)) * rng.uniform(0.9, 1.1)
            for m in minutes]
    policy = build_policy(strategy="predictive", max_replicas=100,
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    settings = BacktestSettings(capacity=100 / 0.7, warmup=timedelta(days=2))

    run = replay(policy, "p.yaml", Trace(START, MINUTE, load, "t"), settings)

    assert run.forecast is not None
    # None from the first tick, which has no model yet (the agent trains after its first
    # tick), nor from the last two, whose horizon is past the trace.
    assert run.forecast.forecasts_scored == 1440 - 3
    assert run.forecast.smape_pct < 15
    assert 0 < run.forecast.mase < 1
    assert len(run.training_seconds) == 1


def test_replays_sharing_a_forecast_memo_decide_as_replays_without_one() -> None:
    """The sweep and tune share one memo across targets; it must change no decision."""
    rng = random.Random(5)
    load = [(500 + 400 * math.sin(2 * math.pi * m / 1440)) * rng.uniform(0.9, 1.1)
            for m in range(3 * 1440)]
    settings = BacktestSettings(capacity=100 / 0.7, warmup=timedelta(days=2))
    memo: ForecastMemo = {}

    def run(target: float, shared: ForecastMemo | None) -> tuple[list[int], list[str]]:
        policy = build_policy(strategy="predictive", max_replicas=100,
                              metrics=[{"name": "rps", "query": "q", "target": target}])
        done = replay(policy, "p.yaml", Trace(START, MINUTE, load, "t"), settings,
                      forecast_memo=shared)
        return done.billed, done.reasons_by_step

    for target in (100, 80):
        assert run(target, memo) == run(target, None)


def test_the_replay_starts_with_empty_stabilization_history() -> None:
    policy = build_policy(max_replicas=100, metrics=[{"name": "rps", "query": "q", "target": 70}])
    settings = BacktestSettings(capacity=100, slo_utilisation=1.0, startup=MINUTE,
                                warmup=2 * MINUTE)

    run = replay(policy, "p.yaml", trace(100, 100, 1000, 100, 100, 100), settings)

    assert run.supply[0] == 2
    assert run.changes[0].reason == "DesiredWithinRange"


def test_a_supply_equal_to_the_demand_never_violates_the_slo() -> None:
    scores = score(load=[63.0], demand=[9], supply=[9], billed=[9], step_hours=1 / 60,
                   capacity=10, slo_utilisation=0.7, actions=0)

    assert demand(63.0, capacity=10, slo_utilisation=0.7, min_replicas=1) == 9
    assert scores.slo_violation_pct == 0


def test_the_default_capacity_follows_the_fed_metric() -> None:
    policy = build_policy(metrics=[{"name": "cpu", "query": "c", "target": 0.7},
                                   {"name": "rps", "query": "r", "target": 70}])

    assert default_capacity([policy]) == pytest.approx(1)
    assert default_capacity([policy], "rps") == pytest.approx(100)
