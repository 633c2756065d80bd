"""The deadline of a Prometheus query bounds the whole exchange: a server that hangs, or
trickles its answer faster than any per-read timeout, is given up at the deadline, and a
query given up leaves no thread and no socket behind."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.core.ports import SourceUnavailable
from tests.integration.http_fakes import (
    HOSTILE_MODES,
    HostileServer,
    check_nothing_left,
    client_sockets_to,
    held_open,
    wait_until,
)

DEADLINE = 0.2
# Past the deadline: the closing of the connection, and scheduling. A query typically ends
# within TYPICAL of it; none may end later than WORST, which allows for the process not
# being run for a while on a busy machine (with a per-read timeout, each would take hours).
TYPICAL, WORST = 0.05, 1.0
INTERVAL = 0.02  # the hostile server's byte interval: ten times shorter than the deadline


def timed_failures(call: object, count: int) -> list[float]:
    """Seconds each of `count` calls took to raise SourceUnavailable for the deadline."""
    assert callable(call)
    took = []
    for _ in range(count):
        began = time.monotonic()
        with pytest.raises(SourceUnavailable, match=f"did not answer within {DEADLINE:g} s"):
            call()
        took.append(time.monotonic() - began)
    return took


@pytest.mark.parametrize("mode", HOSTILE_MODES)
def test_each_query_ends_at_its_deadline_and_leaves_nothing_behind(mode: str) -> None:
    count = 50 if mode == "trickle_body" else 20
    with HostileServer(mode, interval=INTERVAL) as server:
        source = PrometheusSource(server.url, timeout=DEADLINE)
        timed_failures(lambda: source.query("up"), 1)  # imports and the pool, once
        assert wait_until(lambda: server.connections == 0)
        before = held_open()

        took = timed_failures(lambda: source.query('sum(up{service=~"a|b"})'), count)

        assert client_sockets_to(server.port) == 0
        assert server.accepted == count + 1  # one connection a query: none reused half-read
        assert min(took) >= DEADLINE
        assert statistics.median(took) < DEADLINE + TYPICAL, took
        assert max(took) < DEADLINE + WORST, took
        assert wait_until(lambda: server.connections == 0)  # it saw every client close
        check_nothing_left(before)


def test_range_and_history_requests_each_end_at_the_deadline() -> None:
    end = datetime(2024, 1, 1, tzinfo=UTC)
    start, step = end - timedelta(minutes=10), timedelta(seconds=15)
    with HostileServer("trickle_body", interval=INTERVAL) as server:
        source = PrometheusSource(server.url, timeout=DEADLINE)
        took = timed_failures(
            lambda: source.range_series("up", start=start, end=end, step=step), 5)
        took += timed_failures(
            lambda: source.history("up", service="web", service_label="service",
                                   per_service=True, start=start, end=end, step=step), 5)

        assert statistics.median(took) < DEADLINE + TYPICAL, took
        assert max(took) < DEADLINE + WORST, took
        assert client_sockets_to(server.port) == 0


def test_a_per_read_timeout_alone_would_have_waited_for_the_whole_trickle() -> None:
    """What the deadline fixes: requests' timeout bounds each read, and every read here
    gets its byte within it."""
    with HostileServer("trickle_body", interval=INTERVAL, length=40) as server:
        began = time.monotonic()
        requests.post(f"{server.url}/api/v1/query", data={"query": "up"}, timeout=DEADLINE)
        per_read = time.monotonic() - began

        began = time.monotonic()
        with pytest.raises(SourceUnavailable, match="did not answer within"):
            PrometheusSource(server.url, timeout=DEADLINE).query("up")
        deadline = time.monotonic() - began

    assert per_read > 40 * INTERVAL * 0.9 > 3 * DEADLINE
    assert deadline < DEADLINE + WORST


def test_a_closed_port_fails_at_once_not_at_the_deadline() -> None:
    with HostileServer("silent") as server:
        port = server.port
    began = time.monotonic()
    with pytest.raises(SourceUnavailable, match="did not answer: ConnectionError"):
        PrometheusSource(f"http://127.0.0.1:{port}", timeout=5).query("up")
    assert time.monotonic() - began < 1
