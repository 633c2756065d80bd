"""The deadline of a Docker call bounds the whole exchange: an engine, or a socket proxy in
front of it, that hangs or trickles its answer faster than any per-read timeout is given
up at the deadline, over a unix socket and over tcp, for every call the agent makes (the
API version asked on connecting, the listings, a scale's update, the inspect a scale falls
back to for a state not from the last listing, the lease's node listing and update), and a
call given up leaves no thread and no socket behind. A scale of a listed service is that
one update, posting the listed spec."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import pytest

from autoscaler.adapters.swarm import (
    DockerConnection,
    SwarmScaler,
    service_state,
    with_replicas,
)
from autoscaler.adapters.swarm_lease import SwarmLease
from autoscaler.core.model import ServiceState
from autoscaler.core.ports import ScaleFailed, SourceUnavailable
from autoscaler.core.record import RECORD_LABEL
from tests.integration.conftest import free_port, wait_running
from tests.integration.http_fakes import (
    HOSTILE_MODES,
    check_nothing_left,
    held_open,
    hostile_answer,
    wait_until,
)

# The deadline of each call: long enough for the exchanges the fake engine answers at once
# (the version, the listings before an update) to end within it on a loaded machine.
DEADLINE = 0.3
# Past the deadline: the closing of the connection, and scheduling. A call typically ends
# within TYPICAL of it; none may end later than WORST, which allows for the process not
# being run for a while on a busy machine (with a per-read timeout, each would take hours).
TYPICAL, WORST = 0.05, 1.0
INTERVAL = 0.02  # the fake engine's byte interval: fifteen times shorter than the deadline
TRANSPORTS = ("unix", "tcp")
MODES = HOSTILE_MODES

SERVICE = {
    "ID": "svc1", "Version": {"Index": 7}, "UpdatedAt": "2024-01-01T00:00:00.123456789Z",
    "Spec": {"Name": "web", "Labels": {}, "Mode": {"Replicated": {"Replicas": 1}},
             "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}},
}
NODE = {
    "ID": "node1", "Version": {"Index": 3},
    "Spec": {"Role": "manager", "Availability": "active", "Labels": {}},
    "Status": {"State": "ready"}, "Description": {"Hostname": "fake"},
}
VERSION = {"ApiVersion": "1.45", "MinAPIVersion": "1.24", "Version": "fake"}
ANSWERED = {("GET", "/version"): VERSION}  # all the engine answers unless told more
LISTINGS = {("GET", "/services"): [SERVICE], ("GET", "/tasks"): [], ("GET", "/nodes"): [NODE]}


@dataclass(frozen=True)
class Verbatim:
    """An answer of the fake engine sent as it is: its status and body."""

    status: str
    body: bytes


class FakeEngine:
    """A Docker engine on a unix socket or on 127.0.0.1 that answers the requests in
    `answers` ((method, path without the /vN.NN prefix and the query) -> JSON) at once,
    over a kept-alive connection, and any other by `mode`:
    - silent: answers nothing;
    - trickle_headers: its status line and headers a byte every `interval`, forever;
    - trickle_body: its headers at once (Content-Length: `length`), then the body a byte
      every `interval`;
    - trickle_chunked: the same with Transfer-Encoding: chunked, a one-byte chunk (its size
      line, the byte, its end) a byte at a time.
    One thread (a selector loop) whatever the number of connections, so that the threads a
    test counts are the client's. A connection ends when the client closes it, or
    `hang_up_after` seconds into a hostile answer (so that a client without a deadline
    fails a test instead of hanging it).
    """

    def __init__(self, mode: str, transport: str, *, interval: float = INTERVAL,
                 length: int = 1_000_000, hang_up_after: float = 5.0,
                 answers: dict[tuple[str, str], Any] | None = None) -> None:
        assert mode in (*MODES, "answer"), mode
        self.mode, self.interval, self.length = mode, interval, length
        self.hang_up_after = hang_up_after
        self.answers = dict(ANSWERED if answers is None else answers)
        self.seen: list[tuple[str, str]] = []
        self.posted: list[tuple[str, str, Any]] = []
        """(path, query, JSON body) of each POST, in order."""
        if transport == "unix":
            self._directory = tempfile.TemporaryDirectory(prefix="fake-docker-")
            path = str(Path(self._directory.name) / "docker.sock")
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(path)
            self.url = f"unix://{path}"
        else:
            self._listener = socket.socket()
            self._listener.bind(("127.0.0.1", 0))
            self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.accepted = 0
        self._buffers: dict[socket.socket, bytes] = {}
        self._scripts: dict[socket.socket, Iterator[bytes]] = {}
        self._next_send: dict[socket.socket, float] = {}
        self._hang_up: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """Connections the engine still holds open."""
        with self._lock:
            return len(self._buffers)

    def _requests(self, conn: socket.socket) -> Iterator[tuple[str, str]]:
        """The complete requests in the connection's buffer, taken out of it."""
        buffer = self._buffers[conn]
        while b"\r\n\r\n" in buffer:
            head, rest = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(rest) < length:
                break
            body, buffer = rest[:length], rest[length:]
            path = re.sub(r"^/v[0-9.]+/", "/", target.split("?", 1)[0])
            if method == "POST":
                self.posted.append((path, target.partition("?")[2],
                                    json.loads(body) if body else None))
            yield method, path
        self._buffers[conn] = buffer

    def _serve(self, conn: socket.socket, method: str, path: str) -> None:
        self.seen.append((method, path))
        if self.mode != "answer" and (method, path) not in self.answers:
            self._scripts[conn] = hostile_answer(self.mode, self.length)
            self._next_send[conn] = time.monotonic()
            self._hang_up[conn] = time.monotonic() + self.hang_up_after
            return
        answer = self.answers.get((method, path), {})
        status, body = (answer.status, answer.body) if isinstance(answer, Verbatim) \
            else ("200 OK", json.dumps(answer).encode())
        conn.setblocking(True)
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n".encode()
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        conn.setblocking(False)

    def _close(self, conn: socket.socket, selector: selectors.BaseSelector) -> None:
        selector.unregister(conn)
        conn.close()
        with self._lock:
            del self._buffers[conn]
            self._scripts.pop(conn, None)
            self._next_send.pop(conn, None)
            self._hang_up.pop(conn, None)

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        while not self._stopping:
            for key, _ in selector.select(timeout=self.interval / 2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ)
                    with self._lock:
                        self._buffers[conn] = b""
                        self.accepted += 1
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._close(sock, selector)
                    continue
                if sock in self._scripts:
                    continue  # a hostile answer is under way: what follows is ignored
                self._buffers[sock] += data
                for method, path in list(self._requests(sock)):
                    self._serve(sock, method, path)
                    if sock in self._scripts:
                        break
            now = time.monotonic()
            for conn, due in list(self._next_send.items()):
                if due > now:
                    continue
                piece = next(self._scripts[conn], None)
                try:
                    if piece is None or now > self._hang_up[conn]:
                        raise OSError("sent all, or for long enough")
                    conn.send(piece)
                except OSError:
                    self._close(conn, selector)
                    continue
                self._next_send[conn] = now + self.interval
        for conn in list(self._buffers):
            self._close(conn, selector)
        selector.close()

    def close(self) -> None:
        self._stopping = True
        self._thread.join(timeout=10)
        self._listener.close()
        if self.url.startswith("unix://"):
            self._directory.cleanup()

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


@pytest.fixture(autouse=True)
def _docker_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only DOCKER_HOST, set by each test, names the engine: no TLS, no CLI context."""
    for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


def fake_engine(monkeypatch: pytest.MonkeyPatch, mode: str, transport: str,
                **options: Any) -> FakeEngine:
    engine = FakeEngine(mode, transport, **options)
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    return engine


def timed_failures(call: Callable[[], object], count: int, error: type[Exception],
                   what: str) -> list[float]:
    """Seconds each of `count` calls took to raise `error` for the deadline."""
    took = []
    for _ in range(count):
        began = time.monotonic()
        with pytest.raises(error, match=re.escape(
                f"{what}: Docker did not answer within {DEADLINE:g} s")):
            call()
        took.append(time.monotonic() - began)
        assert took[-1] < DEADLINE + WORST, took
    return took


def web() -> ServiceState:
    return service_state(SERVICE)


def lease(connection: DockerConnection, label: str = "autoscaler.lease") -> SwarmLease:
    return SwarmLease(connection, ttl=timedelta(seconds=30), holder="me/1/x", label=label)


def check_engine_left(engine: FakeEngine, before: tuple[int, int]) -> None:
    """Nothing left by the calls, checked before the engine hangs up on them
    (`hang_up_after`), which would end a reader the calls left waiting; then the engine saw
    every client close."""
    check_nothing_left(before)
    assert wait_until(lambda: engine.connections == 0, timeout=2.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_listing_ends_at_its_deadline_and_leaves_nothing_behind(
        monkeypatch: pytest.MonkeyPatch, transport: str, mode: str) -> None:
    count = 12
    with fake_engine(monkeypatch, mode, transport) as engine:
        scaler = SwarmScaler(DockerConnection(timeout=DEADLINE, pool=4))

        def call() -> None:
            scaler.list_services()

        timed_failures(call, 1, SourceUnavailable, "cannot list Swarm services")  # imports
        assert wait_until(lambda: engine.connections == 0)
        before = held_open()

        took = timed_failures(call, count, SourceUnavailable, "cannot list Swarm services")

        # Each call asked the version (the failure dropped the client) and then the
        # services, over one connection that the deadline closed.
        assert engine.seen.count(("GET", "/version")) == count + 1
        assert engine.seen.count(("GET", "/services")) == count + 1
        assert engine.accepted == count + 1
        assert min(took) >= DEADLINE
        assert statistics.median(took) < DEADLINE + TYPICAL, took
        assert max(took) < DEADLINE + WORST, took
        check_engine_left(engine, before)


def connect(connection: DockerConnection) -> None:
    assert connection.api is not None


def scale(connection: DockerConnection) -> None:
    """A scale of the service as listed, as the agent makes it: the update alone."""
    scaler = SwarmScaler(connection)
    scaler.scale(scaler.list_services()["web"], 2, labels={RECORD_LABEL: "1:1>2"})


def scale_unlisted(connection: DockerConnection) -> None:
    """A scale of a state the scaler has not listed: the inspect, then the update."""
    SwarmScaler(connection).scale(web(), 2, labels={RECORD_LABEL: "1:1>2"})


def acquire(connection: DockerConnection) -> None:
    lease(connection).acquire(datetime.now(UTC))


# (what is slow, what the engine answers at once, the call, what it raises, its message)
CALLS = {
    "version": ({}, connect, SourceUnavailable,
                "cannot reach the Docker engine"),
    "update": ({**ANSWERED, **LISTINGS}, scale, ScaleFailed, "cannot scale web"),
    "fallback_inspect": (ANSWERED, scale_unlisted, ScaleFailed, "cannot inspect service web"),
    "lease_nodes": (ANSWERED, acquire, SourceUnavailable, "cannot read the lease"),
    "lease_update": ({**ANSWERED, ("GET", "/nodes"): [NODE]}, acquire, SourceUnavailable,
                     "cannot write the lease"),
}


@pytest.mark.parametrize("mode", ["silent", "trickle_body", "trickle_chunked"])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("slow", list(CALLS))
def test_every_other_call_of_the_agent_ends_at_its_deadline(
        monkeypatch: pytest.MonkeyPatch, slow: str, transport: str, mode: str) -> None:
    answers, operation, error, what = CALLS[slow]
    count = 6
    with fake_engine(monkeypatch, mode, transport, answers=answers) as engine:
        connection = DockerConnection(timeout=DEADLINE, pool=4)

        def call() -> None:
            assert callable(operation)
            operation(connection)

        timed_failures(call, 1, error, what)
        assert wait_until(lambda: engine.connections == 0)
        before = held_open()

        took = timed_failures(call, count, error, what)

        assert min(took) >= DEADLINE
        assert statistics.median(took) < DEADLINE + TYPICAL, took
        assert max(took) < DEADLINE + WORST, took
        if slow == "update":
            assert engine.seen.count(("POST", "/services/svc1/update")) == count + 1
            assert ("GET", "/services/svc1") not in engine.seen, "a listed service inspected"
        if slow == "fallback_inspect":
            assert engine.seen.count(("GET", "/services/svc1")) == count + 1
            assert ("POST", "/services/svc1/update") not in engine.seen
        if slow == "lease_update":
            assert engine.seen.count(("POST", "/nodes/node1/update")) == count + 1
        check_engine_left(engine, before)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_per_read_timeout_alone_would_have_waited_for_the_whole_trickle(
        monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    """What the deadline fixes: docker-py's timeout bounds each read, and every read here
    gets its byte within it."""
    with fake_engine(monkeypatch, "trickle_body", transport, interval=0.05,
                     length=40) as engine:
        plain = docker.APIClient(base_url=engine.url, timeout=1, version="1.45")
        began = time.monotonic()
        with pytest.raises(ValueError):  # 40 spaces: not JSON
            plain.services()
        per_read = time.monotonic() - began
        plain.close()

        began = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"Docker did not answer within 0\.3 s"):
            SwarmScaler(DockerConnection(timeout=DEADLINE)).list_services()
        deadline = time.monotonic() - began

    assert per_read > 40 * 0.05 * 0.9 > 3 * DEADLINE
    assert deadline < DEADLINE + WORST


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_engine_that_answers_is_listed_and_scaled_on_kept_connections(
        monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    answers = {**ANSWERED, **LISTINGS, ("POST", "/services/svc1/update"): {},
               ("POST", "/nodes/node1/update"): {}}
    with fake_engine(monkeypatch, "silent", transport, answers=answers) as engine:
        connection = DockerConnection(timeout=DEADLINE, pool=4)
        scaler = SwarmScaler(connection)
        for _ in range(20):
            assert scaler.list_services()["web"].replicas == 1
            scaler.scale(web(), 2, labels={})
            assert lease(connection).acquire(datetime.now(UTC))

        assert ("GET", "/services/svc1") not in engine.seen, "a listed service inspected"
        assert engine.seen.count(("GET", "/version")) == 1
        assert engine.accepted == 1
        connection.forget()
        assert wait_until(lambda: engine.connections == 0)


def test_one_listing_of_tasks_serves_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: where each service's tasks run comes from one task listing a tick, not one
    a service."""
    api = {**SERVICE, "ID": "svc2", "Spec": {**SERVICE["Spec"], "Name": "api"}}
    answers = {**ANSWERED, **LISTINGS, ("GET", "/services"): [SERVICE, api]}
    with fake_engine(monkeypatch, "silent", "tcp", answers=answers) as engine:
        scaler = SwarmScaler(DockerConnection(timeout=DEADLINE, pool=4))
        for _ in range(3):
            assert set(scaler.list_services()) == {"web", "api"}

        assert engine.seen.count(("GET", "/services")) == 3
        assert engine.seen.count(("GET", "/tasks")) == 3


@pytest.mark.parametrize(("path", "answer", "said"), [
    pytest.param("/services", {"message": "not a list"}, "unexpected listing of /services",
                 id="services-not-a-list"),
    pytest.param("/services", Verbatim("200 OK", b"<html>a proxy's page</html>"),
                 "unexpected listing of /services", id="not-json"),
    pytest.param("/services", Verbatim("400 Bad Request",
                                       b'{"message": "client version 1.45 is too new"}'),
                 "cannot list Swarm services: Docker answered HTTP 400: client version 1.45 "
                 "is too new", id="refused"),
    pytest.param("/tasks", Verbatim("500 Internal Server Error", b'["not", "an", "object"]'),
                 r'cannot list Swarm tasks: Docker answered HTTP 500: \["not"',
                 id="refused-with-a-list"),
])
def test_a_listing_not_read_fails_with_what_was_wrong_and_a_new_client_reads_the_next(
        monkeypatch: pytest.MonkeyPatch, path: str, answer: Any, said: str) -> None:
    """A listing refused or not understood fails the listing with what was wrong (never a
    crash), and the next tick asks a new client, which settles the API version again."""
    with fake_engine(monkeypatch, "silent", "tcp", answers={**ANSWERED, **LISTINGS}) as engine:
        scaler = SwarmScaler(DockerConnection(timeout=DEADLINE, pool=4))
        assert scaler.list_services()["web"].replicas == 1
        engine.answers[("GET", path)] = answer
        with pytest.raises(SourceUnavailable, match=said):
            scaler.list_services()
        engine.answers[("GET", path)] = LISTINGS[("GET", path)]
        assert scaler.list_services()["web"].replicas == 1
        assert engine.seen.count(("GET", "/version")) == 2


@pytest.mark.parametrize(("path", "answer", "listed"), [
    pytest.param("/services", [{"ID": "svc1", "Spec": SERVICE["Spec"]}], [], id="no-version"),
    pytest.param("/services", [{**SERVICE, "Version": {"Index": "7"}}], [],
                 id="version-a-string"),
    pytest.param("/services", [{**SERVICE, "Version": {"Index": 8}, "Spec": ["a", "list"]}], [],
                 id="spec-a-list"),
    pytest.param("/services", [None, SERVICE], ["web"], id="a-null-entry"),
    pytest.param("/tasks", [{"ServiceID": "svc1", "Status": "running"}], ["web"],
                 id="status-a-string"),
    pytest.param("/tasks", [{"NodeID": "node1"}], ["web"], id="task-without-service"),
])
def test_an_entry_not_read_is_left_out_alone_and_read_again_once_it_reads(
        monkeypatch: pytest.MonkeyPatch, path: str, answer: Any, listed: list[str]) -> None:
    """One service, task or node of a shape the agent cannot read is left out of the listing
    (the service is logged as swarm_service_unreadable); the others are listed."""
    with fake_engine(monkeypatch, "silent", "tcp", answers={**ANSWERED, **LISTINGS}) as engine:
        scaler = SwarmScaler(DockerConnection(timeout=DEADLINE, pool=4))
        engine.answers[("GET", path)] = answer
        assert sorted(scaler.list_services()) == listed
        engine.answers[("GET", path)] = LISTINGS[("GET", path)]
        assert scaler.list_services()["web"].replicas == 1


def test_a_listed_spec_not_read_fails_its_own_scale_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec is read whole only when its service is new or changed: one that turns bad at
    the same version fails the scale of that service, as a ScaleFailed the engine holds."""
    with fake_engine(monkeypatch, "silent", "tcp", answers={**ANSWERED, **LISTINGS}) as engine:
        scaler = SwarmScaler(DockerConnection(timeout=DEADLINE, pool=4))
        assert scaler.list_services()["web"].replicas == 1
        engine.answers[("GET", "/services")] = Verbatim("200 OK", json.dumps(
            [{**SERVICE, "Spec": "SPEC"}]).replace('"SPEC"', '{"Huge": 1e400}').encode())
        listed = scaler.list_services()["web"]
        with pytest.raises(ScaleFailed, match="unexpected spec of web from Docker"):
            scaler.scale(listed, 2, labels={})
        assert not engine.posted


def test_sigterm_ends_the_agent_within_5_s_while_docker_hangs_a_long_tick(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """At a 30 s interval a Docker call may wait 10 s: SIGTERM must not wait for it."""
    (tmp_path / "web.yaml").write_text(
        "service: web\nmax_replicas: 5\nmetrics: [{name: rps, query: q, target: 10}]\n")
    with fake_engine(monkeypatch, "silent", "tcp") as engine:
        agent = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "dry-run", "--interval", "30s", "--port", "0",
             "--policies", str(tmp_path), "--prometheus-url", "http://127.0.0.1:9"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert wait_until(lambda: ("GET", "/services") in engine.seen, 20), \
                "the agent never listed the services"
            began = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            output, _ = agent.communicate(timeout=20)
            took = time.monotonic() - began
        finally:
            agent.kill()
    assert agent.returncode == 0, output
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert '"tick_abandoned"' in output and '"agent_stopped"' in output


def test_docker_unreachable_is_not_ready_and_down_in_metrics(tmp_path: Path) -> None:
    """Issue 17: Docker unreachable for minutes shows in /readyz (503, naming docker) and in
    `autoscaler_dependency_up{dependency="docker"} 0`, while /healthz stays 200."""
    (tmp_path / "web.yaml").write_text(
        "service: web\nmax_replicas: 5\nmetrics: [{name: rps, query: q, target: 10}]\n")
    port = free_port()
    closed = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "run", "--interval", "1s", "--port", str(port),
         "--listen", "127.0.0.1", "--policies", str(tmp_path),
         "--prometheus-url", "http://127.0.0.1:9"],
        env={**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{closed}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    try:
        assert wait_until(lambda: get("/readyz")[0] == 503 and "docker:" in get("/readyz")[1],
                          20), get("/readyz")
        assert get("/healthz")[0] == 200
        metrics = get("/metrics")[1]
        assert 'autoscaler_dependency_up{dependency="docker"} 0.0' in metrics
        assert 'autoscaler_errors_total{source="docker"}' in metrics
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)


def test_a_scale_of_a_listed_service_is_one_call_posting_the_listed_spec(
        monkeypatch: pytest.MonkeyPatch) -> None:
    labels = {RECORD_LABEL: "1:1>3"}
    answers = {**ANSWERED, **LISTINGS, ("POST", "/services/svc1/update"): {}}
    with fake_engine(monkeypatch, "silent", "unix", answers=answers) as engine:
        scaler = SwarmScaler(DockerConnection(timeout=DEADLINE))
        listed = scaler.list_services()["web"]
        before = len(engine.seen)

        scaler.scale(listed, 3, labels=labels)

        assert engine.seen[before:] == [("POST", "/services/svc1/update")]
        assert engine.posted == [("/services/svc1/update", "version=7",
                                  with_replicas(SERVICE["Spec"], 3, labels))]
        assert SERVICE["Spec"]["Mode"] == {"Replicated": {"Replicas": 1}}, "copied, not changed"


def test_a_state_not_from_the_last_listing_has_its_spec_inspected_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback: a state the scaler never listed, one at another version than its last
    listing, or one of a service its last listing no longer has. The spec inspected is
    posted with the state's version, so a service changed since that state is a conflict."""
    inspected = {**SERVICE, "Version": {"Index": 8},
                 "Spec": {**SERVICE["Spec"], "Labels": {"changed": "1"}}}
    answers = {**ANSWERED, **LISTINGS, ("GET", "/services/svc1"): inspected,
               ("POST", "/services/svc1/update"): {}}
    posted = ("/services/svc1/update", "version=7", with_replicas(inspected["Spec"], 2, {}))
    with fake_engine(monkeypatch, "silent", "unix", answers=answers) as engine:
        connection = DockerConnection(timeout=DEADLINE)
        connect(connection)  # asks the version
        scaler = SwarmScaler(connection)
        calls = [("GET", "/services/svc1"), ("POST", "/services/svc1/update")]

        before = len(engine.seen)
        scaler.scale(web(), 2, labels={})  # never listed
        assert engine.seen[before:] == calls

        listed = scaler.list_services()["web"]
        before = len(engine.seen)
        scaler.scale(replace(listed, version=6), 2, labels={})  # another version
        assert engine.seen[before:] == calls

        engine.answers[("GET", "/services")] = []
        assert scaler.list_services() == {}
        before = len(engine.seen)
        scaler.scale(listed, 2, labels={})  # no longer listed
        assert engine.seen[before:] == calls

        assert engine.posted == [posted, (*posted[:1], "version=6", posted[2]), posted]


def test_a_missing_socket_fails_at_once_not_at_the_deadline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    began = time.monotonic()
    with pytest.raises(SourceUnavailable, match="cannot reach the Docker engine") as raised:
        SwarmScaler(DockerConnection(timeout=5)).list_services()
    assert time.monotonic() - began < 1
    assert "did not answer within" not in str(raised.value)


@pytest.mark.docker
def test_the_real_engine_is_listed_and_scaled_within_a_short_deadline(
        monkeypatch: pytest.MonkeyPatch, make_service: Callable[..., str]) -> None:
    """The deadline in place changes nothing for an engine that answers (also
    test_swarm_scaler.py, with the default deadline)."""
    name = make_service("deadline", replicas=1)
    monkeypatch.undo()  # the engine of the environment, not a fake's
    connection = DockerConnection(timeout=2.0, pool=4)
    scaler = SwarmScaler(connection)

    scaler.scale(scaler.list_services()[name], 2, labels={RECORD_LABEL: "1765000000:1>2"})

    wait_running(name, 2)
    assert scaler.list_services()[name].replicas == 2
    taken = lease(connection, f"astest.lease.{uuid.uuid4().hex[:8]}")
    assert taken.acquire(datetime.now(UTC))
    taken.release()
