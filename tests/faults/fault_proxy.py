"""Fault-injecting proxies on 127.0.0.1 that a test switches while the agent runs.

- PrometheusFaultProxy stands between the agent and a real Prometheus. In mode `pass` it
  forwards every request unchanged; in the other modes (FAULT_MODES) it refuses connections,
  delays, trickles, resets, answers an error or the wrong content, or forwards the query to
  Prometheus and rewrites the real answer's values (NaN, +Inf, -50, no series, several
  series for one service). Each connection serves one request (Connection: close), so a
  switch takes effect at the agent's next request.
- DockerProxy stands between the agent and the Docker engine's socket (DOCKER_HOST=tcp://...)
  and, when armed for a service, changes that service through the real socket just before it
  forwards the agent's update of it: the update then carries a stale version, as when
  someone edits the service between the agent's listing and its scale.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

FAULT_MODES = (
    "pass",          # forward unchanged
    "down",          # nothing listens on the port: connection refused
    "delay",         # forward, but only after `delay` seconds
    "trickle",       # forward; send the headers at once, then the body a byte a second
    "reset",         # read the request, then reset the connection (RST, no answer)
    "http_503",      # 503 with Prometheus's JSON error body
    "invalid_json",  # 200, Content-Type JSON, a body cut in the middle
    "html",          # 200, an HTML page (a login page, a captive portal)
    "empty",         # the real answer with no series
    "nan",           # the real answer, every value NaN
    "inf",           # the real answer, every value +Inf
    "negative",      # the real answer, every value -50
    "multi",         # the real answer, every series twice (a second `instance`)
    "echo_401",      # 401 whose body echoes the request's Authorization header, decoded too
)
_REWRITES: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "empty": lambda series: [],
    "nan": lambda series: [{**series, "value": [series["value"][0], "NaN"]}],
    "inf": lambda series: [{**series, "value": [series["value"][0], "+Inf"]}],
    "negative": lambda series: [{**series, "value": [series["value"][0], "-50"]}],
    "multi": lambda series: [series, {**series, "metric": {**series["metric"],
                                                            "instance": "fault-copy"}}],
}
INSTANT_QUERY = "/api/v1/query"


class PrometheusFaultProxy:
    """A proxy on 127.0.0.1 in front of the Prometheus at `upstream`, in one of FAULT_MODES.

    `served` counts the instant queries answered (or refused by an answer) per mode."""

    def __init__(self, upstream: str, *, mode: str = "pass", delay: float = 3.0,
                 trickle_every: float = 1.0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.trickle_every = trickle_every
        self.served: Counter[str] = Counter()
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._mode = "pass"
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.set_mode(mode)

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch to `mode`; `down` closes the listening socket, leaving it opens it again on
        the same port."""
        assert mode in FAULT_MODES, mode
        with self._lock:
            if mode == "down":
                self._stop_listening()
            elif self._server is None:
                self._listen()
            self._mode = mode

    def _listen(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _stop_listening(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread = None, None

    def close(self) -> None:
        self.closing.set()
        with self._lock:
            self._stop_listening()

    def __enter__(self) -> PrometheusFaultProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _handler(proxy: PrometheusFaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request a connection

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, body: bytes) -> None:
            mode = proxy.mode
            instant = self.path.split("?")[0] == INSTANT_QUERY
            if instant:
                proxy.served[mode] += 1
            with contextlib.suppress(OSError):  # the agent gave up on this request
                self._answer(mode, body, instant=instant)

        def _answer(self, mode: str, body: bytes, *, instant: bool) -> None:
            if mode == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if mode == "http_503":
                self._send(503, json.dumps({"status": "error", "errorType": "unavailable",
                                            "error": "fault proxy: injected 503"}).encode())
                return
            if mode == "invalid_json":
                self._send(200, b'{"status":"success","data":{"resultType":"vector","resu')
                return
            if mode == "html":
                self._send(200, b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>",
                           content_type="text/html; charset=utf-8")
                return
            if mode == "echo_401":
                self._send(401, self._echo().encode(), content_type="text/plain")
                return
            if mode == "delay":
                time.sleep(proxy.delay)
            status, content_type, answer = self._forward(body)
            if instant and status == 200 and mode in _REWRITES:
                answer = _rewrite(answer, _REWRITES[mode])
            if mode == "trickle":
                self._trickle(status, answer, content_type)
            else:
                self._send(status, answer, content_type=content_type)

        def _forward(self, body: bytes) -> tuple[int, str, bytes]:
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() in ("content-type", "accept", "user-agent")}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                return (response.status, response.getheader("Content-Type", "application/json"),
                        response.read())
            finally:
                connection.close()

        def _echo(self) -> str:
            """What a careless server says back: the request's Authorization, decoded."""
            authorization = self.headers.get("Authorization", "")
            decoded = ""
            if authorization.startswith("Basic "):
                decoded = base64.b64decode(authorization[6:]).decode("utf-8", "replace")
            return f"unauthorized: you sent Authorization: {authorization} ({decoded})"

        def _send(self, status: int, body: bytes, *, content_type: str = "application/json"
                  ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _trickle(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            for byte in body:
                if proxy.closing.wait(proxy.trickle_every):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

    return Handler


def _rewrite(body: bytes, change: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> bytes:
    answer = json.loads(body)
    data = answer["data"]
    if data["resultType"] == "vector":
        data["result"] = [new for series in data["result"] for new in change(series)]
    return json.dumps(answer).encode()


# --- the Docker engine ----------------------------------------------------------------

_UPDATE = re.compile(r"^(/v[\d.]+)?/services/(?P<id>[^/?]+)/update")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "proxy-connection", "upgrade", "te", "trailer"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerProxy:
    """A proxy on 127.0.0.1 to the engine's socket, one request a connection.

    `arm_conflict(service_id, change)`: the next update of that service the agent posts is
    held until `change()` (which edits the service through the real socket) has run, then
    forwarded with the version the agent listed, which is stale by then."""

    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        self.socket_path = socket_path
        self.calls: list[tuple[str, str, int]] = []
        """(method, path, status) of every forwarded request."""
        self.injected: list[str] = []
        """The IDs of the services whose update met an injected concurrent change."""
        self._armed: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.docker_host = f"tcp://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def arm_conflict(self, service_id: str, change: Callable[[], None]) -> None:
        with self._lock:
            self._armed[service_id] = change

    def _take(self, path: str) -> tuple[str, Callable[[], None]] | None:
        match = _UPDATE.match(path)
        if match is None:
            return None
        with self._lock:
            change = self._armed.pop(match["id"], None)
        return None if change is None else (match["id"], change)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_DELETE(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and (armed := proxy._take(self.path)) is not None:
                    service_id, change = armed
                    change()
                    proxy.injected.append(service_id)
                connection = _UnixConnection(proxy.socket_path, timeout=60)
                try:
                    headers = {name: value for name, value in self.headers.items()
                               if name.lower() not in _HOP_BY_HOP and name.lower() != "host"}
                    connection.request(self.command, self.path, body=body or None,
                                       headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    kept = [(n, v) for n, v in response.getheaders()
                            if n.lower() not in _HOP_BY_HOP]
                    status = response.status
                finally:
                    connection.close()
                proxy.calls.append((self.command, self.path, status))
                try:
                    self.send_response(status)
                    for name, value in kept:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> DockerProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
