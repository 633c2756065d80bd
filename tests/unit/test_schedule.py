"""Planned windows (a policy's `schedule`): when each is in force, the bounds they set, what
`validate` prints of them, and a backtest that honours them."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from croniter import croniter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.core.schedule import (
    Occurrence,
    ScheduledBounds,
    bounds_at,
    cron_gap,
    cron_problem,
    describe,
    describe_occurrence,
    occurrence_at,
    upcoming,
)
from autoscaler.core.spec import Policy, ScheduleWindow, parse_policy
from autoscaler.offline.replay import BacktestSettings, replay
from autoscaler.offline.traces import Trace
from autoscaler.runtime.commands import validate
from tests.unit.conftest import build_policy
from tests.unit.test_spec_properties import VALUES, assert_policy_or_problems

PARIS = ZoneInfo("Europe/Paris")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def window(**keys: Any) -> ScheduleWindow:
    """A window as a policy file would give it (checked by `parse_policy`)."""
    keys = {"min_replicas": 5, **keys}
    policy = build_policy(max_replicas=50, schedule=[keys])
    return policy.schedule[0]


FRIDAY_MATCH = {"cron": "0 18 * * 5", "duration": "3h", "timezone": "Europe/Paris"}
SALE = {"start": "2026-12-24T08:00", "end": "2026-12-26T00:00", "timezone": "Europe/Paris"}

# --- when a window is in force ----------------------------------------------------------

IN_FORCE = [
    # (window keys, now, the window in force: (start, end) in UTC, or None)
    pytest.param({"cron": "0 18 * * 5", "duration": "3h"}, utc(2026, 6, 5, 17, 59), None,
                 id="utc-cron-a-minute-before"),
    pytest.param({"cron": "0 18 * * 5", "duration": "3h"}, utc(2026, 6, 5, 18, 0),
                 (utc(2026, 6, 5, 18), utc(2026, 6, 5, 21)), id="utc-cron-at-its-start"),
    pytest.param({"cron": "0 18 * * 5", "duration": "3h"}, utc(2026, 6, 5, 20, 59, 59, 999999),
                 (utc(2026, 6, 5, 18), utc(2026, 6, 5, 21)), id="utc-cron-just-before-its-end"),
    pytest.param({"cron": "0 18 * * 5", "duration": "3h"}, utc(2026, 6, 5, 21, 0), None,
                 id="utc-cron-half-open-end"),
    pytest.param({"cron": "0 18 * * 5", "duration": "3h"}, utc(2026, 6, 6, 19, 0), None,
                 id="utc-cron-saturday"),
    # the same match on the clock of Paris: 18:00 CET is 17:00 UTC, 18:00 CEST 16:00 UTC
    pytest.param(FRIDAY_MATCH, utc(2026, 3, 27, 17, 0),
                 (utc(2026, 3, 27, 17), utc(2026, 3, 27, 20)), id="paris-winter"),
    pytest.param(FRIDAY_MATCH, utc(2026, 3, 27, 16, 30), None, id="paris-winter-before"),
    pytest.param(FRIDAY_MATCH, utc(2026, 4, 3, 16, 0),
                 (utc(2026, 4, 3, 16), utc(2026, 4, 3, 19)), id="paris-summer-after-the-change"),
    pytest.param(FRIDAY_MATCH, utc(2026, 4, 3, 19, 0), None, id="paris-summer-ended"),
    pytest.param(FRIDAY_MATCH, utc(2026, 10, 30, 19, 30),
                 (utc(2026, 10, 30, 17), utc(2026, 10, 30, 20)), id="paris-winter-again"),
    # 29 March 2026 in Paris: 02:00 CET becomes 03:00 CEST
    pytest.param({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"},
                 utc(2026, 3, 28, 1, 30), (utc(2026, 3, 28, 1, 30), utc(2026, 3, 28, 2, 30)),
                 id="dst-the-day-before"),
    pytest.param({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"},
                 utc(2026, 3, 29, 1, 0), None, id="dst-skipped-hour-not-yet"),
    pytest.param({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"},
                 utc(2026, 3, 29, 1, 30), (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)),
                 id="dst-skipped-hour-starts-at-03:30-cest"),
    pytest.param({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"},
                 utc(2026, 3, 30, 0, 30), (utc(2026, 3, 30, 0, 30), utc(2026, 3, 30, 1, 30)),
                 id="dst-the-day-after"),
    # 25 October 2026 in Paris: 03:00 CEST becomes 02:00 CET; 02:30 is its first occurrence
    pytest.param({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"},
                 utc(2026, 10, 25, 0, 30), (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)),
                 id="dst-repeated-hour-first"),
    pytest.param({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"},
                 utc(2026, 10, 25, 1, 45), None, id="dst-repeated-hour-not-twice"),
    # elapsed time: 4 hours from midnight CET across the change end at 05:00 CEST
    pytest.param({"cron": "0 0 * * *", "duration": "4h", "timezone": "Europe/Paris"},
                 utc(2026, 3, 29, 2, 59), (utc(2026, 3, 28, 23), utc(2026, 3, 29, 3)),
                 id="dst-window-across-the-change"),
    pytest.param({"cron": "0 0 * * *", "duration": "4h", "timezone": "Europe/Paris"},
                 utc(2026, 3, 29, 3, 0), None, id="dst-window-across-the-change-ended"),
    # across midnight
    pytest.param({"cron": "0 22 * * *", "duration": "4h"}, utc(2026, 6, 6, 1, 59),
                 (utc(2026, 6, 5, 22), utc(2026, 6, 6, 2)), id="midnight-next-day"),
    pytest.param({"cron": "0 22 * * *", "duration": "4h"}, utc(2026, 6, 6, 2, 0), None,
                 id="midnight-ended"),
    pytest.param({"cron": "0 22 * * 5", "duration": "4h", "timezone": "Europe/Paris"},
                 utc(2026, 6, 5, 23, 30), (utc(2026, 6, 5, 20), utc(2026, 6, 6, 0)),
                 id="friday-night-into-saturday-paris"),
    pytest.param({"cron": "@daily", "duration": "1h"}, utc(2026, 6, 6, 0, 30),
                 (utc(2026, 6, 6), utc(2026, 6, 6, 1)), id="alias"),
    pytest.param({"cron": "0 9 L * *", "duration": "1d"}, utc(2026, 2, 28, 12),
                 (utc(2026, 2, 28, 9), utc(2026, 3, 1, 9)), id="last-day-of-the-month"),
    pytest.param({"cron": "0 9 * * fri#3", "duration": "1h"}, utc(2026, 6, 19, 9, 30),
                 (utc(2026, 6, 19, 9), utc(2026, 6, 19, 10)), id="third-friday"),
    # start and end
    pytest.param(SALE, utc(2026, 12, 24, 6, 59), None, id="sale-before"),
    pytest.param(SALE, utc(2026, 12, 24, 7, 0), (utc(2026, 12, 24, 7), utc(2026, 12, 25, 23)),
                 id="sale-starts-08:00-cet"),
    pytest.param(SALE, utc(2026, 12, 25, 22, 59), (utc(2026, 12, 24, 7), utc(2026, 12, 25, 23)),
                 id="sale-across-midnight"),
    pytest.param(SALE, utc(2026, 12, 25, 23, 0), None, id="sale-half-open-end"),
    pytest.param({"start": "2026-12-24T08:00+00:00", "end": "2026-12-24T10:00",
                  "timezone": "Europe/Paris"}, utc(2026, 12, 24, 8, 30),
                 (utc(2026, 12, 24, 8), utc(2026, 12, 24, 9)), id="an-offset-is-its-instant"),
    pytest.param({"start": "2026-03-29T02:30", "end": "2026-03-29T04:00",
                  "timezone": "Europe/Paris"}, utc(2026, 3, 29, 1, 30),
                 (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2)), id="start-in-the-skipped-hour"),
    pytest.param({"start": date(2026, 12, 24), "end": date(2026, 12, 25)},
                 datetime(2026, 12, 24, 23, 59), (utc(2026, 12, 24), utc(2026, 12, 25)),
                 id="dates-and-a-naive-now-read-as-utc"),
]


@pytest.mark.parametrize(("keys", "now", "expected"), IN_FORCE)
def test_the_window_in_force(keys: dict[str, Any], now: datetime,
                             expected: tuple[datetime, datetime] | None) -> None:
    found = occurrence_at(window(**keys), now)

    assert found == (None if expected is None else Occurrence(*expected))


# --- the bounds of the windows in force -------------------------------------------------

ALWAYS = {"start": "2000-01-01T00:00", "end": "9998-01-01T00:00"}
NEVER = {"start": "2001-01-01T00:00", "end": "2001-01-02T00:00"}
NOW = utc(2026, 6, 5, 12)

BOUNDS = [
    # (windows, policy's (min, max), expected (min, max, min from, max from) or None)
    pytest.param([{**NEVER, "min_replicas": 4}], (2, 10), None, id="none-in-force"),
    pytest.param([{**ALWAYS, "min_replicas": 6}], (2, 10),
                 (6, 10, "schedule[0]", None), id="min-only-max-is-the-policys"),
    pytest.param([{**ALWAYS, "min_replicas": None, "max_replicas": 30}], (2, 10),
                 (2, 30, None, "schedule[0]"), id="max-above-the-policys"),
    pytest.param([{**ALWAYS, "min_replicas": None, "max_replicas": 4}], (2, 10),
                 (2, 4, None, "schedule[0]"), id="max-below-the-policys"),
    pytest.param([{**ALWAYS, "min_replicas": 1}], (2, 10), (2, 10, None, None),
                 id="a-min-below-the-policys-never-lowers-the-floor"),
    pytest.param([{**ALWAYS, "min_replicas": 5, "max_replicas": 20, "name": "a"},
                  {**ALWAYS, "min_replicas": 8, "name": "b"}], (2, 10),
                 (8, 20, 'schedule[1] "b"', 'schedule[0] "a"'), id="overlap-largest-win"),
    pytest.param([{**ALWAYS, "min_replicas": 3, "max_replicas": 4},
                  {**ALWAYS, "min_replicas": 5}], (2, 10),
                 (5, 10, "schedule[1]", None),
                 id="overlap-a-window-without-max-brings-the-policys"),
    pytest.param([{**NEVER, "min_replicas": 9}, {**ALWAYS, "min_replicas": 4}], (2, 10),
                 (4, 10, "schedule[1]", None), id="only-the-windows-in-force"),
]


@pytest.mark.parametrize(("windows", "policy_bounds", "expected"), BOUNDS)
def test_the_bounds_in_force(windows: list[dict[str, Any]], policy_bounds: tuple[int, int],
                             expected: tuple[int, int, str | None, str | None] | None) -> None:
    low, high = policy_bounds
    policy = build_policy(min_replicas=low, max_replicas=high,
                          schedule=[{k: v for k, v in w.items() if v is not None}
                                    for w in windows])

    found = bounds_at(policy.schedule, NOW, min_replicas=low, max_replicas=high)

    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.min_replicas, found.max_replicas) == expected[:2]
    for named, prefix in ((found.min_from, expected[2]), (found.max_from, expected[3])):
        assert (named is None) == (prefix is None)
        if prefix is not None:
            assert named is not None and named.startswith(prefix + " (until ")


def test_a_window_is_named_with_its_end_on_its_clock() -> None:
    policy = build_policy(schedule=[{"name": "match", "min_replicas": 5, **FRIDAY_MATCH}])

    found = bounds_at(policy.schedule, utc(2026, 6, 5, 17), min_replicas=1, max_replicas=20)

    assert found == ScheduledBounds(5, 20, 'schedule[0] "match" (until 2026-06-05 21:00 '
                                           'Europe/Paris)', None)


# --- the next windows, as validate prints them ------------------------------------------


def test_the_next_windows_of_a_cron_follow_the_clock_of_its_zone() -> None:
    match = window(**FRIDAY_MATCH)

    found = upcoming(match, utc(2026, 3, 18, 12), 3)

    assert found == [Occurrence(utc(2026, 3, 20, 17), utc(2026, 3, 20, 20)),
                     Occurrence(utc(2026, 3, 27, 17), utc(2026, 3, 27, 20)),
                     Occurrence(utc(2026, 4, 3, 16), utc(2026, 4, 3, 19))]
    assert [describe_occurrence(match, o, utc(2026, 3, 18, 12)) for o in found] == [
        "Fri 2026-03-20 18:00 to 21:00 CET (Fri 2026-03-20 17:00 to 20:00 UTC)",
        "Fri 2026-03-27 18:00 to 21:00 CET (Fri 2026-03-27 17:00 to 20:00 UTC)",
        "Fri 2026-04-03 18:00 to 21:00 CEST (Fri 2026-04-03 16:00 to 19:00 UTC)",
    ]


def test_the_window_in_force_comes_first() -> None:
    match = window(**FRIDAY_MATCH)
    now = utc(2026, 6, 5, 18)

    found = upcoming(match, now, 2)

    assert found == [Occurrence(utc(2026, 6, 5, 16), utc(2026, 6, 5, 19)),
                     Occurrence(utc(2026, 6, 12, 16), utc(2026, 6, 12, 19))]
    assert describe_occurrence(match, found[0], now).endswith(", in force now")


def test_a_window_across_midnight_and_a_change_of_offset_is_written_whole() -> None:
    overnight = window(cron="0 0 * * *", duration="4h", timezone="Europe/Paris")
    occurrence = upcoming(overnight, utc(2026, 3, 28, 22), 1)[0]

    assert describe_occurrence(overnight, occurrence, utc(2026, 3, 28, 22)) == (
        "Sun 2026-03-29 00:00 CET to 05:00 CEST "
        "(Sat 2026-03-28 23:00 to Sun 2026-03-29 03:00 UTC)")


def test_a_start_and_end_window_once_then_never() -> None:
    sale = window(**SALE)

    assert upcoming(sale, utc(2026, 12, 1), 3) == [
        Occurrence(utc(2026, 12, 24, 7), utc(2026, 12, 25, 23))]
    assert upcoming(sale, utc(2026, 12, 25, 23), 3) == []
    assert describe(1, sale) == ("schedule[1]: 2026-12-24 08:00 to 2026-12-26 00:00, "
                                 "Europe/Paris: min_replicas 5")


def test_validate_prints_each_windows_next_occurrences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({
        "service": "shop_web", "min_replicas": 2, "max_replicas": 20,
        "metrics": [{"name": "rps", "query": "q", "target": 50}],
        "schedule": [{"name": "match", **FRIDAY_MATCH, "min_replicas": 10, "max_replicas": 40},
                     {"name": "christmas sale", **SALE, "min_replicas": 8}],
    }, sort_keys=False))

    assert validate([path], now=utc(2026, 12, 6, 2)) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"ok {path}: service shop_web, strategy target, 2..20 replicas",
        '  schedule[0] "match": cron "0 18 * * 5" for 3h, Europe/Paris: min_replicas 10, '
        "max_replicas 40",
        "    Fri 2026-12-11 18:00 to 21:00 CET (Fri 2026-12-11 17:00 to 20:00 UTC)",
        "    Fri 2026-12-18 18:00 to 21:00 CET (Fri 2026-12-18 17:00 to 20:00 UTC)",
        "    Fri 2026-12-25 18:00 to 21:00 CET (Fri 2026-12-25 17:00 to 20:00 UTC)",
        '  schedule[1] "christmas sale": 2026-12-24 08:00 to 2026-12-26 00:00, Europe/Paris: '
        "min_replicas 8",
        "    Thu 2026-12-24 08:00 to Sat 2026-12-26 00:00 CET "
        "(Thu 2026-12-24 07:00 to Fri 2026-12-25 23:00 UTC)",
    ]


# --- the cron expressions read ----------------------------------------------------------


@pytest.mark.parametrize(("expression", "gap"), [
    ("0 18 * * 5", timedelta(days=7)),
    ("*/15 * * * *", timedelta(minutes=15)),
    ("0 9,17 * * mon-fri", timedelta(hours=8)),
    ("0 0 1 * *", timedelta(days=28)),
    ("@yearly", timedelta(days=365)),
    ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),
    pytest.param("0 0 29 1,2 *", timedelta(days=31), id="29-january-to-a-leap-day"),
    pytest.param("0 0 1,29 * *", timedelta(days=1), id="a-leap-day-to-1-march"),
])
def test_the_shortest_time_between_two_starts(expression: str, gap: timedelta) -> None:
    assert cron_problem(expression) is None
    assert cron_gap(expression) == gap


@pytest.mark.parametrize(("expression", "fragment"), [
    ("0 18 * * 5 2030", "5 fields"),
    ("0 0 * * * *", "5 fields"),
    ("", "5 fields"),
    ("@reboot", "one of"),
    ("0 25 * * *", "not a valid cron expression"),
    ("x y z w v", "not a valid cron expression"),
    ("H 18 * * 5", "hashed (H) and random (R)"),
    ("H(0-5) 18 * * 5", "hashed (H) and random (R)"),
    ("R 18 * * 5", "hashed (H) and random (R)"),
    ("0 18 * * thu,fri", None),
    ("0 0 31 2 *", "never happens"),
    ("0 " * 60, "at most 100 characters"),
    pytest.param("0 0 * * 5#1", None, id="the-first-friday"),
    pytest.param("0 0 ? * 5#1", None, id="the-first-friday-with-?"),
    pytest.param("0 0 15W * *", None, id="the-weekday-nearest-the-15th"),
    pytest.param("0 0 2 * 5#1", "the other day field must be *",
                 id="nth-weekday-with-a-day-read-as-every-first-friday"),
    pytest.param("0 0 15 * 1#2", "the other day field must be *",
                 id="nth-weekday-with-a-day-found-never"),
    pytest.param("0 0 15W * fri", "the other day field must be *",
                 id="nearest-weekday-with-a-weekday-read-without-fridays"),
])
def test_cron_expressions_read_and_refused(expression: str, fragment: str | None) -> None:
    problem = cron_problem(expression)

    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


# --- properties -------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "Pacific/Chatham", "America/Santiago"]
CRONS = ["0 18 * * 5", "30 2 * * *", "0 * * * *", "*/7 * * * *", "15 1,2,3 * * *",
         "0 0 * * 0", "0 9 L * *", "45 23 * * 1-5", "0 2 * 3,10 sun"]
CHANGES = [datetime(2026, 3, 8, 7), datetime(2026, 3, 29, 1), datetime(2026, 4, 5, 2),
           datetime(2026, 9, 6, 3), datetime(2026, 10, 4, 15), datetime(2026, 10, 25, 1),
           datetime(2026, 11, 1, 6)]
"""Near changes of offset of the zones above (UTC)."""


def brute_force(cron: str, zone: ZoneInfo, duration: timedelta, now: datetime
                ) -> Occurrence | None:
    """Every start of the cron from a day before `now` on, placed as zoneinfo does: the
    latest that began at or before `now` and has not ended."""
    starts = croniter(cron, (now - duration - timedelta(days=1)).astimezone(zone)
                      .replace(tzinfo=None))
    latest = None
    for _ in range(100_000):
        wall = starts.get_next(datetime)
        start = wall.replace(tzinfo=zone).astimezone(UTC)
        if wall.replace(tzinfo=zone) > (now + timedelta(days=1)).astimezone(zone):
            break
        if start <= now < start + duration and (latest is None or start > latest):
            latest = start
    return None if latest is None else Occurrence(latest, latest + duration)


@settings(max_examples=300, deadline=None)
@given(cron=st.sampled_from(CRONS), zone=st.sampled_from(ZONES),
       minutes=st.integers(1, 7 * 1440), near=st.sampled_from(CHANGES),
       offset=st.integers(-6 * 3600, 6 * 3600))
@example(cron="30 2 * * *", zone="Europe/Paris", minutes=60, near=CHANGES[1], offset=1800)
def test_the_window_in_force_is_the_one_a_brute_force_finds(
    cron: str, zone: str, minutes: int, near: datetime, offset: int
) -> None:
    gap = cron_gap(cron)
    duration = min(timedelta(minutes=minutes), gap or timedelta(days=7))
    now = near.replace(tzinfo=UTC) + timedelta(seconds=offset)
    entry = ScheduleWindow.model_validate({"cron": cron, "duration": duration.total_seconds(),
                                           "timezone": zone, "min_replicas": 1})

    assert occurrence_at(entry, now) == brute_force(cron, ZoneInfo(zone), duration, now)


WINDOW_KEYS = list(ScheduleWindow.model_fields)
CRON_TEXT = st.lists(st.text(alphabet="0123456789*/,-LW#?HRmonfrijadecsu", min_size=1,
                             max_size=6), min_size=0, max_size=7).map(" ".join)
TIMES = st.one_of(st.datetimes(), st.datetimes(timezones=st.timezones()), st.dates(),
                  st.datetimes().map(lambda d: d.isoformat(timespec="minutes")))
SCHEDULE_VALUES = st.one_of(
    VALUES, CRON_TEXT, TIMES,
    st.sampled_from(["@daily", "@reboot", "0 18 * * 5", "0 0 31 2 *", "Europe/Paris",
                     "Mars/Olympus", "../etc/passwd", "Europe", "UTC", "3h", "0s", "8d",
                     "", "9" * 400, "\x00", "2026-12-24T08:00", "2026-12-24T08:00+25:00",
                     "2026-02-30T00:00", "0001-01-01", "9999-12-31T23:59"]),
)
VALID_WINDOW: dict[str, Any] = {"cron": "0 18 * * 5", "duration": "3h",
                                "timezone": "Europe/Paris", "min_replicas": 3}
BASE: dict[str, Any] = {"service": "web", "max_replicas": 10,
                        "metrics": [{"name": "rps", "query": "q", "target": 5}]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.sampled_from([*WINDOW_KEYS, "colour", 7]),
                                  SCHEDULE_VALUES), max_size=5),
       entries=st.integers(0, 3), whole=st.none() | VALUES,
       now=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(9000, 1, 1),
                        timezones=st.just(UTC)))
def test_any_value_at_any_key_of_a_window_is_a_problem_or_a_window(
    changes: list[tuple[Any, Any]], entries: int, whole: Any, now: datetime
) -> None:
    """Parsing never raises, and a schedule that parses is read at any time without an
    error: the bounds stay within the policy's and the windows', the next windows end
    after `now`."""
    first = {**VALID_WINDOW, **dict(changes)}
    document = {**BASE, "schedule": [first, *[VALID_WINDOW] * entries]}
    if whole is not None:
        document["schedule"] = whole
    data = yaml.safe_dump(document, sort_keys=False).encode()

    assert_policy_or_problems(data)
    policy = parse_policy(data, "policies/fuzz.yaml")
    if not isinstance(policy, Policy):
        return
    found = bounds_at(policy.schedule, now, min_replicas=policy.min_replicas,
                      max_replicas=policy.max_replicas)
    if found is not None:
        assert policy.min_replicas <= found.min_replicas <= found.max_replicas
    for entry in policy.schedule:
        assert all(o.end > now and o.start < o.end for o in upcoming(entry, now, 3))
        describe(0, entry)


def test_a_long_list_of_windows_is_refused_before_its_windows_are_read() -> None:
    """A file can list thousands of aliases of one window: one problem, not one a window."""
    text = (yaml.safe_dump(BASE) + "w: &w {cron: '0 18 * * 5', duration: 3h, min_replicas: 2}\n"
            + "schedule: [" + ", ".join(["*w"] * 20_000) + "]\n")

    started = time.perf_counter()
    problems = parse_policy(text.encode(), "p.yaml")

    assert isinstance(problems, list)
    assert [(p.key, p.message) for p in problems if p.key.startswith("schedule")] == [
        ("schedule", "must list at most 50 windows, got 20000")]
    assert time.perf_counter() - started < 10


# --- the backtest honours the schedule --------------------------------------------------

START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize("entry", [
    pytest.param({"start": "2026-01-01T00:05", "end": "2026-01-01T00:10"}, id="start-end"),
    pytest.param({"cron": "5 1 * * thu", "duration": "5m", "timezone": "Europe/Paris"},
                 id="cron-on-the-clock-of-paris"),
])
def test_a_replay_keeps_the_windows_min_while_it_lasts(entry: dict[str, Any]) -> None:
    policy = build_policy(
        min_replicas=1, max_replicas=10,
        behavior={"scale_down": {"stabilization": "0s"}},
        metrics=[{"name": "rps", "query": "q", "target": 10}],
        schedule=[{"name": "launch", "min_replicas": 4, **entry}],
    )
    settings = BacktestSettings(capacity=10, slo_utilisation=1.0, startup=timedelta(0),
                                warmup=MINUTE)

    run = replay(policy, "p.yaml", Trace(START, MINUTE, [10.0] * 15, "flat"), settings)

    during = [i for i, t in enumerate(run.times)
              if START + 5 * MINUTE <= t < START + 10 * MINUTE]
    assert len(during) == 5
    assert all(run.billed[i] >= 4 for i in during)
    assert all(run.billed[i] == 1 for i, t in enumerate(run.times)
               if t < START + 5 * MINUTE or t >= START + 11 * MINUTE)
    assert run.reasons_by_step[during[0]] == "Scheduled"
    assert run.reasons["Scheduled"] >= 1


def test_after_a_window_the_count_comes_down_through_the_stabilization_window() -> None:
    """A window's min is remembered as the metrics' counts are: at its end the count stays
    for the scale-down stabilization window, as it would after a load that asked for it."""
    policy = build_policy(
        min_replicas=1, max_replicas=10,
        behavior={"scale_down": {"stabilization": "3m"}},
        metrics=[{"name": "rps", "query": "q", "target": 10}],
        schedule=[{"name": "launch", "min_replicas": 4, "start": "2026-01-01T00:05",
                   "end": "2026-01-01T00:10"}],
    )
    settings = BacktestSettings(capacity=10, slo_utilisation=1.0, startup=timedelta(0),
                                warmup=MINUTE)

    run = replay(policy, "p.yaml", Trace(START, MINUTE, [10.0] * 20, "flat"), settings)

    billed = {t: b for t, b in zip(run.times, run.billed, strict=True)}
    # the window's last tick is 00:09; the count drops 3 minutes later, not at 00:10
    assert [billed[START + m * MINUTE] for m in range(9, 15)] == [4, 4, 4, 1, 1, 1]


@pytest.mark.parametrize(("policy_min", "window_min", "expected"), [
    pytest.param(1, 4, ["Scheduled"] * 5 + ["ScaleDownStabilized"] * 2 + ["DesiredWithinRange"] * 2,
                 id="a-window-says-it-holds-its-min"),
    pytest.param(2, None, ["TooFewReplicas"] * 9, id="the-policy-min-says-it-holds"),
])
def test_a_min_that_holds_the_count_is_named_as_its_reason(
        policy_min: int, window_min: int | None, expected: list[str]) -> None:
    """The stabilization windows remember the min in force, but a hold the min makes anyway
    is the min's: `ScaleDownStabilized` only once the window's min no longer holds."""
    schedule = [] if window_min is None else [
        {"name": "launch", "min_replicas": window_min, "start": "2026-01-01T00:05",
         "end": "2026-01-01T00:10"}]
    policy = build_policy(
        min_replicas=policy_min, max_replicas=10,
        behavior={"scale_down": {"stabilization": "3m"}},
        metrics=[{"name": "rps", "query": "q", "target": 10}], schedule=schedule,
    )
    settings = BacktestSettings(capacity=10, slo_utilisation=1.0, startup=timedelta(0),
                                warmup=MINUTE)

    run = replay(policy, "p.yaml", Trace(START, MINUTE, [5.0] * 20, "flat"), settings)

    reasons = {t: r for t, r in zip(run.times, run.reasons_by_step, strict=True)}
    assert [reasons[START + m * MINUTE] for m in range(5, 14)] == expected
