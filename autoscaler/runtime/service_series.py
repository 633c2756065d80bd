"""The agent's per-service series, kept as plain numbers and written in Prometheus's text
format (version 0.0.4) here rather than through the client library's registry.

The registry keeps an object and a lock per labelled series and formats about 100,000
samples a second: at 10,000 services and a dozen series each, setting them cost about 0.5 s
of CPU a tick and each scrape about 1.2 s. Here a tick's update is a dict write a value and
a scrape joins pre-escaped lines; the agent-wide metrics stay in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
                 "least even per-task metric).")
HOTTEST_SHARE = Family("autoscaler_load_hottest_share",
                       "The hottest task's share of the service's load.")
IMBALANCED = Family("autoscaler_load_imbalanced",
                    "1 when the load has been uneven over the tasks for the policy's "
                    "balance.for.")
MIN_REPLICAS = Family("autoscaler_min_replicas", "The policy's min_replicas.")
MAX_REPLICAS = Family("autoscaler_max_replicas", "The policy's max_replicas.")
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
    for the services still managed. The agent updates it under its tick lock; a scrape
    (`render`, from another thread) reads each service's series as they are at that time."""

    def __init__(self) -> None:
        self._gauges: dict[Family, dict[str, float]] = {
            f: {} for f in FAMILIES if f.label is None}
        """Per family labelled by service alone, each service's value."""
        self._labelled: dict[Family, dict[str, dict[str, float]]] = {
            f: {} for f in FAMILIES if f.label is not None}
        """Per family with a second label, per service, the value for each label value."""
        self._escaped: dict[str, str] = {}
        """Each managed service's name, escaped as a label value."""

    def observe(self, decision: Decision) -> None:
        """Take this decision as its service's latest: count it, and set the gauges it
        has a value for (a gauge it has none for keeps its last value)."""
        service, gauges = decision.service, self._gauges
        if service not in self._escaped:
            self._escaped[service] = _escape(service)
        self._count(DECISIONS, service, str(decision.reason))
        if decision.min_replicas is not None:
            gauges[MIN_REPLICAS][service] = decision.min_replicas
        if decision.max_replicas is not None:
            gauges[MAX_REPLICAS][service] = decision.max_replicas
        self._labelled[METRIC_TARGET][service] = dict(decision.targets)
        self._labelled[METRIC_VALUE][service] = {
            metric: value for metric, value in decision.metrics.items() if value is not None}
        desired, current = decision.desired_replicas, decision.current_replicas
        if desired is None or current is None:
            return
        gauges[DESIRED][service] = desired
        gauges[CURRENT][service] = current
        if decision.balance is not None:
            gauges[LOAD_CV][service] = decision.balance.cv
            gauges[HOTTEST_SHARE][service] = decision.balance.hottest_share
        gauges[IMBALANCED][service] = int(decision.imbalanced)
        if decision.placement is not None:
            placement = decision.placement
            gauges[RUNNING][service] = placement.running
            gauges[NODES][service] = placement.nodes
            gauges[UNSCHEDULABLE][service] = placement.unplaceable
            gauges[ON_ONE_NODE][service] = int(placement.on_one_node)
        if desired != current and (decision.applied or decision.dry_run):
            self._count(SCALE_ACTIONS, service, "up" if desired > current else "down")

    def keep_only(self, services: Iterable[str]) -> None:
        """Forget every series of the services not in `services`, so that a dashboard lists
        them no more and no alert keeps firing on their last value."""
        gone = self._escaped.keys() - set(services)
        for service in gone:
            del self._escaped[service]
            for gauge in self._gauges.values():
                gauge.pop(service, None)
            for labelled in self._labelled.values():
                labelled.pop(service, None)

    def render(self) -> bytes:
        """Every family in the text format, each with its HELP and TYPE lines even when it
        has no series."""
        return "".join(self._lines()).encode()

    def _lines(self) -> Iterator[str]:
        for family in FAMILIES:
            yield family.header()
            name = family.name
            other = family.label
            if other is None:
                for service, value in list(self._gauges[family].items()):
                    yield (f'{name}{{service="{self._label(service)}"}} '
                           f"{number(value)}\n")
                continue
            first = other < "service"
            for service, series in list(self._labelled[family].items()):
                own = f'service="{self._label(service)}"'
                for label, value in list(series.items()):
                    pair = f'{other}="{_escape(label)}"'
                    pairs = f"{pair},{own}" if first else f"{own},{pair}"
                    yield f"{name}{{{pairs}}} {number(value)}\n"

    def _label(self, service: str) -> str:
        return self._escaped.get(service) or _escape(service)

    def _count(self, family: Family, service: str, label: str) -> None:
        series = self._labelled[family].setdefault(service, {})
        series[label] = series.get(label, 0) + 1
