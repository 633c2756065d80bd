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


NOT_PAUSED = ("false", "no", "off", "0")
"""The values of `autoscaler.pause` that say "do not pause"; any other pauses: an operator who
set the label (`yes`, `1`, `paused`, or no value at all) means to stop the agent, which must
not act while it guesses."""


def is_paused(labels: Mapping[str, object]) -> bool:
    value = labels.get(PAUSE_LABEL)
    return isinstance(value, str) and value.strip().lower() not in NOT_PAUSED


def _pause_said(labels: Mapping[str, str]) -> str:
    """How the pause label was written, as a decision says it."""
    value = labels[PAUSE_LABEL]
    if value.strip().lower() == "true":
        return f"{PAUSE_LABEL}=true"
    return f"{PAUSE_LABEL}={value!r} (not true or false: taken as a pause)"


RECORD_SLACK = timedelta(minutes=5)
"""How much earlier than the service's last update the agent's record of that change may
be: the record holds the tick's time, the update is stamped by a manager's clock when the
scale call lands."""


def changed_by_someone_else(*, record: tuple[RecordedChange, ...], spec: int,
                            replicas_changed_at: datetime | None) -> bool:
    """The service's last update changed its replica count, and the agent's record does not
    account for it: no record, its last change did not end at this count, or that change
    was made well before the update (a count set back by hand to one the agent once set).
    Read from the service alone, so a restarted agent, or the one that takes the lease, sees
    the same."""
    if replicas_changed_at is None:
        return False
    if not record:
        return True
    last = record[-1]
    return last.after != spec or last.at < replicas_changed_at - RECORD_SLACK


def operator_hold(
    *, labels: Mapping[str, str], paused_all: bool, record: tuple[RecordedChange, ...],
    spec: int, replicas_changed_at: datetime | None, updated_at: datetime | None,
    now: datetime, override: timedelta,
) -> Hold | None:
    """A pause, or a manual override: someone else set the replica count
    (`changed_by_someone_else`) less than `override` ago (a zero `override` turns this
    off). When the agent's record ends at another count than the spec's but the last update
    (at `updated_at`) left the count alone, someone set it before that update, which
    changed something else (an image, a label): the override runs from that update, the
    latest the count can have been set, so that an edit made after a count set by hand
    does not end its override at once."""
    if is_paused(labels):
        return Hold(Reason.PAUSED, f"{_pause_said(labels)} on the service: nothing decided")
    if paused_all:
        return Hold(Reason.PAUSED,
                    f"{PAUSE_LABEL} on the node that holds the lease: nothing decided")
    changed_at = replicas_changed_at
    if changed_at is None and record and record[-1].after != spec:
        changed_at = updated_at
    if override <= timedelta(0) or changed_at is None \
            or not changed_by_someone_else(record=record, spec=spec,
                                           replicas_changed_at=changed_at):
        return None
    until = changed_at + override
    if now >= until:
        return None
    return Hold(Reason.MANUAL_OVERRIDE,
                f"the replica count was changed to {spec} by someone else: left as it is "
                f"for {format_duration(until - now)} more (behavior.manual_override "
                f"{format_duration(override)})")
