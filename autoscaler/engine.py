"""One tick: gather, decide, apply, record. The engine knows no strategy: the planner
hands `decide` what a strategy needs beside the metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autoscaler.apply import DEFAULT_WORKERS, Applier
from autoscaler.core.labels import Template
from autoscaler.core.model import Decision
from autoscaler.core.ports import (
    DecisionSink,
    HistorySource,
    Leadership,
    MetricsSource,
    Planner,
    Retrained,
    ServiceScaler,
    SourceUnavailable,
    Training,
)
from autoscaler.core.queries import MetricValues
from autoscaler.core.roster import Roster
from autoscaler.core.spec import Policy, PolicyProblem
from autoscaler.gather import MetricsGatherer
from autoscaler.service_decisions import Decided, ServiceDecisions, failed, scale_request


@dataclass
class TickReport:
    """What one tick did, for exit codes, health, the log and the agent's own metrics."""

    decisions: list[Decision] = field(default_factory=list)
    queries: int = 0
    listing_error: str | None = None
    query_errors: dict[str, str] = field(default_factory=dict)
    label_problems: dict[str, list[PolicyProblem]] = field(default_factory=dict)
    leader: bool = True
    leadership_error: str | None = None

    @property
    def failed_queries(self) -> int:
        return len(self.query_errors)

    @property
    def every_query_failed(self) -> bool:
        return self.queries > 0 and self.failed_queries == self.queries


class Engine:
    """Decides for every policy each tick, through `ServiceDecisions`, which remembers what
    the limits need between ticks."""

    def __init__(
        self,
        *,
        metrics: MetricsSource,
        swarm: ServiceScaler,
        sink: DecisionSink,
        planner: Planner,
        dry_run: bool,
        leadership: Leadership | None = None,
        policies: Mapping[str, Policy] | None = None,
        templates: Mapping[str, Template] | None = None,
        seed_history: bool = True,
        apply_workers: int = DEFAULT_WORKERS,
        apply_time: timedelta | None = None,
        query_time: timedelta | None = None,
        answer_time: timedelta | None = None,
    ) -> None:
        """`seed_history`: as in `ServiceDecisions`. Applies run on `apply_workers` threads;
        none but the first round starts later than `apply_time` into the tick (None: no
        limit; see `Applier`), and no query later than `query_time` once one failed, nor
        than `answer_time` (`MetricsGatherer`)."""
        self._gatherer = MetricsGatherer(metrics, query_time, answer_time)
        self._swarm = swarm
        self._applier = Applier(swarm, workers=apply_workers)
        self._apply_time = apply_time
        self._sink = sink
        self._planner = planner
        self._decisions = ServiceDecisions(planner, dry_run=dry_run, seed_history=seed_history)
        self._dry_run = dry_run
        self._leadership = leadership
        self._roster = Roster(policies or {}, templates or {})
        self._paused_all = False

    def set_policies(
        self, policies: Mapping[str, Policy], templates: Mapping[str, Template]
    ) -> None:
        """Use these policy files (file -> policy) and label templates from the next tick on."""
        self._roster.set(policies, templates)

    def tick(self, now: datetime) -> TickReport:
        began = time.monotonic()
        report = TickReport()
        # 1. Gather: one listing of the services, then one query per distinct rendered query.
        try:
            services = self._swarm.list_services()
        except SourceUnavailable as error:
            report.listing_error = str(error)
            return report
        managed, report.label_problems = self._roster.managed(services)
        self._decisions.forget_all_but({m.policy.service for m in managed})
        queried = self._gatherer.gather(managed)
        report.queries, report.query_errors = queried.queries, queried.errors
        report.leader = self._may_act(now, report)
        # 2. Decide, service by service; 3. apply the changes side by side; 4. record.
        decisions: list[Decision | Decided] = []
        for entry in managed:
            service = entry.policy.service
            try:
                decisions.append(self._decisions.decide(
                    entry, services.get(service), queried.values.get(service) or MetricValues(),
                    now, leader=report.leader, paused_all=self._paused_all))
            except Exception as error:  # one service's failure must not stop the others
                decisions.append(failed(entry, now, error, dry_run=self._dry_run))
        pending = [d for d in decisions if isinstance(d, Decided)
                   and self._decisions.wants_apply(d, leader=report.leader)]
        results = dict(zip(map(id, pending), self._applier.apply(
            [scale_request(d, now) for d in pending], began=began,
            deadline=None if self._apply_time is None
            else began + self._apply_time.total_seconds()), strict=True))
        for decided in decisions:
            decision = decided
            if isinstance(decided, Decided):
                try:
                    decision = self._decisions.settle(decided, results.get(id(decided)),
                                                     leader=report.leader, now=now)
                except Exception as error:
                    decision = failed(decided.entry, now, error, dry_run=self._dry_run)
            assert isinstance(decision, Decision)
            self._sink.record(decision)
            report.decisions.append(decision)
        return report

    def retrain(self, now: datetime, history: HistorySource) -> list[Retrained]:
        """Let the planner train what is due, for the policies managed last tick (or the
        files' before the first tick), on the history before `now`."""
        return [r for step in self.retraining(now, history) for r in self.train(step)]

    def retraining(self, now: datetime, history: HistorySource) -> Iterator[Training]:
        """`retrain` one policy a step, so that a caller can let ticks run between steps,
        and fetch a step's history between ticks too (then `train` it). Each step reads the
        policies in force anew: a tick between two steps may have reloaded a policy or
        dropped a service, whose old version is then not trained (a policy just trained is
        not due again). A service is a step once a run: one not trained (left out, or
        reloaded since its fetch) waits for the next run."""
        stepped: set[str] = set()
        while True:
            policies = [m.policy for m in self._roster.last if m.policy.service not in stepped]
            step = next(self._planner.retraining(policies, now, history), None)
            if step is None:
                return
            stepped.add(step.policy.service)
            yield step

    def train(self, step: Training) -> list[Retrained]:
        """Train `step` if its policy is still one in force ([] if a tick since its fetch
        reloaded or dropped it: the new version, if any, is due in turn)."""
        if step.policy not in [m.policy for m in self._roster.last]:
            return []
        return step.train()

    def _may_act(self, now: datetime, report: TickReport) -> bool:
        if self._dry_run or self._leadership is None:
            return True
        try:
            leader = self._leadership.acquire(now)
            self._paused_all = self._leadership.paused_all()
            return leader
        except SourceUnavailable as error:
            report.leadership_error = str(error)
            return False
        except Exception as error:  # a lease that cannot be read is not held: decide, not act
            report.leadership_error = f"{type(error).__name__}: {error}"
            return False
