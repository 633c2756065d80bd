"""What an operator says to the agent, read before anything is decided: a pause (a label on
the service, or on the node that holds the lease), and a replica count someone else set
lately (a manual override), which the agent leaves as it is for a while. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from autoscaler.core.durations import format_duration
from autoscaler.core.model import Reason
from autoscaler.core.record import RecordedChange

PAUSE_LABEL = "autoscaler.pause"


@dataclass(frozen=True)
class Hold:
    """Nothing is decided for the service this tick, and why."""

    reason: Reason
    message: str


def is_paused(labels: Mapping[str, str]) -> bool:
    return labels.get(PAUSE_LABEL, "").strip().lower() == "true"


def operator_hold(
    *, labels: Mapping[str, str], paused_all: bool, record: tuple[RecordedChange, ...],
    spec: int, expected: int | None, adopted: int | None, changed_at: datetime | None,
    now: datetime, override: timedelta,
) -> Hold | None:
    """A pause, or a manual override: the spec count is not the one the agent left the
    service at (the last recorded change's, else `expected` from its memory; `adopted`: a
    count already left alone through a whole window), and it changed less than `override`
    ago (`changed_at`; a zero `override` turns this off)."""
    if is_paused(labels):
        return Hold(Reason.PAUSED, f"{PAUSE_LABEL}=true on the service: nothing decided")
    if paused_all:
        return Hold(Reason.PAUSED,
                    f"{PAUSE_LABEL}=true on the node that holds the lease: nothing decided")
    if override <= timedelta(0) or changed_at is None or spec == adopted:
        return None
    ours = record[-1].after if record else expected
    if ours is None or spec == ours:
        return None
    until = changed_at + override
    if now >= until:
        return None
    return Hold(Reason.MANUAL_OVERRIDE,
                f"the replica count was changed to {spec} by someone else (the agent left "
                f"it at {ours}): left as it is for {format_duration(until - now)} more "
                f"(behavior.manual_override {format_duration(override)})")


def override_over(*, record: tuple[RecordedChange, ...], spec: int, expected: int | None,
                  changed_at: datetime | None, now: datetime, override: timedelta) -> bool:
    """Whether a count someone else set has been left alone through the whole window, so
    that a later change of anything else in the spec does not start the window again."""
    ours = record[-1].after if record else expected
    return ours is not None and spec != ours and changed_at is not None \
        and now >= changed_at + override
