"""The agent (`autoscaler run`, 1 s interval) against the real Prometheus behind the fault
proxy, scaling a real Swarm service.

One agent serves the rows of this module: its service runs 4 replicas, bounds 2..6, and the
real answer (250 for a target of 100) asks for 3, at once (no scale-down stabilization). So
an agent that read a failed, empty, NaN, infinite, negative or multi-series answer as a
number, or as zero, would scale the service down within a tick or two. Each row switches the
proxy to its fault, puts the service back at 4 replicas if a row before moved it (the policy
turns the manual override off for that), and watches several ticks. The proxy rests in mode
`down` between rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import (
    AgentProcess,
    Agents,
    LoadExporter,
    RunningPrometheus,
    Services,
    docker_cli,
    set_load,
    spec_replicas,
    wait_for,
    write_policy,
)
from tests.faults.fault_proxy import PrometheusFaultProxy

REPLICAS = 4
LOAD = 250.0
BOUNDS = {"min_replicas": 2, "max_replicas": 6}
POLICY = {**BOUNDS, "behavior": {"scale_down": {"stabilization": "0s"}, "manual_override": "0s"}}
HELD_TICKS = 3
QUERY_FAILED = "load is missing (the query failed: prometheus_query_failed says why)"


@dataclass
class Shared:
    """The module's agent, its service and its proxy."""

    agent: AgentProcess
    service: str
    proxy: PrometheusFaultProxy
    prometheus: RunningPrometheus
    exporter: LoadExporter
    at_start: dict[str, tuple[int, str]]
    """/healthz and /readyz while Prometheus was down at the agent's start."""
    load: float = LOAD

    def set_load(self, value: float) -> None:
        if value != self.load:
            set_load(self.prometheus, self.exporter, self.service, value)
            self.load = value

    def restore(self) -> None:
        """The service back at REPLICAS and the load back at LOAD (the proxy in a fault)."""
        assert self.proxy.mode != "pass"
        self.set_load(LOAD)
        if spec_replicas(self.service) != REPLICAS:
            docker_cli("service", "update", "--detach", "--replicas", str(REPLICAS),
                       self.service)


@pytest.fixture(scope="module")
def shared(module_services: Services, module_agents: Agents, prometheus: RunningPrometheus,
           load_exporter: LoadExporter, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Shared]:
    (service,) = module_services.create(("prom", {"replicas": REPLICAS}))
    set_load(prometheus, load_exporter, service, LOAD)
    folder = tmp_path_factory.mktemp("prom-policies")
    write_policy(folder / "prom.yaml", service, **POLICY)
    with PrometheusFaultProxy(prometheus.url, mode="down") as proxy:
        agent = module_agents.start("run", policies=folder, prometheus_url=proxy.url,
                                    name="prometheus-faults", wait_ticks=2)
        at_start = {path: agent.get(path) for path in ("/healthz", "/readyz")}
        yield Shared(agent, service, proxy, prometheus, load_exporter, at_start)


def assert_holds(decisions: list[dict[str, Any]], replicas: int, says: str) -> None:
    """Each decision held the count where it was, said MetricsMissing and `says`, and
    applied nothing (a lost lease race, NotLeader, still carries the hold)."""
    assert decisions
    for decision in decisions:
        assert (decision["current_replicas"], decision["spec_replicas"],
                decision["desired_replicas"], decision["applied"]) == (
            replicas, replicas, replicas, False), decision
        assert BOUNDS["min_replicas"] <= decision["desired_replicas"] <= BOUNDS["max_replicas"]
        assert decision["metrics"] == {"load": None}, decision
        if decision["reason"] == "NotLeader":
            assert "MetricsMissing" in decision["message"], decision
        else:
            assert decision["reason"] == "MetricsMissing", decision
        assert says in decision["message"], decision


def held_decisions(agent: AgentProcess, service: str, since: int, count: int = HELD_TICKS
                   ) -> list[dict[str, Any]]:
    wait_for(f"{count} decisions", lambda: len(agent.decisions(service, since)) >= count, 30)
    return agent.decisions(service, since)


def failed_query(agent: AgentProcess, says: str, since: int) -> int:
    """Wait for a `prometheus_query_failed` line saying `says` after `since`; the index of
    the line after it (the next tick's decisions)."""
    def found() -> int | None:
        agent.assert_alive()
        for index, event in enumerate(agent.lines()[since:], start=since):
            if event.get("event") == "prometheus_query_failed" and says in event["error"]:
                return index + 1
        return None
    return wait_for(f"a failed query saying {says!r}", found, 30)  # type: ignore[return-value]


def answered_query(agent: AgentProcess, since: int) -> int:
    """Wait for a tick after `since` whose query got an answer (the rows before leave the
    proxy `down`); the index of the line after its `tick_summary` (the next tick's)."""
    def found() -> int | None:
        agent.assert_alive()
        for index, event in enumerate(agent.lines()[since:], start=since):
            if event.get("event") == "tick_summary" and event["failed_queries"] == 0:
                return index + 1
        return None
    return wait_for("a tick with an answer", found, 30)  # type: ignore[return-value]


def assert_not_ready_for(agent: AgentProcess, says: str) -> None:
    status, body = agent.get("/readyz")
    assert status == 503, body
    assert body.startswith("prometheus: Prometheus at http://127.0.0.1:"), body
    assert says in body, body


def test_prometheus_down_at_start(shared: Shared) -> None:
    """The agent starts while nothing listens where Prometheus should be."""
    says = "did not answer: ConnectionError"
    first = shared.agent.decisions(shared.service)[:2]
    assert_holds(first, REPLICAS, f"{QUERY_FAILED}: hold at 4")
    errors = [e["error"] for e in shared.agent.events("prometheus_query_failed")[:2]]
    assert errors and all(says in e and "Connection refused" in e for e in errors), errors
    health, ready = shared.at_start["/healthz"], shared.at_start["/readyz"]
    assert health == (200, "ok\n")
    assert ready[0] == 503 and ready[1].startswith("prometheus: ") and says in ready[1], ready
    assert spec_replicas(shared.service) == REPLICAS


@dataclass(frozen=True)
class Fault:
    mode: str
    says: str
    """In the decision's message (a value rejected), or in the `prometheus_query_failed`
    line and /readyz (a query failed)."""
    query_fails: bool


FAULTS = [
    Fault("http_503", "refused the query: HTTP 503 Service Unavailable: unavailable: fault "
          "proxy: injected 503", query_fails=True),
    Fault("invalid_json", "sent an answer that is not the query API's: not JSON: "
          '{"status":"success","data":{"resultType":"vector","resu', query_fails=True),
    Fault("html", "sent an answer that is not the query API's: not JSON: <!DOCTYPE html>",
          query_fails=True),
    Fault("reset", "did not answer: ConnectionError: ('Connection aborted.', "
          "ConnectionResetError(104, 'Connection reset by peer'))", query_fails=True),
    Fault("delay", "did not answer within 0.33 s", query_fails=True),
    Fault("empty", "load is missing (the answer has no series): hold at 4",
          query_fails=False),
    Fault("nan", "load: NaN is not a number: treated as missing: hold at 4", query_fails=False),
    Fault("inf", "load: inf is not finite: treated as missing: hold at 4", query_fails=False),
    Fault("multi", "one was expected: sum them by service): hold at 4", query_fails=False),
    Fault("negative", "load: -50 is negative: treated as missing: hold at 4",
          query_fails=False),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.mode for f in FAULTS])
def test_a_bad_answer_holds_the_count_and_says_why(shared: Shared, fault: Fault) -> None:
    agent, service = shared.agent, shared.service
    shared.proxy.set_mode(fault.mode)
    try:
        shared.restore()
        since = agent.mark()
        if fault.query_fails:
            after = failed_query(agent, fault.says, since)
            wait_for("the service at 4 in the agent's eyes", lambda: any(
                d["spec_replicas"] == REPLICAS for d in agent.decisions(service, after)), 30)
            first = next(i for i, e in enumerate(agent.lines()) if i >= after and
                         e.get("event") == "scaling_decision" and e["service"] == service
                         and e["spec_replicas"] == REPLICAS)
            decisions = held_decisions(agent, service, first)
            assert_holds(decisions, REPLICAS, f"{QUERY_FAILED}: hold at 4")
            assert_not_ready_for(agent, fault.says)
            summaries = agent.events("tick_summary", first)
            assert summaries and all(s["failed_queries"] == s["queries"] == 1
                                     for s in summaries), summaries
        else:
            first = answered_query(agent, since)
            decisions = held_decisions(agent, service, first)
            assert_holds(decisions, REPLICAS, fault.says)
            assert agent.get("/readyz") == (200, "ready\n")
            assert not agent.events("prometheus_query_failed", first)
        assert shared.proxy.served[fault.mode] >= HELD_TICKS
        assert spec_replicas(service) == REPLICAS
        agent.assert_healthy()
        agent.no_crash()
    finally:
        shared.proxy.set_mode("down")


def test_prometheus_down_mid_run_then_back(shared: Shared) -> None:
    """Decisions flow; Prometheus goes away while the load drops; the count holds; it comes
    back and the decisions follow the load again."""
    agent, service = shared.agent, shared.service
    shared.restore()
    try:
        shared.proxy.set_mode("pass")
        steady = agent.wait_decision(
            service, lambda d: d["metrics"] == {"load": LOAD} and d["spec_replicas"] == 3
            and d["desired_replicas"] == 3, since=agent.mark(), what="a decision at 3 on 250")
        assert agent.get("/readyz") == (200, "ready\n")

        shared.proxy.set_mode("down")
        since = agent.mark()
        shared.set_load(100.0)  # a real answer would now ask for 1, so the floor, 2
        after = failed_query(agent, "Connection refused", since)
        decisions = held_decisions(agent, service, after)
        assert_holds(decisions, 3, f"{QUERY_FAILED}: hold at 3")
        assert_not_ready_for(agent, "did not answer: ConnectionError")
        agent.assert_healthy()

        shared.proxy.set_mode("pass")
        resumed = agent.wait_decision(
            service, lambda d: d["metrics"] == {"load": 100.0}, since=agent.mark(),
            what="a decision on the load again")
        assert (resumed["current_replicas"], resumed["desired_replicas"], resumed["reason"],
                resumed["applied"]) == (3, 2, "TooFewReplicas", True), resumed
        wait_for("the service at 2", lambda: spec_replicas(service) == 2, 15)
        wait_for("/readyz 200", lambda: agent.get("/readyz") == (200, "ready\n"), 10)
        assert steady["reason"] in ("DesiredWithinRange", "NotLeader")
        agent.assert_healthy()
        agent.no_crash()
    finally:
        shared.proxy.set_mode("down")


def test_a_trickled_body_ends_the_tick_at_the_deadline(
    module_services: Services, agents: Agents, prometheus: RunningPrometheus,
    load_exporter: LoadExporter, tmp_path: Path,
) -> None:
    """Prometheus sends its headers, then the body a byte a second: each query is abandoned
    at the call deadline (a third of the 1 s interval), the agent stays healthy but not ready, and
    SIGTERM ends it within 5 s."""
    (service,) = module_services.create(("trickle", {"replicas": 2}))
    set_load(prometheus, load_exporter, service, 50)  # a real answer would ask for 1
    write_policy(tmp_path / "trickle.yaml", service, min_replicas=1, max_replicas=4,
                 behavior={"scale_down": {"stabilization": "0s"}})
    with PrometheusFaultProxy(prometheus.url, mode="trickle", trickle_every=1.0) as proxy:
        agent = agents.start("run", policies=tmp_path, prometheus_url=proxy.url,
                             name="trickle", wait_ticks=4)
        summaries = agent.events("tick_summary")
        assert all(s["seconds"] < 1.8 for s in summaries), summaries
        assert all(s["failed_queries"] == 1 for s in summaries), summaries
        errors = [e["error"] for e in agent.events("prometheus_query_failed")]
        assert len(errors) >= 4 and all("did not answer within 0.33 s" in e for e in errors), errors
        assert_holds(agent.decisions(service), 2, f"{QUERY_FAILED}: hold at 2")
        agent.assert_healthy()
        assert_not_ready_for(agent, "did not answer within 0.33 s")
        assert proxy.served["trickle"] >= 4
        code, seconds = agent.stop()
    assert code == 0
    assert seconds < 5, f"SIGTERM took {seconds:.1f} s"
    assert '"agent_stopped"' in agent.text()
    assert spec_replicas(service) == 2
    agent.no_crash()

