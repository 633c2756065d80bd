"""Capacity, placement and load on the Swarm of 3 managers and 2 workers (issue 18 items
3-6; see conftest.py):

- a raise the scheduler cannot place (a service on the workers only, one task per node) is
  held as `Unschedulable` with the number of waiting tasks and the scheduler's reason, the
  count stops rising while they wait, `/metrics` shows them, and a scale-down goes through;
- a client pinned to one web task (a second load generator sent to that task's address)
  makes a per-task metric uneven: the decisions carry the coefficient of variation and the
  hottest task's share, and the agent logs `load_imbalance`;
- a service whose replicas all run on one node while the others could run them logs
  `availability`, and a decision's `placement.nodes` is the number of distinct nodes of its
  running tasks;
- with CPU per request raised (WORK_MS), the web service scales on the CPU its tasks export
  (`process_cpu_seconds_total`), the decisions that raised it naming `driven_by: cpu`.

Each test makes the services, load and policies it needs and removes them after; they run
after test_multinode.py on the same stack, and each also runs alone."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import (
    FIGURES,
    INFRA_LABEL,
    STACK,
    ClusterStack,
    image_names,
    node_of,
)
from tests.cluster.nodes import ClusterError, wait_until
from tests.cluster.test_multinode import agent_task, epoch, settle

pytestmark = pytest.mark.cluster

NETWORK = f"{STACK}_net"
CAPPED = "astcluster-capped"
"""A web service that only the two workers may run, one task each."""
CAPPED_LOAD = "astcluster-capped-load"
CAPPED_LOAD_PORT = 8090
"""The control port of the capped service's load generator, published on n1."""
PINNED = "astcluster-pinned"
"""A load generator sent to one web task's address: a client pinned to one task."""
SPREAD = "astcluster-spread"
OFFERED = 'sum by (service) (loadgen_offered_requests_per_second{service=~"{{services}}"})'
PER_TASK_REQUESTS = 'rate(http_requests_total{service=~"{{services}}"}[30s])'
CPU = 'sum by (service) (rate(process_cpu_seconds_total{service=~"{{services}}"}[30s]))'
FAST_UP = {"stabilization": "0s", "max_step": 10, "period": "15s"}


# --- helpers ----------------------------------------------------------------------------------


def put_policy(stack: ClusterStack, document: dict[str, Any]) -> float:
    """Write a policy file (any service); when it was written."""
    path = stack.policies / f"{document['service']}.yaml"
    written_at = time.time()
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False))
    temporary.replace(path)
    return written_at


def remove_policy(stack: ClusterStack, service: str) -> None:
    (stack.policies / f"{service}.yaml").unlink(missing_ok=True)


def taken_up(stack: ClusterStack, service: str, written_at: float) -> None:
    """Wait until the agent has reloaded the service's policy written at `written_at`."""
    task = agent_task(stack)
    wait_until(f"the agent to take up the policy of {service}", lambda: any(
        e.get("event") == "policy_reloaded" and e.get("service") == service
        and epoch(e) >= written_at for e in stack.logs(task)),
        timeout=6 * stack.interval_seconds)


def decisions_of(stack: ClusterStack, task: dict[str, Any], service: str,
                 since: float = 0.0) -> list[dict[str, Any]]:
    return [e for e in stack.logs(task) if e.get("event") == "scaling_decision"
            and e.get("service") == service and epoch(e) >= since]


def events_of(stack: ClusterStack, task: dict[str, Any], event: str, service: str,
              since: float = 0.0) -> list[dict[str, Any]]:
    return [e for e in stack.logs(task) if e.get("event") == event
            and e.get("service") == service and epoch(e) >= since]


def replicas_of(stack: ClusterStack, service: str) -> int:
    return int(stack.service(service)["Spec"]["Mode"]["Replicated"]["Replicas"])


def agent_metrics(stack: ClusterStack) -> str:
    """The agent's /metrics, read inside its container (its port is not published)."""
    task = agent_task(stack)
    node = node_of(stack, task)
    container = task["Status"]["ContainerStatus"]["ContainerID"]
    return node.docker(
        "exec", container, "/opt/autoscaler/bin/python3", "-c",
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:9180/metrics', timeout=5).read().decode())").stdout


def gauge(text: str, name: str, service: str) -> float | None:
    labels = rf'\{{[^}}]*service="{re.escape(service)}"[^}}]*\}}'
    pattern = re.compile(rf"^{re.escape(name)}{labels} (\S+)$", re.MULTILINE)
    found = pattern.search(text)
    return float(found.group(1)) if found else None


def set_availability(stack: ClusterStack, node_id: str, availability: str) -> None:
    """`docker node update --availability`, made again when the agent renewed its lease (a
    label on the first manager) between the CLI's read of the node and its update."""
    for attempt in range(10):
        try:
            stack.infra.docker("node", "update", "--availability", availability, node_id)
            return
        except ClusterError as error:
            if "update out of sequence" not in str(error) or attempt == 9:
                raise
            time.sleep(0.2)


def remove_services(stack: ClusterStack, *names: str) -> None:
    stack.infra.docker("service", "rm", *names, check=False)


def start_loadgen(stack: ClusterStack, name: str, *, target_url: str, target_service: str,
                  rate: float, port: int | None = None, scrape: bool = False) -> None:
    """Another load generator of the demo image on n1 (beside the stack's), on the stack's
    network; `port`: its control port published there; `scrape`: Prometheus scrapes its
    `loadgen_offered_requests_per_second{service=target_service}`."""
    args = ["service", "create", "--detach", "--no-resolve-image", "--name", name,
            "--network", NETWORK, "--endpoint-mode", "dnsrr", "--stop-grace-period", "1s",
            "--constraint", f"node.labels.{INFRA_LABEL} == true",
            "--env", f"TARGET_URL={target_url}", "--env", f"TARGET_SERVICE={target_service}",
            "--env", f"LOAD_RATE={rate:g}"]
    if port is not None:
        args += ["--publish", f"mode=host,target=8089,published={port}"]
    if scrape:
        args += ["--label", "prometheus.scrape=true", "--label", "prometheus.port=8089"]
    stack.infra.docker(*args, image_names()["demo"], "python3", "/app/loadgen.py")


def set_rate_at(stack: ClusterStack, port: int, rate: float) -> float:
    request = urllib.request.Request(f"http://{stack.infra.address}:{port}/rate",
                                     data=str(rate).encode(), method="PUT")
    before = time.time()
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    return before


def overlay_address(task: dict[str, Any]) -> str:
    """The task's address on the stack's network (for a client inside that network)."""
    for attachment in task.get("NetworksAttachments") or []:
        if attachment["Network"]["Spec"]["Name"] == NETWORK:
            return str(attachment["Addresses"][0].split("/")[0])
    raise ClusterError(f"task {task['ID']} has no address on {NETWORK}")


class CountWatch:
    """A service's replica count in its spec, polled every half second."""

    def __init__(self, stack: ClusterStack, service: str) -> None:
        self.stack, self.service = stack, service
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.seen.append((time.time(), replicas_of(self.stack, self.service)))
            self._stop.wait(0.5)

    @contextmanager
    def running(self) -> Iterator[CountWatch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)

    def between(self, start: float, end: float) -> list[int]:
        return [count for at, count in self.seen if start <= at <= end]


# --- capacity: a raise the scheduler cannot place ------------------------------------------


def test_a_raise_that_cannot_be_placed_is_held_and_a_scale_down_is_not(
    cluster_stack: ClusterStack,
) -> None:
    """The capped service may run only on the 2 workers, one task per node: a third task
    waits ("no suitable node"). Its load asks for 3, then for 6: the agent raises to 3, then
    holds at 3 (`Unschedulable`, 1 task waiting, the scheduler's reason), never higher; when
    the load drops it scales down at once, waiting task or not."""
    stack = cluster_stack
    settle(stack, 3)  # web: steady, out of the way
    workers = {n.node_id for n in stack.cluster.nodes if n.role == "worker"}
    stack.infra.docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", CAPPED,
        "--replicas", "1", "--constraint", "node.role == worker", "--replicas-max-per-node", "1",
        "--network", NETWORK, "--endpoint-mode", "dnsrr", "--stop-grace-period", "1s",
        "--env", "WORK_MS=1", image_names()["demo"], "python3", "/app/web.py")
    try:
        start_loadgen(stack, CAPPED_LOAD, target_url=f"http://{CAPPED}:8000/",
                      target_service=CAPPED, rate=10, port=CAPPED_LOAD_PORT, scrape=True)
        written_at = put_policy(stack, {
            "service": CAPPED, "min_replicas": 1, "max_replicas": 6,
            "metrics": [{"name": "requests", "query": OFFERED, "target": 10}],
            "behavior": {"scale_up": FAST_UP, "scale_down": {"stabilization": "0s"},
                         "manual_override": "0s"},
        })
        taken_up(stack, CAPPED, written_at)
        task = agent_task(stack)
        wait_until("the capped service's first decision on its load", lambda: any(
            d["metrics"].get("requests") == 10 and d["current_replicas"] == 1
            for d in decisions_of(stack, task, CAPPED, written_at)), timeout=40)

        with CountWatch(stack, CAPPED).running() as watch:
            raised_at = set_rate_at(stack, CAPPED_LOAD_PORT, 30)  # asks 3: 2 fit
            raise_ = wait_until("the raise 1 -> 3", lambda: next(
                (d for d in decisions_of(stack, task, CAPPED, raised_at) if d["applied"]),
                None), timeout=10 * stack.interval_seconds)
            waiting = wait_until("a decision that sees the third task wait", lambda: next(
                (d for d in decisions_of(stack, task, CAPPED, epoch(raise_))
                 if d.get("placement", {}).get("unplaceable")), None),
                timeout=10 * stack.interval_seconds)
            placed = wait_until("a decision that sees 2 tasks run and 1 wait", lambda: next(
                (d for d in decisions_of(stack, task, CAPPED, epoch(raise_))
                 if d.get("placement", {}).get("unplaceable")
                 and d["placement"]["running"] == 2), None),
                timeout=10 * stack.interval_seconds)
            running = stack.running(CAPPED)

            more_at = set_rate_at(stack, CAPPED_LOAD_PORT, 60)  # asks 6: none more fits
            held = wait_until("an Unschedulable decision", lambda: next(
                (d for d in decisions_of(stack, task, CAPPED, more_at)
                 if d["reason"] == "Unschedulable"), None), timeout=10 * stack.interval_seconds)
            time.sleep(3 * stack.interval_seconds)  # a few ticks more: the count stays
            metrics = agent_metrics(stack)
            during = decisions_of(stack, task, CAPPED, more_at)
            held_until = time.time()

            less_at = set_rate_at(stack, CAPPED_LOAD_PORT, 10)  # asks 1
            down = wait_until("the scale-down 3 -> 1", lambda: next(
                (d for d in decisions_of(stack, task, CAPPED, less_at) if d["applied"]),
                None), timeout=10 * stack.interval_seconds)
            wait_until("one capped task left", lambda: replicas_of(stack, CAPPED) == 1
                       and not [t for t in stack.tasks(CAPPED)
                                if t["Status"]["State"] != "running"], timeout=30)
    finally:
        remove_policy(stack, CAPPED)
        remove_services(stack, CAPPED, CAPPED_LOAD)

    assert (raise_["current_replicas"], raise_["desired_replicas"]) == (1, 3), raise_
    assert len(running) == 2 and {t["NodeID"] for t in running} == workers, running
    placement = placed["placement"]
    assert placement["running"] == 2 and placement["nodes"] == 2, placed
    assert placement["unplaceable"] == 1, placed
    assert "no suitable node" in placement["reason"], placed
    # While the task waits, every decision holds at 3, saying why, and the spec never grows.
    assert during and all(d["desired_replicas"] == 3 and not d["applied"] for d in during), during
    late = [d for d in during if epoch(d) >= epoch(held)]
    assert all(d["reason"] == "Unschedulable" for d in late), late
    assert held["metrics"]["requests"] == 60 and held["recommended_replicas"] == 6, held
    assert held["placement"]["unplaceable"] == 1, held
    assert "1 task(s) wait for a node" in held["message"], held
    assert placement["reason"] in held["message"], held
    assert max(watch.between(raised_at, held_until)) == 3, watch.seen
    assert gauge(metrics, "autoscaler_unschedulable_tasks", CAPPED) == 1, metrics[-3000:]
    # A scale-down is never held back, the waiting task notwithstanding.
    assert (down["current_replicas"], down["desired_replicas"]) == (3, 1), down
    assert down["placement"]["unplaceable"] == 1 and down["reason"] != "Unschedulable", down

    FIGURES["capacity: raise 1 -> 3 of a service 2 nodes can hold"] = (
        f"decision {epoch(raise_) - raised_at:.1f} s after the load change; the waiting task "
        f"seen {epoch(waiting) - epoch(raise_):.1f} s after the raise "
        f"({placement['reason']!r})")
    FIGURES["capacity: load asks 6 -> Unschedulable"] = (
        f"{epoch(held) - more_at:.1f} s; held at 3 for {len(during)} decisions; scale-down "
        f"3 -> 1 {epoch(down) - less_at:.1f} s after the load dropped")


# --- load balance: a client pinned to one task -------------------------------------------------


IMBALANCE_FOR = "30s"


def test_a_client_pinned_to_one_task_is_logged_as_load_imbalance(
    cluster_stack: ClusterStack,
) -> None:
    """3 web tasks; the stack's load generator spreads 15 requests/s round-robin (5 each),
    and a second one sends 20 requests/s to one task's address: loads about 25, 5, 5 (cv
    0.81, hottest share 0.71). The policy's per-task request rate (target 15: 3 tasks carry
    the 35 requests/s in all) keeps the count at 3, and sets `balance: {max_cv: 0.5, for:
    30s}`: more replicas would not cool the pinned task."""
    stack = cluster_stack
    settle(stack, 3)
    written_at = put_policy(stack, {
        "service": stack.web, "min_replicas": 3, "max_replicas": 3,
        "metrics": [{"name": "requests", "query": PER_TASK_REQUESTS, "target": 15,
                     "per_task": True}],
        "balance": {"max_cv": 0.5, "for": IMBALANCE_FOR},
    })
    taken_up(stack, stack.web, written_at)
    task = agent_task(stack)
    stack.set_rate(15)
    tasks = stack.running(stack.web)
    assert len(tasks) == 3, tasks
    hot = tasks[0]
    try:
        pinned_at = time.time()
        start_loadgen(stack, PINNED, target_url=f"http://{overlay_address(hot)}:8000/",
                      target_service=stack.web, rate=20)
        uneven = wait_until("the first decision with cv above 0.5", lambda: next(
            (d for d in decisions_of(stack, task, stack.web, pinned_at)
             if d.get("balance", {}).get("cv", 0) > 0.5), None), timeout=60)
        logged = wait_until("load_imbalance", lambda: next(
            (e for e in events_of(stack, task, "load_imbalance", stack.web, pinned_at)
             if e.get("problem")), None), timeout=60)
        metrics = agent_metrics(stack)
        at_log = [d for d in decisions_of(stack, task, stack.web, pinned_at)
                  if d.get("balance", {}).get("imbalanced")]
        per_task = stack.prometheus(
            "/api/v1/query?query=" + urllib.parse.quote(
                f'rate(http_requests_total{{service="{stack.web}"}}[30s])'))["result"]
        running = stack.running(stack.web)
    finally:
        remove_services(stack, PINNED)

    assert at_log, "no decision says imbalanced once load_imbalance was logged"
    decision = at_log[0]
    balance = decision["balance"]
    assert balance["metric"] == "requests" and balance["tasks"] >= 3, decision
    assert balance["cv"] > 0.5 and balance["hottest_share"] > 0.5, decision
    assert logged["cv"] > 0.5 and logged["metric"] == "requests", logged
    # It lasted `for` before it was said, and the count stayed where the policy pins it.
    assert epoch(logged) - epoch(uneven) >= 30 - stack.interval_seconds, (uneven, logged)
    assert decision["desired_replicas"] == 3 == decision["current_replicas"], decision
    assert gauge(metrics, "autoscaler_load_imbalanced", stack.web) == 1
    # The hottest task is the one the pinned client sends to.
    hottest = max(per_task, key=lambda s: float(s["value"][1]))
    assert hottest["metric"]["task"] == hot["ID"], per_task
    # The decision's placement: its running tasks and the distinct nodes they run on.
    assert decision["placement"]["running"] == len(running) == 3, decision
    assert decision["placement"]["nodes"] == len({t["NodeID"] for t in running}), (
        decision, [t["NodeID"] for t in running])

    FIGURES["load imbalance (25/5/5 requests/s over 3 tasks)"] = (
        f"cv {balance['cv']:.2f}, hottest share {balance['hottest_share']:.2f} "
        f"({balance['tasks']} tasks); cv > 0.5 {epoch(uneven) - pinned_at:.1f} s after the "
        f"pinned client was created, load_imbalance {epoch(logged) - epoch(uneven):.1f} s "
        f"later (for: {IMBALANCE_FOR})")


# --- spread: every replica on one node --------------------------------------------------------


def test_replicas_all_on_one_node_while_others_could_run_them_log_availability(
    cluster_stack: ClusterStack,
) -> None:
    """Every node but n5 paused (running tasks stay, no new ones), the spread service is
    created with 2 replicas: both on n5. While the others are paused no other node could
    take them: nothing to say. Once they are active again, the agent logs `availability`
    (the Swarm does not move running tasks by itself)."""
    stack, cluster = cluster_stack, cluster_stack.cluster
    lone = cluster.node(5)
    others = [n for n in cluster.nodes if n is not lone]
    written_at = put_policy(stack, {
        "service": SPREAD, "min_replicas": 2, "max_replicas": 2,
        "metrics": [{"name": "steady", "target": 1,
                     "query": f'label_replace(vector(2), "service", "{SPREAD}", "", "")'}],
        "behavior": {"manual_override": "0s"},
    })
    taken_up(stack, SPREAD, written_at)
    task = agent_task(stack)
    try:
        try:
            for node in others:
                set_availability(stack, node.node_id, "pause")
            stack.infra.docker(
                "service", "create", "--detach", "--no-resolve-image", "--name", SPREAD,
                "--replicas", "2", "--stop-grace-period", "1s", image_names()["demo"],
                "python3", "/app/web.py")
            wait_until(f"2 {SPREAD} tasks on {lone.name}", lambda: [
                t["NodeID"] for t in stack.running(SPREAD)] == [lone.node_id] * 2, timeout=30)
            created_at = time.time()
            paused = wait_until("a decision on the 2 tasks while the others are paused",
                                lambda: next((d for d in decisions_of(
                                    stack, task, SPREAD, created_at)
                                    if d.get("placement", {}).get("running") == 2), None),
                                timeout=10 * stack.interval_seconds)
        finally:
            for node in others:
                set_availability(stack, node.node_id, "active")
        active_at = time.time()
        warned = wait_until("availability", lambda: next(
            (e for e in events_of(stack, task, "availability", SPREAD, active_at)
             if e.get("problem")), None), timeout=10 * stack.interval_seconds)
        after = [d for d in decisions_of(stack, task, SPREAD, active_at - stack.interval_seconds)
                 if d.get("placement", {}).get("on_one_node")]
        running = stack.running(SPREAD)
        metrics = agent_metrics(stack)
    finally:
        remove_policy(stack, SPREAD)
        remove_services(stack, SPREAD)

    assert paused["placement"] == {"running": 2, "nodes": 1, "unplaceable": 0}, paused
    assert (warned["running"], warned["nodes"]) == (2, 1), warned
    assert after, "no decision says on_one_node"
    assert after[0]["placement"]["nodes"] == len({t["NodeID"] for t in running}) == 1, after
    assert gauge(metrics, "autoscaler_availability_on_one_node", SPREAD) == 1
    FIGURES["availability: 2 replicas on one node"] = (
        f"logged {epoch(warned) - active_at:.1f} s after the other nodes became active")


# --- CPU from the tasks' own exporter ---------------------------------------------------------


WORK_MS = 12
CPU_RATE = 20
"""20 requests/s at 12 ms of CPU each: about 0.25 cores in all, 3 replicas at 0.1 each."""
CPU_TARGET = 0.1


def set_work_ms(stack: ClusterStack, work_ms: int, *, wait: bool = True) -> None:
    """Set the web service's WORK_MS (a rolling update of its tasks)."""
    stack.infra.docker("service", "update", "--detach", "--env-add", f"WORK_MS={work_ms}",
                       stack.web)
    if not wait:
        return

    def updated() -> bool:
        tasks = stack.tasks(stack.web)
        return bool(tasks) and len(tasks) == stack.spec_replicas() and all(
            t["Status"]["State"] == "running"
            and f"WORK_MS={work_ms}" in t["Spec"]["ContainerSpec"].get("Env", [])
            for t in tasks)

    wait_until(f"the web tasks to run with WORK_MS={work_ms}", updated, timeout=60)


def test_scales_on_the_cpu_the_tasks_export_and_says_cpu_drove_it(
    cluster_stack: ClusterStack,
) -> None:
    """The policy: CPU summed over the tasks (prometheus-client's process_cpu_seconds_total,
    target 0.1 cores per replica) and the offered request rate with a target so high (100)
    it asks for 1 replica. The load: 20 requests/s of 12 ms of CPU each."""
    stack = cluster_stack
    settle(stack, 1)
    stack.set_rate(0)
    written_at = put_policy(stack, {
        "service": stack.web, "min_replicas": 1, "max_replicas": 4,
        "metrics": [{"name": "cpu", "query": CPU, "target": CPU_TARGET},
                    {"name": "requests", "query": OFFERED, "target": 100}],
        # The sum dips while new tasks are not yet scraped: no scale-down meanwhile.
        "behavior": {"scale_up": FAST_UP, "scale_down": {"stabilization": "5m"}},
    })
    try:
        set_work_ms(stack, WORK_MS)
        taken_up(stack, stack.web, written_at)
        task = agent_task(stack)
        # Prometheus finds the new task (up to 5 s) and needs two scrapes for a rate.
        (new,) = stack.running(stack.web)
        query = urllib.parse.quote(f'rate(process_cpu_seconds_total{{task="{new["ID"]}"}}[30s])')
        wait_until("a CPU rate of the new web task", lambda: stack.prometheus(
            f"/api/v1/query?query={query}")["result"], timeout=30)
        wait_until("the CPU to be low before the load", lambda: any(
            (d["metrics"].get("cpu") or 1) < CPU_TARGET
            for d in decisions_of(stack, task, stack.web, time.time() - 0.5)), timeout=40)

        load_at = stack.set_rate(CPU_RATE)
        wait_until("the web service to scale to 3 on CPU", lambda: stack.spec_replicas() >= 3,
                   timeout=75)
        wait_until("3 web tasks running", lambda: len(stack.running(stack.web)) >= 3,
                   timeout=30)
        running_at = time.time()
        time.sleep(2 * stack.interval_seconds)
        since = decisions_of(stack, task, stack.web, load_at)
    finally:
        stack.set_rate(0)
        set_work_ms(stack, 1, wait=False)

    raises = [d for d in since if d["applied"] and d["desired_replicas"] > d["current_replicas"]]
    assert raises, since
    assert all(d.get("driven_by") == "cpu" for d in raises), raises
    assert all(d["metrics"]["requests"] == CPU_RATE for d in raises), raises
    assert raises[0]["current_replicas"] == 1 and raises[-1]["desired_replicas"] >= 3, raises
    steps = ", ".join(f"{d['current_replicas']} -> {d['desired_replicas']} at "
                      f"{epoch(d) - load_at:.1f} s (cpu {d['metrics']['cpu']:.3f})"
                      for d in raises)
    FIGURES[f"CPU scale-up ({CPU_RATE} requests/s x {WORK_MS} ms, target {CPU_TARGET} cores)"] = (
        f"{steps}; 3 running {running_at - load_at:.1f} s after the load change")
