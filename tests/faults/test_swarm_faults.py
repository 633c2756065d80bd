"""The Swarm changing under `autoscaler run`: a concurrent edit between the agent's listing
and its update, a count set by hand, a service removed, a global service, a paused service,
two agents sharing one lease, and an agent killed with SIGKILL and started again.

One agent serves the first five rows, through a proxy to the engine's socket that can edit a
service just before it forwards the agent's update of it (a real version conflict)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.faults.conftest import (
    AgentProcess,
    Agents,
    LoadExporter,
    RunningPrometheus,
    Services,
    docker_cli,
    new_lease,
    service_labels,
    set_loads,
    spec_replicas,
    wait_for,
    write_policy,
)
from tests.faults.fault_proxy import DockerProxy

CONCURRENT_LABEL = "astest.concurrent"


@dataclass
class Shared:
    agent: AgentProcess
    proxy: DockerProxy
    conflict: str
    conflict_id: str
    manual: str
    gone: str
    glob: str
    paused: str


@pytest.fixture(scope="module")
def shared(module_services: Services, module_agents: Agents, prometheus: RunningPrometheus,
           load_exporter: LoadExporter, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Shared]:
    conflict, manual, gone, glob, paused = module_services.create(
        ("conflict", {"replicas": 2}), ("manual", {"replicas": 2}), ("gone", {}),
        ("glob", {"mode": "global"}),
        ("paused", {"replicas": 2, "labels": {"autoscaler.pause": "true"}}),
    )
    set_loads(prometheus, load_exporter, {conflict: 300, manual: 200, gone: 100, glob: 100,
                                          paused: 500})
    folder = tmp_path_factory.mktemp("swarm-policies")
    for service in (conflict, gone, glob, paused):
        write_policy(folder / f"{service}.yaml", service, max_replicas=6)
    write_policy(folder / f"{manual}.yaml", manual, max_replicas=6,
                 behavior={"manual_override": "60s"})
    conflict_id = docker_cli("service", "inspect", conflict, "--format", "{{.ID}}")
    with DockerProxy() as proxy:
        # Someone edits the service (a label, nothing the agent owns) just before the agent's
        # first update of it reaches the engine: that update carries a stale version.
        proxy.arm_conflict(conflict_id, lambda: docker_cli(
            "service", "update", "--detach", "--label-add", f"{CONCURRENT_LABEL}=1", conflict_id))
        agent = module_agents.start("run", policies=folder, prometheus_url=prometheus.url,
                                    env={"DOCKER_HOST": proxy.docker_host}, name="swarm-faults",
                                    wait_ticks=2)
        yield Shared(agent, proxy, conflict, conflict_id, manual, gone, glob, paused)


def test_a_change_between_listing_and_update_is_a_conflict_not_an_overwrite(
    shared: Shared,
) -> None:
    agent, service = shared.agent, shared.conflict
    conflict = agent.wait_decision(service, lambda d: d["reason"] == "Conflict",
                                   what="a Conflict")
    assert (conflict["current_replicas"], conflict["desired_replicas"], conflict["applied"]) == (
        2, 3, False), conflict
    assert f"not applied: service {service} changed meanwhile: " in conflict["message"]
    assert "update out of sequence" in conflict["message"]
    assert shared.proxy.injected == [shared.conflict_id]
    since = agent.lines().index(conflict) + 1
    applied = agent.wait_decision(service, lambda d: d["applied"], since=since,
                                  what="the scale decided again")
    assert (applied["current_replicas"], applied["desired_replicas"]) == (2, 3), applied
    assert spec_replicas(service) == 3
    labels = service_labels(service)
    assert labels.get(CONCURRENT_LABEL) == "1", f"the concurrent edit was overwritten: {labels}"
    assert ":2>3" in labels["autoscaler.changes"]
    agent.assert_healthy()


def test_a_count_set_by_hand_is_left_alone(shared: Shared) -> None:
    """`behavior.manual_override: 60s`: a count someone else set stays for 60 s."""
    agent, service = shared.agent, shared.manual
    agent.wait_decision(service, lambda d: d["reason"] == "WithinTolerance",
                        what="a first decision")
    since = agent.mark()
    docker_cli("service", "update", "--detach", "--replicas", "4", service)
    override = agent.wait_decision(service, lambda d: d["reason"] == "ManualOverride",
                                   since=since, what="ManualOverride")
    assert override["message"].startswith(
        "the replica count was changed to 4 by someone else: left as it is for "), override
    assert override["message"].endswith("more (behavior.manual_override 1m)"), override
    after = agent.lines().index(override)
    wait_for("3 more ticks", lambda: len(agent.decisions(service, after)) >= 4, 30)
    for decision in agent.decisions(service, after):
        assert (decision["reason"], decision["desired_replicas"], decision["applied"]) == (
            "ManualOverride", 4, False), decision
    assert spec_replicas(service) == 4
    agent.assert_healthy()


def test_a_service_removed_while_managed(shared: Shared, module_services: Services) -> None:
    agent, service = shared.agent, shared.gone
    agent.wait_decision(service, lambda d: d["reason"] == "WithinTolerance",
                        what="a first decision")
    since = agent.mark()
    module_services.remove(service)
    gone = agent.wait_decision(service, lambda d: d["reason"] == "ServiceNotFound",
                               since=since, what="ServiceNotFound")
    assert gone["message"] == "no Swarm service has this name"
    after = agent.lines().index(gone)
    agent.wait_ticks(3, since=after)
    for tick in agent.ticks(after)[1:]:
        decided = {e["service"]: e["reason"] for e in tick if e["event"] == "scaling_decision"}
        assert decided[service] == "ServiceNotFound"
        assert decided[shared.paused] == "Paused", "another service's decisions go on"
    agent.assert_healthy()
    agent.no_crash()


def test_a_global_service_is_left_alone(shared: Shared) -> None:
    decisions = shared.agent.decisions(shared.glob)
    assert decisions
    for decision in decisions:
        assert (decision["reason"], decision["message"], decision["applied"]) == (
            "NotReplicated", "service is not in replicated mode: left alone", False), decision
    mode = docker_cli("service", "inspect", shared.glob, "--format", "{{json .Spec.Mode}}")
    assert '"Global"' in mode


def test_a_paused_service_is_left_alone(shared: Shared) -> None:
    """`autoscaler.pause=true`: load that asks for 5 replicas changes nothing."""
    agent = shared.agent
    agent.wait_ticks(3)
    decisions = agent.decisions(shared.paused)
    assert len(decisions) >= 3
    for decision in decisions:
        assert (decision["reason"], decision["message"], decision["desired_replicas"],
                decision["applied"]) == (
            "Paused", "autoscaler.pause=true on the service: nothing decided", 2, False), decision
    assert spec_replicas(shared.paused) == 2
    agent.assert_healthy()


def test_two_agents_sharing_a_lease_only_one_applies(
    services: Services, agents: Agents, prometheus: RunningPrometheus,
    load_exporter: LoadExporter, tmp_path: Path,
) -> None:
    (service,) = services.create(("lease", {}))
    set_loads(prometheus, load_exporter, {service: 300})
    write_policy(tmp_path / "lease.yaml", service, max_replicas=3)
    lease = new_lease()
    pair = [agents.start("run", policies=tmp_path, prometheus_url=prometheus.url, lease=lease,
                         name=name, wait_ticks=0) for name in ("first", "second")]
    for agent in pair:
        agent.wait_ticks(4)
    wait_for("the service at 3", lambda: spec_replicas(service) == 3, 30)
    leaders = [a for a in pair if any(d["applied"] for d in a.decisions(service))]
    assert len(leaders) == 1, "one agent, and only one, applied"
    (leader,) = leaders
    (follower,) = [a for a in pair if a is not leader]
    assert leader.events("leadership")[0]["leader"] is True
    assert [e["leader"] for e in follower.events("leadership")] == [False]
    for decision in follower.decisions(service):
        assert (decision["reason"], decision["applied"]) == ("NotLeader", False), decision
        assert decision["message"].endswith("nothing applied: another agent holds the lease")
    for agent in pair:
        agent.assert_healthy()

    since = follower.mark()
    code, _ = leader.stop()  # it gives the lease up: the other takes over at its next tick
    assert code == 0
    wait_for("the other agent to lead", lambda: [
        e["leader"] for e in follower.events("leadership", since)] == [True], 10)
    follower.wait_decision(service, lambda d: d["reason"] != "NotLeader", since=since,
                           what="a decision as leader")
    assert spec_replicas(service) == 3
    follower.no_crash()


def test_a_killed_agent_restarted_keeps_the_rate_limit(
    services: Services, agents: Agents, prometheus: RunningPrometheus,
    load_exporter: LoadExporter, tmp_path: Path,
) -> None:
    """`scale_down: {max_step: 1, period: 60s}` and the load dropped: the first agent scales
    8 -> 7 and is killed (SIGKILL); the one started in its place must not scale to 6 within
    60 s of that change: the limit is read from the service's `autoscaler.changes` label."""
    (service,) = services.create(("restart", {"replicas": 8, "wait": False}))
    set_loads(prometheus, load_exporter, {service: 300})  # asks for 3
    write_policy(tmp_path / "restart.yaml", service, max_replicas=10, behavior={
        "scale_down": {"stabilization": "0s", "max_step": 1, "period": "60s"}})
    lease = new_lease()
    first = agents.start("run", policies=tmp_path, prometheus_url=prometheus.url, lease=lease,
                         name="before-kill", wait_ticks=0)
    change = first.wait_decision(service, lambda d: d["applied"], what="the first scale-down")
    first.kill9()
    assert (change["current_replicas"], change["desired_replicas"], change["reason"]) == (
        8, 7, "ScaleDownLimit"), change
    changed_at = datetime.fromisoformat(change["timestamp"].replace("Z", "+00:00"))
    assert spec_replicas(service) == 7
    assert f"{int(changed_at.timestamp())}:8>7" in service_labels(service)["autoscaler.changes"]

    again = agents.start("run", policies=tmp_path, prometheus_url=prometheus.url, lease=lease,
                         name="restarted", wait_ticks=0)
    wait_for("4 decisions as leader", lambda: len(
        [d for d in again.decisions(service) if d["reason"] != "NotLeader"]) >= 4, 30)
    code, _ = again.stop()
    assert code == 0
    decisions = again.decisions(service)
    for decision in decisions:
        assert (decision["current_replicas"], decision["desired_replicas"], decision["applied"]
                ) == (7, 7, False), decision
        assert decision["reason"] in ("ScaleDownLimit", "NotLeader"), decision
        assert "scale-down capped at 7 (8 at the start of the last 1m, max_step 1)" in \
            decision["message"], decision
        at = datetime.fromisoformat(decision["timestamp"].replace("Z", "+00:00"))
        assert at < changed_at + timedelta(seconds=60)
    assert sum(d["reason"] == "ScaleDownLimit" for d in decisions) >= 4
    assert spec_replicas(service) == 7
    again.no_crash()
