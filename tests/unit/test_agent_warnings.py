"""The agent's warnings that are logged once per change of a service (`availability`,
`load_imbalance`) know only the services of the last tick: a service gone is forgotten, and
one made again under its name warns again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.core.balance import Spread
from autoscaler.core.model import Decision, Reason
from autoscaler.core.placement import Placement
from autoscaler.engine import TickReport
from autoscaler.policy_files import PolicyWatcher
from autoscaler.runtime.agent import Agent
from autoscaler.runtime.telemetry import Telemetry
from tests.unit.fakes import FakeHistory
from tests.unit.test_engine import NOW


class _Reports:
    """An engine that answers each tick with the next report given."""

    def __init__(self, reports: list[TickReport]) -> None:
        self.reports = reports

    def set_policies(self, *_: Any) -> None:
        pass

    def tick(self, now: object) -> TickReport:
        return self.reports.pop(0)


def on_one_node(service: str) -> Decision:
    return Decision(service=service, strategy="target", time=NOW,
                    reason=Reason.WITHIN_TOLERANCE, message="", metrics={},
                    policy_file=f"{service}.yaml", dry_run=False, current_replicas=2,
                    desired_replicas=2,
                    placement=Placement(running=2, nodes=1, more_nodes_could_run_it=True))


def uneven(service: str) -> Decision:
    return Decision(service=service, strategy="target", time=NOW,
                    reason=Reason.WITHIN_TOLERANCE, message="", metrics={},
                    policy_file=f"{service}.yaml", dry_run=False, current_replicas=2,
                    desired_replicas=2, balance=Spread("rps", 2, 0.9, 0.95), imbalanced=True)


@pytest.mark.parametrize("warned, event", [
    pytest.param(on_one_node, "availability", id="availability"),
    pytest.param(uneven, "load_imbalance", id="load-imbalance"),
])
def test_a_service_made_again_warns_again_and_one_gone_is_forgotten(
        tmp_path: Path, warned: Callable[[str], Decision], event: str) -> None:
    names = [f"ci-{i}" for i in range(50)]
    reports = [TickReport(decisions=[warned("web")]), TickReport(),
               *(TickReport(decisions=[warned(name)]) for name in names),
               TickReport(decisions=[warned("web")])]
    agent = Agent(_Reports(reports), interval=timedelta(seconds=15),  # type: ignore[arg-type]
                  telemetry=Telemetry(), watcher=PolicyWatcher(tmp_path),
                  history=FakeHistory([]), clock=lambda: NOW)

    with capture_logs() as logs:
        for _ in range(len(reports)):
            agent.tick()

    warnings = [e["service"] for e in logs if e["event"] == event and e["problem"]]
    assert warnings == ["web", *names, "web"]
    assert len(agent._on_one_node) + len(agent._imbalanced) <= 2, \
        "the services gone are forgotten"
