"""The stack of compose/ deployed on the real Swarm, isolated from any other stack: its own
name, ports, policies folder and lease. Removed after the test, even when it fails."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import docker_client, free_port

__all__ = ["docker_client"]

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


@dataclass(frozen=True)
class DeployedStack:
    name: str
    policies: Path
    prometheus_url: str
    loadgen_url: str
    interval_seconds: float
    scrape_interval_seconds: float

    @property
    def web(self) -> str:
        return f"{self.name}_web"

    @property
    def agent(self) -> str:
        return f"{self.name}_agent"


def deploy(name: str, policies: Path, interval_seconds: float) -> DeployedStack:
    prometheus_port, loadgen_port = free_port(), free_port()
    env = {
        **os.environ,
        "STACK_NAME": name, "POLICIES_DIR": str(policies),
        "PROMETHEUS_PORT": str(prometheus_port), "LOADGEN_PORT": str(loadgen_port),
        "AUTOSCALER_INTERVAL": f"{interval_seconds:g}s",
        "AUTOSCALER_LEASE": f"astest.lease.{name}",
    }
    done = subprocess.run([str(COMPOSE / "deploy.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"compose/deploy.sh failed:\n{done.stderr[-4000:]}")
    return DeployedStack(
        name=name, policies=policies,
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        loadgen_url=f"http://127.0.0.1:{loadgen_port}",
        interval_seconds=interval_seconds,
        scrape_interval_seconds=_scrape_interval(COMPOSE / "prometheus.yml"),
    )


def _scrape_interval(config: Path) -> float:
    for line in config.read_text().splitlines():
        if "scrape_interval:" in line:
            value = line.split("scrape_interval:")[1].strip().strip(",}").split()[0]
            return float(value.rstrip("s"))
    raise AssertionError(f"no scrape_interval in {config}")


@pytest.fixture
def deploy_stack(docker_client: docker.DockerClient
                 ) -> Iterator[Callable[[Callable[[str], Path], float], DeployedStack]]:
    """`deploy_stack(write_policies, interval_seconds)`: a stack of its own, removed after.

    `write_policies(web_service_name)` writes the stack's policies and returns their folder.
    """
    names: list[str] = []

    def make(write_policies: Callable[[str], Path], interval_seconds: float) -> DeployedStack:
        name = f"aste2e{uuid.uuid4().hex[:6]}"
        names.append(name)
        return deploy(name, write_policies(f"{name}_web"), interval_seconds)

    yield make
    for name in names:
        subprocess.run([str(COMPOSE / "remove.sh"), name], capture_output=True, timeout=180)
