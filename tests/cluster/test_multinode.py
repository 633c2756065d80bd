"""The agent on a Swarm of 3 managers and 2 workers (see conftest.py): every node's tasks
reach their own node's engine; the agent and Prometheus see the five nodes; the web service
scales across them; draining a worker moves its tasks and changes no decision; and when the
agent's node dies (its dockerd SIGKILLed) the Swarm restarts the agent on another manager,
which takes the lease and goes on where the first left off, within the rate limits that the
record in the service's labels carries across the hand-over.

The tests run in this order and share the stack, but each sets the load, the policy and the
replica count it starts from, so any one of them also runs alone."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from autoscaler.core.record import RECORD_LABEL, read_record
from tests.cluster.conftest import (
    FIGURES,
    TARGET_PER_REPLICA,
    ClusterStack,
    image_names,
    node_of,
)
from tests.cluster.nodes import Node, wait_until

pytestmark = pytest.mark.cluster

TTL_SECONDS = 3 * 2.0
"""The lease's TTL: 3 intervals (autoscaler/bootstrap.py), the interval being 2 s here."""
SWARM_START_SECONDS = 30.0
"""How long the Swarm may take to start new tasks (DESIGN.md measured up to ~29 s)."""
NODE_DOWN_SECONDS = 45.0
"""How long a manager may take to declare a dead node down and restart its tasks elsewhere
(about 15 s with Swarm's default 5 s heartbeat, plus the 5 s default restart delay)."""
PROBE = "astcluster-probe"
PROBE_SCRIPT = r"""
import json, socket, time
probe = socket.socket(socket.AF_UNIX)
probe.connect("/var/run/docker.sock")
probe.sendall(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
answer = b""
while chunk := probe.recv(65536):
    answer += chunk
info = json.loads(answer.split(b"\r\n\r\n", 1)[1])
print("engine", info["Swarm"]["NodeID"], info["Swarm"]["NodeAddr"], flush=True)
time.sleep(3600)
"""


def epoch(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def docker_time(text: str) -> float:
    """An engine's RFC 3339 time with nanoseconds, as seconds since the epoch."""
    head, _, rest = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{rest[:6] or '0'}+00:00").timestamp()


def agent_task(stack: ClusterStack, via: Node | None = None) -> dict[str, Any]:
    task: dict[str, Any] = wait_until("the agent's task to run", lambda: stack.agent_task(via),
                                      timeout=60)
    return task


def wait_policy(stack: ClusterStack, written_at: float | None) -> None:
    """Wait until the agent has taken up the policy written at `written_at` (None: the text
    was unchanged, nothing to wait for)."""
    if written_at is None:
        return
    task = agent_task(stack)
    wait_until("the agent to reload its policy", lambda: any(
        e.get("event") == "policy_reloaded" and epoch(e) >= written_at
        for e in stack.logs(task)), timeout=6 * stack.interval_seconds)


def settle(stack: ClusterStack, replicas: int) -> None:
    """Bring the web service to `replicas` running tasks, with the load that asks for
    exactly that many, through the agent (min = max pins the count)."""
    stack.set_rate(replicas * TARGET_PER_REPLICA)
    wait_policy(stack, stack.write_policy(min_replicas=replicas, max_replicas=replicas))
    wait_until(f"{replicas} web replicas", lambda: stack.spec_replicas() == replicas
               and len(stack.running(stack.web)) == replicas, timeout=SWARM_START_SECONDS)


class SpecWatch:
    """The web service's replica count in its spec, polled every half second."""

    def __init__(self, stack: ClusterStack) -> None:
        self.stack = stack
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            # A manager going away mid-call: the next poll asks another.
            with contextlib.suppress(Exception):
                self.seen.append((time.time(), self.stack.spec_replicas()))
            self._stop.wait(0.5)

    @contextmanager
    def running(self) -> Iterator[SpecWatch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)

    def counts(self) -> list[int]:
        return [count for _, count in self.seen]


# --- each node is a node of its own -----------------------------------------------------------


def test_a_task_that_mounts_the_docker_socket_reaches_its_own_node(
    cluster_stack: ClusterStack,
) -> None:
    stack, infra = cluster_stack, cluster_stack.infra
    infra.docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", PROBE,
        "--mode", "global", "--network", "host", "--restart-condition", "none",
        "--mount", "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--user", "0", "--stop-grace-period", "1s", image_names()["demo"],
        "python3", "-c", PROBE_SCRIPT)
    try:
        nodes = stack.cluster.nodes
        tasks = wait_until("a probe task running on each node", lambda: (
            found if len(found := stack.running(PROBE)) == len(nodes) else None), timeout=60)
        seen = {}
        for task in tasks:
            def printed(task: dict[str, Any] = task) -> str | None:
                node = node_of(stack, task)
                container = task["Status"]["ContainerStatus"]["ContainerID"]
                out = node.docker("logs", container).stdout.split()
                return " ".join(out) if out else None
            seen[node_of(stack, task).name] = wait_until("the probe's line", printed, 30)
        expected = {n.name: f"engine {n.node_id} {n.address}" for n in nodes}
        assert seen == expected
    finally:
        infra.docker("service", "rm", PROBE, check=False)


def test_the_agent_sees_the_five_nodes_from_its_own_node(cluster_stack: ClusterStack) -> None:
    stack = cluster_stack
    task = agent_task(stack)
    node = node_of(stack, task)
    assert node.role == "manager" and node is not stack.infra
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    seen = node.docker("exec", container, "/opt/autoscaler/bin/python3", "-c",
                       "import docker; c = docker.from_env(); "
                       "print(c.info()['Swarm']['NodeID'], len(c.nodes.list()))").stdout.split()
    assert seen == [node.node_id, "5"]


# --- scaling across the nodes --------------------------------------------------------------


def test_scales_up_across_the_nodes_and_prometheus_discovers_them_all(
    cluster_stack: ClusterStack,
) -> None:
    stack, cluster = cluster_stack, cluster_stack.cluster
    settle(stack, 1)
    wait_policy(stack, stack.write_policy(min_replicas=1, max_replicas=5))
    task = agent_task(stack)

    load_at = stack.set_rate(5 * TARGET_PER_REPLICA)
    wait_until("5 web tasks running, one on each node", lambda: len(
        {t["NodeID"] for t in stack.running(stack.web)}) == 5, timeout=SWARM_START_SECONDS)
    running_at = time.time()
    up = [d for d in stack.decisions(task) if d["applied"] and epoch(d) >= load_at]
    assert [(d["current_replicas"], d["desired_replicas"]) for d in up] == [(1, 5)], up
    decided_at = epoch(up[0])
    FIGURES["scale-up 1 -> 5 across the 5 nodes"] = (
        f"load change -> decision {decided_at - load_at:.1f} s, decision -> 5 running on "
        f"5 nodes {running_at - decided_at:.1f} s")

    # Prometheus (dockerswarm_sd_configs through its node's socket) finds the web tasks on
    # the five nodes of the test Swarm, and scrapes each across the overlay network.
    ids = {n.node_id for n in cluster.nodes}

    def web_targets_up() -> set[str] | None:
        targets = stack.prometheus("/api/v1/targets?state=active")["activeTargets"]
        nodes = {t["discoveredLabels"].get("__meta_dockerswarm_node_id") for t in targets
                 if t["labels"].get("service") == stack.web and t["health"] == "up"}
        return nodes if nodes == ids else None

    wait_until("Prometheus to scrape a web task on each of the 5 nodes", web_targets_up,
               timeout=30)


def test_draining_a_worker_moves_its_tasks_and_changes_no_decision(
    cluster_stack: ClusterStack,
) -> None:
    stack, cluster = cluster_stack, cluster_stack.cluster
    settle(stack, 5)
    wait_policy(stack, stack.write_policy(min_replicas=1, max_replicas=5))
    task = agent_task(stack)
    workers = [n for n in cluster.nodes if n.role == "worker"]
    on_workers = [t for t in stack.running(stack.web)
                  if stack.cluster.by_id(t["NodeID"]) in workers]
    assert on_workers, "no web task runs on a worker: nothing for the drain to move"
    worker = node_of(stack, on_workers[0])
    record_before = stack.service(stack.web)["Spec"]["Labels"].get(RECORD_LABEL)

    with SpecWatch(stack).running() as watch:
        drained_at = time.time()
        stack.infra.docker("node", "update", "--availability", "drain", worker.node_id)
        try:
            def moved() -> bool:
                running = stack.running(stack.web)
                return len(running) == 5 and all(t["NodeID"] != worker.node_id
                                                 for t in running)
            wait_until(f"the web tasks to leave {worker.name}", moved,
                       timeout=SWARM_START_SECONDS)
            moved_at = time.time()
            # Ticks after the move, and the scrapes that see the moved task.
            time.sleep(3 * stack.interval_seconds + 2)
        finally:
            stack.infra.docker("node", "update", "--availability", "active", worker.node_id)
    FIGURES["drain of a worker"] = f"its web task ran elsewhere {moved_at - drained_at:.1f} s later"

    during = [d for d in stack.decisions(task) if epoch(d) >= drained_at]
    assert len(during) >= 3, during
    assert all(d["desired_replicas"] == 5 and d["current_replicas"] == 5
               and not d["applied"] for d in during), during
    assert set(watch.counts()) == {5}
    assert stack.service(stack.web)["Spec"]["Labels"].get(RECORD_LABEL) == record_before


# --- failover -------------------------------------------------------------------------------


MAX_STEP = 2
PERIOD_SECONDS = 90.0
"""Longer than the whole hand-over, so the new agent starts inside the old one's period."""


def test_when_the_agents_node_dies_another_manager_takes_over_without_a_burst(
    cluster_stack: ClusterStack,
) -> None:
    """The old agent scales 1 -> 2 (max_step 2 per period would allow 3), then its node's
    dockerd is SIGKILLed and the load rises to ask for 4. The agent that the Swarm starts on
    another manager may add only 1 more within the period: 2 -> 3 at once, not 2 -> 4, which
    it would do if it did not read the record of the first agent's change."""
    stack, cluster = cluster_stack, cluster_stack.cluster
    settle(stack, 1)
    # Earlier tests' changes are in the record too, and within the period a scale-down
    # leaves room for a larger scale-up (the limit counts the net change): start afresh.
    stack.infra.docker("service", "update", "--detach", "--label-rm", RECORD_LABEL, stack.web)
    wait_policy(stack, stack.write_policy(
        min_replicas=1, max_replicas=4,
        scale_up={"stabilization": "0s", "max_step": MAX_STEP, "period": f"{PERIOD_SECONDS:g}s"},
        scale_down={"stabilization": "10m"}))
    old_task = agent_task(stack)
    old_node = node_of(stack, old_task)
    interval = stack.interval_seconds

    def steps(task: dict[str, Any], since: float) -> list[dict[str, Any]]:
        return [d for d in stack.decisions(task) if d["applied"] and epoch(d) >= since]

    with SpecWatch(stack).running() as watch:
        load_at = stack.set_rate(2 * TARGET_PER_REPLICA)
        old_steps = wait_until("the first agent to scale 1 -> 2",
                               lambda: steps(old_task, load_at), timeout=5 * interval)
        killed_at = time.time()
        cluster.kill(old_node)
        try:
            stack.set_rate(4 * TARGET_PER_REPLICA)
            survivor = stack.infra

            def restarted() -> dict[str, Any] | None:
                found = stack.agent_task(survivor)
                return found if found and found["ID"] != old_task["ID"] else None

            new_task = wait_until("the Swarm to run the agent on another manager", restarted,
                                  timeout=NODE_DOWN_SECONDS + SWARM_START_SECONDS)
            new_node = node_of(stack, new_task)
            container = new_task["Status"]["ContainerStatus"]["ContainerID"]
            started_at = docker_time(new_node.docker(
                "inspect", "--format", "{{.State.StartedAt}}", container).stdout.strip())
            created_at = docker_time(new_task["CreatedAt"])
            first_applied = wait_until(
                "the new agent's first applied decision",
                lambda: next(iter(steps(new_task, 0)), None),
                timeout=TTL_SECONDS + 2 * interval + 10)
            time.sleep(2 * interval)  # a few ticks more: no further step within the period
            new_decisions = stack.decisions(new_task)
            labels = stack.service(stack.web, survivor)["Spec"]["Labels"]
            lease = survivor.docker("node", "inspect", "--format", "{{json .Spec.Labels}}",
                                    *[n.node_id for n in cluster.managers]).stdout
        finally:
            if not old_node.alive():
                cluster.launch(old_node)
                wait_until("the killed node to be ready again", lambda: cluster.ready_nodes(
                    stack.infra) == len(cluster.nodes), timeout=60)

    assert [(d["current_replicas"], d["desired_replicas"]) for d in old_steps] == [(1, 2)]
    first = new_decisions[0]
    applied_at = epoch(first_applied)
    FIGURES["failover: SIGKILL -> new agent's first decision"] = (
        f"{epoch(first) - killed_at:.1f} s (the Swarm made the new task after "
        f"{created_at - killed_at:.1f} s, its container started after "
        f"{started_at - killed_at:.1f} s)")
    FIGURES["failover: container start -> first decision / first applied decision"] = (
        f"{epoch(first) - started_at:.1f} s / {applied_at - started_at:.1f} s "
        f"(bound: TTL {TTL_SECONDS:g} s + 2 intervals = {TTL_SECONDS + 2 * interval:g} s)")

    assert new_node is not old_node and new_node.role == "manager"
    assert applied_at - started_at <= TTL_SECONDS + 2 * interval
    # The new agent took up the record: one more replica (2 -> 3), capped, not 2 -> 4.
    assert (first_applied["current_replicas"], first_applied["desired_replicas"],
            first_applied["reason"]) == (2, 3, "ScaleUpLimit"), first_applied
    after = [d for d in new_decisions if epoch(d) > applied_at]
    assert after and all(d["desired_replicas"] == 3 and not d["applied"] for d in after), after
    # It holds the lease: its holder is the new container (the host name is its short ID).
    assert f'"autoscaler.lease":"{container[:12]}/' in lease, lease
    # No burst across the hand-over: within any period, at most max_step more replicas,
    # by the record of changes and by the counts seen in the spec.
    changes = [c for c in read_record(labels) if c.at.timestamp() >= int(load_at) - 1]
    assert [(c.before, c.after) for c in changes][-2:] == [(1, 2), (2, 3)], changes
    for a, b in itertools.combinations(changes, 2):
        if abs((b.at - a.at).total_seconds()) < PERIOD_SECONDS:
            assert abs(b.after - a.before) <= MAX_STEP, changes
    assert max(watch.counts()) - min(watch.counts()) <= MAX_STEP, watch.seen
    assert watch.counts()[-1] == 3
