"""Decisions as structured log events: one `scaling_decision` per service per tick."""

from __future__ import annotations

from typing import Any

import structlog

from autoscaler.core.model import Decision


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
    return fields


class LogDecisionSink:
    def __init__(self) -> None:
        self._log = structlog.get_logger("autoscaler.decisions")

    def record(self, decision: Decision) -> None:
        self._log.info("scaling_decision", **decision_fields(decision))
