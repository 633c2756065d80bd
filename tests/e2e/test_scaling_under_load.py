"""The agent as a Swarm service, from the stack in compose/, scaling a real service under
real load: up in one scale action after a load step, down after the stabilization window,
never restarting a running task, and one decision per tick in its log."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import DeployedStack
from tests.integration.conftest import running_tasks, wait_for

TARGET_PER_REPLICA = 20
LOAD = 100
INTERVAL_SECONDS = 2.0
SCALE_DOWN_WINDOW_SECONDS = 10.0
SWARM_START_SECONDS = 30.0
"""Time the Swarm may take to start new tasks here (DESIGN.md measured up to ~29 s)."""


def write_policy(folder: Path, service: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"{service}.yaml").write_text(yaml.safe_dump({
        "service": service, "min_replicas": 1, "max_replicas": 8, "strategy": "target",
        "metrics": [{
            "name": "requests",
            "query": 'sum by (service) '
                     '(loadgen_offered_requests_per_second{service=~"{{services}}"})',
            "target": TARGET_PER_REPLICA,
        }],
        "behavior": {
            "scale_up": {"stabilization": "0s", "max_step": 10, "period": "15s"},
            "scale_down": {"stabilization": f"{SCALE_DOWN_WINDOW_SECONDS:g}s", "period": "5s"},
        },
    }))
    return folder


def set_rate(stack: DeployedStack, rate: float) -> float:
    request = urllib.request.Request(f"{stack.loadgen_url}/rate", data=str(rate).encode(),
                                     method="PUT")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    return time.time()


def decisions(stack: DeployedStack) -> list[dict[str, Any]]:
    logs = subprocess.run(["docker", "service", "logs", "--raw", stack.agent],
                          capture_output=True, text=True, timeout=60).stdout
    found = []
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "scaling_decision" and event.get("service") == stack.web:
            found.append(event)
    return found


def epoch(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def all_task_ids(service: str) -> set[str]:
    done = subprocess.run(["docker", "service", "ps", "--format", "{{.ID}}", service],
                          capture_output=True, text=True, timeout=60)
    return set(done.stdout.split())


def test_scales_up_in_one_action_and_back_down_without_restarting_tasks(
    tmp_path: Path,
    deploy_stack: Callable[[Callable[[str], Path], float], DeployedStack],
) -> None:
    stack = deploy_stack(lambda web: write_policy(tmp_path / "policies", web), INTERVAL_SECONDS)
    wait_for("the agent to decide on the web service at 1 replica",
             lambda: any(d["current_replicas"] == 1 for d in decisions(stack)), 60)
    first_task = running_tasks(stack.web)
    assert len(first_task) == 1
    expected = math.ceil(LOAD / TARGET_PER_REPLICA)
    reaction_bound = (2 * stack.scrape_interval_seconds + 2 * stack.interval_seconds
                      + SWARM_START_SECONDS)

    load_at = set_rate(stack, LOAD)
    wait_for(f"{expected} running tasks", lambda: len(running_tasks(stack.web)) == expected,
             reaction_bound)
    running_at = time.time()

    up = [d for d in decisions(stack) if epoch(d) >= load_at - 1 and d["applied"]]
    assert [(d["current_replicas"], d["desired_replicas"]) for d in up] == [(1, expected)], up
    decided_at = epoch(up[0])
    print(f"\nscale-up: load change -> decision {decided_at - load_at:.1f} s, "
          f"decision -> {expected} running {running_at - decided_at:.1f} s "
          f"(bound {reaction_bound:.0f} s)")
    scaled_up = running_tasks(stack.web)
    assert first_task <= scaled_up

    drop_at = set_rate(stack, 0)
    down_bound = SCALE_DOWN_WINDOW_SECONDS + reaction_bound
    wait_for("1 running task", lambda: len(running_tasks(stack.web)) == 1, down_bound)
    print(f"scale-down: load drop -> 1 running {time.time() - drop_at:.1f} s "
          f"(window {SCALE_DOWN_WINDOW_SECONDS:g} s, bound {down_bound:.0f} s)")

    assert running_tasks(stack.web) <= scaled_up
    assert all_task_ids(stack.web) <= scaled_up, "a scale replaced a running task"
    logged = decisions(stack)
    down = [d for d in logged if epoch(d) >= drop_at and d["applied"]]
    assert [(d["current_replicas"], d["desired_replicas"]) for d in down] == [(expected, 1)]
    assert epoch(down[0]) - drop_at >= SCALE_DOWN_WINDOW_SECONDS - stack.interval_seconds
    times = [epoch(d) for d in logged]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(set(times)) == len(times), "two decisions for the service in one tick"
    assert max(gaps) <= 2.5 * stack.interval_seconds, f"a tick logged no decision: {gaps}"
