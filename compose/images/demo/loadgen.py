"""The demo load generator: HTTP GETs to TARGET_URL at a rate that can change at run time.

The target's host name is resolved every second; with `endpoint_mode: dnsrr` it answers the
IP of every task, and requests go round-robin across them. Requests run on a bounded thread
pool: when every slot is busy a request is not sent and counts as an error, so a slow target
never makes the generator fall behind its schedule or pile up threads.

Control, on CONTROL_PORT (8089):
  GET /rate               the rate now, requests/s
  PUT /rate, POST /rate   body: a number >= 0, the new rate
  GET /metrics            loadgen_offered_requests_per_second{service=TARGET_SERVICE}: the rate
                          configured, set the moment it changes (the rate measured where the
                          traffic enters); loadgen_requests_total{service, outcome="ok|error"}

Environment: TARGET_URL (http://web:8000/), TARGET_SERVICE (web: the Swarm service name to
label the metrics with), LOAD_RATE (0), CONTROL_PORT (8089), MAX_IN_FLIGHT (64),
REQUEST_TIMEOUT (2 s), MAX_RATE (5000).
"""

from __future__ import annotations

import http.client
import math
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

TARGET_URL = os.environ.get("TARGET_URL", "http://web:8000/")
TARGET_SERVICE = os.environ.get("TARGET_SERVICE", "web")
CONTROL_PORT = int(os.environ.get("CONTROL_PORT", "8089"))
MAX_IN_FLIGHT = int(os.environ.get("MAX_IN_FLIGHT", "64"))
REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", "2"))
MAX_RATE = float(os.environ.get("MAX_RATE", "5000"))

OFFERED = Gauge(
    "loadgen_offered_requests_per_second",
    "Requests/s the load generator is set to send to the service.",
    ["service"],
)
SENT = Counter(
    "loadgen_requests",
    "Requests the load generator sent (or could not send), by outcome.",
    ["service", "outcome"],
)


def log(message: str) -> None:
    print(f"loadgen: {message}", flush=True)


class Rate:
    """The configured rate, shared by the control server and the sender."""

    def __init__(self, initial: float) -> None:
        self._value = initial
        self._lock = threading.Lock()
        self._changed = threading.Event()
        OFFERED.labels(TARGET_SERVICE).set(initial)

    def get(self) -> float:
        with self._lock:
            return self._value

    def set(self, value: float) -> None:
        with self._lock:
            old, self._value = self._value, value
            OFFERED.labels(TARGET_SERVICE).set(value)
        self._changed.set()
        log(f"rate {old:g} -> {value:g} requests/s")

    def wait_for_change(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True if the rate was set meanwhile."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed


class Targets:
    """The target's addresses, refreshed every second, handed out round-robin."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._addresses: list[str] = []
        self._next = 0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        try:
            answers = socket.getaddrinfo(self._host, self._port, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            return  # keep the last answer: a lookup failing now and then is no reason to stop
        addresses = sorted({str(answer[4][0]) for answer in answers})
        with self._lock:
            if addresses != self._addresses:
                log(f"{self._host} -> {', '.join(addresses) or 'nothing'}")
            self._addresses = addresses

    def refresh_forever(self) -> None:
        while True:
            self.refresh()
            time.sleep(1)

    def pick(self) -> str | None:
        with self._lock:
            if not self._addresses:
                return None
            self._next = (self._next + 1) % len(self._addresses)
            return self._addresses[self._next]


def send_one(address: str, port: int, path: str, host_header: str) -> None:
    connection = http.client.HTTPConnection(address, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", path, headers={"Host": host_header})
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        connection.close()
    SENT.labels(TARGET_SERVICE, "ok" if ok else "error").inc()


def send_forever(rate: Rate, targets: Targets) -> None:
    """Send at `rate`, on a schedule that restarts whenever the rate changes."""
    url = urlsplit(TARGET_URL)
    port = url.port or 80
    path = url.path or "/"
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
    pool = ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT, thread_name_prefix="send")

    def send(address: str) -> None:
        try:
            send_one(address, port, path, url.netloc)
        finally:
            slots.release()

    due = time.monotonic()
    while True:
        per_second = rate.get()
        if per_second <= 0:
            rate.wait_for_change(1.0)
            due = time.monotonic()
            continue
        delay = due - time.monotonic()
        if delay > 0 and rate.wait_for_change(delay):
            due = time.monotonic()
            continue
        # Catch up after a stall, but by at most one second's worth of requests.
        due = max(due + 1 / per_second, time.monotonic() - 1)
        address = targets.pick()
        if address is None or not slots.acquire(blocking=False):
            SENT.labels(TARGET_SERVICE, "error").inc()
            continue
        pool.submit(send, address)


def parse_rate(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= MAX_RATE else None


class Control(BaseHTTPRequestHandler):
    rate: Rate  # set by main()

    def do_GET(self) -> None:
        if self.path == "/rate":
            self._answer(200, f"{self.rate.get():g}\n".encode())
        elif self.path == "/metrics":
            self._answer(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            self._answer(200, b"ok\n")
        else:
            self._answer(404, b"see /rate and /metrics\n")

    def do_PUT(self) -> None:
        if self.path != "/rate":
            self._answer(404, b"PUT or POST /rate with a number as the body\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        value = parse_rate(self.rfile.read(min(length, 64)).decode(errors="replace"))
        if value is None:
            self._answer(400, f"the body must be a number from 0 to {MAX_RATE:g}\n".encode())
            return
        self.rate.set(value)
        self._answer(200, f"{value:g}\n".encode())

    do_POST = do_PUT

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Rate changes are logged by Rate.set; other requests are not worth a line."""


def _exit(*_: object) -> None:
    raise SystemExit(0)


def main() -> None:
    initial = parse_rate(os.environ.get("LOAD_RATE", "0"))
    if initial is None:
        raise SystemExit(f"LOAD_RATE must be a number from 0 to {MAX_RATE:g}")
    url = urlsplit(TARGET_URL)
    if url.scheme != "http" or not url.hostname:
        raise SystemExit(f"TARGET_URL must be an http:// URL, not {TARGET_URL!r}")
    Control.rate = rate = Rate(initial)
    targets = Targets(url.hostname, url.port or 80)
    threading.Thread(target=targets.refresh_forever, name="resolve", daemon=True).start()
    threading.Thread(target=send_forever, args=(rate, targets), name="sender", daemon=True).start()
    server = ThreadingHTTPServer(("", CONTROL_PORT), Control)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, _exit)
    log(f"{TARGET_URL} ({TARGET_SERVICE}) at {initial:g} requests/s; control on :{CONTROL_PORT}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
