"""The limits applied to a recommendation, in order, each saying whether it changed the count.

Pure: every function takes the clock as `now` and the history as values (HPA semantics,
`stabilizeRecommendationWithBehaviors` and `convertDesiredReplicasWithBehaviorRate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from autoscaler.core.durations import format_duration
from autoscaler.core.memory import ServiceMemory, in_window
from autoscaler.core.model import Reason
from autoscaler.core.spec import Behavior, Policy, ScaleDownRules, ScaleUpRules


@dataclass(frozen=True)
class Limited:
    """A count after one limit; `reason` and `note` are set when the limit changed it."""

    replicas: int
    reason: Reason | None = None
    note: str = ""


def stabilize(
    *, current: int, recommended: int, memory: ServiceMemory, behavior: Behavior, now: datetime
) -> Limited:
    """Scale up only to the lowest count in the up-window, down only to the highest in the
    down-window (the windows include this tick's recommendation, and the first count seen:
    an agent that starts, or starts again, does not know what its predecessor recommended,
    and takes the count it finds for it rather than let a spike through either window)."""
    up_window = behavior.scale_up.stabilization
    down_window = behavior.scale_down.stabilization
    known = memory.recommendations if memory.seed is None \
        else (*memory.recommendations, memory.seed)
    lowest = min([recommended, *in_window(known, now=now, window=up_window)])
    highest = max([recommended, *in_window(known, now=now, window=down_window)])
    stabilized = min(max(current, lowest), highest)
    if stabilized == recommended:
        return Limited(recommended)
    if recommended > current:
        return Limited(
            stabilized, Reason.SCALE_UP_STABILIZED,
            f"held at {stabilized}, the lowest count in the last "
            f"{format_duration(up_window)} (scale_up.stabilization)",
        )
    return Limited(
        stabilized, Reason.SCALE_DOWN_STABILIZED,
        f"held at {stabilized}, the highest count in the last "
        f"{format_duration(down_window)} (scale_down.stabilization)",
    )


def _net_change(memory: ServiceMemory, *, now: datetime, period: timedelta) -> int:
    return sum(in_window(memory.changes, now=now, window=period))


def _fraction(value: float) -> Fraction:
    return Fraction(str(value))


def scale_up_cap(start: int, rules: ScaleUpRules) -> int:
    max_step, max_percent = rules.step_limits_in_force()
    caps = []
    if max_step is not None:
        caps.append(start + max_step)
    if max_percent is not None:
        caps.append(math.ceil(start * (1 + _fraction(max_percent) / 100)))
    return max(*caps, start + 1)


def scale_down_cap(start: int, rules: ScaleDownRules) -> int:
    max_step, max_percent = rules.step_limits_in_force()
    caps = []
    if max_step is not None:
        caps.append(start - max_step)
    if max_percent is not None:
        caps.append(math.floor(start * (1 - _fraction(max_percent) / 100)))
    return min(caps)


def rate_limit(
    *, current: int, desired: int, memory: ServiceMemory, behavior: Behavior, now: datetime
) -> Limited:
    """Cap the change against the count at the start of the period; never reverse it."""
    if desired > current:
        rules_up = behavior.scale_up
        start = current - _net_change(memory, now=now, period=rules_up.period)
        cap = scale_up_cap(start, rules_up)
        if desired <= cap:
            return Limited(desired)
        limited = max(cap, current)
        return Limited(
            limited, Reason.SCALE_UP_LIMIT,
            f"scale-up capped at {limited} ({start} at the start of the last "
            f"{format_duration(rules_up.period)}, {_limits_text(rules_up)})",
        )
    if desired < current:
        rules_down = behavior.scale_down
        start = current - _net_change(memory, now=now, period=rules_down.period)
        cap = scale_down_cap(start, rules_down)
        if desired >= cap:
            return Limited(desired)
        limited = min(cap, current)
        return Limited(
            limited, Reason.SCALE_DOWN_LIMIT,
            f"scale-down capped at {limited} ({start} at the start of the last "
            f"{format_duration(rules_down.period)}, {_limits_text(rules_down)})",
        )
    return Limited(desired)


def _limits_text(rules: ScaleUpRules | ScaleDownRules) -> str:
    max_step, max_percent = rules.step_limits_in_force()
    parts = []
    if max_step is not None:
        parts.append(f"max_step {max_step}")
    if max_percent is not None:
        parts.append(f"max_percent {max_percent:g}")
    return ", ".join(parts)


def cooldown(
    *, current: int, desired: int, last_change_at: datetime | None, behavior: Behavior,
    now: datetime,
) -> Limited:
    """Block a change while the last change of the count is more recent than the cooldown."""
    if desired == current or last_change_at is None:
        return Limited(desired)
    up = desired > current
    direction = "scale_up" if up else "scale_down"
    rules = behavior.scale_up if up else behavior.scale_down
    since = now - last_change_at
    # No cooldown never holds, even when the last change is stamped after now (a clock
    # set back, or Swarm's clock ahead of this one).
    if since >= rules.cooldown or rules.cooldown <= timedelta(0):
        return Limited(desired)
    return Limited(
        current, Reason.COOLDOWN,
        f"{direction}.cooldown {format_duration(rules.cooldown)}: last change "
        f"{format_duration(since)} ago, kept {current}",
    )


def clamp(*, desired: int, min_replicas: int, max_replicas: int) -> Limited:
    if desired < min_replicas:
        return Limited(
            min_replicas, Reason.TOO_FEW_REPLICAS, f"raised to min_replicas {min_replicas}"
        )
    if desired > max_replicas:
        return Limited(
            max_replicas, Reason.TOO_MANY_REPLICAS, f"lowered to max_replicas {max_replicas}"
        )
    return Limited(desired)


def history_to_keep(policy: Policy) -> timedelta:
    """The longest window the policy's limits look back over: what a memory must keep."""
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    return max(up.stabilization, down.stabilization, up.period, down.period)


def record_to_keep(policy: Policy) -> timedelta:
    """What the record a restarted agent rebuilds its memory from must keep: the memory's
    span, and the cooldowns', which run from the last change (a memory keeps that time
    apart from its changes, so its own span need not cover them)."""
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    return max(history_to_keep(policy), up.cooldown, down.cooldown)
