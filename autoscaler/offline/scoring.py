"""How well a supply of replicas met the demand of a trace: the backtest's metrics. Pure.

Definitions (SPEC RG's elasticity metrics): over n scored steps with demand d_t (the fewest
replicas that meet the SLO at step t) and supply s_t (replicas ready at step t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.core.strategies import is_needless
from autoscaler.predictive.accuracy import smape_term


def demand(load: float, *, capacity: float, slo_utilisation: float, min_replicas: int) -> int:
    """d_t = max(min_replicas, ceil(load / (capacity * slo_utilisation)))."""
    return max(min_replicas, math.ceil(load / (capacity * slo_utilisation) - 1e-9))


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@dataclass(frozen=True)
class Scores:
    replica_hours: float
    oracle_replica_hours: float
    slo_violation_pct: float
    under_provisioned_time_pct: float
    over_provisioned_time_pct: float
    under_provisioning_accuracy: float
    over_provisioning_accuracy: float
    instability_pct: float
    scaling_actions_per_hour: float


def needless_raises(
    billed: Sequence[int], load: Sequence[float], *, target: float, horizon: int,
    reference: Sequence[int] | None = None,
) -> list[int]:
    """The steps t where the count rose (billed[t] > billed[t - 1]) to more than NEEDLESS x
    ceil(max(load[t .. t + horizon]) / target), and more than reference[t] where a reference
    run (the policy as `target`) is given."""
    found = []
    for t in range(1, len(billed)):
        if billed[t] <= billed[t - 1] or (reference is not None and billed[t] <= reference[t]):
            continue
        if is_needless(billed[t], max(load[t:t + horizon + 1]), target):
            found.append(t)
    return found


def needless_raises_per_day(
    billed: Sequence[int], load: Sequence[float], *, target: float, horizon: int,
    step_hours: float, reference: Sequence[int] | None = None,
) -> float:
    """`needless_raises` a simulated day."""
    if not billed:
        return 0.0
    found = needless_raises(billed, load, target=target, horizon=horizon, reference=reference)
    return len(found) * 24 / (len(billed) * step_hours)


def score(
    *,
    load: Sequence[float],
    demand: Sequence[int],
    supply: Sequence[int],
    billed: Sequence[int],
    step_hours: float,
    capacity: float,
    slo_utilisation: float,
    actions: int,
) -> Scores:
    """`billed` counts every replica from its decision (ready or still starting)."""
    n = len(load)
    if n == 0:
        raise ValueError("no scored step")
    per_step = 100.0 / n
    pairs = list(zip(demand, supply, strict=True))
    instability = sum(
        min(abs(_sign(supply[t] - supply[t - 1]) - _sign(demand[t] - demand[t - 1])), 1)
        for t in range(1, n)
    )
    return Scores(
        replica_hours=sum(billed) * step_hours,
        oracle_replica_hours=sum(demand) * step_hours,
        slo_violation_pct=per_step * sum(
            1 for x, s in zip(load, supply, strict=True)
            if x / (capacity * slo_utilisation) - 1e-9 > s
        ),
        under_provisioned_time_pct=per_step * sum(1 for d, s in pairs if s < d),
        over_provisioned_time_pct=per_step * sum(1 for d, s in pairs if s > d),
        under_provisioning_accuracy=per_step * sum(max(d - s, 0) / max(d, 1) for d, s in pairs),
        over_provisioning_accuracy=per_step * sum(max(s - d, 0) / max(d, 1) for d, s in pairs),
        instability_pct=100.0 * instability / (n - 1) if n > 1 else 0.0,
        scaling_actions_per_hour=actions / (n * step_hours),
    )


@dataclass(frozen=True)
class ForecastQuality:
    smape_pct: float
    mase: float | None
    """None when the seasonal naive forecast is perfect (its error is the scale)."""
    forecasts_scored: int


def forecast_quality(
    seen: Sequence[float | None], forecasts: Sequence[float | None], *, first: int,
    horizon: int, season: int,
) -> ForecastQuality | None:
    """sMAPE and MASE at the horizon over the scored steps.

    `seen[k]` is the metric at step k; `forecasts[i]` was made at step first + i for step
    first + i + horizon. sMAPE: mean of 200 |a - f| / (|a| + |f|) (0 when both are 0). MASE:
    mean |a - f| over the mean |a_k - a_(k - season)| of the seasonal naive forecast (one day)
    on the same steps. None when no forecast could be scored.
    """
    smape, errors, naive = [], [], []
    for index, forecast in enumerate(forecasts):
        step = first + index + horizon
        if forecast is None or step >= len(seen) or step - season < 0:
            continue
        actual, earlier = seen[step], seen[step - season]
        if actual is None or earlier is None:
            continue
        smape.append(smape_term(actual, forecast))
        errors.append(abs(actual - forecast))
        naive.append(abs(actual - earlier))
    if not smape:
        return None
    scale = sum(naive) / len(naive)
    return ForecastQuality(
        smape_pct=sum(smape) / len(smape),
        mase=(sum(errors) / len(errors)) / scale if scale else None,
        forecasts_scored=len(smape),
    )
