"""The agent's HTTP endpoints on a real socket: a client that connects and says nothing, or
trickles its request a byte at a time, is cut off without a trace on stderr, and the
endpoints keep answering; a flood of connections takes no more threads than the server's
limit."""

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


def test_connections_past_the_limit_are_closed_at_once_and_take_no_thread(
        capfd: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    server = http.serve(port, host="127.0.0.1", health=lambda: (True, "ok"),
                        ready=lambda: (True, "ready"), metrics=lambda: b"", client_timeout=5,
                        max_exchanges=4)
    try:
        threads = threading.active_count()
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.5)
        began = time.monotonic()
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]

        assert all(closed_by_the_server(client) for client in flood)
        assert time.monotonic() - began < 3, "closed at once, not after the client timeout"
        assert threading.active_count() <= threads + 4 + 4  # a handler and a timer each
        for client in held + flood:
            client.close()
        deadline = time.monotonic() + 5
        while True:  # the held ones' threads end as their clients go
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                            timeout=5) as answer:
                    assert answer.read() == b"ok\n"
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        server.shutdown()
    assert "Traceback" not in capfd.readouterr().err
