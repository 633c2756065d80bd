"""The agent's per-service series, kept as plain numbers and written in Prometheus's text
format (version 0.0.4) here rather than through the client library's registry.

The registry keeps an object and a lock per labelled series and formats about 100,000
samples a second: at 10,000 services and a dozen series each, setting them cost about 0.5 s
of CPU a tick and each scrape about 1.2 s. Here a tick's update is a dict write a value and
a scrape joins pre-escaped lines; the agent-wide metrics stay in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client.utils import floatToGoString

from autoscaler.core.model import Decision

number: Callable[[float], str] = floatToGoString
"""A value as the client library writes it (3.0, +Inf, NaN, 1.5e+07)."""

@dataclass(frozen=True, eq=False)
class Family:
    name: str
    help: str
    kind: Literal["gauge", "counter"] = "gauge"
    label: str | None = None
    """The series' label besides `service`, if any."""

    def header(self) -> str:
        text = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {text}\n# TYPE {self.name} {self.kind}\n"


DESIRED = Family("autoscaler_desired_replicas", "Replicas the last decision wanted.")
CURRENT = Family("autoscaler_current_replicas",
                 "The count the last decision started from (the spec's; dry-run: its own).")
RUNNING = Family("autoscaler_running_replicas", "Tasks running, by service.")
NODES = Family("autoscaler_service_nodes", "Nodes the service's running tasks are on.")
UNSCHEDULABLE = Family("autoscaler_unschedulable_tasks",
                       "Tasks waiting because no node can take them, by service.")
ON_ONE_NODE = Family("autoscaler_availability_on_one_node",
                     "1 when every running replica is on one node while other nodes could "
                     "run it.")
LOAD_CV = Family("autoscaler_load_cv", "Coefficient of variation of the tasks' loads (the "
                 "least even per-task metric; none measured: no sample).")
HOTTEST_SHARE = Family("autoscaler_load_hottest_share",
                       "The hottest task's share of the service's load (none measured: no "
                       "sample).")
IMBALANCED = Family("autoscaler_load_imbalanced",
                    "1 when the load has been uneven over the tasks for the policy's "
                    "balance.for.")
MIN_REPLICAS = Family("autoscaler_min_replicas", "The min_replicas in force: the policy's, "
                      "or a schedule window's while it lasts.")
MAX_REPLICAS = Family("autoscaler_max_replicas", "The max_replicas in force: the policy's, "
                      "or a schedule window's while it lasts.")
METRIC_VALUE = Family("autoscaler_metric_value", "The metric's value the last decision read "
                      "(missing: no sample).", label="metric")
METRIC_TARGET = Family("autoscaler_metric_target",
                       "What one replica should carry of the metric.", label="metric")
DECISIONS = Family("autoscaler_decisions_total", "Decisions recorded, by service and reason.",
                   "counter", "reason")
SCALE_ACTIONS = Family("autoscaler_scale_actions_total", "Replica changes applied (or, in "
                       "dry-run, that would have been), by direction.", "counter",
                       "direction")
FAMILIES = (DECISIONS, SCALE_ACTIONS, DESIRED, CURRENT, RUNNING, NODES, UNSCHEDULABLE,
            ON_ONE_NODE, LOAD_CV, HOTTEST_SHARE, IMBALANCED, MIN_REPLICAS, MAX_REPLICAS,
            METRIC_VALUE, METRIC_TARGET)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class ServiceSeries:
    """The last decision's values per service, and counters of decisions and scale actions,
    for the services still managed. Each service's lines of a family are written when
    their values change, so that a scrape only joins them. The agent updates it under its
    tick lock; a scrape (`render`, from another thread) reads each service's lines as they
    are at that time."""

    def __init__(self) -> None:
        self._lines: dict[Family, dict[str, tuple[object, str]]] = {f: {} for f in FAMILIES}
        """Per family, per service: the values its lines were written from, and the lines."""
        self._counts: dict[Family, dict[str, dict[str, float]]] = {
            DECISIONS: {}, SCALE_ACTIONS: {}}
        self._escaped: dict[str, str] = {}
        """Each managed service's name, escaped as a label value."""

    def observe(self, decision: Decision) -> None:
        """Take this decision as its service's latest: count it, and set the gauges it
        has a value for (a gauge it has none for keeps its last value). The load's spread
        is the decision's own: one that measured none (fewer than two tasks, no load, the
        metric missing, a hold) has no sample of it, as `imbalanced` is 0, so that a
        dashboard shows no spread of a service gone down to one task."""
        service = decision.service
        if service not in self._escaped:
            self._escaped[service] = _escape(service)
        self._count(DECISIONS, service, str(decision.reason))
        if decision.min_replicas is not None:
            self._set(MIN_REPLICAS, service, decision.min_replicas)
        if decision.max_replicas is not None:
            self._set(MAX_REPLICAS, service, decision.max_replicas)
        self._set_labelled(METRIC_TARGET, service, decision.targets)
        self._set_labelled(METRIC_VALUE, service, {
            metric: value for metric, value in decision.metrics.items() if value is not None})
        desired, current = decision.desired_replicas, decision.current_replicas
        if desired is None or current is None:
            return
        self._set(DESIRED, service, desired)
        self._set(CURRENT, service, current)
        if decision.balance is not None:
            self._set(LOAD_CV, service, decision.balance.cv)
            self._set(HOTTEST_SHARE, service, decision.balance.hottest_share)
        else:
            self._lines[LOAD_CV].pop(service, None)
            self._lines[HOTTEST_SHARE].pop(service, None)
        self._set(IMBALANCED, service, int(decision.imbalanced))
        if decision.placement is not None:
            placement = decision.placement
            self._set(RUNNING, service, placement.running)
            self._set(NODES, service, placement.nodes)
            self._set(UNSCHEDULABLE, service, placement.unplaceable)
            self._set(ON_ONE_NODE, service, int(placement.on_one_node))
        if desired != current and (decision.applied or decision.dry_run):
            self._count(SCALE_ACTIONS, service, "up" if desired > current else "down")

    def keep_only(self, services: Iterable[str]) -> None:
        """Forget every series of the services not in `services`, so that a dashboard lists
        them no more and no alert keeps firing on their last value."""
        gone = self._escaped.keys() - set(services)
        for service in gone:
            del self._escaped[service]
            for lines in self._lines.values():
                lines.pop(service, None)
            for counts in self._counts.values():
                counts.pop(service, None)

    def render(self) -> bytes:
        """Every family in the text format, each with its HELP and TYPE lines even when it
        has no series."""
        parts: list[str] = []
        for family in FAMILIES:
            parts.append(family.header())
            parts.extend(text for _, text in self._lines[family].copy().values())
        return "".join(parts).encode()

    def _set(self, family: Family, service: str, value: float) -> None:
        known = self._lines[family].get(service)
        if known is None or known[0] != value:
            self._lines[family][service] = (
                value, f'{family.name}{{service="{self._escaped[service]}"}} {number(value)}\n')

    def _set_labelled(self, family: Family, service: str, values: Mapping[str, float]) -> None:
        """Set the service's series of a family with a second label to exactly these."""
        items = tuple(values.items())
        known = self._lines[family].get(service)
        if known is not None and known[0] == items:
            return
        own = f'service="{self._escaped[service]}"'
        other, lines = family.label, []
        for label, value in items:
            pair = f'{other}="{_escape(label)}"'
            pairs = f"{pair},{own}" if str(other) < "service" else f"{own},{pair}"
            lines.append(f"{family.name}{{{pairs}}} {number(value)}\n")
        self._lines[family][service] = (items, "".join(lines))

    def _count(self, family: Family, service: str, label: str) -> None:
        counts = self._counts[family].setdefault(service, {})
        counts[label] = counts.get(label, 0) + 1
        self._set_labelled(family, service, counts)
