"""Real parts for the integration tests: a Docker engine in Swarm mode, and Debian's
Prometheus scraping an exporter that the test process controls.

Nothing here skips: without Docker or Prometheus these fixtures fail, loudly, with what to
run (`bash .ci/setup.sh` sets both up)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

TEST_IMAGE = "autoscaler-test/busybox:1"
TEST_LABEL = "autoscaler.test=1"
PROMETHEUS_BINARY = "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


def unique(prefix: str) -> str:
    return f"astest_{prefix}_{uuid.uuid4().hex[:8]}"


# --- Docker and the Swarm -------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        info = client.info()
    except docker.errors.DockerException as error:
        pytest.fail(f"no Docker engine ({error}); run `bash .ci/setup.sh` first", pytrace=False)
    if info.get("Swarm", {}).get("LocalNodeState") != "active":
        pytest.fail("the Docker engine is not a Swarm manager; run `bash .ci/setup.sh`",
                    pytrace=False)
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {TEST_IMAGE} is missing; run `bash .ci/setup.sh`", pytrace=False)
    return client


def docker_cli(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def running_tasks(service: str) -> set[str]:
    lines = docker_cli(
        "service", "ps", service, "--filter", "desired-state=running",
        "--format", "{{.ID}} {{.CurrentState}}",
    ).splitlines()
    return {line.split()[0] for line in lines if " Running" in line}


def wait_running(service: str, count: int, timeout: float = 90.0) -> set[str]:
    wait_for(f"{count} running tasks of {service}",
             lambda: len(running_tasks(service)) == count, timeout)
    return running_tasks(service)


def service_version(service: str) -> int:
    return int(docker_cli("service", "inspect", service, "--format", "{{.Version.Index}}"))


@pytest.fixture(scope="session")
def overlay_network(docker_client: docker.DockerClient) -> Iterator[str]:
    name = unique("net")
    docker_cli("network", "create", "--driver", "overlay", "--attachable",
               "--label", TEST_LABEL, name)
    yield name
    subprocess.run(["docker", "network", "rm", name], capture_output=True, timeout=60)


@pytest.fixture
def make_service(
    docker_client: docker.DockerClient, overlay_network: str
) -> Iterator[Callable[..., str]]:
    """Create a service with `docker service create --network ...`; removed after the test."""
    made: list[str] = []

    def make(prefix: str = "svc", *, replicas: int = 1, mode: str = "replicated",
             extra: tuple[str, ...] = ()) -> str:
        name = unique(prefix)
        made.append(name)
        args = ["service", "create", "--detach", "--no-resolve-image", "--name", name,
                "--label", TEST_LABEL, "--network", overlay_network,
                "--endpoint-mode", "dnsrr", "--stop-grace-period", "1s", *extra]
        args += ["--mode", "global"] if mode == "global" else ["--replicas", str(replicas)]
        docker_cli(*args, TEST_IMAGE)
        if mode != "global":
            wait_running(name, replicas)
        return name

    yield make
    for name in made:
        subprocess.run(["docker", "service", "rm", name], capture_output=True, timeout=60)


@pytest.fixture
def make_stack(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Deploy a one-service stack with `docker stack deploy`; removed after the test."""
    made: list[str] = []

    def make(*, replicas: int = 1) -> str:
        stack = unique("stack")
        made.append(stack)
        compose = tmp_path / f"{stack}.yml"
        compose.write_text(
            "version: '3.8'\n"
            "services:\n"
            "  app:\n"
            f"    image: {TEST_IMAGE}\n"
            "    networks: [inner]\n"
            "    stop_grace_period: 1s\n"
            "    deploy:\n"
            f"      replicas: {replicas}\n"
            "      endpoint_mode: dnsrr\n"
            "      labels: {autoscaler.test: '1'}\n"
            "networks:\n"
            "  inner: {driver: overlay}\n"
        )
        docker_cli("stack", "deploy", "--resolve-image", "never", "-c", str(compose), stack)
        wait_running(f"{stack}_app", replicas)
        return f"{stack}_app"

    yield make
    for stack in made:
        subprocess.run(["docker", "stack", "rm", stack], capture_output=True, timeout=60)


# --- Prometheus ------------------------------------------------------------------------


@dataclass
class LoadExporter:
    """A gauge `astest_load{service}` served on 127.0.0.1 for Prometheus to scrape."""

    gauge: Gauge
    port: int


@pytest.fixture(scope="session")
def load_exporter() -> LoadExporter:
    registry = CollectorRegistry()
    gauge = Gauge("astest_load", "Load the test sets, per service.", ["service"],
                  registry=registry)
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    return LoadExporter(gauge, port)


@dataclass
class RunningPrometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, object]]:
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=5) as response:
            return list(json.load(response)["data"]["result"])

    def wait_value(self, promql: str, value: float, timeout: float = 30.0) -> None:
        """Wait until `promql` answers one series whose value is `value`."""
        def seen() -> bool:
            result = self.query(promql)
            return len(result) == 1 and float(result[0]["value"][1]) == value  # type: ignore[index]
        wait_for(f"Prometheus to answer {promql} = {value}", seen, timeout)


@pytest.fixture(scope="session")
def prometheus(load_exporter: LoadExporter, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RunningPrometheus]:
    if not Path(PROMETHEUS_BINARY).exists():
        pytest.fail(f"{PROMETHEUS_BINARY} is missing; run `bash .ci/setup.sh`", pytrace=False)
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: load\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{load_exporter.port}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [PROMETHEUS_BINARY, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"),
    )
    running = RunningPrometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{running.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for("Prometheus to be ready", ready, 60)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)
