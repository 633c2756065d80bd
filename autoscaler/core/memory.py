"""What the engine remembers about a service between ticks. Pure values and functions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from autoscaler.core.record import RecordedChange

Stamped = tuple[datetime, int]


@dataclass(frozen=True)
class ServiceMemory:
    """Per-service history that the limits read.

    `recommendations` are the counts of the strategy's metrics rule before limits, without a
    forecast's raise (stabilization windows);
    `seed` is the count found when the agent first saw the service, held in the scale-down
    window only so that a fresh agent does not scale down at once; `changes` are the net
    replica changes this agent made (or, in dry-run, would have made), for the rate limits;
    `shadow` is dry-run's replica count, and `seen_spec` the spec count it was last synced to.
    `uneven_since`: since when a per-task metric's load has been uneven without a break.
    """

    seed: Stamped | None
    recommendations: tuple[Stamped, ...] = ()
    changes: tuple[Stamped, ...] = ()
    last_change_at: datetime | None = None
    shadow: int = 0
    seen_spec: int = 0
    uneven_since: datetime | None = None

    @classmethod
    def first_seen(cls, *, replicas: int, now: datetime, seeded: bool = True) -> ServiceMemory:
        """A service seen for the first time; `seeded` False starts with empty history
        (the backtest's start)."""
        return cls(seed=(now, replicas) if seeded else None, shadow=replicas,
                   seen_spec=replicas)


def latest(*times: datetime | None) -> datetime | None:
    """The latest of the times given, None if none is."""
    return max((t for t in times if t is not None), default=None)


def in_window(stamped: tuple[Stamped, ...], *, now: datetime, window: timedelta) -> list[int]:
    """Values stamped in the half-open window (now - window, now]."""
    start = now - window
    return [value for at, value in stamped if start < at <= now]


def synced_shadow(memory: ServiceMemory, spec_replicas: int) -> ServiceMemory:
    """Dry-run's count follows the spec whenever the spec itself changes."""
    if memory.seen_spec == spec_replicas:
        return memory
    return replace(memory, shadow=spec_replicas, seen_spec=spec_replicas)


def remember(
    memory: ServiceMemory,
    *,
    now: datetime,
    recommended: int | None,
    change: int,
    keep: timedelta,
) -> ServiceMemory:
    """Add this tick's recommendation (None: none to remember) and change; forget what is
    older than `keep`."""
    horizon = now - keep
    recommendations = tuple(s for s in memory.recommendations if s[0] > horizon)
    if recommended is not None:
        recommendations += ((now, recommended),)
    changes = memory.changes
    if changes and changes[0][0] <= horizon:
        changes = tuple(s for s in changes if s[0] > horizon)
    if change:
        changes += ((now, change),)
    return ServiceMemory(
        seed=memory.seed,
        recommendations=recommendations,
        changes=changes,
        last_change_at=now if change else memory.last_change_at,
        shadow=memory.shadow + change,
        seen_spec=memory.seen_spec,
        uneven_since=memory.uneven_since,
    )


def with_recorded(memory: ServiceMemory, record: tuple[RecordedChange, ...], *,
                  now: datetime, keep: timedelta) -> ServiceMemory:
    """The memory with the recorded changes within `keep` that it does not hold yet: the
    agent's own before a restart, or another agent's before a hand-over. A change is the
    same as one remembered in the same second (the record keeps whole seconds)."""
    known = {int(at.timestamp()) for at, _ in memory.changes}
    # A change stamped later than now came from an agent whose clock runs ahead: it counts
    # as made now, so that it holds for a whole period rather than none.
    extra = tuple((min(c.at, now), c.change) for c in record
                  if now - keep < c.at and int(c.at.timestamp()) not in known)
    last = latest(memory.last_change_at, *(min(c.at, now) for c in record))
    if not extra and last == memory.last_change_at:
        return memory
    return replace(memory, changes=tuple(sorted(memory.changes + extra)), last_change_at=last)
