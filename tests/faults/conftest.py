"""The fault suite's parts: the integration suite's real Prometheus, load exporter and Swarm
(one of each for the whole suite), the agent as a process, and Swarm services made for a
module and removed after it, whatever happens.

Every agent runs with a 1 s interval, its endpoints on a free port of 127.0.0.1, a lease
label of its own (apart from any real agent on this Swarm), and its log in a file whose
JSON lines the tests read. Every service is labelled autoscaler.test=1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.integration import conftest as integration
from tests.integration.conftest import (
    TEST_IMAGE,
    TEST_LABEL,
    LoadExporter,
    RunningPrometheus,
    docker_cli,
    free_port,
    unique,
    wait_for,
    wait_running,
)

# The integration suite's fixtures, for this folder: one Prometheus, one load exporter and
# one overlay network for the whole fault suite, on the same Swarm.
docker_client = integration.docker_client
overlay_network = integration.overlay_network
load_exporter = integration.load_exporter
prometheus = integration.prometheus

INTERVAL = "1s"
QUERY = 'sum by (service) (astest_load{service=~"{{services}}"})'
LEASE_PREFIX = "astest.fault.lease."
REPO = Path(__file__).resolve().parents[2]


def new_lease() -> str:
    return f"{LEASE_PREFIX}{uuid.uuid4().hex[:8]}"


def policy_document(service: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "service": service, "min_replicas": 1, "max_replicas": 10,
        "metrics": [{"name": "load", "query": QUERY, "target": 100}],
    }
    document.update(overrides)
    return document


def write_policy(path: Path, service: str, **overrides: Any) -> Path:
    path.write_text(yaml.safe_dump(policy_document(service, **overrides)))
    return path


def set_load(prometheus: RunningPrometheus, exporter: LoadExporter, service: str,
             value: float) -> None:
    exporter.gauge.labels(service).set(value)
    prometheus.wait_value(f'astest_load{{service="{service}"}}', value)


def set_loads(prometheus: RunningPrometheus, exporter: LoadExporter,
              loads: dict[str, float]) -> None:
    """Set every service's load, then wait until Prometheus answers each (one scrape)."""
    for service, value in loads.items():
        exporter.gauge.labels(service).set(value)
    for service, value in loads.items():
        prometheus.wait_value(f'astest_load{{service="{service}"}}', value)


def spec_replicas(service: str) -> int:
    return int(docker_cli("service", "inspect", service,
                          "--format", "{{.Spec.Mode.Replicated.Replicas}}"))


def service_labels(service: str) -> dict[str, str]:
    return dict(json.loads(docker_cli("service", "inspect", service,
                                      "--format", "{{json .Spec.Labels}}")) or {})


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSCALER_")}
    env.update(extra or {})
    return env


def autoscaler(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler", *args], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), cwd=REPO)


# --- the agent as a process -----------------------------------------------------------


@dataclass
class AgentProcess:
    """One `autoscaler run|dry-run` process and its log (stdout and stderr)."""

    name: str
    command: str
    process: subprocess.Popen[str]
    log: Path
    port: int
    lease: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
        return found

    def mark(self) -> int:
        """The number of JSON lines logged so far, for `since=`."""
        return len(self.lines())

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.lines()[since:] if e.get("event") == name]

    def decisions(self, service: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [d for d in self.events("scaling_decision", since)
                if service is None or d["service"] == service]

    def ticks(self, since: int = 0) -> list[list[dict[str, Any]]]:
        """The events of each tick that ended after `since`, by its `tick_summary` line (the
        first may have begun before `since`)."""
        ticks: list[list[dict[str, Any]]] = [[]]
        for event in self.lines()[since:]:
            ticks[-1].append(event)
            if event.get("event") == "tick_summary":
                ticks.append([])
        return ticks[:-1]

    def wait_decision(self, service: str, check: Callable[[dict[str, Any]], bool], *,
                      since: int = 0, what: str = "a decision", timeout: float = 30
                      ) -> dict[str, Any]:
        """The first decision for `service` after `since` that passes `check`."""
        def found() -> dict[str, Any] | None:
            self.assert_alive()
            return next((d for d in self.decisions(service, since) if check(d)), None)
        try:
            return wait_for(f"{what} for {service} from agent {self.name}", found,
                            timeout)  # type: ignore[return-value]
        except AssertionError as error:
            last = self.decisions(service, since)[-3:]
            raise AssertionError(f"{error}; its last decisions: {last}") from None

    def wait_ticks(self, count: int, *, since: int = 0, timeout: float = 30) -> None:
        wait_for(f"{count} ticks of agent {self.name}",
                 lambda: self.assert_alive() or len(self.events("tick_summary", since)) >= count,
                 timeout)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def alive(self) -> bool:
        return self.process.poll() is None

    def assert_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"agent {self.name} exited with {self.process.returncode}; "
                                 f"its log ends: {self.text()[-3000:]}")

    def assert_healthy(self) -> None:
        self.assert_alive()
        status, body = self.get("/healthz")
        assert (status, body) == (200, "ok\n"), f"/healthz of {self.name}: {status} {body!r}"

    def no_crash(self) -> None:
        """Nothing in the log says a tick or a decision crashed."""
        text = self.text()
        for marker in ('"tick_failed"', '"retrain_failed"', "Traceback", "DecisionFailed"):
            assert marker not in text, f"{marker} in the log of {self.name}: {text[-3000:]}"

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        return code, time.monotonic() - began

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


class Agents:
    """Starts agents; ends those still running, and removes the leases they left, at close."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[AgentProcess] = []

    def start(self, command: str, *, policies: Path, prometheus_url: str,
              lease: str | None = None, name: str | None = None,
              env: dict[str, str] | None = None, args: tuple[str, ...] = (),
              wait_ticks: int = 1) -> AgentProcess:
        name = name or f"{command}-{len(self.started) + 1}"
        lease = lease or new_lease()
        port = free_port()
        log = self.folder / f"agent-{name}-{uuid.uuid4().hex[:6]}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", command, "--interval", INTERVAL,
             "--policies", str(policies), "--prometheus-url", prometheus_url,
             "--port", str(port), "--listen", "127.0.0.1", "--lease", lease,
             "--log-format", "json", *args],
            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=clean_env(env),
            cwd=REPO,
        )
        agent = AgentProcess(name, command, process, log, port, lease)
        self.started.append(agent)
        if wait_ticks:
            agent.wait_ticks(wait_ticks)
        return agent

    def close(self) -> None:
        for agent in self.started:
            if agent.alive():
                agent.stop(timeout=10)
        leases = {agent.lease for agent in self.started if agent.command == "run"}
        if leases:
            remove_node_labels(leases)


def remove_node_labels(labels: set[str]) -> None:
    """Remove these labels from the manager nodes (a lease a killed agent left behind),
    retrying when a concurrent write of the node wins."""
    client = docker.from_env()
    try:
        for _ in range(10):
            try:
                for node in client.nodes.list(filters={"role": "manager"}):
                    spec = node.attrs["Spec"]
                    own = spec.get("Labels") or {}
                    if not labels & set(own):
                        continue
                    spec["Labels"] = {k: v for k, v in own.items() if k not in labels}
                    node.update(spec)
                return
            except docker.errors.APIError:
                time.sleep(0.2)
    finally:
        client.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    started = Agents(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def module_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agents]:
    started = Agents(tmp_path_factory.mktemp("agents"))
    try:
        yield started
    finally:
        started.close()


# --- Swarm services -------------------------------------------------------------------


@dataclass
class Services:
    """Services made for the tests, in parallel; all removed at close."""

    network: str
    made: list[str] = field(default_factory=list)

    def create(self, *specs: tuple[str, dict[str, Any]]) -> list[str]:
        """One service per (prefix, options): replicas (default 1), mode ("replicated" or
        "global"), labels (service labels), wait (for the running tasks, default True)."""
        names = [unique(prefix) for prefix, _ in specs]
        self.made.extend(names)

        def create_one(name: str, options: dict[str, Any]) -> None:
            args = ["service", "create", "--detach", "--no-resolve-image", "--name", name,
                    "--label", TEST_LABEL, "--network", self.network, "--endpoint-mode",
                    "dnsrr", "--stop-grace-period", "1s"]
            for key, value in options.get("labels", {}).items():
                args += ["--label", f"{key}={value}"]
            if options.get("mode") == "global":
                args += ["--mode", "global"]
            else:
                args += ["--replicas", str(options.get("replicas", 1))]
            docker_cli(*args, TEST_IMAGE)
            if options.get("wait", True) and options.get("mode") != "global":
                wait_running(name, options.get("replicas", 1))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda pair: create_one(pair[0], pair[1][1]), zip(names, specs,
                                                                             strict=True)))
        return names

    def remove(self, name: str) -> None:
        subprocess.run(["docker", "service", "rm", name], capture_output=True, timeout=60)

    def close(self) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self.remove, self.made))


@pytest.fixture(scope="module")
def module_services(docker_client: docker.DockerClient, overlay_network: str
                    ) -> Iterator[Services]:
    services = Services(overlay_network)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def services(docker_client: docker.DockerClient, overlay_network: str) -> Iterator[Services]:
    made = Services(overlay_network)
    try:
        yield made
    finally:
        made.close()
