"""The dry-run report: the decision log of `autoscaler dry-run` (JSON lines, as the agent
writes them) turned into a report per service: its metrics, the current and desired replicas
over time, the changes it would have made, and why."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autoscaler.offline.reports.charts import Line, line_chart
from autoscaler.offline.reports.document import Chart, Document, Section, Table


class LogError(ValueError):
    """A log that holds no decision; the message says why."""


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


def read_decisions(lines: Iterable[str]) -> tuple[dict[str, ServiceLog], int]:
    """Decisions by service, and how many lines were not decisions. A line may carry a
    prefix before its JSON (as `docker service logs` adds one)."""
    services: dict[str, ServiceLog] = {}
    skipped = 0
    for line in lines:
        start = line.find("{")
        try:
            event = json.loads(line[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or event.get("event") != "scaling_decision":
            skipped += 1
            continue
        try:
            _add(services, event)
        except (KeyError, TypeError, ValueError, AttributeError):
            skipped += 1
    return services, skipped


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _add(services: dict[str, ServiceLog], event: dict[str, Any]) -> None:
    """One decision; an event that does not have a decision's shape raises before anything
    is added, so the series stay aligned."""
    time = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
    service = str(event["service"])
    readings = {str(k): _number(v) for k, v in dict(event.get("metrics") or {}).items()}
    for name, recorded in dict(event.get("forecast") or {}).items():
        forecast = dict(recorded)
        readings[f"{name} forecast with margin"] = _number(forecast.get("with_margin"))
        if "worst_case" in forecast:
            readings[f"{name} forecast worst case"] = _number(forecast["worst_case"])
    current, desired, recommended = (
        int(number) if (number := _number(event.get(key))) is not None else None
        for key in ("current_replicas", "desired_replicas", "recommended_replicas")
    )
    log = services.setdefault(service, ServiceLog(service))
    index = len(log.times)
    log.times.append(time)
    log.current.append(current)
    log.desired.append(desired)
    log.recommended.append(recommended)
    for name, value in readings.items():
        log.metrics.setdefault(name, [None] * index).append(value)
    for values in log.metrics.values():
        if len(values) < index + 1:
            values.append(None)
    log.reasons[str(event.get("reason"))] += 1
    log.dry_run.add(bool(event.get("dry_run")))
    if current is not None and desired is not None and current != desired:
        log.changes.append(event)


def read_log(path: Path) -> tuple[dict[str, ServiceLog], int]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise LogError(f"{path}: cannot read the log ({error.strerror})") from error
    services, skipped = read_decisions(text.splitlines())
    if not services:
        raise LogError(f"{path}: no scaling_decision line in {skipped} lines; give the JSON "
                       "output of `autoscaler dry-run` (or `docker service logs --raw`)")
    return services, skipped


def summary(services: dict[str, ServiceLog], source: str, skipped: int) -> dict[str, Any]:
    return {
        "log": source,
        "lines_skipped": skipped,
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
            }
            for log in services.values()
        ],
    }


def _service_section(index: int, log: ServiceLog) -> Section:
    mode = "dry-run" if log.dry_run == {True} else "run" if log.dry_run == {False} else "mixed"
    section = Section(f"{log.service}")
    section.blocks.append(
        f"{len(log.times)} decisions ({mode}) from {log.times[0]:%Y-%m-%d %H:%M:%S} to "
        f"{log.times[-1]:%Y-%m-%d %H:%M:%S}; **{len(log.changes)} changes** it "
        f"{'would have made' if mode == 'dry-run' else 'made or wanted'}. Reasons: "
        + ", ".join(f"{k} {v}" for k, v in sorted(log.reasons.items())) + "."
    )
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
            [[str(c["timestamp"]), c.get("current_replicas"), c.get("desired_replicas"),
              c.get("reason"), c.get("message", "")] for c in log.changes],
        ))
    else:
        section.blocks.append("No change: every decision kept the count.")
    return section


def _numbers(values: list[int | None]) -> list[float | None]:
    return [None if v is None else float(v) for v in values]


def document(services: dict[str, ServiceLog], source: str) -> Document:
    total = sum(len(log.times) for log in services.values())
    intro = [f"The decisions in `{source}`: {total} for {len(services)} service(s)."]
    overview = Table(
        ["service", "decisions", "changes", "first count", "last desired", "most frequent reason"],
        [[log.service, len(log.times), len(log.changes), log.current[0], log.desired[-1],
          log.reasons.most_common(1)[0][0]] for log in services.values()],
    )
    sections = [Section("Services", [overview])]
    sections.extend(_service_section(i, log) for i, log in enumerate(services.values(), 1))
    return Document("Decision report", intro, sections)
