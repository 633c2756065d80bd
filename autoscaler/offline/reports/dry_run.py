"""The dry-run report: the decision log of `autoscaler dry-run` (JSON lines, as the agent
writes them) turned into a report per service: its metrics, the current and desired replicas
over time, the changes it would have made, and why."""

from __future__ import annotations

import gzip
import io
import json
import math
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from autoscaler.offline.reports.charts import Line, line_chart
from autoscaler.offline.reports.document import Chart, Document, Section, Table
from autoscaler.offline.traces import plural, shown_lines


class LogError(ValueError):
    """A log that holds no decision; the message says why."""


MISSING = "(missing)"
"""What the report shows for a field a decision line leaves out."""

EXPECTED_FIELDS = ("reason", "current_replicas", "recommended_replicas", "desired_replicas",
                   "message")
"""Fields every decision the agent logs has (null or not); one left out, or not of its kind
(a reason that is not text, a count that is not a number), is shown as `MISSING` and
counted."""
COUNTS = ("current_replicas", "recommended_replicas", "desired_replicas")
LARGEST_COUNT = 2**53
"""The largest count read; a larger one is taken for missing."""
FIRST_YEAR, LAST_YEAR = 1970, 2999
"""The years a decision's timestamp is read in: one outside is not the agent's (and would
not fit a chart's date axis)."""


@dataclass
class LogReading:
    """What reading a log met besides decisions, by line number (from 1)."""

    other_events: Counter[str] = field(default_factory=Counter)
    """Lines of other events (agent_started, tick_summary, ...), by event."""
    unreadable: list[int] = field(default_factory=list)
    """Lines that are not a JSON event: skipped."""
    malformed: list[int] = field(default_factory=list)
    """scaling_decision lines without a readable timestamp or service name: skipped."""
    missing: dict[str, list[int]] = field(default_factory=dict)
    """Field -> the decision lines that leave it out (read, the field shown as MISSING)."""
    alerts: dict[str, Counter[str]] = field(default_factory=dict)
    """Service -> its `availability` and `load_imbalance` warnings, by event."""
    duplicates: list[int] = field(default_factory=list)
    """Decisions the log already had, the same line again (a rotated log read twice):
    skipped."""
    conflicting: list[int] = field(default_factory=list)
    """Decisions for a service and time that already had another one (two agents logging
    into one file): skipped, so that a service's series stays one agent's."""
    out_of_order: list[int] = field(default_factory=list)
    """Decisions earlier than the service's one before (a rotated log read in the wrong
    order): read, and the service's decisions sorted by time."""
    cut_short: str | None = None
    """Why the log could not be read to its end (a gzip'd file cut short): the lines before
    are reported."""

    @property
    def skipped(self) -> int:
        return (sum(self.other_events.values()) + len(self.unreadable) + len(self.malformed)
                + len(self.duplicates) + len(self.conflicting))

    def warnings(self) -> list[str]:
        """What the report and the console warn of; empty for a clean log."""
        said = []
        if self.cut_short is not None:
            said.append(f"the log could not be read to its end ({self.cut_short}): only the "
                        "lines before are reported")
        if self.unreadable:
            said.append(f"skipped {plural(len(self.unreadable), 'line')} that "
                        f"{'is' if len(self.unreadable) == 1 else 'are'} not a JSON event "
                        f"({shown_lines(self.unreadable)})")
        if self.malformed:
            said.append(f"skipped {plural(len(self.malformed), 'scaling_decision')} without a "
                        f"timestamp (ISO 8601, years {FIRST_YEAR} to "
                        f"{LAST_YEAR}) or a service name ({shown_lines(self.malformed)})")
        if self.duplicates:
            said.append(f"skipped {plural(len(self.duplicates), 'scaling_decision')} that "
                        f"the log already had, the same line again "
                        f"({shown_lines(self.duplicates)})")
        if self.conflicting:
            said.append(f"skipped {plural(len(self.conflicting), 'scaling_decision')} for a "
                        "service and time that already had another one (several agents "
                        f"logging into one file?) ({shown_lines(self.conflicting)})")
        if self.out_of_order:
            said.append(f"{plural(len(self.out_of_order), 'decision')} earlier than the "
                        "service's one before (a rotated log read in the wrong order?), "
                        f"sorted by time ({shown_lines(self.out_of_order)})")
        if self.missing:
            lines = {line for found in self.missing.values() for line in found}
            fields = ", ".join(f"{name} ({shown_lines(found)})"
                               for name, found in self.missing.items())
            said.append(f"{plural(len(lines), 'decision')} with fields missing, shown as "
                        f"{MISSING}: {fields}")
        return said


@dataclass
class ServiceLog:
    service: str
    times: list[datetime] = field(default_factory=list)
    current: list[int | None] = field(default_factory=list)
    desired: list[int | None] = field(default_factory=list)
    recommended: list[int | None] = field(default_factory=list)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    changes: list[dict[str, Any]] = field(default_factory=list)
    dry_run: set[bool] = field(default_factory=set)
    nodes: list[float | None] = field(default_factory=list)
    """The nodes the running tasks were on, at each decision (None: not recorded)."""
    cv: list[float | None] = field(default_factory=list)
    """How unevenly a `per_task` metric's load spread over the tasks (coefficient of
    variation), at each decision (None: not recorded)."""
    hottest: list[float | None] = field(default_factory=list)
    """The hottest task's share of that load."""
    on_one_node: int = 0
    """Decisions at which every running task sat on one node while others could run some."""
    imbalanced: int = 0
    """Decisions at which the load had stayed uneven for the policy's `balance.for`."""
    fingerprints: dict[datetime, int] = field(default_factory=dict)
    """Each decision's time -> the hash of its line's JSON, to tell a line read twice from
    another agent's decision at the same time."""

    def most(self, values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None


def other_events(reading: LogReading) -> str:
    """`3 lines of other events (agent_started 1, tick_summary 2)`."""
    counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(reading.other_events.items()))
    return f"{plural(sum(reading.other_events.values()), 'line')} of other events ({counts})"


def read_decisions(lines: Iterable[str]) -> tuple[dict[str, ServiceLog], LogReading]:
    """Decisions by service, and what else the lines held. A line may carry a prefix
    before its JSON (as `docker service logs` adds one); blank lines are passed over."""
    services: dict[str, ServiceLog] = {}
    reading = LogReading()
    alerts_read: set[int] = set()  # the hashes of the warnings' lines: each counted once
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        start = line.find("{")
        try:
            event = json.loads(line[start:]) if start >= 0 else None
        except (ValueError, RecursionError):  # not JSON, an integer of over 4,300 digits,
            event = None                      # or nested too deep
        kind = event.get("event") if isinstance(event, dict) else None
        if not isinstance(event, dict) or not isinstance(kind, str):
            reading.unreadable.append(number)
            continue
        if kind != "scaling_decision":
            reading.other_events[kind] += 1
            if kind in ALERTS and event.get("problem") and isinstance(event.get("service"), str) \
                    and (fingerprint := hash(line[start:].strip())) not in alerts_read:
                alerts_read.add(fingerprint)
                reading.alerts.setdefault(event["service"], Counter())[kind] += 1
            continue
        try:
            _add(services, event, hash(line[start:].strip()), number, reading)
        except (KeyError, TypeError, ValueError, AttributeError):
            reading.malformed.append(number)
            continue
        except _Skipped:
            continue
        for name in EXPECTED_FIELDS:
            if not _usable(event, name):
                reading.missing.setdefault(name, []).append(number)
    for log in services.values():
        _in_time_order(log)
    return services, reading


class _Skipped(Exception):
    """A decision the service's log already has one of at its time."""


def _in_time_order(log: ServiceLog) -> None:
    """Sort a service's decisions by time where some are not (a stable sort: decisions
    already in order stay as they are)."""
    if all(a <= b for a, b in zip(log.times, log.times[1:], strict=False)):
        return
    order = sorted(range(len(log.times)), key=log.times.__getitem__)
    series: list[list[Any]] = [log.times, log.current, log.desired, log.recommended,
                               log.nodes, log.cv, log.hottest, *log.metrics.values()]
    for values in series:
        values[:] = [values[i] for i in order]
    log.changes.sort(key=lambda event: _time(event["timestamp"]))


ALERTS = ("availability", "load_imbalance")
"""The warnings about one service that the agent logs beside its decisions."""


def _usable(event: dict[str, Any], name: str) -> bool:
    """The decision has the field, of its kind (a count may be null: none was made)."""
    if name not in event:
        return False
    value = event[name]
    if name == "reason":
        return isinstance(value, str)
    if name in COUNTS:
        return value is None or _count(value) is not None
    return True


def _number(value: object) -> float | None:
    """A finite number (JSON's NaN and Infinity, which Python reads and writes, are none,
    and so is an integer too large for a float)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _count(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None and 0 <= number <= LARGEST_COUNT else None


def _mapping(value: object) -> dict[Any, Any]:
    """A field that should hold a mapping; anything else is read as an empty one."""
    return value if isinstance(value, dict) else {}


def _time(value: object) -> datetime:
    """A decision's timestamp: ISO 8601 (UTC without an offset), within FIRST_YEAR to
    LAST_YEAR."""
    if not isinstance(value, str):
        raise ValueError("no timestamp")
    time = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    if not FIRST_YEAR <= time.year <= LAST_YEAR:
        raise ValueError(f"timestamp out of range: {value}")
    return time


def _add(services: dict[str, ServiceLog], event: dict[str, Any], fingerprint: int,
         number: int, reading: LogReading) -> None:
    """One decision, line `number` of the log, whose JSON hashes to `fingerprint`; an event
    that does not have a decision's shape raises before anything is added, so the series
    stay aligned, and so does one at a time its service already has a decision for
    (`_Skipped`, counted in `reading`)."""
    time = _time(event["timestamp"])
    service = event["service"]
    if not isinstance(service, str) or not service:
        raise ValueError("no service name")
    known = services.get(service)
    if known is not None and time in known.fingerprints:
        same = known.fingerprints[time] == fingerprint
        (reading.duplicates if same else reading.conflicting).append(number)
        raise _Skipped
    if known is not None and known.times and time < known.times[-1]:
        reading.out_of_order.append(number)
    readings = {str(k): _number(v) for k, v in _mapping(event.get("metrics")).items()}
    for name, recorded in _mapping(event.get("forecast")).items():
        forecast = _mapping(recorded)
        readings[f"{name} forecast with margin"] = _number(forecast.get("with_margin"))
        if "worst_case" in forecast:
            readings[f"{name} forecast worst case"] = _number(forecast["worst_case"])
    current, desired, recommended = (
        _count(event.get(key))
        for key in ("current_replicas", "desired_replicas", "recommended_replicas")
    )
    placement = _mapping(event.get("placement"))
    balance = _mapping(event.get("balance"))
    log = services.setdefault(service, ServiceLog(service))
    index = len(log.times)
    log.nodes.append(_number(placement.get("nodes")))
    log.cv.append(_number(balance.get("cv")))
    log.hottest.append(_number(balance.get("hottest_share")))
    log.on_one_node += bool(placement.get("on_one_node"))
    log.imbalanced += bool(balance.get("imbalanced"))
    log.times.append(time)
    log.fingerprints[time] = fingerprint
    log.current.append(current)
    log.desired.append(desired)
    log.recommended.append(recommended)
    for name, value in readings.items():
        log.metrics.setdefault(name, [None] * index).append(value)
    for values in log.metrics.values():
        if len(values) < index + 1:
            values.append(None)
    if not _usable(event, "reason"):
        event = {**event, "reason": MISSING}
    log.reasons[event["reason"]] += 1
    log.dry_run.add(bool(event.get("dry_run")))
    if current is not None and desired is not None and current != desired:
        log.changes.append(event)


STDIN = Path("-")
"""The `--log` that reads standard input."""
GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def _log_text(path: Path) -> Iterator[IO[str]]:
    """The log's text, unpacked where it is gzip'd (as a rotated log often is); STDIN reads
    standard input, which stays open. Bytes that are not UTF-8 are replaced."""
    with (open(sys.stdin.fileno(), "rb", closefd=False) if path == STDIN
          else path.open("rb")) as file, (
            gzip.open(file, "rt", encoding="utf-8", errors="replace")
            if file.peek(2)[:2] == GZIP_MAGIC
            else io.TextIOWrapper(file, encoding="utf-8", errors="replace")) as text:
        yield text


PROGRESS_LINES = 100_000
"""How many lines a progress report stands for: a million-line log takes most of a minute."""


class _Lines:
    """The lines of a log, one at a time (a log of millions of lines is never held whole),
    as far as it can be read; `error` says what stopped it short. `progress` is told the
    lines read every PROGRESS_LINES."""

    def __init__(self, text: IO[str], progress: Callable[[int], None] | None) -> None:
        self._text = text
        self._progress = progress
        self.error: str | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            for number, line in enumerate(self._text, start=1):
                if self._progress is not None and number % PROGRESS_LINES == 0:
                    self._progress(number)
                yield line
        except (OSError, EOFError, zlib.error) as error:
            self.error = str(error) or type(error).__name__


def read_log(path: Path, progress: Callable[[int], None] | None = None
             ) -> tuple[dict[str, ServiceLog], LogReading]:
    """The decisions of the log at `path` (STDIN: standard input; gzip'd or not)."""
    try:
        with _log_text(path) as text:
            lines = _Lines(text, progress)
            services, reading = read_decisions(lines)
    except OSError as error:
        raise LogError(f"{path}: cannot read the log ({error.strerror or error})") from error
    reading.cut_short = lines.error
    if not services:
        problems = "; ".join(reading.warnings())
        raise LogError(f"{path}: no scaling_decision line in {reading.skipped} lines"
                       f"{f' ({problems})' if problems else ''}; give the JSON output of "
                       "`autoscaler dry-run` (or `docker service logs --raw`)")
    return services, reading


def summary(services: dict[str, ServiceLog], source: str, reading: LogReading
            ) -> dict[str, Any]:
    return {
        "log": source,
        "lines_skipped": reading.skipped,
        "other_events": dict(sorted(reading.other_events.items())),
        "lines_not_json_events": reading.unreadable,
        "decisions_unreadable": reading.malformed,
        "decisions_missing_fields": reading.missing,
        "decisions_duplicated": reading.duplicates,
        "decisions_conflicting": reading.conflicting,
        "decisions_out_of_order": reading.out_of_order,
        "warnings": reading.warnings(),
        "services": [
            {
                "service": log.service,
                "decisions": len(log.times),
                "from": log.times[0].isoformat(),
                "to": log.times[-1].isoformat(),
                "dry_run": sorted(log.dry_run),
                "changes": len(log.changes),
                "decisions_by_reason": dict(sorted(log.reasons.items())),
                "replicas_first": log.current[0],
                "replicas_last_desired": log.desired[-1],
                "nodes_last": log.nodes[-1],
                "on_one_node_decisions": log.on_one_node,
                "cv_max": log.most(log.cv),
                "hottest_share_max": log.most(log.hottest),
                "imbalanced_decisions": log.imbalanced,
                "warnings": dict(sorted(reading.alerts.get(log.service, Counter()).items())),
            }
            for log in services.values()
        ],
    }


def spread(log: ServiceLog, alerts: Counter[str]) -> str:
    """What the decisions say of where the tasks ran and how evenly the load spread."""
    said = []
    if log.nodes[-1] is not None:
        said.append(f"tasks on {log.nodes[-1]:g} node(s) at the last decision")
    if log.on_one_node or alerts["availability"]:
        said.append(f"**all on one node while others could run some** at "
                    f"{plural(log.on_one_node, 'decision')} "
                    f"({plural(alerts['availability'], 'availability warning')})")
    cv, hottest = log.most(log.cv), log.most(log.hottest)
    if cv is not None and hottest is not None:
        said.append(f"load over the tasks: coefficient of variation up to {cv:.2f}, the "
                    f"hottest task's share up to {hottest:.0%}")
    if log.imbalanced or alerts["load_imbalance"]:
        said.append(f"**uneven for its `balance.for`** at {plural(log.imbalanced, 'decision')} "
                    f"({plural(alerts['load_imbalance'], 'load_imbalance warning')}): more "
                    "replicas do not help a load that stays on a few tasks")
    return "; ".join(said)


def _service_section(index: int, log: ServiceLog, alerts: Counter[str]) -> Section:
    mode = "dry-run" if log.dry_run == {True} else "run" if log.dry_run == {False} else "mixed"
    section = Section(f"{log.service}")
    section.blocks.append(
        f"{plural(len(log.times), 'decision')} ({mode}) from {log.times[0]:%Y-%m-%d %H:%M:%S} "
        f"to {log.times[-1]:%Y-%m-%d %H:%M:%S}; **{plural(len(log.changes), 'change')}** it "
        f"{'would have made' if mode == 'dry-run' else 'made or wanted'}. Reasons: "
        + ", ".join(f"{k} {v}" for k, v in sorted(log.reasons.items())) + "."
    )
    if said := spread(log, alerts):
        section.blocks.append(said[0].upper() + said[1:] + ".")
    if any(v is not None for v in log.cv):
        section.blocks.append(Chart(
            f"service{index}-balance",
            line_chart(f"{log.service}: load over the tasks", log.times,
                       [Line("coefficient of variation", log.cv),
                        Line("hottest task's share", log.hottest)], left_label="ratio"),
            f"{log.service}: how evenly the load spread over the tasks"))
    if log.metrics:
        section.blocks.append(Chart(
            f"service{index}-metrics",
            line_chart(f"{log.service}: metrics", log.times,
                       [Line(name, values) for name, values in log.metrics.items()],
                       left_label="value"),
            f"{log.service}: the metrics each tick read (gaps: missing)"))
    section.blocks.append(Chart(
        f"service{index}-replicas",
        line_chart(f"{log.service}: replicas", log.times,
                   [Line("current", _numbers(log.current)),
                    Line("recommended (before limits)", _numbers(log.recommended)),
                    Line("desired (after limits)", _numbers(log.desired))],
                   left_label="replicas"),
        f"{log.service}: current, recommended and desired replicas"))
    if log.changes:
        section.blocks.append(Table(
            ["time", "from", "to", "reason", "why"],
            [[str(c["timestamp"]), *(c.get(key, MISSING) for key in (
                "current_replicas", "desired_replicas", "reason", "message"))]
             for c in log.changes],
        ))
    else:
        section.blocks.append("No change: every decision kept the count.")
    return section


def _shown(value: float | None, spec: str = "g") -> str:
    return "-" if value is None else format(value, spec)


def _numbers(values: list[int | None]) -> list[float | None]:
    return [None if v is None else float(v) for v in values]


def document(services: dict[str, ServiceLog], source: str, reading: LogReading) -> Document:
    total = sum(len(log.times) for log in services.values())
    intro = [f"The decisions in `{source}`: {total} for {len(services)} service(s)."]
    intro.extend(f"**Warning:** {warning}." for warning in reading.warnings())
    if reading.other_events:
        intro.append(f"Passed over: {other_events(reading)}.")
    overview = Table(
        ["service", "decisions", "changes", "first count", "last desired", "most frequent reason",
         "nodes", "on one node", "cv (most)", "hottest share (most)"],
        [[log.service, len(log.times), len(log.changes), log.current[0], log.desired[-1],
          log.reasons.most_common(1)[0][0], _shown(log.nodes[-1]), log.on_one_node,
          _shown(log.most(log.cv), ".2f"), _shown(log.most(log.hottest), ".0%")]
         for log in services.values()],
    )
    sections = [Section("Services", [overview])]
    sections.extend(_service_section(i, log, reading.alerts.get(log.service, Counter()))
                    for i, log in enumerate(services.values(), 1))
    return Document("Decision report", intro, sections)
