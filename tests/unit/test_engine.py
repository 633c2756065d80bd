"""The engine's tick (gather, decide, apply, record) with fakes that record calls."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autoscaler.bootstrap import build_engine
from autoscaler.core.labels import Template
from autoscaler.core.model import Reason, Series
from autoscaler.core.operator import PAUSE_LABEL
from autoscaler.core.placement import Placement
from autoscaler.core.ports import ScaleConflict, ScaleFailed
from autoscaler.core.spec import Policy
from autoscaler.core.strategies import MetricForecast
from autoscaler.engine import Engine
from autoscaler.offline.memo import ForecastMemo, MemoBook
from autoscaler.predictive.book import ForecastBook
from autoscaler.predictive.forecaster import Forecast
from autoscaler.predictive.planner import PredictivePlanner
from tests.unit.conftest import build_policy
from tests.unit.fakes import FakeHistory, FakeLeadership, FakeMetrics, FakeSwarm, ListSink

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ALL = 'sum by (service) (rate(r{service=~"{{services}}"}[1m]))'


def engine_of(*, tick: timedelta = timedelta(seconds=15),
              forecast_memo: ForecastMemo | None = None, **keys: Any) -> Engine:
    """The engine as the agent builds it, at `tick`, sharing `forecast_memo` if given."""
    book = None if forecast_memo is None else MemoBook(tick, forecast_memo)
    return build_engine(tick=tick, book=book, **keys)


def by_service(values: dict[str, float]) -> FakeMetrics:
    return FakeMetrics(lambda _: [Series({"service": s}, v) for s, v in values.items()])


def engine_for(metrics: FakeMetrics, swarm: FakeSwarm, *, dry_run: bool, **policies: dict
               ) -> tuple[Engine, ListSink]:
    sink = ListSink()
    built = {
        f"{service}.yaml": build_policy(
            service=service, metrics=[{"name": "rps", "query": ALL, "target": 100}], **keys
        )
        for service, keys in policies.items()
    }
    return engine_of(metrics=metrics, swarm=swarm, sink=sink, dry_run=dry_run,
                  policies=built), sink


def test_one_query_for_all_services_and_one_listing_per_tick() -> None:
    swarm = FakeSwarm()
    for name in ("a", "b", "c"):
        swarm.add(name, 2)
    metrics = by_service({"a": 500, "b": 200, "c": 100})
    engine, sink = engine_for(metrics, swarm, dry_run=False, a={}, b={}, c={})

    engine.tick(NOW)

    assert metrics.queries == ['sum by (service) (rate(r{service=~"a|b|c"}[1m]))']
    assert swarm.listings == 1
    assert [(d.service, d.desired_replicas) for d in sink.decisions] == [
        ("a", 5), ("b", 2), ("c", 2)
    ]
    assert swarm.scaled == [("a", 5)]
    assert [d.applied for d in sink.decisions] == [True, False, False]


def test_missing_and_global_services_are_recorded_and_the_others_go_on() -> None:
    swarm = FakeSwarm()
    swarm.add("global", None)
    swarm.add("ok", 1)
    engine, sink = engine_for(by_service({"ok": 300}), swarm, dry_run=False,
                              gone={}, ok={}, **{"global": {}})

    engine.tick(NOW)

    reasons = {d.service: d.reason for d in sink.decisions}
    assert reasons == {"gone": Reason.SERVICE_NOT_FOUND, "global": Reason.NOT_REPLICATED,
                       "ok": Reason.DESIRED_WITHIN_RANGE}
    assert swarm.scaled == [("ok", 3)]


def test_dry_run_applies_nothing_and_keeps_a_shadow_count() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 2)
    engine, sink = engine_for(by_service({"web": 1000}), swarm, dry_run=True,
                              web={"behavior": {"scale_up": {"max_step": 2}}})

    for tick in range(3):
        engine.tick(NOW + timedelta(seconds=15 * tick))

    assert swarm.scaled == []
    assert [(d.current_replicas, d.desired_replicas, d.spec_replicas) for d in sink.decisions
            ] == [(2, 4, 2), (4, 6, 2), (6, 8, 2)]
    assert all(d.dry_run and not d.applied for d in sink.decisions)


def test_the_shadow_count_resets_when_the_spec_changes() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 2)
    engine, sink = engine_for(by_service({"web": 500}), swarm, dry_run=True, web={})
    engine.tick(NOW)
    swarm.add("web", 7)

    engine.tick(NOW + timedelta(seconds=15))

    assert [d.current_replicas for d in sink.decisions] == [2, 7]


def test_a_paused_dry_run_holds_its_shadow_count() -> None:
    """A pause holds the count in force, which in a dry-run is the shadow one: its log says
    what a run would have done, not a drop to the spec and back."""
    swarm = FakeSwarm()
    swarm.add("web", 2)
    engine, sink = engine_for(by_service({"web": 1000}), swarm, dry_run=True,
                              web={"behavior": {"scale_up": {"max_step": 2}}})
    engine.tick(NOW)
    for tick, labels in ((1, {PAUSE_LABEL: "true"}), (2, {})):
        swarm.services["web"] = replace(swarm.services["web"], labels=labels)
        engine.tick(NOW + timedelta(seconds=15 * tick))

    assert [(d.reason, d.current_replicas, d.desired_replicas, d.spec_replicas)
            for d in sink.decisions] == [(Reason.SCALE_UP_LIMIT, 2, 4, 2),
                                         (Reason.PAUSED, 4, 4, 2),
                                         (Reason.SCALE_UP_LIMIT, 4, 6, 2)]


def test_rate_limits_count_the_changes_this_agent_made() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 2)
    rules = {"scale_up": {"max_step": 2, "period": "1m"}}
    engine, sink = engine_for(by_service({"web": 2000}), swarm, dry_run=False,
                              web={"behavior": rules})

    engine.tick(NOW)
    engine.tick(NOW + timedelta(seconds=30))
    engine.tick(NOW + timedelta(seconds=61))

    assert [(d.current_replicas, d.desired_replicas, d.reason) for d in sink.decisions] == [
        (2, 4, Reason.SCALE_UP_LIMIT),
        (4, 4, Reason.SCALE_UP_LIMIT),
        (4, 6, Reason.SCALE_UP_LIMIT),
    ]


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [pytest.param(ScaleConflict, Reason.CONFLICT, id="conflict"),
     pytest.param(ScaleFailed, Reason.APPLY_FAILED, id="failed")],
)
def test_a_refused_scale_is_recorded_and_decided_again(refusal: type[Exception],
                                                       reason: Reason) -> None:
    swarm = FakeSwarm(refuse_with=refusal)
    swarm.add("web", 2)
    engine, sink = engine_for(by_service({"web": 500}), swarm, dry_run=False, web={})

    engine.tick(NOW)
    swarm.refuse_with = None
    engine.tick(NOW + timedelta(seconds=1))

    first, second = sink.decisions
    assert (first.reason, first.desired_replicas, first.applied) == (reason, 5, False)
    assert (second.desired_replicas, second.applied) == (5, True)


@pytest.mark.parametrize("held_by", ["failed-apply", "unschedulable"])
def test_a_predictive_policy_keeps_the_rate_limit_after_raises_that_did_not_happen(
    held_by: str,
) -> None:
    """Three ticks whose raise fails, or is held while tasks wait for a node: `target` alone
    would not have raised either, so predictive (here in fall-back, the target rule alone)
    then climbs by the rate limit's 2 a minute from 2, as `target` does, not at once to
    where a target-alone run that counted the raises as made had got to."""
    counts: dict[str, list[int]] = {}
    for strategy in ("target", "predictive"):
        swarm = FakeSwarm()
        swarm.add("web", 2)
        sink = ListSink()
        policy = build_policy(service="web", strategy=strategy, max_replicas=50,
                              metrics=[{"name": "rps", "query": ALL, "target": 100}],
                              behavior={"scale_up": {"max_step": 2, "period": "1m"}})
        engine = engine_of(metrics=by_service({"web": 2000}), swarm=swarm, sink=sink,
                           dry_run=False, policies={"w.yaml": policy})
        counts[strategy] = []
        for minute in range(6):
            held = minute < 3
            swarm.refuse_with = ScaleFailed if held and held_by == "failed-apply" else None
            swarm.services["web"] = replace(swarm.services["web"], placement=Placement(
                running=2, nodes=1, unplaceable=1, reason="no suitable node")
                if held and held_by == "unschedulable" else None)
            engine.tick(NOW + timedelta(minutes=minute))
            counts[strategy].append(swarm.services["web"].replicas)

    assert counts["target"] == [2, 2, 2, 4, 6, 8]
    assert counts["predictive"] == counts["target"]


def test_a_predictive_policy_keeps_a_scale_up_cooldown_that_target_alone_is_in() -> None:
    """Rising load under a 30-minute scale-up cooldown: `target` raises once, then waits;
    predictive (in fall-back, the target rule alone) must wait as well, not raise every
    tick through a cooldown its own rule started."""
    calls: dict[str, list[tuple[str, int]]] = {}
    load = {"web": 300.0}
    for strategy in ("target", "predictive"):
        swarm = FakeSwarm()
        swarm.add("web", 2)
        policy = build_policy(service="web", strategy=strategy, max_replicas=50,
                              metrics=[{"name": "rps", "query": ALL, "target": 100}],
                              behavior={"scale_up": {"cooldown": "30m"}})
        engine = engine_of(metrics=FakeMetrics(lambda _: [
            Series({"service": "web"}, load["web"])]), swarm=swarm, sink=ListSink(),
            dry_run=False, policies={"w.yaml": policy})
        for minute in range(6):
            load["web"] = 300.0 + 200 * minute
            engine.tick(NOW + timedelta(minutes=minute))
        calls[strategy] = swarm.scaled

    assert calls["target"] == [("web", 3)]
    assert calls["predictive"] == calls["target"]


def test_a_service_dropped_as_another_is_added_is_forgotten() -> None:
    """b's policy goes in the reload that brings c's: b is forgotten all the same, so when
    its policy comes back an hour later, after the load fell, it is new again and the
    scale-down window holds the count it is found at rather than scaling down at once."""
    swarm = FakeSwarm()
    for name in "abc":
        swarm.add(name, 10)
    sink = ListSink()
    load = {"rps": 1000.0}

    def policies(*names: str) -> dict[str, Policy]:
        return {f"{name}.yaml": build_policy(
            service=name, max_replicas=50,
            metrics=[{"name": "rps", "query": ALL, "target": 100}]) for name in names}

    engine = engine_of(metrics=FakeMetrics(lambda _: [
        Series({"service": name}, load["rps"]) for name in "abc"]), swarm=swarm, sink=sink,
        dry_run=False, policies=policies("a", "b"))
    engine.tick(NOW)
    engine.set_policies(policies("a", "c"), {})
    engine.tick(NOW + timedelta(hours=1))
    load["rps"] = 100.0
    engine.set_policies(policies("a", "b", "c"), {})
    engine.tick(NOW + timedelta(hours=2))

    last_of_b = [d for d in sink.decisions if d.service == "b"][-1]
    assert (last_of_b.desired_replicas, last_of_b.reason) == (10, Reason.SCALE_DOWN_STABILIZED)


def test_prometheus_down_holds_every_service_and_is_reported() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    engine, sink = engine_for(FakeMetrics(lambda _: [], down=True), swarm, dry_run=False,
                              web={"min_replicas": 1})

    report = engine.tick(NOW)

    assert report.every_query_failed
    assert [(d.reason, d.desired_replicas) for d in sink.decisions] == [
        (Reason.METRICS_MISSING, 3)
    ]
    assert sink.decisions[0].metrics == {"rps": None}


def test_docker_down_records_no_decision_and_is_reported() -> None:
    engine, sink = engine_for(by_service({}), FakeSwarm(down=True), dry_run=False, web={})

    report = engine.tick(NOW)

    assert report.listing_error == "Docker is down"
    assert sink.decisions == []


def test_a_fresh_engine_does_not_scale_down_at_once() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 6)
    engine, sink = engine_for(by_service({"web": 100}), swarm, dry_run=False, web={})

    engine.tick(NOW)
    engine.tick(NOW + timedelta(minutes=5, seconds=1))

    assert [(d.desired_replicas, d.reason) for d in sink.decisions] == [
        (6, Reason.SCALE_DOWN_STABILIZED), (1, Reason.DESIRED_WITHIN_RANGE)
    ]


IN_FORCE_AT_NOW = {"start": "2026-11-30T11:00", "end": "2026-11-30T13:00"}


@pytest.mark.parametrize(("window", "rps", "expected"), [
    # (the window, in force at NOW, or None; the load; (desired, min and max recorded))
    pytest.param(None, 2500, (20, 1, 20), id="no-window-the-policys"),
    pytest.param({"max_replicas": 40}, 2500, (25, 1, 40), id="a-larger-max-below-it"),
    pytest.param({"max_replicas": 3}, 2500, (3, 1, 3), id="a-cap-at-it"),
    pytest.param({"min_replicas": 8}, 100, (8, 8, 20), id="a-raised-floor"),
])
def test_a_decision_records_the_bounds_in_force(
    window: dict[str, Any] | None, rps: float, expected: tuple[int, int, int]
) -> None:
    """The gauges and the alert on the maximum (`desired >= max` for an hour) read these: a
    count above the policy's max under a window's larger max is not capped."""
    swarm = FakeSwarm()
    swarm.add("web", 20)
    schedule = [] if window is None else [{**IN_FORCE_AT_NOW, **window}]
    engine, sink = engine_for(by_service({"web": rps}), swarm, dry_run=False,
                              web={"max_replicas": 20, "schedule": schedule,
                                   "behavior": {"scale_down": {"stabilization": "0s"}}})

    engine.tick(NOW)

    decision = sink.decisions[0]
    assert (decision.desired_replicas, decision.min_replicas, decision.max_replicas) == expected


class _LeaseThatRaises(FakeLeadership):
    """A lease label no code expected (an expiry without a zone, labels as a list)."""

    def acquire(self, now: object) -> bool:
        raise TypeError("can't compare offset-naive and offset-aware datetimes")


@pytest.mark.parametrize(
    "leadership",
    [pytest.param(FakeLeadership(leader=False), id="another-agent-leads"),
     pytest.param(FakeLeadership(down=True), id="lease-unreadable"),
     pytest.param(_LeaseThatRaises(), id="lease-that-raises")],
)
def test_an_agent_without_the_lease_records_not_leader_and_applies_nothing(
    leadership: FakeLeadership,
) -> None:
    swarm = FakeSwarm()
    swarm.add("busy", 2)
    swarm.add("calm", 2)
    sink = ListSink()
    policies = {f"{s}.yaml": build_policy(service=s, metrics=[
        {"name": "rps", "query": ALL, "target": 100}]) for s in ("busy", "calm")}
    engine = engine_of(metrics=by_service({"busy": 500, "calm": 200}), swarm=swarm, sink=sink,
                    dry_run=False, leadership=leadership, policies=policies)

    report = engine.tick(NOW)

    assert not report.leader
    assert swarm.scaled == []
    assert [(d.reason, d.desired_replicas, d.applied) for d in sink.decisions] == [
        (Reason.NOT_LEADER, 5, False), (Reason.NOT_LEADER, 2, False)
    ]


def test_dry_run_takes_no_lease() -> None:
    leadership = FakeLeadership(leader=False)
    swarm = FakeSwarm()
    swarm.add("web", 2)
    engine = engine_of(metrics=by_service({"web": 500}), swarm=swarm, sink=ListSink(),
                    dry_run=True, leadership=leadership,
                    policies={"w.yaml": build_policy(service="web")})

    report = engine.tick(NOW)

    assert report.leader and leadership.acquired == []


def test_labelled_services_are_managed_and_a_file_wins() -> None:
    swarm = FakeSwarm()
    swarm.add("filed", 1)
    swarm.add("labelled", 1)
    swarm.add("plain", 1)
    for name in ("filed", "labelled"):
        swarm.services[name] = replace(swarm.services[name],
                                       labels={"autoscaler.enable": "true"})
    template = Template("default", "t/default.yaml", {
        "max_replicas": 3, "metrics": [{"name": "rps", "query": ALL, "target": 100}]})
    sink = ListSink()
    engine = engine_of(metrics=by_service({"filed": 800, "labelled": 800, "plain": 800}),
                    swarm=swarm, sink=sink, dry_run=False,
                    policies={"filed.yaml": build_policy(
                        service="filed", metrics=[{"name": "rps", "query": ALL, "target": 100}])},
                    templates={"default": template})

    engine.tick(NOW)

    assert [(d.service, d.policy_source, d.policy_file, d.desired_replicas)
            for d in sink.decisions] == [
        ("filed", "file", "filed.yaml", 5), ("labelled", "label", "t/default.yaml", 3)
    ]
    assert sorted(swarm.scaled) == [("filed", 5), ("labelled", 3)]


def test_a_hold_for_missing_metrics_is_not_remembered_as_a_recommendation() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    values: dict[str, float] = {"web": 1000}
    metrics = FakeMetrics(lambda _: [Series({"service": "web"}, values["web"])])
    engine, sink = engine_for(metrics, swarm, dry_run=False,
                              web={"behavior": {"scale_up": {"stabilization": "2m"}}})
    values["web"] = 300  # first seen, steady: the count found is out of the window at NOW
    engine.tick(NOW - timedelta(minutes=2))
    values["web"] = 1000

    engine.tick(NOW)
    values["web"] = float("nan")
    engine.tick(NOW + timedelta(seconds=15))
    values["web"] = 1000
    engine.tick(NOW + timedelta(seconds=30))

    assert [(d.desired_replicas, d.reason) for d in sink.decisions[1:]] == [
        (7, Reason.SCALE_UP_LIMIT), (7, Reason.METRICS_MISSING),
        (10, Reason.DESIRED_WITHIN_RANGE),
    ]


def daily_cycle(days: int) -> list[float]:
    return [550 + 450 * math.sin(2 * math.pi * i / 1440) for i in range(days * 1440)]


def predictive_web(metrics: list[dict[str, object]], *, load: float,
                   forecast_memo: ForecastMemo | None = None, dry_run: bool = False,
                   **keys: object) -> tuple[Engine, FakeSwarm, ListSink]:
    """An engine at a minute's tick with one predictive policy for `web` (3 replicas) under
    `load`."""
    swarm = FakeSwarm()
    swarm.add("web", 3)
    sink = ListSink()
    engine = engine_of(metrics=by_service({"web": load}), swarm=swarm, sink=sink, dry_run=dry_run,
                    tick=timedelta(minutes=1), forecast_memo=forecast_memo,
                    policies={"w.yaml": build_policy(service="web", strategy="predictive",
                                                     metrics=metrics, **keys)})
    return engine, swarm, sink


def stub_forecasts(engine: Engine, forecasts: Iterator[MetricForecast]) -> None:
    """The engine's forecasts of `rps`, one a tick, in place of its forecasters'."""
    def forecast(policy: Policy, values: Mapping[str, float | None], now: datetime
                 ) -> tuple[dict[str, MetricForecast], str | None]:
        return {"rps": next(forecasts)}, None

    planner = engine._planner
    assert isinstance(planner, PredictivePlanner)
    planner.book.forecast = forecast  # type: ignore[method-assign]


def test_a_predictive_policy_trains_on_history_then_forecasts_each_tick() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 2)
    minute = timedelta(minutes=1)
    cycle = daily_cycle(3)
    history = FakeHistory(cycle)
    sink = ListSink()
    engine = engine_of(metrics=by_service({"web": cycle[-1]}), swarm=swarm, sink=sink,
                    dry_run=False, tick=minute, policies={"w.yaml": build_policy(
                        service="web", strategy="predictive",
                        predictive={"startup": "5m", "retrain_every": "1h"},
                        metrics=[{"name": "rps", "query": ALL, "target": 100, "limit": 150}])})

    trained = engine.retrain(NOW, history)
    engine.tick(NOW)
    assert engine.retrain(NOW + minute, history) == []
    retrained = engine.retrain(NOW + timedelta(hours=1), history)

    assert [(r.service, r.metric, r.points, r.failure) for r in trained] == [
        ("web", "rps", 3 * 1440, None)]
    assert len(retrained) == 1
    (decision,) = sink.decisions
    assert decision.fallback_reason is None
    assert decision.forecast is not None
    forecast = decision.forecast["rps"]
    assert forecast["value"] is not None and forecast["with_margin"] is not None
    assert forecast["with_margin"] >= forecast["value"]
    assert 2 * forecast["value"] >= forecast["worst_case"] > forecast["value"]
    assert history.asked[0][1] == NOW - timedelta(days=14)
    # to NOW included: a training runs after a tick, and the value that tick saw is the
    # newest the new model's lags need
    assert history.asked[0][2] > NOW


def test_two_metrics_both_train_and_the_limited_one_records_its_worst_case() -> None:
    engine, _, sink = predictive_web([
        {"name": "rps", "query": ALL, "target": 100, "limit": 150},
        {"name": "cpu", "query": ALL.replace("r{", "cpu{"), "target": 100},
    ], load=500)

    trained = engine.retrain(NOW, FakeHistory(daily_cycle(3)))
    engine.tick(NOW)

    assert sorted((r.metric, r.failure) for r in trained) == [("cpu", None), ("rps", None)]
    (decision,) = sink.decisions
    assert decision.fallback_reason is None and decision.forecast is not None
    assert "worst_case" in decision.forecast["rps"]
    assert "worst_case" not in decision.forecast["cpu"]


def test_the_worst_case_at_the_limit_can_set_the_count() -> None:
    """A forecast with margin of 300 asks for 3 replicas of 100; its worst case, 900, asks
    for 6 at the limit of 150 each."""
    engine, _, sink = predictive_web(
        [{"name": "rps", "query": ALL, "target": 100, "limit": 150}], load=300,
        behavior={"scale_up": {"max_step": 10}})
    stub_forecasts(engine, iter([MetricForecast(280, 300, 900)]))
    engine.tick(NOW)

    (decision,) = sink.decisions
    assert decision.desired_replicas == 6
    assert "worst case 900 at limit 150 each -> 6" in decision.message


@pytest.mark.parametrize(("changed", "trains"), [
    ({"target": 120}, False), ({"limit": 200}, True),
])
def test_replays_that_differ_in_target_share_the_forecast_memo_not_in_limit(
    changed: dict[str, float], trains: bool,
) -> None:
    """The backtest's sweep shares one memo across targets: a forecast depends on the values
    and the forecast settings, a metric's limit among them, not on the target. In the
    replay's order: a tick, the training due after it, the next tick."""
    memo: ForecastMemo = {}
    history = FakeHistory(daily_cycle(3))

    def run(metric: dict[str, object]) -> tuple[int, dict[str, dict[str, float | None]]]:
        engine, _, sink = predictive_web([metric], load=500, forecast_memo=memo)
        engine.tick(NOW)
        trained = engine.retrain(NOW, history)
        engine.tick(NOW + timedelta(minutes=1))
        decision = sink.decisions[-1]
        assert decision.forecast is not None and decision.fallback_reason is None
        return len(trained), decision.forecast

    base = {"name": "rps", "query": ALL, "target": 100, "limit": 150}
    first_trained, first = run(base)
    second_trained, second = run({**base, **changed})

    assert (first_trained, second_trained) == (1, 1 if trains else 0)
    if not trains:
        assert second == first


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_forecasts_raise_is_held_for_a_horizon_in_a_dry_run_as_in_a_run(
        dry_run: bool) -> None:
    """A raise of the forecast's count is held for the horizon (a minute's start-up and a
    tick) as far as it was made: the dry run holds it on its shadow count, so its decisions
    are the run's, though the spec never moves."""
    engine, swarm, sink = predictive_web([{"name": "rps", "query": ALL, "target": 100}],
                                         load=300, dry_run=dry_run,
                                         behavior={"scale_up": {"max_step": 10}})
    served = iter([Forecast(800, 850, None, None)] + [Forecast(320, 330, None, None)] * 3)
    planner = engine._planner
    assert isinstance(planner, PredictivePlanner)
    planner.book.forecast_metric = (  # type: ignore[method-assign]
        lambda policy, metric, value, now: next(served))
    for minute in range(4):
        engine.tick(NOW + timedelta(minutes=minute))

    assert [d.desired_replicas for d in sink.decisions] == [9, 9, 4, 4]
    assert "held at 9" in sink.decisions[1].message
    assert swarm.scaled == ([] if dry_run else [("web", 9), ("web", 4)])


@pytest.mark.parametrize("interruption", ["set-by-hand", "another-strategy"])
def test_a_raise_held_before_the_count_was_not_the_forecasts_is_not_held_after(
        interruption: str) -> None:
    """A raise to 9, held for 16 minutes (a 15-minute start-up): someone sets 4 by hand
    (left as it is for the 10 minutes of the override), or the policy runs as `target`
    for a few ticks (which sets 3). After either, the forecast asks for 4: the raise from
    before is no floor over the count in force since."""
    keys: dict[str, Any] = {"predictive": {"startup": "15m"},
                            "behavior": {"scale_up": {"max_step": 10}}}
    metrics = [{"name": "rps", "query": ALL, "target": 100}]
    engine, swarm, sink = predictive_web(metrics, load=300, **keys)
    served = iter([Forecast(800, 850, None, None)] * 2 + [Forecast(320, 330, None, None)] * 20)
    planner = engine._planner
    assert isinstance(planner, PredictivePlanner)
    planner.book.forecast_metric = (  # type: ignore[method-assign]
        lambda policy, metric, value, now: next(served))
    for minute in range(15):
        now = NOW + timedelta(minutes=minute)
        if minute == 2 and interruption == "set-by-hand":
            swarm.set_by_hand("web", 4, now - timedelta(seconds=30))
        if minute in (2, 5) and interruption == "another-strategy":
            engine.set_policies({"w.yaml": build_policy(
                service="web", strategy="target" if minute == 2 else "predictive",
                metrics=metrics, **keys)}, {})
        engine.tick(now)

    assert sink.decisions[-1].desired_replicas == 4
    assert swarm.services["web"].replicas == 4
    assert all("held at 9" not in d.message for d in sink.decisions[3:])


def test_a_forecasts_raise_is_released_when_the_forecast_drops() -> None:
    """The engine remembers the target rule's counts for the stabilization windows, not the
    forecast's: the raise lasts as long as the forecast asks for it."""
    engine, swarm, sink = predictive_web([{"name": "rps", "query": ALL, "target": 100}],
                                         load=300, behavior={"scale_up": {"max_step": 10}})
    stub_forecasts(engine, (MetricForecast(v, v) for v in (900.0, 300.0, 300.0)))
    for minute in range(3):
        engine.tick(NOW + timedelta(minutes=minute))

    assert [d.desired_replicas for d in sink.decisions] == [9, 3, 3]
    assert swarm.scaled == [("web", 9), ("web", 3)]


@pytest.mark.parametrize(("limit", "recorded"), [
    (None, {"value": None, "with_margin": None}),
    (150, {"value": None, "with_margin": None, "worst_case": None}),
])
def test_a_predictive_policy_without_history_falls_back_to_the_target_rule(
    limit: float | None, recorded: dict[str, None],
) -> None:
    """The decision records the worst case of a metric with a limit only."""
    swarm = FakeSwarm()
    swarm.add("web", 2)
    sink = ListSink()
    metric: dict[str, object] = {"name": "rps", "query": ALL, "target": 100}
    if limit is not None:
        metric["limit"] = limit
    engine = engine_of(metrics=by_service({"web": 500}), swarm=swarm, sink=sink, dry_run=False,
                    policies={"w.yaml": build_policy(
                        service="web", strategy="predictive", metrics=[metric])})

    (result,) = engine.retrain(NOW, FakeHistory([500.0] * 30))
    engine.tick(NOW)

    assert result.failure == "InsufficientHistory"
    (decision,) = sink.decisions
    assert (decision.fallback_reason, decision.desired_replicas) == ("InsufficientHistory", 5)
    assert decision.forecast == {"rps": recorded}


class _OneServiceBroken(FakeHistory):
    """Answers api's history with one value fewer than times: a training that raises."""

    def history(self, promql: str, *, service: str, **keys: Any) -> Any:
        times, values = super().history(promql, service=service, **keys)
        return (times, values[:-1]) if service == "api" else (times, values)


class _OneHistoryBroken(FakeHistory):
    """Raises what no code expected on api's history query (an answer of another shape)."""

    def history(self, promql: str, *, service: str, **keys: Any) -> Any:
        if service == "api":
            raise AttributeError("'list' object has no attribute 'get'")
        return super().history(promql, service=service, **keys)


@pytest.mark.parametrize(("broken", "failure"), [
    (_OneServiceBroken, "TrainingFailed: ValueError"),
    (_OneHistoryBroken, "HistoryUnavailable: AttributeError"),
])
def test_a_training_that_raises_fails_its_service_only_and_is_tried_again(
        broken: type[FakeHistory], failure: str) -> None:
    swarm = FakeSwarm()
    policies = {}
    for name in ("api", "web"):
        swarm.add(name, 2)
        policies[f"{name}.yaml"] = build_policy(service=name, strategy="predictive",
                                                metrics=[{"name": "rps", "query": ALL,
                                                          "target": 100}])
    engine = engine_of(metrics=by_service({"api": 500, "web": 500}), swarm=swarm,
                       sink=ListSink(), dry_run=False, tick=timedelta(minutes=1),
                       policies=policies)

    first = engine.retrain(NOW, broken(daily_cycle(3)))
    again = engine.retrain(NOW + timedelta(hours=1), broken(daily_cycle(3)))

    failures = {r.service: r.failure for r in first}
    assert failures["web"] is None
    assert (failures["api"] or "").startswith(failure)
    assert [r.service for r in again] == ["api"]


def test_a_service_made_again_forgets_itself_not_a_service_new_this_tick() -> None:
    """`q` is removed and made again while `p` (predictive, trained before it was deployed)
    appears, decided after q: q starts afresh, p keeps its trained forecaster."""
    minute = timedelta(minutes=1)
    swarm = FakeSwarm()
    swarm.add("q", 2)
    sink = ListSink()
    cycle = daily_cycle(3)
    engine = engine_of(metrics=by_service({"p": cycle[-1], "q": 100}), swarm=swarm, sink=sink,
                       dry_run=False, tick=minute, policies={
                           "a-q.yaml": build_policy(service="q", metrics=[
                               {"name": "rps", "query": ALL, "target": 100}]),
                           "b-p.yaml": build_policy(service="p", strategy="predictive", metrics=[
                               {"name": "rps", "query": ALL, "target": 100}])})
    assert [r.failure for r in engine.retrain(NOW, FakeHistory(cycle))] == [None]
    engine.tick(NOW)
    swarm.add("p", 2)
    swarm.services["q"] = replace(swarm.services["q"], id="q-made-again")

    engine.tick(NOW + minute)

    (decided,) = [d for d in sink.decisions[-2:] if d.service == "p"]
    assert decided.fallback_reason is None and decided.forecast is not None


def test_a_changed_query_starts_a_new_forecaster_due_for_training() -> None:
    """Another query is another series: the old one's model, values and errors say nothing
    of it."""
    book = ForecastBook(tick=timedelta(minutes=1))
    before = build_policy(strategy="predictive",
                          metrics=[{"name": "rps", "query": "a", "target": 100}])
    after = build_policy(strategy="predictive",
                         metrics=[{"name": "rps", "query": "b", "target": 100}])
    old = book.forecaster(before, before.metrics[0])
    book.trained(before, NOW, ok=True)

    assert book.forecaster(before, before.metrics[0]) is old
    assert book.forecaster(after, after.metrics[0]) is not old
    assert book.due(after, NOW + timedelta(minutes=1))


def test_training_is_due_at_once_when_the_clock_was_set_back() -> None:
    book = ForecastBook(tick=timedelta(minutes=1))
    policy = build_policy(strategy="predictive",
                          metrics=[{"name": "rps", "query": "a", "target": 100}])
    book.trained(policy, NOW + timedelta(days=20), ok=False)

    assert book.due(policy, NOW)
    assert not book.due(policy, NOW + timedelta(days=20, minutes=30))


@pytest.mark.parametrize(("standby", "desired"), [(True, 22), (False, 20)])
def test_a_standby_agent_keeps_target_alones_count_through_the_leaders_raises(
    standby: bool, desired: int,
) -> None:
    """While another agent leads, its forecast raises 22 replicas to 23; the target rule reads
    100 over 23 (target 5 each) outside its 10 % band and asks for 20, where `target` alone
    stays at 22. A standby must not take the leader's 23 for an operator's change; an agent
    that did not see it change (here: one without the lease at no point) starts from 23."""
    swarm = FakeSwarm()
    swarm.add("web", 22)
    sink = ListSink()
    leadership = FakeLeadership(leader=not standby)
    policy = build_policy(service="web", strategy="predictive", max_replicas=50,
                          metrics=[{"name": "rps", "query": ALL, "target": 5}],
                          behavior={"scale_down": {"stabilization": "0s"}})
    engine = engine_of(metrics=by_service({"web": 100}), swarm=swarm, sink=sink, dry_run=False,
                    leadership=leadership, policies={"w.yaml": policy})
    engine.retrain(NOW, FakeHistory([100.0] * 30))
    if standby:
        engine.tick(NOW)
    swarm.add("web", 23)
    engine.tick(NOW + timedelta(minutes=1))
    leadership.leader = True

    engine.tick(NOW + timedelta(minutes=2))

    assert sink.decisions[-1].desired_replicas == desired


def test_an_unexpected_error_for_one_service_stops_only_that_service() -> None:
    swarm = FakeSwarm()
    swarm.add("a", 2)
    swarm.add("b", 2)

    engine, sink = engine_for(by_service({"a": 500, "b": 500}), swarm, dry_run=False, a={}, b={})
    planner = engine._planner
    original = planner.plan

    def plan(policy: Policy, **keys: Any) -> Any:
        if policy.service == "a":
            raise ZeroDivisionError("a bug")
        return original(policy, **keys)

    planner.plan = plan  # type: ignore[method-assign]
    engine.tick(NOW)

    reasons = {d.service: (d.reason, d.message) for d in sink.decisions}
    assert reasons["a"] == (Reason.DECISION_FAILED, "nothing applied: ZeroDivisionError: a bug")
    assert reasons["b"][0] == Reason.DESIRED_WITHIN_RANGE
    assert swarm.scaled == [("b", 5)]
