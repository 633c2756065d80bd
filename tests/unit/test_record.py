"""The agent's record of its changes in the service's labels, and what operators say by labels
and by hand: read before anything is decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.memory import ServiceMemory, as_of, with_recorded
from autoscaler.core.model import Reason
from autoscaler.core.operator import operator_hold
from autoscaler.core.record import (
    MAX_ENTRIES,
    RECORD_LABEL,
    RecordedChange,
    read_record,
    with_change,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"{STAMP}:8>7", ((NOW, 8, 7),), id="one"),
        pytest.param(f"{STAMP}:8>7,{STAMP - 60}:7>6", ((NOW, 8, 7),
                                                       (NOW - timedelta(minutes=1), 7, 6)),
                     id="in-the-order-written-whatever-the-clocks"),
        pytest.param("", (), id="empty"),
        pytest.param("soon:1>2", (), id="not-a-time"),
        pytest.param(f"{STAMP}:8>7,garbage", (), id="one-bad-part-is-no-record"),
        pytest.param(f"{STAMP}:-1>2", (), id="negative"),
        pytest.param(f"{STAMP}:1>2 ", (), id="trailing-space"),
        pytest.param(f"{'9' * 12}:1>2", (), id="time-out-of-range"),
        pytest.param(",".join([f"{STAMP}:1>2"] * 5000), (), id="too-long"),
        pytest.param(f"{STAMP}:²>3", (), id="unicode-digit"),
    ],
)
def test_a_record_reads_or_is_no_record(text: str, expected: tuple[tuple[datetime, int, int], ...]
                                        ) -> None:
    record = read_record({RECORD_LABEL: text})
    assert [(c.at, c.before, c.after) for c in record] == list(expected)


def test_a_new_change_keeps_the_window_and_the_last_change_and_stays_small() -> None:
    old = RecordedChange(NOW - timedelta(hours=2), 3, 4)
    recent = RecordedChange(NOW - timedelta(seconds=30), 4, 5)
    text = with_change((old, recent), RecordedChange(NOW, 5, 6), keep=timedelta(minutes=5))
    assert [(c.before, c.after) for c in read_record({RECORD_LABEL: text})] == [(4, 5), (5, 6)]

    ticks = tuple(RecordedChange(NOW - i * timedelta(seconds=15), 1, 2) for i in range(240, 0, -1))
    text = with_change(ticks, RecordedChange(NOW, 2, 3), keep=timedelta(hours=1))
    assert len(read_record({RECORD_LABEL: text})) == 240  # a change every tick of an hour

    many = tuple(RecordedChange(NOW - timedelta(seconds=i), 1, 2) for i in range(2000, 0, -1))
    text = with_change(many, RecordedChange(NOW, 2, 3), keep=timedelta(hours=1))
    assert len(read_record({RECORD_LABEL: text})) == MAX_ENTRIES
    assert len(text) < 25_000


def test_a_change_stamped_ahead_of_now_counts_as_made_now_and_stays_recorded() -> None:
    ahead = RecordedChange(NOW + timedelta(seconds=40), 8, 7)
    memory = with_recorded(ServiceMemory.first_seen(replicas=7, now=NOW), (ahead,), now=NOW,
                           keep=timedelta(minutes=1))
    assert memory.changes == ((NOW, -1),)
    text = with_change((ahead,), RecordedChange(NOW + timedelta(seconds=15), 7, 6),
                       keep=timedelta(minutes=1))
    assert [(c.before, c.after) for c in read_record({RECORD_LABEL: text})] == [(8, 7), (7, 6)]


def test_the_memory_takes_the_recorded_changes_it_lacks_once() -> None:
    memory = ServiceMemory.first_seen(replicas=7, now=NOW)
    record = (RecordedChange(NOW - timedelta(seconds=7), 8, 7),
              RecordedChange(NOW - timedelta(hours=1), 9, 8))
    merged = with_recorded(memory, record, now=NOW, keep=timedelta(minutes=1))
    assert merged.changes == ((NOW - timedelta(seconds=7), -1),)
    assert merged.last_change_at == NOW - timedelta(seconds=7)
    assert with_recorded(merged, record, now=NOW, keep=timedelta(minutes=1)) is merged


MINUTES = timedelta(minutes=1)
OURS = (RecordedChange(NOW - 20 * MINUTES, 4, 5),)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param({}, None, id="nothing-to-say"),
        pytest.param({"labels": {"autoscaler.pause": "true"}}, Reason.PAUSED,
                     id="service-paused"),
        pytest.param({"labels": {"autoscaler.pause": " TRUE "}}, Reason.PAUSED,
                     id="pause-case-and-spaces"),
        pytest.param({"labels": {"autoscaler.pause": "false"}}, None, id="pause-false"),
        pytest.param({"labels": {"autoscaler.pause": " False"}}, None, id="pause-false-case"),
        pytest.param({"labels": {"autoscaler.pause": "yes"}}, Reason.PAUSED, id="pause-yes"),
        pytest.param({"labels": {"autoscaler.pause": "1"}}, Reason.PAUSED, id="pause-1"),
        pytest.param({"labels": {"autoscaler.pause": ""}}, Reason.PAUSED, id="pause-no-value"),
        pytest.param({"labels": {"autoscaler.pause": "paused"}}, Reason.PAUSED,
                     id="pause-any-other-word"),
        pytest.param({"labels": {"autoscaler.pause": "no"}}, None, id="pause-no"),
        pytest.param({"labels": {"autoscaler.pause": " OFF"}}, None, id="pause-off"),
        pytest.param({"labels": {"autoscaler.pause": "0"}}, None, id="pause-0"),
        pytest.param({"paused_all": True}, Reason.PAUSED, id="lease-node-paused"),
        pytest.param({"spec": 9, "replicas_changed_at": NOW - 3 * MINUTES},
                     Reason.MANUAL_OVERRIDE, id="someone-else-scaled-lately"),
        pytest.param({"spec": 9, "replicas_changed_at": NOW - 10 * MINUTES}, None,
                     id="override-window-over"),
        pytest.param({"spec": 9, "replicas_changed_at": NOW - 3 * MINUTES,
                      "override": timedelta(0)}, None, id="override-off"),
        pytest.param({"spec": 5, "replicas_changed_at": NOW - 19 * MINUTES}, None,
                     id="the-agents-own-change"),
        pytest.param({"spec": 5, "replicas_changed_at": NOW - MINUTES},
                     Reason.MANUAL_OVERRIDE, id="set-back-by-hand-to-the-agents-count"),
        pytest.param({"spec": 9, "replicas_changed_at": None}, None,
                     id="last-update-left-the-count-alone"),
        pytest.param({"spec": 9, "replicas_changed_at": None, "updated_at": NOW - 3 * MINUTES},
                     Reason.MANUAL_OVERRIDE, id="set-by-hand-then-another-edit-lately"),
        pytest.param({"spec": 9, "replicas_changed_at": None, "updated_at": NOW - 10 * MINUTES},
                     None, id="set-by-hand-then-another-edit-long-ago"),
        pytest.param({"spec": 5, "replicas_changed_at": None, "updated_at": NOW - 3 * MINUTES},
                     None, id="an-edit-after-the-agents-own-change"),
        pytest.param({"spec": 9, "record": (), "replicas_changed_at": None,
                      "updated_at": NOW - 3 * MINUTES}, None, id="an-edit-and-no-record"),
        pytest.param({"spec": 9, "record": (), "replicas_changed_at": NOW}, Reason.MANUAL_OVERRIDE,
                     id="no-record-of-the-change"),
    ],
)
def test_operators_are_heard_before_anything_is_decided(
    keys: dict[str, object], expected: Reason | None,
) -> None:
    arguments: dict[str, object] = {
        "labels": {}, "paused_all": False, "spec": 5, "record": OURS,
        "replicas_changed_at": None, "updated_at": None, "now": NOW, "override": 10 * MINUTES,
    }
    arguments.update(keys)
    hold = operator_hold(**arguments)  # type: ignore[arg-type]
    assert (hold.reason if hold else None) == expected


@pytest.mark.parametrize(("value", "said"), [
    pytest.param("true", "autoscaler.pause=true on the service", id="true"),
    pytest.param("yes", "autoscaler.pause='yes' (not true or false: taken as a pause) on the "
                 "service", id="another-word"),
])
def test_a_pause_says_how_its_label_was_written(value: str, said: str) -> None:
    hold = operator_hold(labels={"autoscaler.pause": value}, paused_all=False, record=OURS,
                         spec=5, replicas_changed_at=None, updated_at=None, now=NOW,
                         override=10 * MINUTES)
    assert hold is not None and hold.message == f"{said}: nothing decided"


def test_as_of_moves_what_is_stamped_after_now_to_now_and_keeps_the_rest() -> None:
    later = NOW + timedelta(hours=1)
    memory = ServiceMemory(seed=(later, 5), recommendations=((NOW - MINUTES, 4), (later, 6)),
                           changes=((NOW - MINUTES, 1), (later, 2)), last_change_at=later,
                           shadow=6, seen_spec=6)

    moved = as_of(memory, NOW)

    assert moved.seed == (NOW, 5)
    assert moved.recommendations == ((NOW - MINUTES, 4), (NOW, 6))
    assert moved.changes == ((NOW - MINUTES, 1), (NOW, 2))
    assert moved.last_change_at == NOW
    assert int(later.timestamp()) in moved.recorded
    assert as_of(moved, NOW) is moved
    record = (RecordedChange(later, 4, 6),)
    assert with_recorded(moved, record, now=NOW + MINUTES, keep=timedelta(hours=2)).changes \
        == moved.changes
