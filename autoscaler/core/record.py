"""The agent's record of its own changes, kept in the service's `Spec.Labels`.

The record is written in the same update as the scale (never in the task template, so no
task restarts), so it survives a crash, a restart and a hand-over to another agent: the
rate limits and the cooldown read it as they read the agent's memory. It also tells the
agent's changes from anyone else's: a spec count that is not the last count recorded was
set by someone else. Pure: text in, changes out; a label that does not parse is no record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

RECORD_LABEL = "autoscaler.changes"
MAX_ENTRIES = 1024
"""The most changes a record keeps: the agent changes a count at most once a tick, so this
holds every change of a window up to 1024 ticks (4 h 16 min at the default 15 s), and the
label stays under 34 kB (33 characters an entry at most)."""
_ENTRY = re.compile(r"(\d{1,12}):(\d{1,9})>(\d{1,9})")


@dataclass(frozen=True)
class RecordedChange:
    """One change the agent applied: when, and the spec count before and after."""

    at: datetime
    before: int
    after: int

    @property
    def change(self) -> int:
        return self.after - self.before


def read_record(labels: Mapping[str, str]) -> tuple[RecordedChange, ...]:
    """The changes recorded in the labels in the order they were made (the last one last,
    whatever the clocks of the agents that wrote them said); none when the label is absent
    or any part of it does not parse (a hand-edited or hostile label is no record)."""
    text = labels.get(RECORD_LABEL)
    if not text or len(text) > 64 * MAX_ENTRIES:
        return ()
    changes = []
    for part in text.split(","):
        match = _ENTRY.fullmatch(part)
        if match is None:
            return ()
        stamp, before, after = (int(group) for group in match.groups())
        try:
            at = datetime.fromtimestamp(stamp, UTC)
        except (OverflowError, OSError, ValueError):
            return ()
        changes.append(RecordedChange(at, before, after))
    return tuple(changes)


def with_change(record: tuple[RecordedChange, ...], change: RecordedChange, *,
                keep: timedelta) -> str:
    """The record's text after `change`: the changes within `keep` before it, at most
    MAX_ENTRIES, `change` last. One stamped later (by an agent whose clock ran ahead, or
    by hand) is written as made at `change`'s time, as it was made before it: kept at its
    own stamp, it would stay until then, counted as just made by every agent that starts."""
    kept = [c if c.at <= change.at else replace(c, at=change.at)
            for c in record if c.at > change.at - keep]
    kept = [*kept[-(MAX_ENTRIES - 1):], change]
    return ",".join(f"{int(c.at.timestamp())}:{c.before}>{c.after}" for c in kept)


def last_recorded(record: tuple[RecordedChange, ...]) -> RecordedChange | None:
    return record[-1] if record else None
