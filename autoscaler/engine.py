"""One tick: gather, decide, apply, record."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from autoscaler.core.decide import decide, target_alone_step
from autoscaler.core.labels import ManagedPolicy, Template, label_policies
from autoscaler.core.memory import ServiceMemory, remember, synced_shadow
from autoscaler.core.model import Decision, Reason, Series, ServiceState
from autoscaler.core.ports import (
    DecisionSink,
    HistorySource,
    Leadership,
    MetricsSource,
    ScaleConflict,
    ScaleFailed,
    ServiceScaler,
    SourceUnavailable,
)
from autoscaler.core.queries import QueryUse, assign_values, plan_queries
from autoscaler.core.spec import Policy, PolicyProblem
from autoscaler.core.strategies import MetricForecast
from autoscaler.predictive.book import ForecastBook, ForecastMemo
from autoscaler.predictive.forecast import ForecastSettings


@dataclass(frozen=True)
class Retrained:
    """One forecaster's training: on how many points, and why it failed (None: trained)."""

    service: str
    metric: str
    points: int
    failure: str | None
    seconds: float = 0.0


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
        dry_run: bool,
        leadership: Leadership | None = None,
        policies: Mapping[str, Policy] | None = None,
        templates: Mapping[str, Template] | None = None,
        tick: timedelta = timedelta(seconds=15),
        forecast_memo: ForecastMemo | None = None,
        seed_history: bool = True,
    ) -> None:
        """`seed_history` False starts each service with empty stabilization history
        instead of holding the first count seen (the backtest's start)."""
        self._metrics = metrics
        self._swarm = swarm
        self._sink = sink
        self._dry_run = dry_run
        self._leadership = leadership
        self._files: dict[str, Policy] = {}
        self._templates: dict[str, Template] = {}
        self._from_files: list[ManagedPolicy] = []
        self._file_services: set[str] = set()
        self._memory: dict[str, ServiceMemory] = {}
        self._plan_key: tuple[int, ...] = ()
        self._plan_cache: dict[str, list[QueryUse]] = {}
        self._forecasts = ForecastBook(tick, forecast_memo)
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

    def forecast_settings(self, policy: Policy) -> ForecastSettings:
        return self._forecasts.settings_for(policy)

    def retrain(self, now: datetime, history: HistorySource) -> list[Retrained]:
        """Train the forecasters of the predictive policies that are due, on the history
        before `now`; what each training did."""
        done: list[Retrained] = []
        for entry in self._managed or self._from_files:
            policy = entry.policy
            if policy.strategy != "predictive" or not self._forecasts.due(policy, now):
                continue
            results = [self._train(policy, use, rendered, now, history)
                       for rendered, uses in plan_queries([policy]).items() for use in uses]
            self._forecasts.trained(policy, now, ok=all(r.failure is None for r in results))
            done += results
        return done

    def _train(self, policy: Policy, use: QueryUse, rendered: str, now: datetime,
               history: HistorySource) -> Retrained:
        metric = next(m for m in policy.metrics if m.name == use.metric)
        forecaster = self._forecasts.forecaster(policy, metric)
        settings = forecaster.settings
        try:
            times, values = history.history(
                rendered, service=policy.service, service_label=use.service_label,
                per_service=use.service is not None, start=now - settings.history, end=now,
                step=settings.step,
            )
        except SourceUnavailable as error:
            return Retrained(policy.service, use.metric, 0, f"HistoryUnavailable: {error}")
        started = time.perf_counter()
        reason = forecaster.train(times, values)
        return Retrained(policy.service, use.metric, sum(v is not None for v in values),
                         reason, time.perf_counter() - started)

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
        memory = self._memory.get(policy.service) or ServiceMemory.first_seen(
            replicas=spec, now=now, seeded=self._seed_history
        )
        memory = synced_shadow(memory, spec)
        current = memory.shadow if self._dry_run else spec
        last_change = memory.last_change_at
        if state.last_scaled_at is not None and (
            last_change is None or state.last_scaled_at > last_change
        ):
            last_change = state.last_scaled_at
        forecast: dict[str, dict[str, float | None]] | None = None
        fallback: str | None = None
        used: dict[str, MetricForecast] | None = None
        alone: tuple[int, ServiceMemory] | None = None
        fallback_note = ""
        if policy.strategy == "predictive":
            found, fallback = self._forecasts.forecast(policy, values, now)
            limited = {m.name for m in policy.metrics if m.limit}
            forecast = {name: {"value": f.value, "with_margin": f.with_margin}
                        | ({"worst_case": f.worst_case} if name in limited else {})
                        for name, f in found.items()}
            used = found
            fallback_note = _fallback_note(used, fallback)
            previous = memory.target_alone
            if previous is not None and not leader:
                # The leader's changes are not someone else's: they may be a forecast's raise.
                previous = replace(previous, seen_spec=spec)
            alone = target_alone_step(policy, previous, spec=spec, metrics=values, now=now,
                                      seeded=self._seed_history, keep=_history_to_keep(policy))
        outcome = decide(
            policy, current=current, metrics=values, memory=memory,
            last_change_at=last_change, now=now, forecasts=used,
            target_alone=alone[0] if alone else None,
        )
        reason, message, applied = outcome.reason, outcome.message + fallback_note, False
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
        memory = remember(
            memory, now=now,
            recommended=outcome.remembered, change=change,
            keep=_history_to_keep(policy),
        )
        memory = replace(memory, target_alone=None if alone is None else replace(
            alone[1], seen_spec=outcome.desired if applied else spec))
        self._memory[policy.service] = memory
        return record(
            reason=reason, message=message, applied=applied, current_replicas=current,
            spec_replicas=spec, recommended_replicas=outcome.recommended,
            desired_replicas=outcome.desired, forecast=forecast, fallback_reason=fallback,
        )


def _fallback_note(used: Mapping[str, MetricForecast], fallback: str | None) -> str:
    """What the decision's message says of metrics whose forecast was not used."""
    if not fallback:
        return ""
    unused = [name for name, forecast in used.items() if forecast.with_margin is None]
    if len(unused) == len(used):
        return f"; forecast not used ({fallback}): the target rule alone"
    return f"; forecast of {', '.join(unused)} not used ({fallback})"


def _history_to_keep(policy: Policy) -> timedelta:
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    return max(up.stabilization, down.stabilization, up.period, down.period)
