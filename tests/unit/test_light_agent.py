"""An agent with no predictive policy never imports scikit-learn, numpy or matplotlib: they
are a hundred megabytes of memory it would not use. Each check runs in a fresh interpreter,
since this one has them loaded by other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "numpy", "matplotlib", "threadpoolctl", "scipy")
SHARED = 'sum by (service) (r{service=~"{{services}}"})'
TARGET = (f"service: NAME\nmax_replicas: 5\n"
          f"metrics: [{{name: rps, query: '{SHARED}', target: 10}}]\n")
PREDICTIVE = TARGET + "strategy: predictive\n"

CLI = """
import json, sys
from autoscaler.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(json.dumps({"exit": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}),
      file=sys.stderr)
"""


def loaded_by_cli(folder: Path, *argv: str) -> tuple[object, set[str]]:
    """Run the command line in a fresh interpreter: its exit code and the top-level modules
    it had imported when it ended."""
    environment = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:1"}
    environment.pop("AUTOSCALER_LOG_HOLDS", None)
    done = subprocess.run(
        [sys.executable, "-c", CLI, *argv, "--once", "--port", "0", "--policies", str(folder),
         "--prometheus-url", "http://127.0.0.1:1", "--interval", "2s"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False)
    last = json.loads(done.stderr.strip().splitlines()[-1])
    return last["exit"], set(last["modules"])


def write(folder: Path, text: str, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        (folder / f"s{i}.yaml").write_text(text.replace("NAME", f"s{i}"))
    return folder


@pytest.mark.parametrize("command", ["dry-run", "run"])
def test_an_agent_of_target_policies_loads_no_model_library(tmp_path: Path,
                                                            command: str) -> None:
    """Against nothing (no Prometheus, no Docker): it starts, retrains what is due (nothing),
    ticks, and fails to reach Docker, exit 1."""
    exit_code, modules = loaded_by_cli(write(tmp_path / "p", TARGET, 3), command)

    assert exit_code == 1
    assert "autoscaler" in modules
    assert sorted(modules & set(HEAVY)) == []


def test_a_predictive_policy_does_load_them(tmp_path: Path) -> None:
    """The check above means something: the same run with a predictive policy makes its
    forecaster at the first training."""
    folder = write(tmp_path / "p", TARGET, 2)
    (folder / "p.yaml").write_text(PREDICTIVE.replace("NAME", "p"))

    exit_code, modules = loaded_by_cli(folder, "dry-run")

    assert exit_code == 1
    assert {"sklearn", "numpy"} <= modules


ENGINE = """
import json, sys
from datetime import UTC, datetime, timedelta
from autoscaler.bootstrap import build_engine
from autoscaler.core.model import Series
from autoscaler.core.spec import parse_policy
from tests.unit.fakes import FakeMetrics, FakeSwarm, ListSink

swarm = FakeSwarm()
policies = {}
for i in range(20):
    name = f"s{i}"
    swarm.add(name, 2)
    policies[name + ".yaml"] = parse_policy(sys.argv[1].replace("NAME", name).encode(), "p.yaml")
metrics = FakeMetrics(lambda _: [Series({"service": f"s{i}"}, 10.0 * i) for i in range(20)])
sink = ListSink()
engine = build_engine(metrics=metrics, swarm=swarm, sink=sink, tick=timedelta(seconds=15),
                      policies=policies)
now = datetime(2026, 11, 30, tzinfo=UTC)
for tick in range(3):
    engine.retrain(now, None)
    engine.tick(now + timedelta(seconds=15 * tick))
print(json.dumps({"decisions": len(sink.decisions), "scaled": len(swarm.scaled),
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_ticks_that_decide_and_scale_load_no_model_library() -> None:
    """The whole tick (gather, decide, apply, record) with target policies, through the
    engine the agent builds."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(ENGINE), TARGET], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(done.stdout)

    assert found["decisions"] == 60 and found["scaled"] > 0
    assert sorted(set(found["modules"]) & set(HEAVY)) == []
