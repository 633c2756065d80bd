"""Issue 21: the agent's process keeps one malloc arena for all its threads, so that the
memory a large tick frees is not held in several arenas at once; an operator's
MALLOC_ARENA_MAX wins. Measured in a process of its own, on this machine's glibc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

THREADS_ALLOCATING = """
import sys
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
# glibc maps each arena but the main one on a 64 MiB boundary, anonymous.
aligned = 0
for line in open("/proc/self/maps"):
    fields = line.split()
    if len(fields) == 5 and int(fields[0].split("-")[0], 16) % (64 << 20) == 0:
        aligned += 1
print(aligned)
"""


def arenas_of_threads(mode: str, **environment: str) -> int:
    inherited = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", THREADS_ALLOCATING, mode],
                          env={**inherited, **environment}, capture_output=True, text=True,
                          timeout=60, check=True)
    return int(done.stdout)


@pytest.mark.parametrize(("mode", "environment", "expected"), [
    pytest.param("own", {}, "several", id="glibc-default-gives-threads-arenas"),
    pytest.param("shared", {}, "none", id="the-agent-shares-the-main-arena"),
    pytest.param("shared", {"MALLOC_ARENA_MAX": "8"}, "several", id="operator-setting-wins"),
])
def test_threads_share_one_malloc_arena(mode: str, environment: dict[str, str],
                                        expected: str) -> None:
    count = arenas_of_threads(mode, **environment)
    if expected == "none":
        assert count == 0
    else:
        assert count >= 2
