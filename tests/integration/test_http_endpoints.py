"""The agent's HTTP endpoints on a real socket: a client that connects and says nothing is
cut off, and the endpoints keep answering."""

from __future__ import annotations

import socket
import time
import urllib.request

from autoscaler.adapters import http
from tests.integration.conftest import free_port


def test_a_silent_client_is_cut_off_and_the_endpoints_still_answer() -> None:
    port = free_port()
    server = http.serve(port, host="127.0.0.1", health=lambda: (True, "ok"),
                        ready=lambda: (True, "ready"), metrics=lambda: b"", client_timeout=0.5)
    try:
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        time.sleep(1.5)
        for client in silent:
            client.settimeout(2)
            assert client.recv(1) == b""  # closed by the server, not waiting for a request
            client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.read() == b"ok\n"
    finally:
        server.shutdown()
