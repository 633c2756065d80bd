"""Debian's haproxy run in the foreground for a test, its log in a file: the socket proxy
of the stack, and a proxy that limits URLs in front of Prometheus."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for

HAPROXY = "/usr/sbin/haproxy"


@contextmanager
def running_haproxy(config: Path, *, folder: Path, log: Path, ready_url: str,
                    env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """haproxy on `config` (run in `folder`, its output in `log`), once a GET of
    `ready_url` through it answers 200; stopped at the end, killed if it does not stop."""
    if not Path(HAPROXY).exists():
        pytest.fail(f"{HAPROXY} is missing; run `bash .ci/setup.sh`", pytrace=False)
    with log.open("w") as output:
        process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], cwd=folder,
                                   env=dict(env) if env is not None else None,
                                   stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"haproxy exited: {log.read_text()}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=2) as answer:
                        return bool(answer.status == 200)
                except OSError:
                    return False

            wait_for(f"haproxy to forward GET {ready_url}", ready, 15)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
