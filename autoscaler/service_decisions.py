"""Each service's part of a tick: its decision (the operator's holds, the planner's inputs,
`decide`), the scale call that applies it, and what is remembered for the limits of the
next ticks (the service's memory, once its apply is done; its Swarm ID; the planner's
state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from autoscaler.apply import Applied, ScaleRequest
from autoscaler.core.balance import is_imbalanced, least_even, uneven_since
from autoscaler.core.decide import Outcome, Plan, decide
from autoscaler.core.labels import ManagedPolicy
from autoscaler.core.limits import history_to_keep, record_to_keep
from autoscaler.core.memory import (
    ServiceMemory,
    as_of,
    latest,
    remember,
    synced_shadow,
    with_recorded,
)
from autoscaler.core.model import Decision, Reason, ServiceState
from autoscaler.core.operator import changed_by_someone_else, operator_hold
from autoscaler.core.ports import Planner
from autoscaler.core.queries import MetricValues
from autoscaler.core.record import RECORD_LABEL, RecordedChange, read_record, with_change
from autoscaler.core.spec import Policy


@dataclass(frozen=True)
class Decided:
    """One service's decision between decide and apply."""

    decision_of: Callable[..., Decision]
    """The Decision with the service's fields set; the rest given when it is made."""
    entry: ManagedPolicy
    policy: Policy
    state: ServiceState
    spec: int
    memory: ServiceMemory
    current: int
    outcome: Outcome
    plan: Plan
    recorded: tuple[RecordedChange, ...]


class ServiceDecisions:
    """Decides for one service at a time, and remembers what the limits need between ticks.

    `seed_history` False starts each service with empty stabilization history instead of
    holding the first count seen (the backtest's start)."""

    def __init__(self, planner: Planner, *, dry_run: bool, seed_history: bool) -> None:
        self._planner = planner
        self._dry_run = dry_run
        self._seed_history = seed_history
        self._memory: dict[str, ServiceMemory] = {}
        self._ids: dict[str, str] = {}
        """Each service's Swarm ID when last seen."""
        self._kept: dict[str, timedelta] = {}
        """How much history each service's memory was kept for, by its policy last tick."""

    def forget_all_but(self, services: set[str]) -> None:
        if not services.issuperset(self._memory):
            self._memory = {name: m for name, m in self._memory.items() if name in services}
            self._ids = {name: i for name, i in self._ids.items() if name in services}
            self._kept = {name: k for name, k in self._kept.items() if name in services}
            self._planner.keep_only(services)

    def _forget(self, service: str) -> None:
        self._memory.pop(service, None)
        self._kept.pop(service, None)
        self._planner.forget(service)

    def decide(self, entry: ManagedPolicy, state: ServiceState | None, values: MetricValues,
               now: datetime, *, leader: bool, paused_all: bool) -> Decision | Decided:
        """The service's decision, or a final one when there is nothing to decide."""
        policy = entry.policy
        decision_of = partial(
            Decision, service=policy.service, strategy=policy.strategy, time=now,
            metrics={m.name: values.get(m.name) for m in policy.metrics},
            policy_file=entry.file, policy_source=entry.source, dry_run=self._dry_run,
            min_replicas=policy.min_replicas, max_replicas=policy.max_replicas,
            targets=targets_of(policy),
        )
        if state is None:
            return decision_of(reason=Reason.SERVICE_NOT_FOUND,
                               message="no Swarm service has this name")
        if state.replicas is None:
            return decision_of(reason=Reason.NOT_REPLICATED,
                               message="service is not in replicated mode: left alone")
        spec = state.replicas
        if self._ids.get(policy.service, state.id) != state.id:
            self._forget(policy.service)  # removed and made again: a new service
        self._ids[policy.service] = state.id
        keep = history_to_keep(policy)
        memory = as_of(synced_shadow(self._memory.get(policy.service) or ServiceMemory.first_seen(
            replicas=spec, now=now, seeded=self._seed_history), spec), now)
        if self._seed_history and keep > self._kept.get(policy.service, keep):
            # A reload lengthened a window or period: the memory holds only the old span, so
            # the count found now is held through the new one, as a restart would hold it.
            memory = replace(memory, seed=(now, memory.shadow if self._dry_run else spec))
        self._kept[policy.service] = keep
        recorded = read_record(state.labels)
        if not self._dry_run:
            memory = with_recorded(memory, recorded, now=now, keep=record_to_keep(policy))
        hold = operator_hold(
            labels=state.labels, paused_all=paused_all, record=recorded, spec=spec,
            replicas_changed_at=state.replicas_changed_at, updated_at=state.updated_at, now=now,
            override=policy.behavior.manual_override)
        current = memory.shadow if self._dry_run else spec
        if hold is not None:
            self._memory[policy.service] = memory
            return decision_of(reason=hold.reason, message=hold.message,
                               current_replicas=current, spec_replicas=spec,
                               desired_replicas=current, placement=state.placement)
        plan = self._planner.plan(policy, metrics=values, spec=spec, now=now, leader=leader,
                                  memory=memory)
        scaled_at = since_scaled(state, now)
        if not self._dry_run and not changed_by_someone_else(
                record=recorded, spec=spec, replicas_changed_at=state.replicas_changed_at):
            # The agent's own change: its record, in `memory`, holds the tick's time, and
            # the update's stamp, a moment later, would hold the cooldown a tick longer.
            scaled_at = None
        outcome = decide(
            policy, current=current, metrics=values, memory=memory,
            last_change_at=latest(memory.last_change_at, scaled_at), now=now,
            forecasts=plan.forecasts, target_alone=plan.target_alone,
            target_alone_changed_at=plan.target_alone_changed_at,
            placement=state.placement,
        )
        balance = least_even(values.tasks)
        uneven = uneven_since(memory.uneven_since, balance, max_cv=policy.balance.max_cv,
                              now=now)
        if uneven != memory.uneven_since:
            memory = replace(memory, uneven_since=uneven)
        decision_of = partial(decision_of, balance=balance, imbalanced=is_imbalanced(
            memory.uneven_since, lasting=policy.balance.for_, now=now))
        return Decided(decision_of, entry, policy, state, spec, memory, current, outcome, plan,
                       recorded)

    def wants_apply(self, decided: Decided, *, leader: bool) -> bool:
        return leader and not self._dry_run and decided.outcome.desired != decided.current

    def settle(self, decided: Decided, applied: Applied | None, *, leader: bool,
               now: datetime) -> Decision:
        """Remember a decision and what became of its apply (None: none was made), and say
        so."""
        outcome, policy = decided.outcome, decided.policy
        reason, message = outcome.reason, outcome.message + decided.plan.note
        change = outcome.desired - decided.current
        if not leader:
            change = 0
            reason, message = Reason.NOT_LEADER, (
                f"{message}; {outcome.reason}; nothing applied: another agent holds the lease"
            )
        elif applied is not None and applied.failure is not None:
            change = 0
            reason, message = applied.failure[0], f"{message}; not applied: {applied.failure[1]}"
        done = applied is not None and applied.failure is None
        remembered = remember(decided.memory, now=now, recommended=outcome.remembered,
                              change=change, keep=history_to_keep(policy))
        self._memory[policy.service] = remembered
        self._planner.settle(policy.service, spec=outcome.desired if done else decided.spec,
                             in_force=decided.current + change)
        return decided.decision_of(
            reason=reason, message=message, applied=done, current_replicas=decided.current,
            spec_replicas=decided.spec, recommended_replicas=outcome.recommended,
            desired_replicas=outcome.desired, forecast=decided.plan.record,
            fallback_reason=decided.plan.fallback, placement=decided.state.placement,
            driven_by=outcome.driver, min_replicas=outcome.bounds[0],
            max_replicas=outcome.bounds[1],
            applied_at=now + timedelta(seconds=applied.seconds) if done and applied else None,
        )


def scale_request(decided: Decided, now: datetime) -> ScaleRequest:
    """The scale call for a decision, with the record of the change in the same update."""
    changed = RecordedChange(now, decided.spec, decided.outcome.desired)
    record_text = with_change(decided.recorded, changed, keep=record_to_keep(decided.policy))
    return ScaleRequest(decided.state, decided.outcome.desired, {RECORD_LABEL: record_text})


def failed(entry: ManagedPolicy, now: datetime, error: Exception, *, dry_run: bool
           ) -> Decision:
    """The decision of a service whose decide or settle raised: nothing applied."""
    return Decision(service=entry.policy.service, strategy=entry.policy.strategy, time=now,
                    reason=Reason.DECISION_FAILED,
                    message=f"nothing applied: {type(error).__name__}: {error}", metrics={},
                    policy_file=entry.file, policy_source=entry.source, dry_run=dry_run)


def since_scaled(state: ServiceState, now: datetime) -> datetime | None:
    """When Swarm last changed the service's spec, for its cooldown; None where that is
    after now (a clock set back, or the manager's ahead): the agent's own changes are in
    its memory, which counts them from now, and a time to come would hold the cooldown
    until the clock got there."""
    at = state.last_scaled_at
    return at if at is not None and at <= now else None


def targets_of(policy: Policy) -> dict[str, float]:
    """What one replica should carry, per metric: the target, or threshold's upper bound."""
    found = {}
    for metric in policy.metrics:
        target = metric.target if metric.target is not None else metric.scale_up_above
        if target is not None:
            found[metric.name] = target
    return found
