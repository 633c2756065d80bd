"""The agent's own metrics, on a registry of its own, and the health it reports."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from autoscaler.core.model import Decision, Reason
from autoscaler.engine import TickReport

ERROR_SOURCES = ("prometheus", "docker", "policy", "agent")
DEPENDENCIES = ("prometheus", "docker")


class Telemetry:
    def __init__(self, *, interval: timedelta | None = None) -> None:
        self.registry = CollectorRegistry()
        self._valued: dict[str, set[str]] = {}
        """Per service, the metrics with an `autoscaler_metric_value` series."""
        self._targets: dict[str, set[str]] = {}
        self._services: set[str] = set()
        self.ticks = Counter(
            "autoscaler_ticks_total", "Ticks run.", registry=self.registry
        )
        self.tick_duration = Histogram(
            "autoscaler_tick_duration_seconds", "How long a tick took.", registry=self.registry
        )
        self.decisions = Counter(
            "autoscaler_decisions_total", "Decisions recorded, by service and reason.",
            ["service", "reason"], registry=self.registry,
        )
        self.scale_actions = Counter(
            "autoscaler_scale_actions_total",
            "Replica changes applied (or, in dry-run, that would have been), by direction.",
            ["service", "direction"], registry=self.registry,
        )
        self.errors = Counter(
            "autoscaler_errors_total", "Failures by source: prometheus, docker, policy, agent.",
            ["source"], registry=self.registry,
        )
        self.desired_replicas = Gauge(
            "autoscaler_desired_replicas", "Replicas the last decision wanted.",
            ["service"], registry=self.registry,
        )

        self.dependency_up = Gauge(
            "autoscaler_dependency_up",
            "1 when the last tick could use the dependency (prometheus: some query answered; "
            "docker: the services were listed and the lease read), else 0.",
            ["dependency"], registry=self.registry,
        )
        self.current_replicas = Gauge(
            "autoscaler_current_replicas",
            "The count the last decision started from (the spec's; dry-run: its own).",
            ["service"], registry=self.registry,
        )
        self.running_replicas = Gauge(
            "autoscaler_running_replicas", "Tasks running, by service.", ["service"],
            registry=self.registry,
        )
        self.service_nodes = Gauge(
            "autoscaler_service_nodes", "Nodes the service's running tasks are on.",
            ["service"], registry=self.registry,
        )
        self.unschedulable_tasks = Gauge(
            "autoscaler_unschedulable_tasks",
            "Tasks waiting because no node can take them, by service.", ["service"],
            registry=self.registry,
        )
        self.on_one_node = Gauge(
            "autoscaler_availability_on_one_node",
            "1 when every running replica is on one node while other nodes could run it.",
            ["service"], registry=self.registry,
        )
        self.load_cv = Gauge(
            "autoscaler_load_cv",
            "Coefficient of variation of the tasks' loads (the least even per-task metric).",
            ["service"], registry=self.registry,
        )
        self.load_hottest_share = Gauge(
            "autoscaler_load_hottest_share", "The hottest task's share of the service's load.",
            ["service"], registry=self.registry,
        )
        self.load_imbalanced = Gauge(
            "autoscaler_load_imbalanced",
            "1 when the load has been uneven over the tasks for the policy's balance.for.",
            ["service"], registry=self.registry,
        )
        self.min_replicas = Gauge(
            "autoscaler_min_replicas", "The policy's min_replicas.", ["service"],
            registry=self.registry,
        )
        self.max_replicas = Gauge(
            "autoscaler_max_replicas", "The policy's max_replicas.", ["service"],
            registry=self.registry,
        )
        self.metric_value = Gauge(
            "autoscaler_metric_value", "The metric's value the last decision read (missing: "
            "no sample).", ["service", "metric"], registry=self.registry,
        )
        self.metric_target = Gauge(
            "autoscaler_metric_target", "What one replica should carry of the metric.",
            ["service", "metric"], registry=self.registry,
        )
        self.interval = Gauge(
            "autoscaler_interval_seconds", "Time between ticks.", registry=self.registry,
        )
        self.last_tick = Gauge(
            "autoscaler_last_tick_timestamp_seconds", "When the last tick finished (Unix time).",
            registry=self.registry,
        )

        self._per_service = (
            self.desired_replicas, self.current_replicas, self.running_replicas,
            self.service_nodes, self.unschedulable_tasks, self.on_one_node, self.load_cv,
            self.load_hottest_share, self.load_imbalanced, self.min_replicas, self.max_replicas,
        )
        if interval is not None:
            self.interval.set(interval.total_seconds())
        for source in ERROR_SOURCES:
            self.errors.labels(source)
        for dependency in DEPENDENCIES:
            self.dependency_up.labels(dependency).set(0)

    def dependencies(self, failing: Mapping[str, str | None]) -> None:
        """The last tick's readiness: per dependency, why it failed (None: it did not)."""
        for dependency, why in failing.items():
            self.dependency_up.labels(dependency).set(0 if why else 1)
        self.last_tick.set_to_current_time()

    def observe(self, report: TickReport, seconds: float) -> None:
        self.ticks.inc()
        self.tick_duration.observe(seconds)
        if report.failed_queries:
            self.errors.labels("prometheus").inc(report.failed_queries)
        if report.listing_error is not None:
            self.errors.labels("docker").inc()
        else:
            self._forget_all_but({d.service for d in report.decisions})
        for decision in report.decisions:
            self.decisions.labels(decision.service, str(decision.reason)).inc()
            self._policy_gauges(decision)
            if decision.reason in (Reason.CONFLICT, Reason.APPLY_FAILED):
                self.errors.labels("docker").inc()
            if decision.desired_replicas is None or decision.current_replicas is None:
                continue
            self.desired_replicas.labels(decision.service).set(decision.desired_replicas)
            self.current_replicas.labels(decision.service).set(decision.current_replicas)
            if decision.balance is not None:
                self.load_cv.labels(decision.service).set(decision.balance.cv)
                self.load_hottest_share.labels(decision.service).set(
                    decision.balance.hottest_share)
            self.load_imbalanced.labels(decision.service).set(int(decision.imbalanced))
            if decision.placement is not None:
                placement, service = decision.placement, decision.service
                self.running_replicas.labels(service).set(placement.running)
                self.service_nodes.labels(service).set(placement.nodes)
                self.unschedulable_tasks.labels(service).set(placement.unplaceable)
                self.on_one_node.labels(service).set(int(placement.on_one_node))
            change = decision.desired_replicas - decision.current_replicas
            if change and (decision.applied or decision.dry_run):
                direction = "up" if change > 0 else "down"
                self.scale_actions.labels(decision.service, direction).inc()

    def _forget_all_but(self, services: set[str]) -> None:
        """Drop the per-service gauges of services no policy manages any more, so that a
        dashboard lists them no more and no alert keeps firing on their last value."""
        for service in self._services - services:
            for gauge in self._per_service:
                with contextlib.suppress(KeyError):
                    gauge.remove(service)
            for metric in self._valued.pop(service, ()):
                self.metric_value.remove(service, metric)
            for metric in self._targets.pop(service, ()):
                self.metric_target.remove(service, metric)
        self._services = set(services)

    def _policy_gauges(self, decision: Decision) -> None:
        service = decision.service
        if decision.min_replicas is not None:
            self.min_replicas.labels(service).set(decision.min_replicas)
        if decision.max_replicas is not None:
            self.max_replicas.labels(service).set(decision.max_replicas)
        for metric in self._targets.get(service, set()) - set(decision.targets):
            self.metric_target.remove(service, metric)
        for metric, target in decision.targets.items():
            self.metric_target.labels(service, metric).set(target)
        self._targets[service] = set(decision.targets)
        values = {metric: value for metric, value in decision.metrics.items()
                  if value is not None}
        for metric in self._valued.get(service, set()) - set(values):
            self.metric_value.remove(service, metric)
        for metric, value in values.items():
            self.metric_value.labels(service, metric).set(value)
        self._valued[service] = set(values)

    def tick_crashed(self) -> None:
        self.errors.labels("agent").inc()

    def policy_rejected(self) -> None:
        self.errors.labels("policy").inc()
