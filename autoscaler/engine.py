"""One tick: gather, decide, apply, record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from autoscaler.model import Decision, Reason, Series, ServiceState
from autoscaler.policy.decide import decide
from autoscaler.policy.memory import ServiceMemory, remember, synced_shadow
from autoscaler.policy.queries import assign_values, plan_queries
from autoscaler.policy.spec import Policy
from autoscaler.ports import (
    DecisionSink,
    MetricsSource,
    ScaleConflict,
    ScaleFailed,
    ServiceScaler,
    SourceUnavailable,
)


@dataclass
class TickReport:
    """What one tick did, for exit codes, health and the agent's own metrics."""

    decisions: list[Decision] = field(default_factory=list)
    queries: int = 0
    failed_queries: int = 0
    listing_error: str | None = None
    query_errors: dict[str, str] = field(default_factory=dict)

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
        policies: Mapping[str, Policy] | None = None,
    ) -> None:
        self._metrics = metrics
        self._swarm = swarm
        self._sink = sink
        self._dry_run = dry_run
        self._policies: dict[str, Policy] = dict(policies or {})
        self._memory: dict[str, ServiceMemory] = {}

    def set_policies(self, policies: Mapping[str, Policy]) -> None:
        """Use these policies (file name -> policy) from the next tick on."""
        self._policies = dict(policies)
        managed = {p.service for p in self._policies.values()}
        self._memory = {name: m for name, m in self._memory.items() if name in managed}

    def tick(self, now: datetime) -> TickReport:
        report = TickReport()
        # 1. Gather: one query per distinct rendered query, one listing of the services.
        plan = plan_queries(self._policies.values())
        answers: dict[str, list[Series] | None] = {}
        for query in plan:
            report.queries += 1
            try:
                answers[query] = self._metrics.query(query)
            except SourceUnavailable as error:
                answers[query] = None
                report.failed_queries += 1
                report.query_errors[query] = str(error)
        try:
            services = self._swarm.list_services()
        except SourceUnavailable as error:
            report.listing_error = str(error)
            return report
        values = assign_values(plan, answers)
        # 2. Decide, 3. apply, 4. record, service by service.
        for file, policy in sorted(self._policies.items()):
            decision = self._decide_and_apply(
                policy, file, services.get(policy.service), values.get(policy.service, {}), now
            )
            self._sink.record(decision)
            report.decisions.append(decision)
        return report

    def _decide_and_apply(
        self,
        policy: Policy,
        file: str,
        state: ServiceState | None,
        values: dict[str, float | None],
        now: datetime,
    ) -> Decision:
        base = Decision(
            service=policy.service, strategy=policy.strategy, time=now,
            reason=Reason.SERVICE_NOT_FOUND, message="no Swarm service has this name",
            metrics={m.name: values.get(m.name) for m in policy.metrics},
            policy_file=file, dry_run=self._dry_run,
        )
        if state is None:
            return base
        if state.replicas is None:
            return replace(
                base, reason=Reason.NOT_REPLICATED,
                message="service is not in replicated mode: left alone",
            )
        spec = state.replicas
        memory = self._memory.get(policy.service) or ServiceMemory.first_seen(
            replicas=spec, now=now
        )
        memory = synced_shadow(memory, spec)
        current = memory.shadow if self._dry_run else spec
        last_change = max(
            (t for t in (memory.last_change_at, state.last_scaled_at) if t is not None),
            default=None,
        )
        outcome = decide(
            policy, current=current, metrics=values, memory=memory,
            last_change_at=last_change, now=now,
        )
        decision = replace(
            base, current_replicas=current, spec_replicas=spec,
            recommended_replicas=outcome.recommended, desired_replicas=outcome.desired,
            reason=outcome.reason, message=outcome.message,
        )
        change = outcome.desired - current
        if change and not self._dry_run:
            try:
                self._swarm.scale(state, outcome.desired)
                decision = replace(decision, applied=True)
            except ScaleConflict as error:
                change = 0
                decision = replace(decision, reason=Reason.CONFLICT,
                                   message=f"{decision.message}; not applied: {error}")
            except ScaleFailed as error:
                change = 0
                decision = replace(decision, reason=Reason.APPLY_FAILED,
                                   message=f"{decision.message}; not applied: {error}")
        self._memory[policy.service] = remember(
            memory, now=now, recommended=outcome.recommended, change=change,
            keep=_history_to_keep(policy),
        )
        return decision


def _history_to_keep(policy: Policy) -> timedelta:
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    return max(up.stabilization, down.stabilization, up.period, down.period)
