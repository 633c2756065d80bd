"""One tick: gather, decide, apply, record."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from autoscaler.core.decide import decide
from autoscaler.core.labels import ManagedPolicy, Template, label_policies
from autoscaler.core.limits import history_to_keep
from autoscaler.core.memory import ServiceMemory, remember, synced_shadow
from autoscaler.core.model import Decision, Reason, Series, ServiceState
from autoscaler.core.ports import (
    DecisionSink,
    HistorySource,
    Leadership,
    MetricsSource,
    Planner,
    Retrained,
    ScaleConflict,
    ScaleFailed,
    ServiceScaler,
    SourceUnavailable,
)
from autoscaler.core.queries import QueryUse, assign_values, plan_queries
from autoscaler.core.spec import Policy, PolicyProblem


@dataclass
class TickReport:
    """What one tick did, for exit codes, health, the log and the agent's own metrics."""

    decisions: list[Decision] = field(default_factory=list)
    queries: int = 0
    failed_queries: int = 0
    listing_error: str | None = None
    query_errors: dict[str, str] = field(default_factory=dict)
    label_problems: dict[str, list[PolicyProblem]] = field(default_factory=dict)
    leader: bool = True
    leadership_error: str | None = None

    @property
    def every_query_failed(self) -> bool:
        return self.queries > 0 and self.failed_queries == self.queries


class Engine:
    """Decides for every policy each tick; remembers what the limits need between ticks."""

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
    ) -> None:
        """`seed_history` False starts each service with empty stabilization history
        instead of holding the first count seen (the backtest's start)."""
        self._metrics = metrics
        self._swarm = swarm
        self._sink = sink
        self._planner = planner
        self._dry_run = dry_run
        self._leadership = leadership
        self._files: dict[str, Policy] = {}
        self._templates: dict[str, Template] = {}
        self._from_files: list[ManagedPolicy] = []
        self._file_services: set[str] = set()
        self._memory: dict[str, ServiceMemory] = {}
        self._plan_key: tuple[int, ...] = ()
        self._plan_cache: dict[str, list[QueryUse]] = {}
        self._seed_history = seed_history
        self._managed: list[ManagedPolicy] = []
        self.set_policies(policies or {}, templates or {})

    def set_policies(
        self, policies: Mapping[str, Policy], templates: Mapping[str, Template]
    ) -> None:
        """Use these policy files (file -> policy) and label templates from the next tick on."""
        self._files = dict(policies)
        self._templates = dict(templates)
        self._from_files = [ManagedPolicy(policy, file, "file")
                            for file, policy in sorted(self._files.items())]
        self._file_services = {m.policy.service for m in self._from_files}

    def tick(self, now: datetime) -> TickReport:
        report = TickReport()
        # 1. Gather: one listing of the services, then one query per distinct rendered query.
        try:
            services = self._swarm.list_services()
        except SourceUnavailable as error:
            report.listing_error = str(error)
            return report
        managed = self._managed_policies(services, report)
        plan = self._plan(managed)
        values = assign_values(plan, self._run_queries(list(plan), report))
        report.leader = self._may_act(now, report)
        # 2. Decide, 3. apply, 4. record, service by service.
        for entry in managed:
            service = entry.policy.service
            decision = self._decide_and_apply(
                entry, services.get(service), values.get(service, {}), now, leader=report.leader
            )
            self._sink.record(decision)
            report.decisions.append(decision)
        return report

    def retrain(self, now: datetime, history: HistorySource) -> list[Retrained]:
        """Let the planner train what is due, for the policies managed last tick (or the
        files' before the first tick), on the history before `now`."""
        return self._planner.retrain([m.policy for m in self._managed or self._from_files],
                                     now, history)

    def _run_queries(
        self, queries: list[str], report: TickReport
    ) -> dict[str, list[Series] | None]:
        """Run the queries side by side, so that a slow Prometheus costs one timeout a tick."""
        def run(query: str) -> list[Series] | str:
            try:
                return self._metrics.query(query)
            except SourceUnavailable as error:
                return str(error)

        answers: dict[str, list[Series] | None] = {}
        if len(queries) <= 1:
            results: list[list[Series] | str] = [run(query) for query in queries]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(queries))) as pool:
                results = list(pool.map(run, queries))
        for query, answer in zip(queries, results, strict=True):
            report.queries += 1
            if isinstance(answer, str):
                report.failed_queries += 1
                report.query_errors[query] = answer
                answers[query] = None
            else:
                answers[query] = answer
        return answers

    def _managed_policies(
        self, services: Mapping[str, ServiceState], report: TickReport
    ) -> list[ManagedPolicy]:
        managed = list(self._from_files)
        if self._templates:
            from_labels, report.label_problems = label_policies(
                services.values(), self._templates, file_services=self._file_services
            )
            managed += sorted(from_labels, key=lambda m: m.policy.service)
        self._managed = managed
        if len(self._memory) > len(managed):
            names = {m.policy.service for m in managed}
            self._memory = {name: m for name, m in self._memory.items() if name in names}
            self._planner.keep_only(names)
        return managed

    def _plan(self, managed: list[ManagedPolicy]) -> dict[str, list[QueryUse]]:
        """The tick's queries; the same as last tick's while the policies are the same."""
        key = tuple(id(m.policy) for m in managed)
        if key != self._plan_key:
            self._plan_key, self._plan_cache = key, plan_queries(m.policy for m in managed)
        return self._plan_cache

    def _may_act(self, now: datetime, report: TickReport) -> bool:
        if self._dry_run or self._leadership is None:
            return True
        try:
            return self._leadership.acquire(now)
        except SourceUnavailable as error:
            report.leadership_error = str(error)
            return False

    def _decide_and_apply(
        self,
        entry: ManagedPolicy,
        state: ServiceState | None,
        values: dict[str, float | None],
        now: datetime,
        *,
        leader: bool,
    ) -> Decision:
        policy = entry.policy
        record = partial(
            Decision, service=policy.service, strategy=policy.strategy, time=now,
            metrics={m.name: values.get(m.name) for m in policy.metrics},
            policy_file=entry.file, policy_source=entry.source, dry_run=self._dry_run,
        )
        if state is None:
            return record(reason=Reason.SERVICE_NOT_FOUND, message="no Swarm service has this name")
        if state.replicas is None:
            return record(reason=Reason.NOT_REPLICATED,
                          message="service is not in replicated mode: left alone")
        spec = state.replicas
        memory = synced_shadow(self._memory.get(policy.service) or ServiceMemory.first_seen(
            replicas=spec, now=now, seeded=self._seed_history), spec)
        current = memory.shadow if self._dry_run else spec
        last_change = memory.last_change_at
        if state.last_scaled_at is not None and (
            last_change is None or state.last_scaled_at > last_change
        ):
            last_change = state.last_scaled_at
        plan = self._planner.plan(policy, metrics=values, spec=spec, now=now, leader=leader)
        outcome = decide(
            policy, current=current, metrics=values, memory=memory, last_change_at=last_change,
            now=now, forecasts=plan.forecasts, target_alone=plan.target_alone,
        )
        reason, message, applied = outcome.reason, outcome.message + plan.note, False
        change = outcome.desired - current
        if not leader:
            change = 0
            reason, message = Reason.NOT_LEADER, (
                f"{message}; {outcome.reason}; nothing applied: another agent holds the lease"
            )
        elif change and not self._dry_run:
            try:
                self._swarm.scale(state, outcome.desired)
                applied = True
            except ScaleConflict as error:
                change = 0
                reason, message = Reason.CONFLICT, f"{message}; not applied: {error}"
            except ScaleFailed as error:
                change = 0
                reason, message = Reason.APPLY_FAILED, f"{message}; not applied: {error}"
        self._memory[policy.service] = remember(
            memory, now=now, recommended=outcome.remembered, change=change,
            keep=history_to_keep(policy),
        )
        self._planner.settle(policy.service, spec=outcome.desired if applied else spec)
        return record(
            reason=reason, message=message, applied=applied, current_replicas=current,
            spec_replicas=spec, recommended_replicas=outcome.recommended,
            desired_replicas=outcome.desired, forecast=plan.record,
            fallback_reason=plan.fallback,
        )
