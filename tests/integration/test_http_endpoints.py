"""The agent's HTTP endpoints on a real socket: a client that connects and says nothing, or
trickles its request a byte at a time, is cut off without a trace on stderr, and the
endpoints keep answering; a flood of connections takes no more threads than the server's
limit, and the health check is answered through it."""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request

import pytest

from autoscaler.adapters import http
from tests.integration.conftest import free_port


def closed_by_the_server(client: socket.socket) -> bool:
    client.settimeout(2)
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_silent_or_trickling_client_is_cut_off_and_the_endpoints_still_answer(
        capfd: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    server = http.serve(port, host="127.0.0.1", health=lambda: (True, "ok"),
                        ready=lambda: (True, "ready"), metrics=lambda: b"", client_timeout=0.5)
    try:
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        trickling = socket.create_connection(("127.0.0.1", port))
        began = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\n":  # a byte every 0.2 s: each read is quick
            try:
                trickling.sendall(bytes([byte]))
            except OSError:
                break
            if select.select([trickling], [], [], 0.2)[0]:
                break

        assert closed_by_the_server(trickling)
        assert time.monotonic() - began < 3
        assert all(closed_by_the_server(client) for client in silent)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.read() == b"ok\n"
    finally:
        server.shutdown()
    assert "Traceback" not in capfd.readouterr().err


def test_connections_past_the_limit_are_closed_at_once_and_the_health_check_still_answers(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A flood from other hosts (here 127.0.0.1, which the server is told to count) holds at
    most its limit of exchanges, two threads each; the rest are closed unanswered at once,
    and a client the server always serves (the health check, here from 127.0.0.2) is
    answered all the same."""
    port = free_port()
    server = http.serve(port, host="127.0.0.1", health=lambda: (True, "ok"),
                        ready=lambda: (True, "ready"), metrics=lambda: b"", client_timeout=5,
                        max_exchanges=4, always_served=lambda host: host == "127.0.0.2")
    try:
        threads = threading.active_count()
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.5)
        began = time.monotonic()
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]

        assert all(closed_by_the_server(client) for client in flood)
        assert time.monotonic() - began < 3, "closed at once, not after the client timeout"
        assert threading.active_count() <= threads + 2 * 4
        health = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
        health.settimeout(5)
        health.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := health.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"ok\n")
        for client in [*held, *flood, health]:
            client.close()
    finally:
        server.shutdown()
    assert "Traceback" not in capfd.readouterr().err
