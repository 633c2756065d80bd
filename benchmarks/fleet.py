"""A whole fleet in one agent: what a tick costs at N services (issue 21).

    .venv/bin/python benchmarks/fleet.py [--sizes 100,1000,10000] [--interval 15]
        [--ticks 3] [--latency-ms 5] [--apply 500] [--apply-latency-ms 50]
        [--log-holds all|changes]

For each N it starts, on 127.0.0.1:

- an exporter (prometheus-client) serving the gauge `fleet_load{service}` for N services;
- Debian's Prometheus (/usr/bin/prometheus), scraping the exporter every second and the
  agent's /metrics once a tick;
- an imitation of the Docker Engine API (`EngineImitation`, below): N replicated services
  of 2 replicas each, each last scaled by the agent an hour before (`managed_spec`), their
  tasks listed as the engine lists them (each with its task template), one manager node,
  and `--latency-ms` of latency on every call;
- the agent, `autoscaler run` as a process, with DOCKER_HOST pointing at the imitation and
  one policy file per service (a `target` policy reading one shared `{{services}}` query).

Then it measures, over `--ticks` steady ticks with every service holding: the queries a tick
and the tick's wall time (from the agent's `tick_summary` lines), the agent's CPU a tick
(utime + stime from /proc/PID/stat over those ticks), its RSS (VmRSS; VmHWM is the peak),
the Docker calls a tick and the log lines a tick. Last, the time to apply `--apply` changes
(at most N): the load of that many services doubles, Docker's latency becomes
`--apply-latency-ms`, and it times from the start of the tick that decides them to the last
update the imitation receives (the ticks it took in brackets); and, over the agent's whole
run, the ticks that overran the interval (`tick_late`) or were skipped because the one
before was still running (APScheduler's "maximum number of running instances"). In-process,
it also times
the policy folder's first load and a refresh with nothing changed (PolicyWatcher), and the
matching of one shared answer to N policies (plan_queries and assign_values); and, against
Prometheus, the shared query as rendered for N services (its size, and the time to ask it as
the agent does: a form POST, the answer parsed).

A benchmark, not a test: figures depend on the machine (and this one is shared), so compare
rows of one run. At the defaults it runs in about 5 minutes on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.core.model import Series
from autoscaler.core.queries import assign_values, plan_queries
from autoscaler.core.record import RECORD_LABEL
from autoscaler.policy_files import RACY_WINDOW_NS, PolicyWatcher

PROMETHEUS = "/usr/bin/prometheus"
QUERY = 'max by (service) (fleet_load{service=~"{{services}}"})'
TARGET = 10
REPLICAS = 2
"""Each service starts at 2 replicas under a load of 20 against a target of 10 a replica:
it holds. A changed service gets 40, so 4 replicas."""
API_VERSION = "1.41"
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: Callable[[], object], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"fleet: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def docker_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


# --- The Docker Engine API, imitated --------------------------------------------------------


def managed_spec(name: str, replicas: int, record: str) -> dict[str, Any]:
    """A service spec as `docker service create` writes it, with the agent's record of its
    changes: each service of the imitation was last scaled by the agent, from 1 to 2, an
    hour ago (its `PreviousSpec` at 1), as in a fleet it has managed for a while."""
    return {
        "Name": name, "Labels": {RECORD_LABEL: record} if record else {},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "nginx:alpine@sha256:" + "0" * 64, "Args": ["nginx", "-g", "daemon off;"],
                "Env": ["MODE=production"], "Init": False, "StopGracePeriod": 10_000_000_000,
                "DNSConfig": {}, "Isolation": "default"},
            "Resources": {"Limits": {}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0},
            "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
            "ForceUpdate": 0, "Runtime": "container"},
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                         "MaxFailureRatio": 0, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


@dataclass
class EngineImitation:
    """The few calls of the Engine API the agent makes, over services held in memory.

    GET /_ping, /version, /services, /services/{id}, /tasks, /nodes, /nodes/{id};
    POST /services/{id}/update?version=N and /nodes/{id}/update?version=N, which refuse a
    stale version as the engine does (HTTP 500 "update out of sequence"). Paths may carry
    the /v1.41 prefix docker-py adds. Every call sleeps `latency` seconds first; `calls`
    counts them by method and route; `updates` lists (time, service name, replicas).
    """

    services: int
    latency: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    updates: list[tuple[float, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        now = docker_time(time.time())
        scaled_at = int(time.time()) - 3600
        self._services: dict[str, dict[str, Any]] = {}
        for index in range(self.services):
            name = service_name(index)
            service_id = f"id{index:06d}"
            self._services[service_id] = {
                "ID": service_id, "Version": {"Index": 10},
                "CreatedAt": docker_time(scaled_at - 60), "UpdatedAt": docker_time(scaled_at),
                "Spec": managed_spec(name, REPLICAS, f"{scaled_at}:1>2"),
                "PreviousSpec": managed_spec(name, REPLICAS - 1, ""),
            }
        self._node: dict[str, Any] = {
            "ID": "node0manager", "Version": {"Index": 5}, "CreatedAt": now, "UpdatedAt": now,
            "Spec": {"Role": "manager", "Availability": "active", "Labels": {}},
            "Description": {"Hostname": "manager-0", "Engine": {"Labels": {}}},
            "Status": {"State": "ready", "Addr": "127.0.0.1"},
        }

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, bytes, str]:
        """Status, body and content type of one call."""
        time.sleep(self.latency)
        with self._lock:
            status, answer = self._answer(method, target, body)
            if isinstance(answer, str):
                return status, answer.encode(), "text/plain"
            return status, json.dumps(answer).encode(), "application/json"

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        parts = urllib.parse.urlsplit(target)
        path = _VERSION_PREFIX.sub("", parts.path).rstrip("/")
        query = urllib.parse.parse_qs(parts.query)
        pieces = path.strip("/").split("/")
        route = "/".join(p if i % 2 == 0 else "{id}" for i, p in enumerate(pieces))
        self.calls[f"{method} /{route}"] += 1
        if method == "GET" and path == "/_ping":
            return 200, "OK"
        if method == "GET" and path == "/version":
            return 200, {"Version": "20.10.24", "ApiVersion": API_VERSION,
                         "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"}
        if method == "GET" and path == "/services":
            return 200, list(self._services.values())
        if method == "GET" and path == "/tasks":
            return 200, self._tasks()
        if method == "GET" and path == "/nodes":
            return 200, [self._node]
        if pieces[0] == "services" and len(pieces) >= 2:
            return self._service_call(method, pieces, query, body)
        if pieces[0] == "nodes" and len(pieces) >= 2 and pieces[1] == self._node["ID"]:
            if method == "GET" and len(pieces) == 2:
                return 200, self._node
            if method == "POST" and pieces[2:] == ["update"]:
                return self._update(self._node, query, json.loads(body))
        return 404, {"message": f"page not found: {method} {path}"}

    def _service_call(self, method: str, pieces: list[str], query: dict[str, list[str]],
                      body: bytes) -> tuple[int, Any]:
        service = self._services.get(pieces[1])
        if service is None:
            return 404, {"message": f"service {pieces[1]} not found"}
        if method == "GET" and len(pieces) == 2:
            return 200, service
        if method == "POST" and pieces[2:] == ["update"]:
            status, answer = self._update(service, query, json.loads(body))
            if status == 200:
                self.updates.append((time.time(), service["Spec"]["Name"],
                                     service["Spec"]["Mode"]["Replicated"]["Replicas"]))
            return status, answer
        return 404, {"message": "page not found"}

    @staticmethod
    def _update(item: dict[str, Any], query: dict[str, list[str]], spec: dict[str, Any]
                ) -> tuple[int, Any]:
        if query.get("version", [""])[0] != str(item["Version"]["Index"]):
            return 500, {"message": "rpc error: code = Unknown desc = update out of sequence"}
        item["PreviousSpec"] = item["Spec"]
        item["Spec"] = spec
        item["Version"] = {"Index": item["Version"]["Index"] + 1}
        item["UpdatedAt"] = docker_time(time.time())
        return 200, {"Warnings": None}

    def _tasks(self) -> list[dict[str, Any]]:
        """Each running task as the engine lists it: with its service's task template."""
        return [{"ID": f"{service['ID']}.{slot}", "Version": {"Index": 12},
                 "CreatedAt": service["UpdatedAt"], "UpdatedAt": service["UpdatedAt"],
                 "Labels": {}, "Spec": service["Spec"]["TaskTemplate"],
                 "ServiceID": service["ID"], "Slot": slot, "NodeID": self._node["ID"],
                 "Status": {"Timestamp": service["UpdatedAt"], "State": "running",
                            "Message": "started",
                            "ContainerStatus": {"ContainerID": "0" * 64, "PID": 4242,
                                                "ExitCode": 0},
                            "PortStatus": {}},
                 "DesiredState": "running"}
                for service in self._services.values()
                for slot in range(1, service["Spec"]["Mode"]["Replicated"]["Replicas"] + 1)]

    @contextmanager
    def serving(self) -> Iterator[int]:
        """Serve on 127.0.0.1 at a free port, given."""
        imitation = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = -1
            """Buffered, and no Nagle: else an answer's body waits for the ACK of its headers
            (40 ms of delayed ACK on every call)."""

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, text, content_type = imitation.handle(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Api-Version", API_VERSION)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        server = Server(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, name="engine", daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1])
        finally:
            server.shutdown()
            server.server_close()


def service_name(index: int) -> str:
    return f"fleet-{index:05d}"


# --- Prometheus and the agent ----------------------------------------------------------------


@contextmanager
def prometheus(folder: Path, exporter_port: int, agent_port: int, interval: float
               ) -> Iterator[str]:
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: load\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        "  - job_name: agent\n"
        f"    scrape_interval: {interval:g}s\n"
        f"    scrape_timeout: {min(interval, 10):g}s\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{agent_port}']}}]\n"
    )
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for("Prometheus to be ready", ready, 60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def instant(url: str, promql: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=data, timeout=10) as response:
        return list(json.load(response)["data"]["result"])


class AgentLog:
    """The agent's JSON lines, read as they come."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("r")
        self._partial = ""
        self.events: list[dict[str, Any]] = []
        self.lines = 0

    def read(self) -> None:
        text = self._partial + self._file.read()
        *complete, self._partial = text.split("\n")
        for line in complete:
            self.lines += 1
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def named(self, event: str) -> list[dict[str, Any]]:
        self.read()
        return [e for e in self.events if e.get("event") == event]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# --- One size --------------------------------------------------------------------------------


@dataclass
class Row:
    services: int
    load_seconds: float = 0.0
    refresh_seconds: float = 0.0
    match_seconds: float = 0.0
    query_seconds: float = 0.0
    query_kb: float = 0.0
    first_tick_seconds: float = 0.0
    queries: float = 0.0
    tick_seconds: float = 0.0
    cpu_per_tick: float = 0.0
    rss_mb: float = 0.0
    peak_mb: float = 0.0
    docker_calls: float = 0.0
    log_lines: float = 0.0
    applied: int = 0
    apply_seconds: float = 0.0
    apply_ticks: int = 0
    late_ticks: int = 0
    skipped_ticks: int = 0
    notes: list[str] = field(default_factory=list)


def write_policies(folder: Path, count: int) -> None:
    folder.mkdir()
    for index in range(count):
        name = service_name(index)
        (folder / f"{name}.yaml").write_text(
            f"service: {name}\nmin_replicas: 1\nmax_replicas: 20\nmetrics:\n"
            f"  - name: load\n    query: '{QUERY}'\n    target: {TARGET}\n")


def in_process(row: Row, folder: Path) -> str:
    """The policy folder's first load and a refresh with nothing changed; the matching of
    one shared answer to every policy. Returns the shared query as rendered."""
    watcher = PolicyWatcher(folder)
    began = time.perf_counter()
    watcher.refresh()
    row.load_seconds = time.perf_counter() - began
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)  # past the window for files written just now
    watcher.refresh()
    began = time.perf_counter()
    watcher.refresh()
    row.refresh_seconds = time.perf_counter() - began
    policies = list(watcher.policies.values())
    began = time.perf_counter()
    plan = plan_queries(policies)
    answers = {query: [Series({"service": p.service}, 20.0) for p in policies]
               for query in plan}
    values = assign_values(plan, answers)
    row.match_seconds = time.perf_counter() - began
    assert len(values) == len(policies) == row.services
    (rendered,) = plan
    return rendered


def time_query(row: Row, url: str, rendered: str) -> None:
    """The shared `{{services}}` query, naming every service, asked as the agent asks it."""
    began = time.perf_counter()
    series = PrometheusSource(url, timeout=30).query(rendered)
    row.query_seconds = time.perf_counter() - began
    row.query_kb = len(rendered.encode()) / 1024
    assert len(series) == row.services, f"{len(series)} series for {row.services} services"


def measure(size: int, arguments: argparse.Namespace, work: Path) -> Row:
    row = Row(size)
    folder = work / "policies"
    write_policies(folder, size)
    rendered = in_process(row, folder)

    registry = CollectorRegistry()
    load = Gauge("fleet_load", "Load per service, as the benchmark sets it.", ["service"],
                 registry=registry)
    for index in range(size):
        load.labels(service_name(index)).set(REPLICAS * TARGET)
    exporter_port = free_port()
    exporter, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    agent_port = free_port()
    engine = EngineImitation(size, latency=arguments.latency_ms / 1000)
    interval = arguments.interval
    with engine.serving() as docker_port, \
            prometheus(work, exporter_port, agent_port, interval) as prometheus_url:
        wait_for(f"Prometheus to hold {size} series",
                 lambda: (found := instant(prometheus_url, "count(fleet_load)"))
                 and int(found[0]["value"][1]) == size, 120)
        time_query(row, prometheus_url, rendered)
        log_path = work / "agent.log"
        environment = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{docker_port}"}
        command = [sys.executable, "-m", "autoscaler", "run", "--policies", str(folder),
                   "--prometheus-url", prometheus_url, "--interval", f"{interval:g}s",
                   "--port", str(agent_port), "--listen", "127.0.0.1",
                   "--log-format", "json", "--log-holds", arguments.log_holds]
        started = time.monotonic()
        with log_path.open("w") as out:
            agent = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                     env=environment)
        try:
            log = AgentLog(log_path)
            run(row, arguments, agent, log, engine, load, started)
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
    exporter.shutdown()
    exporter.server_close()
    return row


def full_ticks(log: AgentLog, size: int) -> list[dict[str, Any]]:
    return [t for t in log.named("tick_summary") if t["decided"] == size]


def run(row: Row, arguments: argparse.Namespace, agent: subprocess.Popen[bytes], log: AgentLog,
        engine: EngineImitation, load: Gauge, started: float) -> None:
    size, interval = row.services, arguments.interval

    def alive() -> bool:
        if agent.poll() is not None:
            raise SystemExit(f"fleet: the agent ended with {agent.returncode}; see its log")
        return True

    wait_for("a first full tick", lambda: alive() and full_ticks(log, size),
             60 + size / 50 + 3 * interval)
    row.first_tick_seconds = time.monotonic() - started
    # A tick more to settle, then the steady window, from one tick's end to another's.
    seen = len(full_ticks(log, size)) + 1
    wait_for("a settling tick", lambda: alive() and len(full_ticks(log, size)) >= seen,
             3 * interval + 60)
    cpu, calls, lines = cpu_seconds(agent.pid), sum(engine.calls.values()), log.lines
    wait_for(f"{arguments.ticks} steady ticks",
             lambda: alive() and len(full_ticks(log, size)) >= seen + arguments.ticks,
             (arguments.ticks + 2) * interval + 120)
    window = full_ticks(log, size)[seen:seen + arguments.ticks]
    ticks = len(window)
    row.cpu_per_tick = (cpu_seconds(agent.pid) - cpu) / ticks
    row.docker_calls = (sum(engine.calls.values()) - calls) / ticks
    log.read()
    row.log_lines = (log.lines - lines) / ticks
    row.queries = sum(t["queries"] for t in window) / ticks
    row.tick_seconds = sum(t["seconds"] for t in window) / ticks
    row.rss_mb = memory_kb(agent.pid, "VmRSS") / 1024
    if any(t["failed_queries"] or t["failed"] or t["changed"] for t in window):
        row.notes.append(f"steady ticks not all clean: {window}")

    # The apply step: the load of `count` services doubles; Docker slows to the apply latency.
    count = min(arguments.apply, size)
    changed = {service_name(index) for index in range(count)}
    engine.latency = arguments.apply_latency_ms / 1000
    updates_before = len(engine.updates)
    for name in changed:
        load.labels(name).set(2 * REPLICAS * TARGET)

    def done() -> bool:
        alive()
        return sum(1 for _, name, replicas in engine.updates[updates_before:]
                   if name in changed and replicas == 2 * REPLICAS) >= count

    wait_for(f"{count} changes applied", done, 20 * interval + count)
    last_update = max(at for at, name, _ in engine.updates[updates_before:] if name in changed)
    decided = [e for e in log.named("scaling_decision")
               if e["service"] in changed and e["desired_replicas"] == 2 * REPLICAS]
    first_tick = min(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
                     for e in decided)
    row.applied = count
    row.apply_seconds = last_update - first_tick.timestamp()
    row.apply_ticks = len({e["timestamp"] for e in decided})
    row.peak_mb = memory_kb(agent.pid, "VmHWM") / 1024
    row.late_ticks = len(log.named("tick_late"))
    row.skipped_ticks = sum(1 for e in log.events
                            if "maximum number of running instances" in str(e.get("event")))


# --- The table -------------------------------------------------------------------------------


def table(rows: list[Row], arguments: argparse.Namespace) -> str:
    head = ("| services | policies: first load / refresh (s) | matching (s) "
            "| the shared query (KB, s) | queries a tick "
            "| tick (s) | CPU a tick (s) | RSS (MB, peak) | Docker calls a tick "
            "| log lines a tick | start to first tick (s) "
            f"| apply at {arguments.apply_latency_ms:g} ms a call (s, ticks) "
            "| ticks late / skipped |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r.services:,} | {r.load_seconds:.2f} / {r.refresh_seconds:.3f} "
            f"| {r.match_seconds:.3f} | {r.query_kb:.0f}, {r.query_seconds:.2f} "
            f"| {r.queries:g} | {r.tick_seconds:.2f} "
            f"| {r.cpu_per_tick:.2f} | {r.rss_mb:.0f} ({r.peak_mb:.0f}) "
            f"| {r.docker_calls:.1f} | {r.log_lines:g} | {r.first_tick_seconds:.1f} "
            f"| {r.applied} in {r.apply_seconds:.1f} ({r.apply_ticks}) "
            f"| {r.late_ticks} / {r.skipped_ticks} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="numbers of services, comma-separated (default 100,1000,10000)")
    parser.add_argument("--interval", type=float, default=15.0,
                        help="the agent's tick, in seconds (default 15)")
    parser.add_argument("--ticks", type=int, default=3, help="steady ticks measured (default 3)")
    parser.add_argument("--latency-ms", type=float, default=5.0,
                        help="Docker's latency a call in the steady ticks (default 5)")
    parser.add_argument("--apply", type=int, default=500,
                        help="changes to apply, at most the services (default 500)")
    parser.add_argument("--apply-latency-ms", type=float, default=50.0,
                        help="Docker's latency a call while applying (default 50)")
    parser.add_argument("--log-holds", choices=("all", "changes"), default="all",
                        help="the agent's --log-holds (default all)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each size's policies, agent.log and Prometheus data in "
                        "DIR/N (default: a temporary folder, removed)")
    arguments = parser.parse_args()
    if not Path(PROMETHEUS).exists():
        raise SystemExit(f"fleet: {PROMETHEUS} is missing (Debian's prometheus package)")
    rows = []
    load_before = os.getloadavg()[0]
    for size in (int(s) for s in arguments.sizes.split(",")):
        began = time.monotonic()
        if arguments.keep is not None:
            (arguments.keep / str(size)).mkdir(parents=True)
            row = measure(size, arguments, arguments.keep / str(size))
        else:
            with tempfile.TemporaryDirectory(prefix=f"fleet-{size}-") as work:
                row = measure(size, arguments, Path(work))
        rows.append(row)
        print(f"{size} services measured in {time.monotonic() - began:.0f}s"
              + "".join(f"; {note}" for note in row.notes), file=sys.stderr, flush=True)
    print(f"interval {arguments.interval:g}s, Docker latency {arguments.latency_ms:g} ms a "
          f"call, --log-holds {arguments.log_holds}; {os.cpu_count()} CPUs, load average "
          f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(table(rows, arguments))


if __name__ == "__main__":
    main()
