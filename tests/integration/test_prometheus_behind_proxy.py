"""The agent's Prometheus queries through a reverse proxy that refuses URLs over 8 KB
(issue 21, point 3): a `{{services}}` query naming 1,000 services of 20 characters is a
URL of more than 20 KB as a GET, which such a proxy refuses; the agent sends it as a
form-encoded POST, whose URL is `/api/v1/query` whatever the query, and gets its answer.

The proxy is Debian's haproxy on a free 127.0.0.1 port in front of the test Prometheus
(conftest's `prometheus`). It models nginx with its default `large_client_header_buffers
4 8k`: nginx answers `414 Request-URI Too Large` to a request whose request line does not
fit in one 8 KB buffer, whatever the other headers, and never passes it upstream. The proxy
does the same with `http-request deny deny_status 414 if { url_len gt 8192 }` (the URL,
path and query string, over 8,192 bytes: nginx's line also holds the method and version,
a dozen bytes more) and a `tune.bufsize` of 64 KB, so that haproxy reads the whole long
request line and the rule, not its buffer, decides. haproxy's own limit would not model
nginx: a request line or headers that overflow its buffer (`tune.bufsize 8192`) are
answered `400 Bad request`, counting every header together. The proxy logs one line per
request (method, path, status, the server that answered or <NOSRV>, the URL's length), so
a test shows which requests reached Prometheus.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.core.labels import ManagedPolicy
from autoscaler.gather import MetricsGatherer
from tests.integration.conftest import LoadExporter, RunningPrometheus, free_port, wait_for
from tests.integration.haproxy import running_haproxy
from tests.integration.test_prometheus_source import policy

URL_LIMIT = 8192  # nginx's default large_client_header_buffers: 4 8k
SERVICES = 1000
REFUSAL = "<html><head><title>414 Request-URI Too Large</title></head></html>"  # nginx's title
QUERY = 'sum by (service) (astest_load{service=~"{{services}}"})'

CONFIG = """\
global
    log stdout format raw local0 info
    maxconn 64
    # One thread, so that no log line is dropped on a collision between threads.
    nbthread 1
    # Room for the whole request line of a long GET: the deny rule below decides, not
    # haproxy's buffer (which would answer 400, counting every header).
    tune.bufsize 65536

defaults
    mode http
    log global
    log-format "%HM %HP %ST %s %[var(txn.url_len)]"
    timeout connect 5s
    timeout http-request 10s
    timeout client 30s
    timeout server 30s

frontend prometheus
    bind 127.0.0.1:{port}
    http-request set-var(txn.url_len) url,length
    acl url_too_long url_len gt {limit}
    http-request deny deny_status 414 content-type text/html string "{refusal}" if url_too_long
    default_backend prometheus

backend prometheus
    server prometheus {upstream}
"""


@dataclass(frozen=True)
class Request:
    """One line of the proxy's log."""

    method: str
    path: str
    status: int
    server: str
    url_length: int

    @property
    def forwarded(self) -> bool:
        return self.server != "<NOSRV>"


@dataclass
class LimitingProxy:
    url: str
    log: Path

    def requests(self) -> list[Request]:
        found = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[2].isdigit():
                method, path, status, server, length = parts
                found.append(Request(method, path, int(status), server, int(length)))
        return found

    def last(self, count: int, *, since: int) -> list[Request]:
        """The last `count` requests, once `since` + `count` are logged (haproxy logs a
        request as it ends, which may be just after its answer reached the client)."""
        wait_for(f"haproxy to log {count} more requests",
                 lambda: len(self.requests()) >= since + count, 10)
        return self.requests()[since:][-count:]


@pytest.fixture
def proxy(prometheus: RunningPrometheus, tmp_path: Path) -> Iterator[LimitingProxy]:
    port = free_port()
    upstream = urllib.parse.urlsplit(prometheus.url).netloc
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, upstream=upstream, limit=URL_LIMIT,
                                    refusal=REFUSAL))
    limiting = LimitingProxy(f"http://127.0.0.1:{port}", tmp_path / "haproxy.log")
    with running_haproxy(config, folder=tmp_path, log=limiting.log,
                         ready_url=f"{limiting.url}/-/ready"):
        wait_for("haproxy to log /-/ready", limiting.requests, 10)
        yield limiting


def get_status(url: str) -> int:
    """The HTTP status of a GET of `url`."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def fleet(served: str) -> list[str]:
    """1,000 service names of 20 characters, `served` (20 characters too) among them."""
    names = [f"fleet-{uuid.uuid4().hex[:6]}-{index:07d}" for index in range(SERVICES - 1)]
    return sorted([*names, served])


def served_service(load_exporter: LoadExporter, prometheus: RunningPrometheus,
                   value: float) -> str:
    """A service of 20 characters whose load the exporter serves, once Prometheus has it."""
    service = f"served-{uuid.uuid4().hex[:13]}"
    load_exporter.gauge.labels(service).set(value)
    prometheus.wait_value(f'astest_load{{service="{service}"}}', value)
    return service


def services_query(names: list[str]) -> str:
    """QUERY with `{{services}}` filled in as the agent fills it (no name here needs escaping)."""
    return QUERY.replace("{{services}}", "|".join(names))


def test_the_proxy_refuses_a_url_over_8_kb_and_forwards_one_within(
    proxy: LimitingProxy, prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    served = served_service(load_exporter, prometheus, 3)
    names = fleet(served)
    assert {len(name) for name in names} == {20}
    long_get = f"/api/v1/query?{urllib.parse.urlencode({'query': services_query(names)})}"
    at_limit = "/api/v1/query?query=vector(1)&pad="
    at_limit += "x" * (URL_LIMIT - len(at_limit))

    since = len(proxy.requests())
    assert get_status(proxy.url + at_limit) == 200
    assert get_status(proxy.url + at_limit + "x") == 414
    assert get_status(proxy.url + long_get) == 414
    assert get_status(prometheus.url + long_get) == 200  # Prometheus itself would answer it

    assert len(long_get) > 20_000
    logged = proxy.last(3, since=since)
    assert [(r.method, r.status, r.forwarded, r.url_length) for r in logged] == [
        ("GET", 200, True, URL_LIMIT),
        ("GET", 414, False, URL_LIMIT + 1),
        ("GET", 414, False, len(long_get)),
    ]


def test_the_agents_query_of_1000_services_is_answered_through_the_proxy(
    proxy: LimitingProxy, prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    served = served_service(load_exporter, prometheus, 5)
    query = services_query(fleet(served))
    long_get = f"/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    since = len(proxy.requests())
    assert get_status(proxy.url + long_get) == 414

    source = PrometheusSource(proxy.url)
    try:
        series = source.query(query)
    finally:
        source.close()

    assert [(dict(s.labels), s.value) for s in series] == [({"service": served}, 5.0)]
    assert proxy.last(2, since=since) == [
        Request("GET", "/api/v1/query", 414, "<NOSRV>", len(long_get)),
        Request("POST", "/api/v1/query", 200, "prometheus", len("/api/v1/query")),
    ]


def test_a_tick_of_1000_policies_gathers_the_served_value_through_the_proxy(
    proxy: LimitingProxy, prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    served = served_service(load_exporter, prometheus, 7)
    names = fleet(served)
    managed = [ManagedPolicy(policy(name, QUERY), f"{name}.yaml", "file") for name in names]
    since = len(proxy.requests())
    source = PrometheusSource(proxy.url)
    try:
        queried = MetricsGatherer(source).gather(managed)
    finally:
        source.close()

    assert (queried.queries, queried.errors) == (1, {})
    assert set(queried.values) == set(names)
    assert queried.values[served] == {"load": 7.0}
    assert {name: values for name, values in queried.values.items() if name != served} \
        == {name: {"load": None} for name in names if name != served}
    [forwarded] = proxy.last(1, since=since)
    assert (forwarded.method, forwarded.status, forwarded.forwarded) == ("POST", 200, True)
