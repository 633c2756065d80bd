"""The decision event and the logging set-up."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from autoscaler.adapters.decision_log import LogDecisionSink, decision_fields
from autoscaler.core.balance import Spread
from autoscaler.core.model import Decision, Reason
from autoscaler.core.placement import Placement
from autoscaler.runtime.logs import configure_logging

DECISION = Decision(
    service="web", strategy="target", time=datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC),
    reason=Reason.SCALE_UP_LIMIT, message="m", metrics={"rps": 500.0, "cpu": None},
    policy_file="policies/web.yaml", dry_run=False, current_replicas=2, spec_replicas=2,
    recommended_replicas=5, desired_replicas=4, applied=True,
)


def test_a_decision_is_one_event_with_every_field() -> None:
    with capture_logs() as logs:
        LogDecisionSink().record(DECISION)

    assert logs == [{
        "event": "scaling_decision", "log_level": "info",
        "timestamp": "2026-11-30T12:00:01Z", "service": "web", "strategy": "target",
        "current_replicas": 2, "spec_replicas": 2, "recommended_replicas": 5,
        "desired_replicas": 4, "reason": "ScaleUpLimit", "message": "m",
        "metrics": {"rps": 500.0, "cpu": None}, "dry_run": False, "applied": True,
        "policy_file": "policies/web.yaml", "policy_source": "file",
    }]


def test_json_lines_carry_structlog_and_stdlib_events(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    configure_logging("json")
    LogDecisionSink().record(DECISION)
    logging.getLogger("apscheduler.scheduler").warning("a library speaks")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert [line["event"] for line in lines] == ["scaling_decision", "a library speaks"]
    assert lines[0]["timestamp"] == "2026-11-30T12:00:01Z"
    assert lines[1]["level"] == "warning" and lines[1]["timestamp"].endswith("Z")


def test_placement_balance_the_driver_and_when_applied_are_logged_when_known() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    plain = Decision(service="web", strategy="target", time=now, reason=Reason.WITHIN_TOLERANCE,
                     message="", metrics={}, policy_file="web.yaml", dry_run=False)
    fields = decision_fields(plain)
    assert not {"placement", "balance", "driven_by", "applied_at"} & set(fields)

    rich = Decision(service="web", strategy="target", time=now, reason=Reason.UNSCHEDULABLE,
                    message="", metrics={}, policy_file="web.yaml", dry_run=False,
                    applied_at=now, driven_by="cpu",
                    placement=Placement(3, 1, 2, "no suitable node", True),
                    balance=Spread("rps", 3, 1.2, 0.8), imbalanced=True)
    fields = decision_fields(rich)
    assert fields["applied_at"] == "2026-12-01T12:00:00Z"
    assert fields["driven_by"] == "cpu"
    assert fields["placement"] == {"running": 3, "nodes": 1, "unplaceable": 2,
                                   "reason": "no suitable node", "on_one_node": True}
    assert fields["balance"] == {"metric": "rps", "tasks": 3, "cv": 1.2, "hottest_share": 0.8,
                                 "imbalanced": True}
