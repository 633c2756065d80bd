"""The agent's HTTP endpoints: /healthz (liveness), /readyz (readiness) and /metrics, on a
small threaded WSGI server."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import gzip_accepted

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Check = Callable[[], tuple[bool, str]]
"""Whether the agent passes a check, and the text that says so."""
Exposition = Callable[[], bytes]
"""The metrics in Prometheus's text format, version 0.0.4."""
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
GZIP_LEVEL = 1
"""At 10,000 services /metrics is about 7 MB of text: the fastest level compresses it about
as well as the default 9 at a fraction of the CPU."""


CLIENT_TIMEOUT = 10.0
"""Seconds a connection may stay silent while the agent reads its request."""

MAX_EXCHANGES = 64
"""Connections served at once from other hosts, two threads each (the exchange and its
deadline); one more is closed at once. A flood of them would otherwise start threads (each
held up to `CLIENT_TIMEOUT`) until the agent ran out of memory, where a scrape needs one or
two."""


def is_loopback(host: str) -> bool:
    """Whether a client's address is this host's own: the stack's health check runs in the
    agent's container, on 127.0.0.1, and is served whatever a flood from elsewhere holds."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def serve(port: int, *, host: str, health: Check, ready: Check, metrics: Exposition,
          client_timeout: float = CLIENT_TIMEOUT, max_exchanges: int = MAX_EXCHANGES,
          always_served: Callable[[str], bool] = is_loopback) -> WSGIServer:
    """Serve the endpoints on `host`:`port` from a daemon thread; OSError when they cannot be
    bound. Stop it with `shutdown()`. A client that connects and then sends nothing (or
    trickles) is cut off after `client_timeout` seconds, rather than hold one of the
    server's threads for ever; past `max_exchanges` at once, a connection is closed
    unanswered, unless its address is one `always_served` accepts."""
    checks = {"/healthz": health, "/readyz": ready}
    handler = type("_Handler", (_QuietHandler,),
                   {"deadline": client_timeout, "timeout": client_timeout})
    server_class: type[_ThreadingServer] = type(
        "_Server", (_ThreadingServer,),
        {"max_exchanges": max_exchanges, "always_served": staticmethod(always_served)})
    server: WSGIServer = make_server(host, port, _app(checks, metrics),
                                     server_class=server_class, handler_class=handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _app(checks: dict[str, Check], metrics: Exposition
         ) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    compressed = _Compressed()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in checks:
            ok, text = checks[path]()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{text}\n".encode()]
        if path == "/metrics":
            body = metrics()
            headers = [("Content-Type", TEXT_FORMAT)]
            if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
                body = compressed(body)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"see /healthz, /readyz and /metrics\n"]

    return app


class _Compressed:
    """The gzip of the last body asked for: scrapes of the same body (`Exposition` renders
    one a change) share one compression, rather than hold one each while they are sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[bytes, bytes] | None = None

    def __call__(self, body: bytes) -> bytes:
        with self._lock:
            if self._last is None or self._last[0] is not body:
                self._last = (body, gzip.compress(body, compresslevel=GZIP_LEVEL))
            return self._last[1]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    max_exchanges = MAX_EXCHANGES
    always_served: Callable[[str], bool] = staticmethod(is_loopback)
    request_queue_size = 128
    """Connections the kernel holds until they are taken (5 by default): past it, a flood's
    connections wait out the kernel's retries rather than being closed at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_exchanges)
        super().__init__(*args, **kwargs)

    def _counted(self, client_address: Any) -> bool:
        return not self.always_served(str(client_address[0]))

    def process_request(self, request: Any, client_address: Any) -> None:
        counted = self._counted(client_address)
        if counted and not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # refused: as many as it serves are under way
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            if counted:
                self._slots.release()  # no thread started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            if self._counted(client_address):
                self._slots.release()


class _QuietHandler(WSGIRequestHandler):
    deadline = timeout = CLIENT_TIMEOUT
    """Seconds the whole exchange may take, and each read: a per-read timeout alone would
    let a client that trickles a byte at a time hold the thread for ever."""

    def handle(self) -> None:
        cut = threading.Timer(self.deadline, self._cut)
        cut.daemon = True
        cut.start()
        try:
            super().handle()
        except OSError:
            pass  # a client cut off, gone or timed out: nothing to answer, nothing to log
        finally:
            cut.cancel()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):  # the exchange ended meanwhile
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not worth a log line each."""
