"""One service's decision for one tick: the strategy, then every limit in order. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from autoscaler.core.limits import Limited, clamp, cooldown, rate_limit, stabilize
from autoscaler.core.memory import ServiceMemory
from autoscaler.core.model import Reason
from autoscaler.core.placement import Placement
from autoscaler.core.schedule import ScheduledBounds, bounds_at
from autoscaler.core.spec import Policy
from autoscaler.core.strategies import (
    SLACK,
    ForecastCount,
    MetricForecast,
    Recommendation,
    forecast_count,
    raise_band,
    recommend,
    with_forecast,
    within_raise_band,
)


@dataclass(frozen=True)
class Outcome:
    """`recommended` is the strategy's count; `rule_count` is the target (or threshold) rule's
    count, without the forecast (in a predictive policy, a raise no further than
    `rule_raise_capped` lets it go): what the stabilization windows remember. `from_metrics`
    is False when the rule's count is only a hold (all metrics missing, a missing one
    blocking a decrease, a service scaled to zero), which the windows must not remember."""

    recommended: int
    desired: int
    reason: Reason
    message: str
    rule_count: int
    bounds: tuple[int, int]
    """The min and max replicas in force: the policy's, or as the windows of its `schedule`
    in force set them (what the gauges and the alert on the maximum compare against)."""
    from_metrics: bool = True
    driver: str | None = None
    """The metric whose proposal set the target rule's count."""

    @property
    def remembered(self) -> int | None:
        """What the stabilization windows remember of this tick, if anything: the target
        rule's count, or the min in force where that is more, so that a schedule window's
        floor comes down after its end as a load's count would, through the scale-down
        stabilization window (the policy's own min changes nothing: it always holds)."""
        return max(self.rule_count, self.bounds[0]) if self.from_metrics else None


@dataclass(frozen=True)
class Plan:
    """What a strategy's planner hands `decide` beside the metrics, and what the decision
    records of it. Predictive: each metric's forecast at the horizon (with its margin and
    worst case), and the count the policy run as `target` would set now; the rest (the
    forecast record, the fall-back reason, a note for the message) is for the log."""

    forecasts: Mapping[str, MetricForecast] | None = None
    target_alone: int | None = None
    target_alone_changed_at: datetime | None = None
    """When the target-alone run last changed its count: its own cooldown."""
    record: Mapping[str, Mapping[str, float | None]] | None = None
    fallback: str | None = None
    note: str = ""


NO_PLAN = Plan()
"""The plan of a strategy that needs nothing beside the metrics."""


Step = Callable[[int, Reason], Limited]
"""One limit of the chain: the count and the reason so far in, the limited count out (with
its reason and note when it changed the count)."""


def decide(
    policy: Policy,
    *,
    current: int,
    metrics: Mapping[str, float | None],
    memory: ServiceMemory,
    last_change_at: datetime | None,
    now: datetime,
    forecasts: Mapping[str, MetricForecast] | None = None,
    target_alone: int | None = None,
    target_alone_changed_at: datetime | None = None,
    placement: Placement | None = None,
) -> Outcome:
    """Decide the replica count of `policy.service`, given what was gathered at `now`.

    `forecasts` (predictive: each metric's forecast at the horizon, with its margin and its
    worst case) can raise the target rule's count, never lower it. The stabilization windows
    hold the target rule's counts only, and the forecasts' count is a floor on the
    stabilized count: a forecast already looks a start-up ahead, and holding it for the
    down-window would keep the count up after the load it foresaw. `target_alone`
    (predictive) is the count the policy run as `target` would set now
    (`autoscaler.predictive.planner`), a floor under all: the forecast's raises move the
    current count, and the target rule's tolerance band around it, so without it the rule
    could settle below where `target` alone would have stayed; `target_alone_changed_at`,
    when that run last changed its count, is its own cooldown. `placement` (where the
    service's tasks are) holds back a raise while tasks wait for a node that can take them.
    The windows of `policy.schedule` in force at `now` set the bounds while they last."""
    scheduled = bounds_at(policy.schedule, now, min_replicas=policy.min_replicas,
                          max_replicas=policy.max_replicas) if policy.schedule else None
    bounds = (policy.min_replicas, policy.max_replicas) if scheduled is None \
        else (scheduled.min_replicas, scheduled.max_replicas)
    if current == 0 and policy.min_replicas > 0:
        return Outcome(0, 0, Reason.SCALED_TO_ZERO,
                       "service is at 0 replicas and min_replicas > 0: left alone",
                       rule_count=0, bounds=bounds, from_metrics=False)
    forecast = forecast_count(policy, forecasts) if forecasts else None
    rule = rule_raise_capped(recommend(policy, current, metrics), current=current,
                             target_alone=target_alone, forecast=forecast,
                             tolerance=policy.tolerance)
    recommendation = with_forecast(rule, forecast, current=current, tolerance=policy.tolerance)
    if recommendation.missing_blocked:
        reason = Reason.METRICS_MISSING
    elif recommendation.within_tolerance:
        reason = Reason.WITHIN_TOLERANCE
    else:
        reason = Reason.DESIRED_WITHIN_RANGE
    notes = [recommendation.explanation]
    desired = rule.replicas
    behavior = policy.behavior
    rule_limited = None
    if policy.strategy == "predictive":
        # The target rule's raise passes a cooldown that the forecast's changes started,
        # not one that `target` alone would be in too.
        stabilized = stabilize(current=current, recommended=rule.replicas, memory=memory,
                               behavior=behavior, now=now).replicas
        rule_limited = rate_limit(current=current, desired=stabilized, memory=memory,
                                  behavior=behavior, now=now).replicas
        if cooldown(current=current, desired=rule_limited,
                    last_change_at=target_alone_changed_at, behavior=behavior,
                    now=now).reason is not None:
            rule_limited = None
    floor = None if rule.missing_blocked else target_alone
    low, high = bounds_in_force(policy, scheduled)
    # The chain in the HPA's order; the reasons later issues add go where their names say.
    steps: tuple[Step, ...] = (
        lambda count, _: held_above_min(stabilize(
            current=current, recommended=count, memory=memory, behavior=behavior, now=now
        ), count, min_in_force=bounds[0]),
        lambda count, _: forecast_floor(count, forecast, current=current,
                                        tolerance=policy.tolerance),
        lambda count, _: rate_limit(
            current=current, desired=count, memory=memory, behavior=behavior, now=now
        ),
        lambda count, _: cooldown(current=current, desired=count,
                                  last_change_at=last_change_at, behavior=behavior, now=now),
        lambda count, so_far: rule_through_cooldown(count, so_far, rule_limited),
        lambda count, _: scheduled_bounds(count, scheduled),
        lambda count, _: clamp(desired=count, min_replicas=low, max_replicas=high),
        lambda count, _: target_alone_floor(count, floor),
        lambda count, _: unschedulable(count, current, placement),
    )
    for step in steps:
        limited = step(desired, reason)
        if limited.replicas != desired and limited.reason is not None:
            reason = limited.reason
            if limited.note:
                notes.append(limited.note)
        desired = limited.replicas
    return Outcome(recommendation.replicas, desired, reason, "; ".join(notes),
                   rule_count=rule.replicas, bounds=bounds,
                   from_metrics=not rule.missing_blocked,
                   driver=rule.driver)


def rule_raise_capped(rule: Recommendation, *, current: int, target_alone: int | None,
                      forecast: ForecastCount | None, tolerance: float) -> Recommendation:
    """In a predictive policy (`target_alone` given), the target rule's raise goes no further
    than the most of the current count, `target` alone's and the forecast's. The rule works
    on the current count, which a forecast may have raised, and a raise's rate limits are
    shares of that count: at a few requests a minute, one request over a count the forecast
    held up doubled it (NASA's trace), where `target` alone, from its own count, went less
    far. The guarantee is `target` alone's count, which the cap lets through. A forecast
    within the raise band (`within_raise_band`) raises the cap no further, unless `target`
    alone's raise moves the count anyway: the forecast's count is then a floor over the
    rule's raise (`forecast_floor`), which a cap under it would only contradict."""
    if target_alone is None or rule.replicas <= current:
        return rule
    asked = forecast.replicas if forecast is not None else 0
    banded = forecast is not None and target_alone <= current \
        and within_raise_band(forecast, current, tolerance)
    cap = max(current, target_alone, 0 if banded else asked)
    if rule.replicas <= cap:
        return rule
    counts = [f"the current count {current}", f"`target` alone's {target_alone}"]
    if forecast is not None:
        band = raise_band(forecast, tolerance)[1] if banded else ""
        counts.append(f"the forecast's {asked} (within {band} of the current count: no raise)"
                      if banded else f"the forecast's {asked}")
    return replace(rule, replicas=cap, explanation=(
        f"{rule.explanation}; the target rule's raise goes no further than {cap}, the most of "
        f"{', '.join(counts[:-1])} and {counts[-1]}"))


def held_above_min(stabilized: Limited, count: int, *, min_in_force: int) -> Limited:
    """The stabilization windows' hold of a scale-down, but for one at the min in force or
    under it: the windows remember that min (`Outcome.remembered`), and a hold the min makes
    anyway is the min's to say (`Scheduled` for a window's, `TooFewReplicas` for the
    policy's), not `ScaleDownStabilized`, tick after tick, while it lasts. The later steps
    end at the same count from `count` as from the hold (the min raises both to it)."""
    if stabilized.reason is Reason.SCALE_DOWN_STABILIZED \
            and stabilized.replicas <= min_in_force:
        return Limited(count)
    return stabilized


def forecast_floor(stabilized: int, forecast: ForecastCount | None, *, current: int = 0,
                   tolerance: float = 0.0) -> Limited:
    """The stabilized count, or the forecasts' where that is higher (the explanation already
    says what they asked for). A forecast's count under the current one by no more than
    `tolerance` (the policy's) keeps the current count: a forecast that falls or jitters a
    replica or two a tick would otherwise lower the count and raise it again, an action a
    tick. It keeps it whatever asks for the drop, the target rule too, so at a steady load
    the count can stay up to a tolerance's worth of replicas above the rule's (at 10
    replicas and a tolerance of 0.1, one replica while the forecast asks for 9), as letting
    the rule's own drops through brings the jitter back (docs/predictive.md). The band reads
    the forecast's count with its cap rounded up (`releasing_at`): a cap is a limit on a
    raise, and a point forecast jittering across its rounding line would otherwise move the
    count a replica down and up again every few minutes. Where the cap binds, the count can
    so stay a replica more above the rule's (at 10 replicas and 0.1, while rule and capped
    forecast ask for 8 and the cap rounded up for 9). The count follows a forecast that
    falls further, or a forecast no longer in use. A forecast's raise is held back only by
    the raise band (`within_raise_band`), where nothing else raises the count: a raise by
    no more than `tolerance`, or the forecast's typical miss where wider, that the current
    count carries at the `limit` keeps it."""
    if forecast is None:
        return Limited(stabilized)
    wanted = forecast.replicas
    releasing_at = forecast.releasing_at if forecast.releasing_at is not None else wanted
    if stabilized < current and wanted < current \
            and releasing_at >= current * (1.0 - tolerance) - SLACK:
        rounded = f" ({releasing_at} with its cap rounded up)" if releasing_at != wanted else ""
        return Limited(current, Reason.PREDICTED_LOAD,
                       f"{current}: kept, the forecast's count {wanted}{rounded} is within "
                       "tolerance of it")
    if wanted <= stabilized:
        return Limited(stabilized)
    if stabilized <= current and within_raise_band(forecast, current, tolerance):
        _, band = raise_band(forecast, tolerance)
        return Limited(current, Reason.PREDICTED_LOAD,
                       f"{current}: kept, the forecast's count {wanted} is within {band} of it")
    return Limited(wanted, Reason.PREDICTED_LOAD,
                   f"{wanted}: the forecast's count, a floor")


def target_alone_floor(count: int, target_alone: int | None) -> Limited:
    if target_alone is None or target_alone <= count:
        return Limited(count)
    return Limited(target_alone, Reason.PREDICTED_LOAD,
                   f"{target_alone}: where `target` alone would be, a floor")


def rule_through_cooldown(count: int, reason: Reason, rule_limited: int | None) -> Limited:
    """In a predictive policy a cooldown holds back the forecast's share of a raise, never the
    target rule's: the forecast's raises, and their release when it drops, are changes that
    start cooldowns the target rule alone would not have started. The target-alone floor
    already keeps the count at `target`'s own; this lets through a raise the rule asks for at
    the current, forecast-raised count, which that floor need not reach. `count` and `reason`
    are the chain's so far; `rule_limited` is the rule's count through the stabilization
    windows and the rate limits (None: not a predictive policy, or one whose target-alone
    run is in its own cooldown, which holds the rule's raise as it would hold `target`'s).
    It holds in fall-back too, as the forecast's earlier changes count."""
    if reason is not Reason.COOLDOWN or rule_limited is None or rule_limited <= count:
        return Limited(count)
    return Limited(rule_limited, Reason.PREDICTED_LOAD,
                   f"{rule_limited}: the target rule's raise passes the cooldown")


def scheduled_bounds(count: int, scheduled: ScheduledBounds | None) -> Limited:
    """The count raised to the min, or lowered to the max, of the windows in force (a bound
    they leave to the policy is `clamp`'s)."""
    if scheduled is None:
        return Limited(count)
    if scheduled.min_from is not None and count < scheduled.min_replicas:
        return Limited(scheduled.min_replicas, Reason.SCHEDULED,
                       f"raised to {scheduled.min_replicas}, the min_replicas of "
                       f"{scheduled.min_from}")
    if scheduled.max_from is not None and count > scheduled.max_replicas:
        return Limited(scheduled.max_replicas, Reason.SCHEDULED,
                       f"lowered to {scheduled.max_replicas}, the max_replicas of "
                       f"{scheduled.max_from}")
    return Limited(count)


def bounds_in_force(policy: Policy, scheduled: ScheduledBounds | None) -> tuple[int, int]:
    """`clamp`'s bounds: the policy's, widened by the windows in force (a window's max above
    `max_replicas` allows more while it lasts; a window's min never lowers the floor)."""
    if scheduled is None:
        return policy.min_replicas, policy.max_replicas
    return (min(policy.min_replicas, scheduled.min_replicas),
            max(policy.max_replicas, scheduled.max_replicas))


def unschedulable(count: int, current: int, placement: Placement | None) -> Limited:
    """No raise while tasks wait because no node can take them: more replicas would only
    wait too. A scale-down is never held back."""
    if placement is None or not placement.unplaceable or count <= current:
        return Limited(count)
    return Limited(current, Reason.UNSCHEDULABLE,
                   f"{current}: {placement.unplaceable} task(s) wait for a node "
                   f"({placement.reason}): no raise until they are placed")
