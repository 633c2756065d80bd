"""compose/deploy.sh up to its `docker stack deploy`, with a stand-in `docker` on the PATH
that records the environment the stack would be deployed with, and deploys nothing."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "compose" / "deploy.sh"

FAKE_DOCKER = """#!/bin/sh
if [ "$1 $2" = "context inspect" ]; then
  printf '%s\\n' "$CONTEXT_ENGINE"
  exit 0
fi
if [ "$1 $2" = "stack deploy" ]; then
  printf '%s' "$DOCKER_GID" > "$RECORD"
  exit 3
fi
exit 0
"""
"""Answers every call but `stack deploy`, which it records and fails, so the script stops;
`context inspect` names CONTEXT_ENGINE as the current context's engine (empty: none, as an
old CLI without contexts)."""

SOCKET_GID = 4243
"""The group given to the test's own engine socket: not that of the machine's."""


def deploy(tmp_path: Path, **variables: str) -> tuple[subprocess.CompletedProcess[str], str | None]:
    """Run deploy.sh; its output and the DOCKER_GID `docker stack deploy` got (None: never
    called)."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    fake = bin_folder / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    record = tmp_path / "deployed-with"
    env = {
        "PATH": f"{bin_folder}:{os.environ['PATH']}", "RECORD": str(record),
        "SKIP_BUILD": "1", "AUTOSCALER_IMAGE": "agent", "DEMO_IMAGE": "demo",
        "PROMETHEUS_IMAGE": "prometheus", **variables,
    }
    done = subprocess.run(["bash", str(DEPLOY)], env=env, capture_output=True, text=True,
                          timeout=30)
    return done, record.read_text() if record.exists() else None


@pytest.fixture
def engine_socket(tmp_path: Path) -> Path:
    path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()
    with contextlib.suppress(PermissionError):  # as root: a group no real socket has
        os.chown(path, -1, SOCKET_GID)
    return path


@pytest.mark.parametrize(("variables", "expected"), [
    pytest.param({"DOCKER_HOST": "tcp://manager-1:2376", "DOCKER_GID": "998"}, "998",
                 id="given-with-a-remote-engine"),
    pytest.param({"DOCKER_HOST": "unix://{socket}", "DOCKER_GID": "998"}, "998",
                 id="given-with-a-local-socket"),
    pytest.param({"DOCKER_HOST": "unix://{socket}"}, "{group}",
                 id="the-group-of-the-socket-docker-host-names"),
    pytest.param({"CONTEXT_ENGINE": "unix://{socket}"}, "{group}",
                 id="the-group-of-the-socket-the-context-names"),
])
def test_the_agent_gets_the_group_of_the_managers_socket(
        tmp_path: Path, engine_socket: Path, variables: dict[str, str], expected: str) -> None:
    variables = {name: value.format(socket=engine_socket) for name, value in variables.items()}
    done, deployed_with = deploy(tmp_path, **variables)
    assert deployed_with == expected.format(group=engine_socket.stat().st_gid), done.stderr


@pytest.mark.parametrize("variables", [
    pytest.param({"DOCKER_HOST": "ssh://admin@manager-1"}, id="docker-host"),
    pytest.param({"CONTEXT_ENGINE": "tcp://manager-1:2376"}, id="context"),
])
def test_a_remote_engine_without_docker_gid_is_refused_before_deploying(
        tmp_path: Path, variables: dict[str, str]) -> None:
    done, deployed_with = deploy(tmp_path, **variables)
    assert done.returncode == 1
    assert deployed_with is None
    assert "set DOCKER_GID to the group of /var/run/docker.sock on the managers" in done.stderr
