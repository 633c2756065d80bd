"""Planned windows (a policy's `schedule`): when each is in force, and the bounds they set.

Pure: every function is given `now`. A window repeats with a cron expression and lasts
`duration`, or runs once from `start` to `end`; both are read in the window's time zone.
The cron arithmetic is croniter's on the wall clock (naive local times); a local time is
then placed on the time line as zoneinfo does (PEP 495, `fold=0`): a start in the hour
skipped in spring falls an hour later on the clock, one in the hour repeated in autumn is
its first occurrence. A window is the half-open `[start, start + duration)` of elapsed time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from autoscaler.core.durations import format_duration

CRON_MAX = 100
"""The longest cron expression read (five fields need far fewer characters)."""
CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
ZONE_MAX = 64
_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_UNKNOWN_TIMES = re.compile(r"(?<![a-z])[hr](?![a-z])", re.IGNORECASE)
"""croniter's hashed `H` and random `R` values: a window's times must be known in advance
(no month or day name holds a lone h or r)."""
_REFERENCE = datetime(2028, 1, 1)
"""Where the shortest interval between two starts of an expression is measured from: a
leap year, so that a 29 February is among the first starts looked at (`0 0 29 1,2 *`
starts 31 days apart in a leap year, 365 in others)."""
_GAP_SAMPLE = 500
_GAP_YEARS = 8
_GAP_SPAN = timedelta(days=_GAP_YEARS * 366)
"""At most _GAP_SAMPLE starts over _GAP_SPAN (two leap days) are looked at."""
_MARGIN = timedelta(hours=3)
"""More than any change of a zone's UTC offset: how far around the wall-clock times of an
instant a start may lie when a change is near."""
_MAX_STEPS = 2000
"""The most starts looked at to find the window in force (a valid window needs a few)."""


class Window(Protocol):
    """One entry of a policy's `schedule` (`autoscaler.core.spec.ScheduleWindow`)."""

    @property
    def name(self) -> str | None: ...
    @property
    def cron(self) -> str | None: ...
    @property
    def duration(self) -> timedelta | None: ...
    @property
    def start(self) -> datetime | None: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def min_replicas(self) -> int | None: ...
    @property
    def max_replicas(self) -> int | None: ...


@dataclass(frozen=True)
class Occurrence:
    """One window of a schedule entry, `[start, end)`, in UTC."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ScheduledBounds:
    """The bounds in force while windows are. A window raises the floor (the larger of its
    `min_replicas` and the policy's) and sets the ceiling (its `max_replicas`, above or below
    the policy's; the policy's where it sets none); where windows overlap, the largest min
    and the largest max. `min_from` and `max_from` name the window that sets each, None
    where it is the policy's."""

    min_replicas: int
    max_replicas: int
    min_from: str | None
    max_from: str | None


# --- checks (for the policy file) -------------------------------------------------------


def cron_problem(expression: str) -> str | None:
    """What keeps `expression` from being a cron expression the schedule reads, or None."""
    facts = _cron_facts(expression)
    return facts if isinstance(facts, str) else None


def cron_gap(expression: str) -> timedelta | None:
    """The shortest interval between two starts of a valid `expression` (None: starts are
    more than _GAP_YEARS years apart, or the expression is not valid)."""
    facts = _cron_facts(expression)
    return None if isinstance(facts, str) else facts


@functools.lru_cache(maxsize=512)
def _cron_facts(expression: str) -> timedelta | str | None:
    """The expression's shortest interval between starts (None: rarer than _GAP_YEARS years), or
    what is wrong with it. Five fields (minute hour day-of-month month day-of-week) or one of
    `CRON_ALIASES`; croniter's seconds and years fields, `H` and `R` are refused."""
    if len(expression) > CRON_MAX:
        return f"must be at most {CRON_MAX} characters, got {len(expression)}"
    fields = expression.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        if fields[0].lower() not in CRON_ALIASES:
            return (f"must be a cron expression of 5 fields or one of "
                    f"{', '.join(sorted(CRON_ALIASES))}, got {_shown(expression)}")
    elif len(fields) != 5:
        return ("must be a cron expression of 5 fields (minute hour day-of-month month "
                f"day-of-week), got {len(fields)} field{'s' if len(fields) != 1 else ''}")
    elif _UNKNOWN_TIMES.search(expression):
        return ("hashed (H) and random (R) values are not read: a window starts at times "
                f"known in advance, got {_shown(expression)}")
    elif _special_day_with_the_other(fields):
        return ("with a day of the week's nth (5#3) or a day of the month's nearest weekday "
                "(15W), the other day field must be * (croniter reads such a pair neither as "
                f"either day nor as both), got {_shown(expression)}")
    try:
        starts = croniter(" ".join(fields), _REFERENCE)
        previous = starts.get_next(datetime)
    except CroniterBadDateError:
        return f"{_shown(expression)} never happens (as 31 February)"
    except Exception as error:  # croniter fails on a bad field with errors of every kind
        reason = str(error).split("\n")[0][:120]
        return f"is not a valid cron expression: {reason}"
    gap: timedelta | None = None
    try:
        for _ in range(_GAP_SAMPLE):
            start = starts.get_next(datetime)
            if start - _REFERENCE > _GAP_SPAN:
                break
            gap = start - previous if gap is None else min(gap, start - previous)
            previous = start
    except Exception:  # the starts ran out of croniter's calendar: the gap is what was seen
        pass
    return gap


def _special_day_with_the_other(fields: Sequence[str]) -> bool:
    """Whether an nth weekday (`5#3`) or a nearest weekday (`15W`) comes with the other day
    field restricted: croniter then ignores one field (`0 0 2 * 5#1` is every first Friday)
    or finds nothing (`0 0 15 * 1#2`), not cron's either-matches."""
    _, _, day_of_month, _, day_of_week = fields
    return ("#" in day_of_week and day_of_month not in ("*", "?")) or (
        "w" in day_of_month.lower() and day_of_week not in ("*", "?"))


def time_zone_problem(name: str) -> str | None:
    """What keeps `name` from being a time zone of the IANA database here, or None."""
    if len(name) > ZONE_MAX or not _ZONE.fullmatch(name) or zone(name) is None:
        return (f"must be a time zone of the IANA database such as Europe/Paris or UTC, got "
                f"{_shown(name)}")
    return None


def zone(name: str) -> tzinfo | None:
    """The time zone `name`, or None when there is no such zone."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def to_utc(moment: datetime, where: tzinfo) -> datetime:
    """`moment` in UTC: a naive one is a wall-clock time in `where` (`fold=0`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=where)
    return moment.astimezone(UTC)


# --- when windows are in force ----------------------------------------------------------


def bounds_at(
    schedule: Sequence[Window], now: datetime, *, min_replicas: int, max_replicas: int
) -> ScheduledBounds | None:
    """The bounds the windows in force at `now` set (None: no window is in force).
    `min_replicas` and `max_replicas` are the policy's, in force where a window sets none."""
    in_force = [(index, window, occurrence) for index, window in enumerate(schedule)
                if (occurrence := occurrence_at(window, now)) is not None]
    if not in_force:
        return None
    low = max([min_replicas, *(window.min_replicas for _, window, _ in in_force
                                if window.min_replicas is not None)])
    high = max(_or(window.max_replicas, max_replicas) for _, window, _ in in_force)
    min_from = next((label(index, window, occurrence) for index, window, occurrence in in_force
                     if window.min_replicas == low), None)
    max_from = next((label(index, window, occurrence) for index, window, occurrence in in_force
                     if window.max_replicas == high), None)
    return ScheduledBounds(low, high, min_from, max_from)


def occurrence_at(window: Window, now: datetime) -> Occurrence | None:
    """The window of `window` in force at `now` (of several, the latest to start), if any."""
    where = zone(window.timezone)
    if where is None:
        return None
    now = _utc(now)
    if window.cron is not None:
        if window.duration is None or window.duration <= timedelta(0):
            return None
        start = _latest_start(window.cron, where, now - window.duration, now)
        return None if start is None else Occurrence(start, start + window.duration)
    if window.start is None or window.end is None:
        return None
    start, end = to_utc(window.start, where), to_utc(window.end, where)
    return Occurrence(start, end) if start <= now < end else None


def upcoming(window: Window, now: datetime, count: int = 3) -> list[Occurrence]:
    """The first `count` windows of `window` that have not ended at `now`, in order (the
    one in force first)."""
    where = zone(window.timezone)
    if where is None:
        return []
    now = _utc(now)
    if window.cron is None:
        if window.start is None or window.end is None:
            return []
        start, end = to_utc(window.start, where), to_utc(window.end, where)
        return [Occurrence(start, end)] if end > now else []
    if window.duration is None or window.duration <= timedelta(0) or count <= 0:
        return []
    found = [] if (current := occurrence_at(window, now)) is None else [current]
    try:
        starts = croniter(window.cron, _wall(now, where) - _MARGIN)
        for _ in range(_MAX_STEPS):
            start = to_utc(starts.get_next(datetime), where)
            if start > now and all(start != o.start for o in found):
                found.append(Occurrence(start, start + window.duration))
            if sum(o.start > now for o in found) >= count + 1:
                break
    except Exception:  # past croniter's calendar: the windows found so far
        pass
    return sorted(found, key=lambda o: o.start)[:count]


def _latest_start(expression: str, where: tzinfo, after: datetime, until: datetime
                  ) -> datetime | None:
    """The latest start of `expression` in `(after, until]` (UTC instants), if any.

    The starts are wall-clock times; without a change of the zone's offset near the
    interval they map onto it one to one, else the search widens by `_MARGIN` each side."""
    margin = _MARGIN if _offset_changes(where, after - _MARGIN, until + _MARGIN) \
        else timedelta(0)
    top = _wall(until, where) + margin
    floor = _wall(after, where) - margin
    latest = None
    try:
        # croniter's previous start is strictly before its base: a minute past the top's
        # minute finds a start at the top itself
        starts = croniter(expression, top.replace(second=0, microsecond=0)
                          + timedelta(minutes=1))
        for _ in range(_MAX_STEPS):
            wall = starts.get_prev(datetime)
            if wall < floor:
                break
            start = to_utc(wall, where)
            if after < start <= until and (latest is None or start > latest):
                latest = start
                if margin == timedelta(0):
                    break
    except Exception:  # an expression croniter cannot step through: no window
        return latest
    return latest


def _offset_changes(where: tzinfo, first: datetime, last: datetime) -> bool:
    """Whether the zone's UTC offset may change between two instants."""
    if last - first > timedelta(days=30):
        return True
    return first.astimezone(where).utcoffset() != last.astimezone(where).utcoffset()


def _wall(instant: datetime, where: tzinfo) -> datetime:
    return instant.astimezone(where).replace(tzinfo=None)


def _utc(now: datetime) -> datetime:
    """`now` in UTC; a naive time is read as UTC."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


# --- words ----------------------------------------------------------------------------


def name_of(index: int, window: Window) -> str:
    """`schedule[0] "match"`: how messages name a window."""
    return f'schedule[{index}] "{window.name}"' if window.name else f"schedule[{index}]"


def label(index: int, window: Window, occurrence: Occurrence) -> str:
    """A window in force, as a decision's message names it: until when, on its clock."""
    where = zone(window.timezone) or UTC
    return f"{name_of(index, window)} (until {_clock(occurrence.end, where)} {window.timezone})"


def describe(index: int, window: Window) -> str:
    """One line for `autoscaler validate`: what the window is and the bounds it sets."""
    if window.cron is not None and window.duration is not None:
        when = f'cron "{window.cron}" for {format_duration(window.duration)}'
    elif window.start is not None and window.end is not None:
        when = f"{_written(window.start)} to {_written(window.end)}"
    else:
        when = "incomplete"
    bounds = [f"{key} {value}" for key, value in (("min_replicas", window.min_replicas),
                                                  ("max_replicas", window.max_replicas))
              if value is not None]
    return f"{name_of(index, window)}: {when}, {window.timezone}: {', '.join(bounds)}"


def describe_occurrence(window: Window, occurrence: Occurrence, now: datetime) -> str:
    """A window's times on its own clock and in UTC: `Fri 2026-06-05 18:00 to 21:00 CEST
    (16:00 to 19:00 UTC)`."""
    where = zone(window.timezone) or UTC
    local = _span(occurrence.start.astimezone(where), occurrence.end.astimezone(where))
    text = local if where is UTC else \
        f"{local} ({_span(occurrence.start, occurrence.end)})"
    return text + (", in force now" if occurrence.start <= _utc(now) < occurrence.end else "")


def _span(start: datetime, end: datetime) -> str:
    """`Fri 2026-06-05 18:00 to 21:00 CEST`; the end's day and zone name when they differ."""
    first, last = start.tzname() or "", end.tzname() or ""
    stop = f"{end:%H:%M}" if start.date() == end.date() else f"{end:%a %Y-%m-%d %H:%M}"
    if first == last:
        return f"{start:%a %Y-%m-%d %H:%M} to {stop} {last}"
    return f"{start:%a %Y-%m-%d %H:%M} {first} to {stop} {last}"


def _clock(instant: datetime, where: tzinfo) -> str:
    return f"{instant.astimezone(where):%Y-%m-%d %H:%M}"


def _written(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment.tzinfo is None else moment.isoformat()


def _shown(value: str) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
