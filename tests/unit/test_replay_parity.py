"""The backtest decides as the live agent would: the same trace, tick by tick, through the
engine as `run` wires it (fakes for Swarm and Prometheus, a clock moved one step a tick,
trainings after the tick as the agent's run) and through `replay`, gives the same reason,
the same count and the same forecast at every scored step."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from autoscaler.bootstrap import build_engine
from autoscaler.core.model import Series
from autoscaler.core.spec import Policy
from autoscaler.offline.replay import BacktestSettings, replay
from autoscaler.offline.scoring import demand
from autoscaler.offline.traces import Trace
from tests.unit.conftest import build_policy
from tests.unit.fakes import FakeMetrics, FakeSwarm, ListSink

START = datetime(2026, 1, 2, tzinfo=UTC)
STEP = timedelta(minutes=1)
RPS = [{"name": "rps", "query": "q", "target": 100}]


def wave(steps: int, *, seed: int = 4) -> list[float]:
    """A daily cycle with a faster swing and noise: every limit gets to act."""
    rng = np.random.default_rng(seed)
    at = np.arange(steps)
    values = (800 + 500 * np.sin(2 * np.pi * at / 1440) + 300 * np.sin(at / 9)
              + rng.normal(0, 60, steps))
    return [float(v) for v in values.clip(0)]


class TraceHistory:
    """Prometheus's range answer over what the agent saw: at step i, the load of step i-1;
    up to the current step, nothing after it."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.step = 0

    def history(self, promql: str, *, service: str, service_label: str, per_service: bool,
                start: datetime, end: datetime, step: timedelta
                ) -> tuple[list[datetime], list[float | None]]:
        times = [start + i * step for i in range(math.ceil((end - start) / step - 1e-9))]
        indices = [round((t - self.trace.start) / self.trace.step) for t in times]
        return times, [self.trace.values[i - 1] if 1 <= i <= self.step else None
                       for i in indices]


def live(policy: Policy, trace: Trace, settings: BacktestSettings
         ) -> list[tuple[str, int, float | None]]:
    """Per scored step: the reason, the spec count after the tick and the fed metric's
    forecast, of the engine `run` builds, started as the replay starts (its count the
    oracle's demand, no history)."""
    first = round(settings.warmup / trace.step)
    swarm = FakeSwarm()
    swarm.add(policy.service, demand(trace.values[first], capacity=settings.capacity,
                                     slo_utilisation=settings.slo_utilisation,
                                     min_replicas=policy.min_replicas))
    seen: list[float | None] = [None]
    metric = policy.metrics[0]
    metrics = FakeMetrics(lambda _: [] if seen[0] is None else
                          [Series({metric.service_label: policy.service}, seen[0])])
    sink = ListSink()
    engine = build_engine(metrics=metrics, swarm=swarm, sink=sink, tick=trace.step,
                          policies={"p.yaml": policy}, seed_history=False)
    history = TraceHistory(trace)
    steps = []
    for step in range(first, len(trace)):
        now = trace.time(step)
        seen[0] = trace.values[step - 1] if step > 0 else None
        history.step = step
        engine.tick(now)
        engine.retrain(now, history)
        decision = sink.decisions[-1]
        forecast = None if decision.forecast is None \
            else decision.forecast.get(metric.name, {}).get("value")
        spec = swarm.services[policy.service].replicas
        assert spec is not None
        steps.append((str(decision.reason), spec, forecast))
    return steps


CASES = [
    pytest.param({}, id="target, the defaults"),
    pytest.param({"tolerance": 0, "behavior": {"scale_down": {"stabilization": "0s"}}},
                 id="target, no tolerance, no stabilization"),
    pytest.param({"min_replicas": 4, "max_replicas": 9, "tolerance": 0.3},
                 id="target, min and max bounds, a wide tolerance"),
    pytest.param({"behavior": {
        "scale_up": {"stabilization": "1m", "max_step": 1, "period": "3m"},
        "scale_down": {"stabilization": "2m", "max_percent": 10, "period": "2m"}}},
        id="target, stabilization and rate limits"),
    pytest.param({"behavior": {"scale_up": {"cooldown": "3m"},
                               "scale_down": {"stabilization": "0s", "cooldown": "5m"}}},
                 id="target, cooldowns"),
    pytest.param({"schedule": [{"start": "2026-01-02T01:00", "end": "2026-01-02T02:00",
                                "min_replicas": 15, "max_replicas": 16}]},
                 id="target, a schedule window"),
    pytest.param({"strategy": "threshold", "step": 2, "min_replicas": 2, "metrics": [
        {"name": "rps", "query": "q", "scale_up_above": 120, "scale_down_below": 60}]},
        id="threshold"),
    pytest.param({"strategy": "predictive", "min_replicas": 2, "tolerance": 0.1,
                  "predictive": {"history": "12h", "min_history": "6h",
                                 "retrain_every": "2h", "startup": "2m",
                                 "worst_case_window": "6h"}},
                 id="predictive, trained every 2 hours"),
]


@pytest.mark.parametrize("keys", CASES)
def test_the_replay_decides_as_the_live_engine_at_every_step(keys: dict[str, Any]) -> None:
    predictive = keys.get("strategy") == "predictive"
    trace = Trace(START, STEP, wave(1140 if predictive else 300), "test")
    warmup = timedelta(hours=15) if predictive else timedelta(minutes=10)
    settings = BacktestSettings(capacity=100 / 0.7, startup=2 * STEP, warmup=warmup)
    policy = build_policy(**{"max_replicas": 20, "metrics": RPS, **keys})

    run = replay(policy, "p.yaml", trace, settings)

    assert live(policy, trace, settings) == list(
        zip(run.reasons_by_step, run.billed, run.forecasts_by_step, strict=True))


def test_the_first_tick_with_no_metric_holds_in_both() -> None:
    """No warm-up: the first tick has no metric (no step before it), a missing value."""
    trace = Trace(START, STEP, [0.0] * 3 + [450.0] * 4 + [0.0] * 5, "test")
    settings = BacktestSettings(capacity=100 / 0.7, startup=timedelta(0),
                                warmup=timedelta(0))
    policy = build_policy(min_replicas=0, metrics=RPS,
                          behavior={"scale_down": {"stabilization": "0s"}})

    run = replay(policy, "p.yaml", trace, settings)

    assert run.reasons_by_step[0] == "MetricsMissing"
    assert live(policy, trace, settings) == list(
        zip(run.reasons_by_step, run.billed, run.forecasts_by_step, strict=True))
