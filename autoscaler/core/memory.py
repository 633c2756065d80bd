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
    `recorded`: the times (whole seconds) of the recorded changes `changes` holds, as the
    record has them where `changes` holds them at another time (`as_of`, `with_recorded`),
    so that each is taken once.
    """

    seed: Stamped | None
    recommendations: tuple[Stamped, ...] = ()
    changes: tuple[Stamped, ...] = ()
    last_change_at: datetime | None = None
    shadow: int = 0
    seen_spec: int = 0
    uneven_since: datetime | None = None
    recorded: frozenset[int] = frozenset()

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
    older than `keep`.

    A recommendation equal to the one before it replaces it: the windows read only which
    counts were recommended within them, and the later of two equal ones is in every window
    the earlier is in, as long as none is later than `now` (`as_of` sees to that). So a
    service that holds keeps one, not one a tick (at 10,000 services and a 5-minute
    window, 20 MB)."""
    horizon = now - keep
    recommendations = tuple(s for s in memory.recommendations if s[0] > horizon)
    if recommended is not None:
        if recommendations and recommendations[-1][1] == recommended:
            recommendations = recommendations[:-1]
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
        recorded=memory.recorded,
    )


def with_recorded(memory: ServiceMemory, record: tuple[RecordedChange, ...], *,
                  now: datetime, keep: timedelta) -> ServiceMemory:
    """The memory with the recorded changes within `keep` that it does not hold yet: the
    agent's own before a restart, or another agent's before a hand-over. A change is the
    same as one remembered in the same second (the record keeps whole seconds), or one
    already taken at another time (`recorded`)."""
    known = {int(at.timestamp()) for at, _ in memory.changes} | memory.recorded
    # A change stamped later than now came from an agent whose clock runs ahead: it counts
    # as made now, so that it holds for a whole period rather than none.
    taken = [c for c in record if now - keep < c.at and int(c.at.timestamp()) not in known]
    last = latest(memory.last_change_at, *(min(c.at, now) for c in taken))
    if not taken and last == memory.last_change_at:
        return memory
    oldest = int((now - keep).timestamp())
    recorded = frozenset(second for second in memory.recorded if second > oldest) | {
        int(c.at.timestamp()) for c in taken if c.at > now}
    return replace(memory, changes=tuple(sorted(
        memory.changes + tuple((min(c.at, now), c.change) for c in taken))),
        last_change_at=last, recorded=recorded)


def as_of(memory: ServiceMemory, now: datetime) -> ServiceMemory:
    """The memory with every time after `now` (the clock set back since) moved to `now`:
    what was done then counts as just done, so that the windows and the cooldown hold it
    for their whole length from now, neither forgetting it (a window reads up to now) nor
    holding it until the clock catches up (a cooldown counts from its time)."""
    def ahead(at: datetime | None) -> bool:
        return at is not None and at > now

    if not (ahead(memory.last_change_at) or ahead(memory.uneven_since)
            or (memory.seed is not None and ahead(memory.seed[0]))
            or (memory.recommendations and ahead(memory.recommendations[-1][0]))
            or (memory.changes and ahead(memory.changes[-1][0]))):
        return memory

    def moved(stamped: tuple[Stamped, ...]) -> tuple[Stamped, ...]:
        return tuple((min(at, now), value) for at, value in stamped)

    return replace(
        memory,
        seed=None if memory.seed is None else (min(memory.seed[0], now), memory.seed[1]),
        recommendations=moved(memory.recommendations), changes=moved(memory.changes),
        last_change_at=None if memory.last_change_at is None
        else min(memory.last_change_at, now),
        uneven_since=None if memory.uneven_since is None else min(memory.uneven_since, now),
        recorded=memory.recorded | {int(at.timestamp()) for at, _ in memory.changes
                                    if at > now},
    )
