"""The demo web service: `/` burns about WORK_MS of CPU and answers 200; `/metrics` serves
`http_requests_total` (no labels of its own: Prometheus adds `service` and `task`) and the
default registry's process metrics, among them `process_cpu_seconds_total`.

Environment: PORT (8000), WORK_MS (2).
"""

from __future__ import annotations

import os
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

PORT = int(os.environ.get("PORT", "8000"))
WORK_SECONDS = float(os.environ.get("WORK_MS", "2")) / 1000

REQUESTS = Counter("http_requests", "Requests answered by /.")


def burn_cpu(seconds: float) -> None:
    """Spin until this thread has used `seconds` of CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._answer(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif self.path in ("/", "/index.html"):
            burn_cpu(WORK_SECONDS)
            REQUESTS.inc()
            self._answer(200, b"ok\n")
        elif self.path == "/healthz":
            self._answer(200, b"ok\n")
        else:
            self._answer(404, b"not found\n")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """One line per request would drown the service's log."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default, 5, refuses connections under load


def _exit(*_: object) -> None:
    raise SystemExit(0)


def main() -> None:
    server = Server(("", PORT), Handler)
    signal.signal(signal.SIGTERM, _exit)
    print(f"web: listening on :{PORT}, {WORK_SECONDS * 1000:g} ms of CPU per request", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
