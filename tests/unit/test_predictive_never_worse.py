"""The predictive strategy's promise, checked on loads it has never seen: replayed against
the same simulated cluster, it never has fewer replicas ready than the target rule it builds
on, so it is never under-provisioned for longer, whatever the load's shape, the start-up
delay, the target, how close the target is to a replica's capacity, the tolerance, the
limits in `behavior` or a metric's `limit`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.offline.replay import DEFAULT_UTILISATION_OF_TARGET, BacktestSettings, replay
from autoscaler.offline.traces import Trace
from tests.unit.conftest import build_policy

STEP = timedelta(minutes=15)
DAYS = 10
"""Eight days of warm-up (the backtest's default) and two scored."""
BEHAVIORS = [
    {},
    {"scale_up": {"cooldown": "30m"}},
    {"scale_up": {"cooldown": "1h"}, "scale_down": {"cooldown": "30m"}},
    {"scale_up": {"stabilization": "30m"}},
    {"scale_up": {"max_step": 1, "period": "30m"}},
    {"scale_up": {"max_percent": 10, "period": "1h"}},
    {"scale_down": {"stabilization": "0s", "max_step": 1, "period": "15m"}},
]
"""The defaults, and limits that act on the forecast's earlier changes: cooldowns counted
from them, a scale-up's stabilization, step limits over a period."""


def load(seed: int, *, amplitude: float, trend: float, bursts: int, noise: float) -> list[float]:
    """A daily cycle on a trend, with noise and sudden bursts: the shapes of real traffic,
    drawn at random."""
    rng = np.random.default_rng(seed)
    steps = np.arange(DAYS * 96)
    level = 100 * np.exp(trend * steps / len(steps))
    cycle = 1 + amplitude * np.sin(2 * np.pi * steps / 96 + rng.uniform(0, 2 * np.pi))
    values = level * cycle * np.exp(noise * rng.standard_normal(len(steps)))
    for start in rng.integers(0, len(steps) - 8, size=bursts):
        values[start:start + rng.integers(1, 8)] *= rng.uniform(2, 6)
    return values.clip(0).tolist()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    amplitude=st.floats(0, 0.95),
    trend=st.floats(-1.5, 1.5),
    bursts=st.integers(0, 12),
    noise=st.floats(0, 0.6),
    startup_steps=st.integers(1, 4),
    target=st.floats(5, 200),
    utilisation=st.sampled_from([0.5, DEFAULT_UTILISATION_OF_TARGET, 0.9, 0.95]),
    tolerance=st.sampled_from([0.0, 0.1, 0.2]),
    behavior=st.sampled_from(BEHAVIORS),
    limited=st.booleans(),
)
@example(  # a forecast's raise released just before a burst started the up-cooldown
    seed=235, amplitude=0.0, trend=0.0, bursts=9, noise=0.0, startup_steps=1, target=5.0,
    utilisation=DEFAULT_UTILISATION_OF_TARGET, tolerance=0.1,
    behavior={"scale_up": {"cooldown": "30m"}}, limited=False,
)
@example(  # a forecast's raise took the count out of the tolerance band that held `target`
    seed=0, amplitude=0.0, trend=0.0, bursts=1, noise=0.0, startup_steps=1, target=5.0,
    utilisation=0.95, tolerance=0.1, behavior={}, limited=False,
)
def test_predictive_is_never_under_provisioned_longer_than_the_target_rule(
    seed: int, amplitude: float, trend: float, bursts: int, noise: float, startup_steps: int,
    target: float, utilisation: float, tolerance: float,
    behavior: dict[str, dict[str, object]], limited: bool,
) -> None:
    """`limited`: the metric's `limit` is the SLO line (or the target, if that is higher)."""
    values = load(seed, amplitude=amplitude, trend=trend, bursts=bursts, noise=noise)
    trace = Trace(datetime(2026, 3, 2, tzinfo=UTC), STEP, values, "random")
    backtest = BacktestSettings(capacity=target / utilisation, startup=startup_steps * STEP)
    metric: dict[str, object] = {"name": "requests", "query": "q", "target": target}
    if limited:
        metric["limit"] = max(target, backtest.slo_utilisation * backtest.capacity)
    metrics = [metric]
    runs = {
        strategy: replay(build_policy(strategy=strategy, metrics=metrics, max_replicas=1000,
                                      tolerance=tolerance, behavior=behavior),
                         f"{strategy}.yaml", trace, backtest)
        for strategy in ("target", "predictive")
    }
    predictive, reactive = runs["predictive"], runs["target"]
    assert predictive.fallbacks.get("InsufficientHistory", 0) == 0
    assert all(p >= r for p, r in zip(predictive.supply, reactive.supply, strict=True))
    assert predictive.scores.under_provisioned_time_pct \
        <= reactive.scores.under_provisioned_time_pct
