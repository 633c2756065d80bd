"""Small HTTP servers on 127.0.0.1 that a test controls, and counts of what the process
holds open.

- ScriptedServer answers each request as the test says, and records what it was sent.
- HostileServer never answers, or trickles its answer a byte at a time; it is one thread
  (a selector loop), whatever the number of connections, so that the threads a test counts
  are the client's.
- held_open and check_nothing_left: that calls given up left no thread and no socket.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request as the server read it; header names in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0  # seconds to wait before answering


def api_answer(data: Any, status: str = "success") -> Answer:
    """A query API answer carrying `data`."""
    return Answer(body=json.dumps({"status": status, "data": data}).encode())


def vector(*values: object) -> Answer:
    return api_answer({"resultType": "vector", "result": [
        {"metric": {"service": f"s{index}"}, "value": [1700000000.0, value]}
        for index, value in enumerate(values)]})


def matrix(*values: object, start: float = 1700000000.0, step: float = 1.0) -> Answer:
    return api_answer({"resultType": "matrix", "result": [
        {"metric": {"service": "s0"},
         "values": [[start + index * step, value] for index, value in enumerate(values)]}]})


class ScriptedServer:
    """Answers each request with `answer(seen)`; a thread per connection."""

    def __init__(self, answer: Callable[[Seen], Answer] = lambda seen: vector("1")) -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path,
                            {name.lower(): value for name, value in self.headers.items()},
                            self.rfile.read(length))
                outer.seen.append(seen)
                answer = outer.answer(seen)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


HOSTILE_MODES = ("silent", "trickle_headers", "trickle_body", "trickle_chunked")


def hostile_answer(mode: str, length: int) -> Iterator[bytes]:
    """The bytes a hostile server sends by `mode` (HOSTILE_MODES), each yield sent at once,
    one yield per interval: nothing (silent); a status line and headers that never end
    (trickle_headers); headers with Content-Length `length`, then the body a byte at a time
    (trickle_body); headers, then a one-byte chunk after another, a byte at a time
    (trickle_chunked)."""
    if mode == "silent":
        while True:
            yield b""
    if mode == "trickle_headers":
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: ":
            yield bytes([byte])
        while True:
            yield b"a"
    if mode == "trickle_body":
        yield (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               f"Content-Length: {length}\r\n\r\n").encode()
        for _ in range(length):
            yield b" "
        return
    yield (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")
    while True:
        for byte in b"1\r\n \r\n":
            yield bytes([byte])


class HostileServer:
    """A server that reads the request, then, by `mode`:
    - silent: answers nothing;
    - trickle_headers: sends its status line and headers a byte every `interval`, forever;
    - trickle_body: sends its headers at once (Content-Length: `length`), then the body a
      byte every `interval`;
    - trickle_chunked: the same with Transfer-Encoding: chunked, a one-byte chunk (its size
      line, the byte, its end) a byte at a time.
    A connection ends when the client closes it (or, trickle_body, when `length` is sent).
    """

    def __init__(self, mode: str, *, interval: float = 0.05, length: int = 1_000_000) -> None:
        assert mode in HOSTILE_MODES, mode
        self.mode, self.interval, self.length = mode, interval, length
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._open: dict[socket.socket, Iterator[bytes] | None] = {}
        self._next_send: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """Connections the server still holds open."""
        with self._lock:
            return len(self._open)

    def _close(self, conn: socket.socket, selector: selectors.BaseSelector) -> None:
        selector.unregister(conn)
        conn.close()
        with self._lock:
            del self._open[conn]
            self._next_send.pop(conn, None)

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
                        self._open[conn] = None
                        self.accepted += 1
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._close(sock, selector)
                elif self._open.get(sock) is None and b"\r\n\r\n" in data:
                    with self._lock:
                        self._open[sock] = hostile_answer(self.mode, self.length)
                        self._next_send[sock] = time.monotonic()
            now = time.monotonic()
            for conn, due in list(self._next_send.items()):
                script = self._open[conn]
                if due > now or script is None:
                    continue
                piece = next(script, None)
                try:
                    if piece is None:
                        raise OSError("sent all")
                    conn.send(piece)
                except OSError:
                    self._close(conn, selector)
                    continue
                self._next_send[conn] = now + self.interval
        for conn in list(self._open):
            self._close(conn, selector)
        selector.close()

    def close(self) -> None:
        self._stopping = True
        self._thread.join(timeout=10)
        self._listener.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def socket_fds() -> set[int]:
    """The inodes of the sockets this process holds open (entries of /proc/self/fd)."""
    found = set()
    for entry in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[len("socket:["):-1]))
    return found


SERVING_A_REQUEST = "process_request_thread"
"""In the name of the thread a socketserver.ThreadingMixIn server (the in-process exporter
that the session's Prometheus scrapes every second) serves one request on."""


def held_open() -> tuple[int, int]:
    """How many threads (but a server's request threads) and sockets this process has now,
    for `check_nothing_left`."""
    threads = [t for t in threading.enumerate() if SERVING_A_REQUEST not in t.name]
    return len(threads), len(socket_fds())


def check_nothing_left(before: tuple[int, int], grace: float = 2.0) -> None:
    """No more threads and sockets than `before`, within `grace` seconds (shorter than the
    fake servers' hang-up, which would end a reader left waiting). The exporter's scrapes
    come and go meanwhile: a socket each while it lasts."""
    assert wait_until(lambda: held_open()[0] <= before[0], grace), (
        f"a thread left behind: {[thread.name for thread in threading.enumerate()]}")
    assert wait_until(lambda: held_open()[1] <= before[1], grace), "a socket left behind"


def client_sockets_to(port: int) -> int:
    """How many of this process's open sockets are TCP connections to 127.0.0.1:`port`."""
    mine = socket_fds()
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == port and int(fields[9]) in mine:
                        count += 1
        except FileNotFoundError:
            continue
    return count


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
