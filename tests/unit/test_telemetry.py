"""The agent's own metrics carry what a dashboard and alerts need per service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.model import Decision, Reason
from autoscaler.engine import TickReport
from autoscaler.runtime.telemetry import Telemetry

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def decision(value: float | None) -> Decision:
    return Decision(service="web", strategy="target", time=NOW, reason=Reason.WITHIN_TOLERANCE,
                    message="", metrics={"rps": value}, policy_file="web.yaml", dry_run=False,
                    current_replicas=3, desired_replicas=3, min_replicas=1, max_replicas=9,
                    targets={"rps": 100.0})


def test_bounds_targets_values_and_the_interval_are_exported() -> None:
    telemetry = Telemetry(interval=timedelta(seconds=15))
    telemetry.observe(TickReport(decisions=[decision(250.0)]), 0.1)
    exposed = telemetry.exposition().decode()
    for line in ('autoscaler_min_replicas{service="web"} 1.0',
                 'autoscaler_max_replicas{service="web"} 9.0',
                 'autoscaler_metric_target{metric="rps",service="web"} 100.0',
                 'autoscaler_metric_value{metric="rps",service="web"} 250.0',
                 "autoscaler_interval_seconds 15.0"):
        assert line in exposed

    telemetry.observe(TickReport(decisions=[decision(None)]), 0.1)
    exposed = telemetry.exposition().decode()
    assert "autoscaler_metric_value{" not in exposed, "a missing value is no sample, not 0"


def test_a_service_no_policy_manages_any_more_leaves_no_series() -> None:
    telemetry = Telemetry()
    telemetry.observe(TickReport(decisions=[decision(250.0)]), 0.1)
    telemetry.observe(TickReport(listing_error="Docker is down"), 0.1)
    assert 'service="web"' in telemetry.exposition().decode(), \
        "a failed listing forgets nothing"

    telemetry.observe(TickReport(decisions=[]), 0.1)
    exposed = telemetry.exposition().decode()
    gauges = [line for line in exposed.splitlines()
              if 'service="web"' in line and not line.startswith("autoscaler_decisions_")]
    assert gauges == []


@pytest.mark.parametrize("change", [
    pytest.param(lambda t: t.observe(TickReport(decisions=[decision(300.0)]), 0.1),
                 id="a-tick"),
    pytest.param(lambda t: t.dependencies({"prometheus": None, "docker": "down"}),
                 id="readiness"),
    pytest.param(Telemetry.tick_crashed, id="a-crash"),
    pytest.param(Telemetry.policy_rejected, id="a-rejected-policy"),
])
def test_metrics_are_rendered_once_a_change_and_again_after_each(
        change: Callable[[Telemetry], None]) -> None:
    """Scrapes side by side, or clients that never read, share one copy of /metrics (at
    10,000 services 9 MB each): 65 of them held 1 GB when each had its own."""
    telemetry = Telemetry()
    telemetry.observe(TickReport(decisions=[decision(250.0)]), 0.1)
    first = telemetry.exposition()

    assert telemetry.exposition() is first

    change(telemetry)
    changed = telemetry.exposition()
    assert changed != first
    assert telemetry.exposition() is changed
