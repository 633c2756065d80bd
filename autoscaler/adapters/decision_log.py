"""Decisions as structured log events: one `scaling_decision` per service per tick, or, with
`--log-holds changes`, holds only when they differ from the service's previous decision;
and the tick's counts for its `tick_summary` line."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, get_args

import structlog

from autoscaler.core.model import Decision, Reason

LogHolds = Literal["all", "changes"]
"""Which holds are logged: `all` (one line per service per tick), or only `changes` (a hold
whose reason or desired count differs from the service's previous decision)."""
LOG_HOLDS: tuple[LogHolds, ...] = get_args(LogHolds)

HOLD_REASONS = frozenset({Reason.WITHIN_TOLERANCE, Reason.SCALE_UP_STABILIZED,
                          Reason.SCALE_DOWN_STABILIZED, Reason.METRICS_MISSING})
"""The reasons of a decision that may leave the count as it is."""
FAILURE_REASONS = frozenset({Reason.DECISION_FAILED, Reason.APPLY_FAILED, Reason.CONFLICT})

Seen = tuple[Reason, int | None]
"""What a service's previous decision said: its reason and desired count."""

def is_hold(decision: Decision) -> bool:
    """A decision that changes nothing for one of the hold reasons."""
    return (decision.reason in HOLD_REASONS
            and decision.desired_replicas == decision.current_replicas)


def worth_logging(decision: Decision, previous: Seen | None, log_holds: LogHolds) -> bool:
    """Whether `decision` gets its `scaling_decision` line. Every decision that is not a hold
    does; with `changes`, a hold does only when the service's previous decision (`previous`,
    None: none seen) had another reason or desired count."""
    if log_holds == "all" or not is_hold(decision):
        return True
    return previous != (decision.reason, decision.desired_replicas)


def tick_counts(decisions: Iterable[Decision]) -> dict[str, int]:
    """The counts of the `tick_summary` line. `changed`: applied (in a dry-run: would be);
    `held`: holds; `missing`: a metric value was missing (or rejected); `failed`: the
    decision or its apply failed."""
    counts = {"decided": 0, "changed": 0, "held": 0, "missing": 0, "failed": 0}
    for decision in decisions:
        counts["decided"] += 1
        if decision.reason in FAILURE_REASONS:
            counts["failed"] += 1
        elif decision.applied or (
                decision.dry_run and decision.desired_replicas is not None
                and decision.current_replicas is not None
                and decision.desired_replicas != decision.current_replicas):
            counts["changed"] += 1
        if is_hold(decision):
            counts["held"] += 1
        if any(value is None for value in decision.metrics.values()):
            counts["missing"] += 1
    return counts


def decision_fields(decision: Decision) -> dict[str, Any]:
    """The JSON fields of a decision event, `event` and logging metadata aside."""
    fields: dict[str, Any] = {
        "timestamp": decision.time.isoformat().replace("+00:00", "Z"),
        "service": decision.service,
        "strategy": decision.strategy,
        "current_replicas": decision.current_replicas,
        "spec_replicas": decision.spec_replicas,
        "recommended_replicas": decision.recommended_replicas,
        "desired_replicas": decision.desired_replicas,
        "reason": str(decision.reason),
        "message": decision.message,
        "metrics": dict(decision.metrics),
        "dry_run": decision.dry_run,
        "applied": decision.applied,
        "policy_file": decision.policy_file,
        "policy_source": decision.policy_source,
    }
    if decision.strategy == "predictive":
        fields["forecast"] = decision.forecast
        fields["fallback_reason"] = decision.fallback_reason
    if decision.applied_at is not None:
        fields["applied_at"] = decision.applied_at.isoformat().replace("+00:00", "Z")
    if decision.driven_by is not None:
        fields["driven_by"] = decision.driven_by
    if decision.placement is not None:
        placement = decision.placement
        fields["placement"] = {"running": placement.running, "nodes": placement.nodes,
                               "unplaceable": placement.unplaceable}
        if placement.reason:
            fields["placement"]["reason"] = placement.reason
        if placement.on_one_node:
            fields["placement"]["on_one_node"] = True
    if decision.balance is not None:
        balance = decision.balance
        fields["balance"] = {"metric": balance.metric, "tasks": balance.tasks,
                             "cv": round(balance.cv, 4),
                             "hottest_share": round(balance.hottest_share, 4),
                             "imbalanced": decision.imbalanced}
    return fields


class LogDecisionSink:
    """Logs decisions as `worth_logging` says."""

    def __init__(self, log_holds: LogHolds = "all") -> None:
        self._log = structlog.get_logger("autoscaler.decisions")
        self._log_holds = log_holds
        self._previous: dict[str, Seen] = {}
        self._tick: datetime | None = None
        self._this_tick: dict[str, Seen] = {}

    def record(self, decision: Decision) -> None:
        if decision.time != self._tick:
            # A new tick: services no longer decided are forgotten with the one before.
            if self._tick is not None:
                self._previous = self._this_tick
            self._tick, self._this_tick = decision.time, {}
        previous = self._previous.get(decision.service)
        self._this_tick[decision.service] = (decision.reason, decision.desired_replicas)
        if worth_logging(decision, previous, self._log_holds):
            self._log.info("scaling_decision", **decision_fields(decision))
