"""The agent behind the Docker socket proxy of the stack (compose/socket-proxy/haproxy.cfg):
Debian's haproxy runs that very config on 127.0.0.1, forwarding to the engine's socket. The
agent's Swarm adapter, pointed at it with DOCKER_HOST, lists, scales, reads the tasks and
keeps its lease through it; every other call is answered 403 by haproxy itself and never
reaches the engine (haproxy's log says which server answered each request)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
import yaml
from docker.types import ContainerSpec, TaskTemplate

from autoscaler.adapters.swarm import DockerConnection, SwarmScaler
from autoscaler.adapters.swarm_lease import SwarmLease, new_holder_id
from autoscaler.core.ports import ScaleConflict
from autoscaler.core.record import RECORD_LABEL
from tests.integration.conftest import (
    TEST_IMAGE,
    LoadExporter,
    RunningPrometheus,
    docker_cli,
    free_port,
    unique,
    wait_running,
)
from tests.integration.haproxy import running_haproxy

CONFIG = Path(__file__).resolve().parents[2] / "compose" / "socket-proxy" / "haproxy.cfg"
DENIED = "forbidden by the socket proxy"

# One line of haproxy's HTTP log: `... frontend backend/server timers status bytes ...
# "METHOD URI HTTP/1.1"`; the server is <NOSRV> when haproxy answered by itself.
_LOG_LINE = re.compile(r' \S+ (?P<server>\S+/\S+) \S+ (?P<status>\d{3}) .*'
                       r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+"$')
_ID = re.compile(r"^(/v[\d.]+)?/(services|nodes|containers)/[^/?]+")


def inspect_call(version: str) -> str:
    """A scale's inspect, made only for a state not from the scaler's last listing: the
    agent's own scales post the listed spec, the update alone."""
    return f"GET /v{version}/services/{{id}}"


def agent_calls(version: str) -> set[str]:
    """The calls the agent makes (`METHOD path`, IDs as {id}, no query), and a scale's
    fallback inspect: all the proxy forwards."""
    return {
        "GET /version",                          # docker-py's API version negotiation
        f"GET /v{version}/services",
        inspect_call(version),
        f"POST /v{version}/services/{{id}}/update",
        f"GET /v{version}/tasks",
        f"GET /v{version}/nodes",                # the managers hold the lease
        f"POST /v{version}/nodes/{{id}}/update",  # the lease, taken, renewed, released
    }


@dataclass(frozen=True)
class Call:
    method: str
    uri: str
    status: int
    forwarded: bool

    @property
    def endpoint(self) -> str:
        """`METHOD path` with any service, node or container ID as {id}, no query."""
        path = _ID.sub(r"\1/\2/{id}", self.uri.split("?")[0])
        return f"{self.method} {path}"


@dataclass
class SocketProxy:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def mark(self) -> int:
        return len(self.log.read_text().splitlines())

    def calls(self, since: int = 0) -> list[Call]:
        found = []
        for line in self.log.read_text().splitlines()[since:]:
            match = _LOG_LINE.search(line)
            if match:
                found.append(Call(match["method"], match["uri"], int(match["status"]),
                                  not match["server"].endswith("/<NOSRV>")))
        return found


@pytest.fixture(scope="module")
def socket_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocketProxy]:
    folder = tmp_path_factory.mktemp("socket-proxy")
    proxy = SocketProxy(free_port(), folder / "haproxy.log")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "SOCKET_PROXY_BIND": f"127.0.0.1:{proxy.port}"}
    with running_haproxy(CONFIG, folder=folder, log=proxy.log, ready_url=f"{proxy.url}/version",
                         env=env):
        yield proxy


def connection_through(proxy: SocketProxy, monkeypatch: pytest.MonkeyPatch) -> DockerConnection:
    """The agent's connection, made from DOCKER_HOST as the agent makes it. The variable is
    set only while the client is made, so that the test's own `docker` commands still talk
    to the engine; a client made again later (after a failure) would not be the proxy's,
    which each test checks at its end."""
    with monkeypatch.context() as patch:
        patch.setenv("DOCKER_HOST", proxy.docker_host)
        patch.delenv("DOCKER_TLS_VERIFY", raising=False)
        patch.delenv("DOCKER_CERT_PATH", raising=False)
        connection = DockerConnection()
        assert connection.api.base_url == proxy.url
    return connection


def test_the_agent_lists_scales_reads_tasks_and_keeps_its_lease_through_the_proxy(
    socket_proxy: SocketProxy, make_service: Callable[..., str],
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = make_service("proxied", replicas=1)
    before = wait_running(name, 1)
    since = socket_proxy.mark()
    connection = connection_through(socket_proxy, monkeypatch)
    scaler = SwarmScaler(connection)
    lease = SwarmLease(connection, ttl=timedelta(seconds=30), holder=new_holder_id(),
                       label=f"astest.lease.{uuid.uuid4().hex[:8]}")

    listed = scaler.list_services()[name]
    scaler.scale(listed, 2, labels={RECORD_LABEL: "1765000000:1>2"})
    assert lease.acquire(datetime.now(UTC))
    held = min(docker_client.api.nodes(filters={"role": "manager"}), key=lambda n: n["ID"])
    assert held["Spec"]["Labels"][lease.label].startswith(lease.holder + " ")
    lease.release()
    tasks = connection.api.tasks(filters={"service": name})

    assert before <= wait_running(name, 2), "the scale through the proxy replaced a task"
    assert scaler.list_services()[name].labels[RECORD_LABEL] == "1765000000:1>2"
    assert {task["ServiceID"] for task in tasks} == {listed.id}
    held = min(docker_client.api.nodes(filters={"role": "manager"}), key=lambda n: n["ID"])
    assert lease.label not in (held["Spec"].get("Labels") or {})
    assert connection.api.base_url == socket_proxy.url, "a call bypassed the proxy"
    calls = socket_proxy.calls(since)
    version = connection.api.api_version
    assert {call.endpoint for call in calls} == agent_calls(version) - {inspect_call(version)}
    assert all(call.status == 200 and call.forwarded for call in calls), calls


def test_a_listed_service_is_scaled_in_one_call_and_one_changed_since_is_a_conflict(
    socket_proxy: SocketProxy, make_service: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the engine is sent for each scale, counted by the proxy: the update alone for a
    listed service, refused as out of sequence once the service changed since the listing;
    the inspect first only for a state not from the scaler's last listing."""
    name = make_service("onecall", replicas=1)
    connection = connection_through(socket_proxy, monkeypatch)
    scaler = SwarmScaler(connection)
    version = connection.api.api_version
    update = f"POST /v{version}/services/{{id}}/update"

    def scale_calls(scale: Callable[[], object], count: int) -> list[tuple[str, int]]:
        """The calls on a service `scale` makes, once `count` are logged and a moment more
        for any other (haproxy writes its log a moment after it answers). The listings'
        lines, which may come after the mark, are left out."""
        since = socket_proxy.mark()
        scale()

        def on_a_service() -> list[Call]:
            return [call for call in socket_proxy.calls(since) if "{id}" in call.endpoint]

        deadline = time.monotonic() + 10
        while len(on_a_service()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        calls = on_a_service()
        assert all(call.forwarded for call in calls), calls
        return [(call.endpoint, call.status) for call in calls]

    listed = scaler.list_services()[name]
    assert scale_calls(lambda: scaler.scale(listed, 2, labels={}), 1) == [(update, 200)]
    assert scaler.list_services()[name].replicas == 2

    stale = scaler.list_services()[name]
    docker_cli("service", "update", "--detach", "--label-add", "touched=1", name)

    def conflict() -> None:
        with pytest.raises(ScaleConflict, match="out of sequence"):
            scaler.scale(stale, 3, labels={})

    assert scale_calls(conflict, 1) == [(update, 500)]
    assert scaler.list_services()[name].replicas == 2

    fresh = scaler.list_services()[name]
    unlisted = SwarmScaler(connection)  # has listed nothing
    assert scale_calls(lambda: unlisted.scale(fresh, 3, labels={}), 2) == [
        (inspect_call(version), 200), (update, 200)]
    after = scaler.list_services()[name]
    assert (after.replicas, after.labels.get("touched")) == (3, "1")
    assert connection.api.base_url == socket_proxy.url, "a call bypassed the proxy"


def test_every_other_call_is_refused_by_the_proxy(
    socket_proxy: SocketProxy, make_service: Callable[..., str],
    docker_client: docker.DockerClient,
) -> None:
    name = make_service("guarded", replicas=1)
    service = docker_client.api.inspect_service(name)
    container = docker_cli("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}")
    node = docker_client.api.nodes(filters={"role": "manager"})[0]["ID"]
    created = unique("created")
    api = docker.APIClient(base_url=socket_proxy.docker_host, version="auto", timeout=10)
    since = socket_proxy.mark()

    # docker-py's own calls, as a compromised agent would make them. Leaving the swarm and
    # removing a node are sent without force: the engine itself would refuse them on this
    # single manager, should the proxy ever let them through.
    forbidden: dict[str, Callable[[], object]] = {
        "list containers": api.containers,
        "create a service": lambda: api.create_service(
            TaskTemplate(ContainerSpec(TEST_IMAGE)), name=created,
            labels={"autoscaler.test": "1"}),
        "remove a service": lambda: api.remove_service(name),
        "exec in a container": lambda: api.exec_create(container, "true"),
        "leave the swarm": lambda: api.leave_swarm(force=False),
        "list secrets": api.secrets,
        "remove a node": lambda: api.remove_node(node, force=False),
        "inspect a node": lambda: api.inspect_node(node),
        "list images": api.images,
        "list volumes": api.volumes,
        "list plugins": api.plugins,
        "service logs": lambda: api.service_logs(name, stdout=True),
        "swarm info": api.info,
        "ping": api.ping,
    }
    for what, call in forbidden.items():
        with pytest.raises(docker.errors.APIError) as refused:
            call()
        assert refused.value.status_code == 403, f"{what}: {refused.value}"
        assert DENIED in str(refused.value.explanation), what

    # An allowed path with a parameter the agent never sends, and paths that only look
    # like allowed ones, sent as they are (no client normalises them).
    version = service["Version"]["Index"]
    raw = [
        ("POST", f"/v1.41/services/{service['ID']}/update?version={version}&rollback=previous"),
        ("POST", "/v1.41/services/create"),
        ("DELETE", f"/services/{service['ID']}"),
        ("GET", "/containers/json"),
        ("GET", "/v1.41/services/x/../../containers/json"),
        ("GET", "/v1.41/services/%2e%2e/%2e%2e/containers/json"),
        ("GET", "//v1.41/services"),
        ("HEAD", "/v1.41/services"),
    ]
    for method, path in raw:
        connection = http.client.HTTPConnection("127.0.0.1", socket_proxy.port, timeout=10)
        connection.request(method, path, body=b"{}" if method == "POST" else None)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status == 403, f"{method} {path}: {response.status} {body!r}"

    def refused_by_the_proxy() -> list[Call]:
        return [call for call in socket_proxy.calls(since)
                if call.status == 403 and not call.forwarded]

    # haproxy writes its log a moment after it answers: wait for the last line.
    deadline = time.monotonic() + 10
    while len(refused_by_the_proxy()) < len(forbidden) + len(raw) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    calls = socket_proxy.calls(since)
    assert len(refused_by_the_proxy()) == len(forbidden) + len(raw), calls
    # docker-py inspects the service (allowed) before asking for its logs (refused).
    allowed = agent_calls(api.api_version)
    leaked = [call for call in calls if call.forwarded and call.endpoint not in allowed]
    assert not leaked, f"forwarded to the engine: {leaked}"
    assert docker_cli("service", "ls", "-q", "--filter", f"name={created}") == ""
    assert docker_cli("service", "inspect", "--format", "{{.ID}}", name) == service["ID"]
    assert docker_client.info()["Swarm"]["LocalNodeState"] == "active"


def test_a_burst_of_refused_calls_from_several_clients_is_logged_whole(
    socket_proxy: SocketProxy,
) -> None:
    """The log is the record of what was refused. haproxy drops a log line rather than
    wait when another of its threads is writing one, so the proxy runs one thread; with
    two, a burst like this one loses a few lines in ten thousand."""
    clients, each = 8, 1250
    since = socket_proxy.mark()

    def refused(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", socket_proxy.port, timeout=10)
        count = 0
        for _ in range(each):
            connection.request("GET", "/containers/json")
            response = connection.getresponse()
            response.read()
            count += response.status == 403
        connection.close()
        return count

    with ThreadPoolExecutor(clients) as pool:
        assert sum(pool.map(refused, range(clients))) == clients * each

    def logged() -> int:
        return sum(1 for call in socket_proxy.calls(since)
                   if call.status == 403 and not call.forwarded)

    deadline = time.monotonic() + 10
    while logged() < clients * each and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged() == clients * each


def test_autoscaler_run_once_scales_through_the_proxy(
    socket_proxy: SocketProxy, make_service: Callable[..., str], tmp_path: Path,
    prometheus: RunningPrometheus, load_exporter: LoadExporter,
) -> None:
    name = make_service("proxyrun", replicas=1)
    before = wait_running(name, 1)
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
        "service": name, "min_replicas": 1, "max_replicas": 3,
        "metrics": [{"name": "load", "target": 100,
                     "query": 'sum by (service) (astest_load{service=~"{{services}}"})'}],
    }))
    load_exporter.gauge.labels(name).set(200)
    prometheus.wait_value(f'astest_load{{service="{name}"}}', 200)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTOSCALER_", "DOCKER_"))}
    env |= {"DOCKER_HOST": socket_proxy.docker_host,
            "AUTOSCALER_LEASE": f"astest.lease.{uuid.uuid4().hex[:8]}"}
    since = socket_proxy.mark()

    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--once", "--policies", str(tmp_path),
         "--prometheus-url", prometheus.url, "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )

    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    (decision,) = [e for e in events if e["event"] == "scaling_decision" and e["service"] == name]
    assert (decision["desired_replicas"], decision["applied"]) == (2, True), decision
    assert before <= wait_running(name, 2)
    calls = socket_proxy.calls(since)
    assert any(call.endpoint.endswith("/services/{id}/update") for call in calls)
    assert all(call.status == 200 and call.forwarded for call in calls), calls
