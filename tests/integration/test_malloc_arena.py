"""Issue 21: the agent's process keeps one malloc arena for all its threads, so that the
memory a large tick frees is not held in several arenas at once; an operator's
MALLOC_ARENA_MAX or GLIBC_TUNABLES wins. Counted in a process of its own, on this
machine's glibc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

THREADS_ALLOCATING = """
import ctypes
import sys
import tempfile
import threading

from autoscaler.runtime.agent import share_one_malloc_arena

if sys.argv[1] == "shared":
    share_one_malloc_arena()
together = threading.Barrier(4)


def allocate() -> None:
    together.wait()
    held = [bytearray(2000) for _ in range(5000)]  # past pymalloc's 512 bytes: malloc's
    together.wait()
    del held


threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
# malloc_info describes each arena as a <heap>, the main one (number 0) included.
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(report.read().count(b"<heap nr=") - 1)
"""


def arenas_of_threads(mode: str, **environment: str) -> int:
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", THREADS_ALLOCATING, mode],
                          env={**inherited, **environment}, capture_output=True, text=True,
                          timeout=60, check=True)
    return int(done.stdout)


@pytest.mark.parametrize(("mode", "environment", "expected"), [
    pytest.param("own", {}, "several", id="glibc-default-gives-threads-arenas"),
    pytest.param("shared", {}, "none", id="the-agent-shares-the-main-arena"),
    pytest.param("shared", {"MALLOC_ARENA_MAX": "8"}, "several", id="operator-setting-wins"),
    pytest.param("shared", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=8"}, "several",
                 id="operator-tunable-wins"),
])
def test_threads_share_one_malloc_arena(mode: str, environment: dict[str, str],
                                        expected: str) -> None:
    count = arenas_of_threads(mode, **environment)
    if expected == "none":
        assert count == 0
    else:
        assert count >= 2
