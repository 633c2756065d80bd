"""A Swarm of 3 managers and 2 workers on this one machine (tests/cluster/nodes.py), one for
the whole run, and the stack of compose/ deployed on it with compose/deploy.sh.

Where things run (the images each node gets follow from it):

    node          role      images            tasks
    astest-n1     manager   prometheus, demo  Prometheus and the load generator (pinned by the
                                              label astest.infra=true: their published ports
                                              are reached at 10.199.0.2), web
    astest-n2, 3  manager   agent, demo       the agent (any manager but n1), web
    astest-n4, 5  worker    demo              web

The agent is kept off Prometheus's node so that killing the agent's node (the failover test)
leaves the metrics up. The cluster is torn down after the last test of this folder, also
when a test fails or the run is interrupted (Ctrl-C, SIGTERM); a run killed outright leaves
traces that the next one removes before it starts (`nodes.clean()`, also
`python -m tests.cluster.nodes`).

Nothing here skips: a machine that cannot build the cluster fails these tests, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.nodes import Cluster, ClusterError, Node, NodeSpec, exclusive, run

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
STACK = "astcluster"
INTERVAL_SECONDS = 2.0
"""The agent's tick. Its lease's TTL is 3 intervals (autoscaler/bootstrap.py)."""
INFRA_LABEL = "astest.infra"
PROMETHEUS_PORT = 9090
LOADGEN_PORT = 8089
POLICIES = Path("/var/lib/astest-policies")
"""The agent's policies folder, bind-mounted from the host: every node shares its files."""
TARGET_PER_REPLICA = 10
"""Requests/s per web replica in the tests' policies: a small load keeps two cores free."""

NODE_SPECS = (
    NodeSpec(1, "manager", ("prometheus", "demo"), labels=((INFRA_LABEL, "true"),)),
    NodeSpec(2, "manager", ("agent", "demo")),
    NodeSpec(3, "manager", ("agent", "demo")),
    NodeSpec(4, "worker", ("demo",)),
    NodeSpec(5, "worker", ("demo",)),
)

LOCK_WAIT_SECONDS = 600.0
"""How long a run waits for another run's test Swarm to go (one at a time per machine)."""

FIGURES: dict[str, str] = {}
"""Measured durations, shown at the end of the run."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs root and builds a 5-node Swarm on this machine "
        "(tests/cluster); deselect with -m 'not cluster'")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("multi-node Swarm: figures")
        for what, value in FIGURES.items():
            terminalreporter.write_line(f"{what}: {value}")


def image_names() -> dict[str, str]:
    tag = os.environ.get("IMAGE_TAG", "local")
    return {name: f"swarm-autoscaler/{name}:{tag}" for name in ("agent", "demo", "prometheus")}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Five dockerds in namespaces of their own, one Swarm, built once for every test of
    this folder and torn down after the last of them (package scope: a session-scoped one
    would keep five engines and the stack busy while the rest of the suite runs)."""
    workdir = tmp_path_factory.mktemp("cluster")
    nodes = [Node(spec, workdir / f"astest-n{spec.index}.dockerd.log") for spec in NODE_SPECS]
    built = Cluster(nodes, workdir)
    # pytest tears fixtures down on KeyboardInterrupt: make SIGTERM (a CI timeout) one too.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(exclusive(wait=LOCK_WAIT_SECONDS))
            except ClusterError as error:
                pytest.fail(str(error), pytrace=False)
            held.callback(built.destroy)  # before the lock goes
            try:
                built.start(image_names())
            except ClusterError as error:
                pytest.fail(f"{error}\n(dockerd logs in {workdir})", pytrace=False)
            FIGURES["set-up (5 dockerds, images, Swarm)"] = (
                f"{built.timings['set-up']:.1f} s ("
                + ", ".join(f"{k} {v:.1f} s" for k, v in built.timings.items()
                            if k != "set-up")
                + ")")
            yield built
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the stack --------------------------------------------------------------------------------


@dataclass
class ClusterStack:
    cluster: Cluster
    policies: Path
    deployed_at: float

    name: str = STACK
    interval_seconds: float = INTERVAL_SECONDS

    @property
    def infra(self) -> Node:
        return self.cluster.node(1)

    @property
    def web(self) -> str:
        return f"{self.name}_web"

    @property
    def agent(self) -> str:
        return f"{self.name}_agent"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.infra.address}:{PROMETHEUS_PORT}"

    @property
    def loadgen_url(self) -> str:
        return f"http://{self.infra.address}:{LOADGEN_PORT}"

    # Policies: the folder is bind-mounted from the host into the agent, on whichever
    # manager it runs: all nodes here share the host's file system.

    def write_policy(self, *, min_replicas: int = 1, max_replicas: int = 5,
                     scale_up: dict[str, Any] | None = None,
                     scale_down: dict[str, Any] | None = None) -> float | None:
        """Write the web service's policy; when it was written (None: it was already that)."""
        behavior = {
            "scale_up": scale_up or {"stabilization": "0s", "max_step": 10, "period": "15s"},
            "scale_down": scale_down or {"stabilization": "0s"},
        }
        text = yaml.safe_dump({
            "service": self.web, "min_replicas": min_replicas, "max_replicas": max_replicas,
            "strategy": "target",
            "metrics": [{
                "name": "requests",
                "query": 'sum by (service) '
                         '(loadgen_offered_requests_per_second{service=~"{{services}}"})',
                "target": TARGET_PER_REPLICA,
            }],
            "behavior": behavior,
        })
        path = self.policies / f"{self.web}.yaml"
        if path.exists() and path.read_text() == text:
            return None
        written_at = time.time()
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(path)
        return written_at

    def set_rate(self, rate: float) -> float:
        """Set the load generator's rate; the time just before it changed."""
        request = urllib.request.Request(f"{self.loadgen_url}/rate",
                                         data=str(rate).encode(), method="PUT")
        before = time.time()
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        return before

    def prometheus(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.prometheus_url}{path}", timeout=5) as response:
            return json.load(response)["data"]

    # The Swarm, through a manager that runs.

    def manager(self, besides: Node | None = None) -> Node:
        return self.cluster.manager_alive(besides=besides)

    def service(self, name: str, via: Node | None = None) -> dict[str, Any]:
        client = (via or self.manager()).client()
        try:
            return dict(client.api.inspect_service(name))  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def spec_replicas(self, via: Node | None = None) -> int:
        return int(self.service(self.web, via)["Spec"]["Mode"]["Replicated"]["Replicas"])

    def tasks(self, service: str, via: Node | None = None) -> list[dict[str, Any]]:
        """Tasks meant to run, with their state."""
        client = (via or self.manager()).client()
        try:
            return list(client.api.tasks(  # type: ignore[no-untyped-call]
                filters={"service": service, "desired-state": "running"}))
        finally:
            client.close()

    def running(self, service: str, via: Node | None = None) -> list[dict[str, Any]]:
        return [t for t in self.tasks(service, via) if t["Status"]["State"] == "running"]

    def agent_task(self, via: Node | None = None) -> dict[str, Any] | None:
        found = self.running(self.agent, via)
        return found[0] if len(found) == 1 else None

    def logs(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """The JSON events a task's container logged, read from the engine of its node."""
        node = self.cluster.by_id(task["NodeID"])
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        text = node.docker("logs", container, timeout=60).stdout
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def decisions(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for e in self.logs(task)
                if e.get("event") == "scaling_decision" and e.get("service") == self.web]


@pytest.fixture(scope="package")
def cluster_stack(cluster: Cluster) -> ClusterStack:
    """compose/stack.yml deployed with compose/deploy.sh against the first manager's socket
    (DOCKER_HOST), run inside that node's network namespace so that its checks of the
    published ports at 127.0.0.1 reach the node's."""
    # Not in pytest's temporary folders: those are private to root (mode 0700), and the
    # agent reads the policies as uid 10001. `clean()` removes this folder with the nodes.
    policies = POLICIES
    shutil.rmtree(policies, ignore_errors=True)
    policies.mkdir(mode=0o755)
    stack = ClusterStack(cluster, policies, deployed_at=0.0)
    stack.write_policy()
    images = image_names()
    infra = f"node.labels.{INFRA_LABEL} == true"
    env = {
        **os.environ,
        "DOCKER_HOST": stack.infra.host, "STACK_NAME": STACK, "POLICIES_DIR": str(policies),
        "SKIP_BUILD": "1", "AUTOSCALER_IMAGE": images["agent"],
        "DEMO_IMAGE": images["demo"], "PROMETHEUS_IMAGE": images["prometheus"],
        "AUTOSCALER_INTERVAL": f"{INTERVAL_SECONDS:g}s", "WEB_WORK_MS": "1",
        "PROMETHEUS_PORT": str(PROMETHEUS_PORT), "LOADGEN_PORT": str(LOADGEN_PORT),
        "PROMETHEUS_CONSTRAINT": infra, "LOADGEN_CONSTRAINT": infra,
        "AUTOSCALER_CONSTRAINT": f"node.labels.{INFRA_LABEL} != true",
        "WAIT_SECONDS": "150",
    }
    began = time.monotonic()
    done = subprocess.run(
        ["nsenter", f"--net={stack.infra.netns}", "--", "bash", str(COMPOSE / "deploy.sh")],
        env=env, capture_output=True, text=True, timeout=240,
    )
    if done.returncode != 0:
        pytest.fail(f"compose/deploy.sh on the test Swarm failed:\n{done.stderr[-4000:]}",
                    pytrace=False)
    stack.deployed_at = time.time()
    FIGURES["stack deployed (compose/deploy.sh)"] = f"{time.monotonic() - began:.1f} s"
    return stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report
    return report


_OUTCOME = pytest.StashKey[pytest.TestReport]()


@pytest.fixture(autouse=True)
def diagnostics_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    """After a failed test, what the Swarm looked like, in the cluster's folder (the cluster
    is gone once the folder's tests end)."""
    yield
    report = request.node.stash.get(_OUTCOME, None)
    if report is None or not report.failed:
        return
    out = cluster.workdir / f"failure-{request.node.name}.txt"
    lines = []
    try:
        manager = cluster.manager_alive()
        for args in (("node", "ls"), ("service", "ls"),
                     ("stack", "ps", "--no-trunc", STACK),
                     ("service", "inspect", "--format", "{{json .Spec.Labels}}", f"{STACK}_web"),
                     ("service", "logs", "--raw", "--tail", "200", f"{STACK}_agent")):
            done = manager.docker(*args, check=False, timeout=30)
            lines += [f"$ docker {' '.join(args)}", done.stdout, done.stderr]
    except Exception as error:  # the report is a help, never a second failure
        lines.append(f"(could not ask the Swarm: {error})")
    out.write_text("\n".join(lines))
    report.sections.append(("multi-node Swarm", f"the Swarm's state: {out}"))


def node_of(stack: ClusterStack, task: dict[str, Any]) -> Node:
    return stack.cluster.by_id(task["NodeID"])


__all__ = ["ClusterStack", "node_of", "run"]
