"""The backtest: the real engine and the real policy, ticked once per trace step against a
simulated cluster, and scored against the oracle demand.

Semantics (so that two implementations give the same numbers): the metric at tick t is the
load of step t-1, in the unit of the policy's `target`; the engine ticks from the first
scored step w (after the warm-up) with d_w replicas ready and no history; a scale-up decided
at step t is ready at t + startup (whole steps); a scale-down cancels pending replicas first,
then removes ready ones at once; cost counts every replica from its decision; a predictive
policy trains when due just after the tick of that step, as the agent's trainings run after
its tick.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autoscaler.bootstrap import build_engine
from autoscaler.core.durations import format_duration
from autoscaler.core.model import Decision
from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.offline.memo import ForecastMemo, MemoBook
from autoscaler.offline.scoring import ForecastQuality, Scores, demand, forecast_quality, score
from autoscaler.offline.simulated import SimulatedCluster
from autoscaler.offline.traces import Trace
from autoscaler.predictive.book import ForecastBook

Progress = Callable[[int, int], None]
"""(steps done, steps in all) of the policy being replayed."""

DEFAULT_UTILISATION_OF_TARGET = 0.7
DEFAULT_STARTUP = timedelta(minutes=1)
MOST_REPLICAS = 10 ** 9
"""The most replicas a trace's load may need at the SLO line: more is a capacity in
another unit than the trace's (or a value no service carries), and the replica-hours of
counts near the float's limits overflow."""


class BacktestError(ValueError):
    """Settings or inputs that make a backtest impossible; the message says why."""


@dataclass(frozen=True)
class BacktestSettings:
    capacity: float
    """What one replica carries at 100 %, in the trace's unit."""
    slo_utilisation: float = 0.9
    startup: timedelta = DEFAULT_STARTUP
    warmup: timedelta = timedelta(days=8)
    metric: str | None = None
    """The metric the trace feeds; default the policy's first."""


def default_capacity(policies: Sequence[Policy], metric: str | None = None) -> float | None:
    """The first `target` among the policies / 0.7, so that policies compared in one run
    share it: of the metric the trace feeds (`metric`, else each policy's first), since the
    capacity is in the trace's unit. None when there is no such target."""
    for policy in policies:
        fed = [m for m in policy.metrics if m.name == metric] if metric else policy.metrics[:1]
        for spec in fed:
            if spec.target is not None and spec.target > 0:
                return spec.target / DEFAULT_UTILISATION_OF_TARGET
    return None


def startup_set_by(policy: Policy) -> timedelta | None:
    """The start-up a predictive policy sets in its file, if it does."""
    if policy.strategy == "predictive" and "startup" in policy.predictive.model_fields_set:
        return policy.predictive.startup
    return None


def default_startup(policies: Sequence[Policy]) -> timedelta:
    """The simulated start-up when none is given: the one the predictive policies set (a
    property of the service, so the cluster should have it too), else 1 minute."""
    set_by_policies = {s for p in policies if (s := startup_set_by(p)) is not None}
    if len(set_by_policies) > 1:
        shown = ", ".join(format_duration(s) for s in sorted(set_by_policies))
        raise BacktestError(f"the predictive policies set different start-ups ({shown}): give "
                            "--startup, the time a new replica takes in the simulated cluster")
    return set_by_policies.pop() if set_by_policies else DEFAULT_STARTUP


def replay_settings(policies: Sequence[Policy], *, capacity: float | None,
                    startup: timedelta | None, slo_utilisation: float, warmup: timedelta,
                    metric: str | None) -> BacktestSettings:
    """The settings of a replay of `policies`: the capacity and start-up given, else derived
    from the policies (`default_capacity`, `default_startup`)."""
    capacity = capacity or default_capacity(policies, metric)
    if capacity is None:
        raise BacktestError("no policy has a target to derive the capacity from: give "
                            "--capacity (what one replica carries at 100 %, in the "
                            "trace's unit)")
    return BacktestSettings(
        capacity=capacity, slo_utilisation=slo_utilisation,
        startup=startup if startup is not None else default_startup(policies),
        warmup=warmup, metric=metric,
    )


def startup_steps(startup: timedelta, step: timedelta) -> int:
    """The start-up in whole steps, rounded up: a replica is ready at a step, not between."""
    return math.ceil(startup / step - 1e-9)


def ready_after(settings: BacktestSettings, trace: Trace) -> timedelta:
    """How long after its decision a new replica is ready in the replay of `trace`."""
    return startup_steps(settings.startup, trace.step) * trace.step


@dataclass
class _Recorder:
    """The decision sink of a replay: reasons counted, changes kept."""

    metric: str
    reasons: Counter[str] = field(default_factory=Counter)
    changes: list[Decision] = field(default_factory=list)
    forecasts: list[float | None] = field(default_factory=list)
    """Predictive: the fed metric's forecast made at each tick (for the horizon)."""
    fallbacks: Counter[str] = field(default_factory=Counter)
    last: Decision | None = None
    """The latest decision: the tick's, for the per-step record."""

    def record(self, decision: Decision) -> None:
        self.last = decision
        self.reasons[str(decision.reason)] += 1
        if decision.applied:
            self.changes.append(decision)
        if decision.forecast is not None:
            self.forecasts.append(decision.forecast.get(self.metric, {}).get("value"))
            if decision.fallback_reason:
                self.fallbacks[decision.fallback_reason] += 1


@dataclass(frozen=True)
class PolicyRun:
    """One policy replayed over the scored steps of a trace."""

    file: str
    policy: Policy
    metric: str
    times: list[datetime]
    load: list[float]
    demand: list[int]
    supply: list[int]
    billed: list[int]
    changes: list[Decision]
    reasons: dict[str, int]
    scores: Scores
    forecast: ForecastQuality | None = None
    fallbacks: dict[str, int] = field(default_factory=dict)
    training_seconds: list[float] = field(default_factory=list)
    reasons_by_step: list[str] = field(default_factory=list)
    """The reason of each scored step's decision ("" where the tick made none)."""
    forecasts_by_step: list[float | None] = field(default_factory=list)
    """Predictive: the fed metric's point forecast made at each scored step, for `horizon`
    later; None where none was made (and for the other strategies)."""


def fed_metric(policy: Policy, name: str | None) -> MetricSpec:
    if name is None:
        return policy.metrics[0]
    for metric in policy.metrics:
        if metric.name == name:
            return metric
    known = ", ".join(m.name for m in policy.metrics)
    raise BacktestError(f"policy for {policy.service} has no metric {name!r} (it has {known})")


def scored_range(trace: Trace, warmup: timedelta) -> int:
    """The first scored step w: the warm-up in whole steps."""
    first = math.ceil(warmup / trace.step - 1e-9)
    if first >= len(trace) - 1:
        left = max(len(trace) - first, 0)
        raise BacktestError(
            f"the trace ({len(trace)} steps of {format_duration(trace.step)}) leaves "
            f"{left} step{'' if left == 1 else 's'} after the warm-up "
            f"({format_duration(warmup)}): scoring needs at least two; shorten --warmup"
        )
    return first


def check_replicas_needed(trace: Trace, settings: BacktestSettings) -> None:
    """BacktestError if the trace's largest value needs more than MOST_REPLICAS replicas
    at the SLO line."""
    line = settings.capacity * settings.slo_utilisation
    peak = max(trace.values)
    if line <= 0 or peak > MOST_REPLICAS * line:
        raise BacktestError(
            f"the trace's largest value ({peak:g}) needs more than {MOST_REPLICAS:,} replicas "
            f"of capacity {settings.capacity:g} at {settings.slo_utilisation:g} of it: give "
            "the capacity in the trace's unit (--capacity), or check the trace")


def replay(
    policy: Policy, file: str, trace: Trace, settings: BacktestSettings,
    progress: Progress | None = None, forecast_memo: ForecastMemo | None = None,
) -> PolicyRun:
    """Run `policy` over `trace` through the real engine and score it. Replays of one trace
    may share a `forecast_memo` (see `ForecastMemo`)."""
    metric = fed_metric(policy, settings.metric)
    update: dict[str, object] = {"metrics": [metric]}
    if startup_set_by(policy) is None:
        update["predictive"] = policy.predictive.model_copy(update={"startup": settings.startup})
    traced = policy.model_copy(update=update)
    first = scored_range(trace, settings.warmup)
    check_replicas_needed(trace, settings)
    demands = [
        demand(load, capacity=settings.capacity, slo_utilisation=settings.slo_utilisation,
               min_replicas=policy.min_replicas)
        for load in trace.values[first:]
    ]
    cluster = SimulatedCluster(
        service=policy.service, service_label=metric.service_label, ready=demands[0],
        startup_steps=startup_steps(settings.startup, trace.step), trace=trace,
    )
    recorder = _Recorder(metric.name)
    book = ForecastBook(trace.step) if forecast_memo is None \
        else MemoBook(trace.step, forecast_memo)
    engine = build_engine(metrics=cluster, swarm=cluster, sink=recorder, tick=trace.step,
                          policies={file: traced}, book=book, seed_history=False)
    training: list[float] = []
    predictive = traced.strategy == "predictive"
    times: list[datetime] = []
    total = len(trace) - first
    supply: list[int] = []
    billed: list[int] = []
    reasons: list[str] = []
    forecasts: list[float | None] = []
    for index in range(total):
        step = first + index
        now = trace.time(step)
        times.append(now)
        cluster.begin_step(step, now, trace.values[step - 1] if step > 0 else None)
        recorder.last = None
        engine.tick(now)
        decision = recorder.last
        if predictive:
            training += [r.seconds for r in engine.retrain(now, cluster) if r.failure is None]
        reasons.append("" if decision is None else str(decision.reason))
        forecasts.append(None if decision is None or decision.forecast is None
                         else decision.forecast.get(metric.name, {}).get("value"))
        supply.append(cluster.ready)
        billed.append(cluster.ready + cluster.pending)
        if progress is not None and (index % 2000 == 0 or index == total - 1):
            progress(index + 1, total)
    load = trace.values[first:]
    scores = score(
        load=load, demand=demands, supply=supply, billed=billed,
        step_hours=trace.step.total_seconds() / 3600, capacity=settings.capacity,
        slo_utilisation=settings.slo_utilisation, actions=cluster.actions,
    )
    quality = None
    if recorder.forecasts:
        seen: list[float | None] = [None, *trace.values[:-1]]
        quality = forecast_quality(
            seen, recorder.forecasts, first=first,
            horizon=book.settings_for(traced).horizon_steps,
            season=max(1, round(timedelta(days=1) / trace.step)),
        )
    return PolicyRun(
        file=file, policy=policy, metric=metric.name,
        times=times, load=load, demand=demands,
        supply=supply, billed=billed, changes=recorder.changes,
        reasons=dict(sorted(recorder.reasons.items())), scores=scores, forecast=quality,
        fallbacks=dict(sorted(recorder.fallbacks.items())), training_seconds=training,
        reasons_by_step=reasons, forecasts_by_step=forecasts,
    )
