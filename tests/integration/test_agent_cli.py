"""The `autoscaler` command against a real Prometheus and a real Swarm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.integration.conftest import (
    LoadExporter,
    RunningPrometheus,
    free_port,
    service_version,
    wait_for,
    wait_running,
)

QUERY = 'sum by (service) (astest_load{service=~"{{services}}"})'
LEASE = f"astest.lease.{uuid.uuid4().hex[:8]}"
"""The tests' agents share a lease of their own, apart from any real agent on this Swarm."""


def write_policy(folder: Path, service: str, **overrides: Any) -> Path:
    document: dict[str, Any] = {
        "service": service, "min_replicas": 1, "max_replicas": 10,
        "metrics": [{"name": "load", "query": QUERY, "target": 100}],
    }
    document.update(overrides)
    path = folder / f"{service}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def autoscaler(*args: str, env: dict[str, str] | None = None, timeout: float = 60
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autoscaler", *args], capture_output=True, text=True,
        timeout=timeout, env=clean_env(env),
    )


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSCALER_")}
    env["AUTOSCALER_LEASE"] = LEASE
    env.update(extra or {})
    return env


def start_agent(command: str, log: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoscaler", command, "--interval", "1s"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=clean_env(env),
    )


def stop_agent(agent: subprocess.Popen[str]) -> int:
    agent.send_signal(signal.SIGTERM)
    try:
        return agent.wait(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()


def events(log: Path, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == name]


def decisions(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "scaling_decision"]


def by_service(stdout: str) -> dict[str, dict[str, Any]]:
    return {d["service"]: d for d in decisions(stdout)}


def set_load(prometheus: RunningPrometheus, exporter: LoadExporter, service: str, value: float
             ) -> None:
    exporter.gauge.labels(service).set(value)
    prometheus.wait_value(f'astest_load{{service="{service}"}}', value)


def test_dry_run_once_logs_every_decision_and_changes_nothing(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    busy = make_service("busy", replicas=2)
    global_mode = make_service("glob", mode="global")
    absent = f"absent{uuid.uuid4().hex[:6]}"
    for service in (busy, global_mode, absent):
        write_policy(tmp_path, service)
    set_load(prometheus, load_exporter, busy, 500)
    version = service_version(busy)

    done = autoscaler("dry-run", "--once", "--policies", str(tmp_path),
                      "--prometheus-url", prometheus.url, "--port", "0")

    assert done.returncode == 0, done.stderr
    logged = by_service(done.stdout)
    assert set(logged) == {busy, global_mode, absent}
    assert logged[busy] | {"timestamp": None, "message": None} == {
        "event": "scaling_decision", "level": "info", "logger": "autoscaler.decisions",
        "timestamp": None, "message": None, "service": busy, "strategy": "target",
        "current_replicas": 2, "spec_replicas": 2, "recommended_replicas": 5,
        "desired_replicas": 5, "reason": "DesiredWithinRange", "metrics": {"load": 500.0},
        "dry_run": True, "applied": False, "policy_file": str(tmp_path / f"{busy}.yaml"),
        "policy_source": "file", "driven_by": "load",
        "placement": {"running": 2, "nodes": 1, "unplaceable": 0},
    }
    assert logged[busy]["timestamp"].endswith("Z")
    assert logged[global_mode]["reason"] == "NotReplicated"
    assert logged[absent]["reason"] == "ServiceNotFound"
    assert service_version(busy) == version


def test_run_once_scales_up_keeping_the_running_tasks(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    busy = make_service("run", replicas=2)
    before = wait_running(busy, 2)
    write_policy(tmp_path, busy)
    set_load(prometheus, load_exporter, busy, 500)

    done = autoscaler("run", "--once", "--policies", str(tmp_path),
                      "--prometheus-url", prometheus.url, "--port", "0")

    assert done.returncode == 0, done.stderr
    decision = by_service(done.stdout)[busy]
    assert (decision["desired_replicas"], decision["applied"]) == (5, True)
    assert before <= wait_running(busy, 5)


def test_the_agent_ticks_serves_health_and_metrics_and_stops_on_sigterm(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    busy = make_service("agent", replicas=2)
    write_policy(tmp_path, busy)
    set_load(prometheus, load_exporter, busy, 500)
    version = service_version(busy)
    port = free_port()
    output = (tmp_path / "agent.log").open("w+")
    agent = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "dry-run", "--interval", "1s"],
        stdout=output, stderr=subprocess.STDOUT, text=True,
        env=clean_env({"AUTOSCALER_POLICIES": str(tmp_path), "AUTOSCALER_PORT": str(port),
                       "AUTOSCALER_PROMETHEUS_URL": prometheus.url,
                       "AUTOSCALER_LISTEN": "127.0.0.1"}),
    )
    try:
        wait_for("three ticks", lambda: len(decisions(Path(output.name).read_text())) >= 3, 30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as health:
            assert health.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
            assert (ready.status, ready.read()) == (200, b"ready\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as metrics:
            exposed = metrics.read().decode()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=5) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    for name in ("autoscaler_ticks_total", "autoscaler_tick_duration_seconds",
                 "autoscaler_decisions_total", "autoscaler_scale_actions_total",
                 "autoscaler_desired_replicas"):
        assert name in exposed
    assert f'autoscaler_desired_replicas{{service="{busy}"}} 5.0' in exposed
    assert 'autoscaler_dependency_up{dependency="prometheus"} 1.0' in exposed
    assert 'autoscaler_dependency_up{dependency="docker"} 1.0' in exposed
    started = events(Path(output.name), "agent_started")
    assert started[0]["listen"] == "127.0.0.1"
    log = Path(output.name).read_text()
    ticks = decisions(log)
    # Dry-run takes the change it would have made into its shadow count, once.
    assert [(d["current_replicas"], d["desired_replicas"]) for d in ticks[:3]] == [
        (2, 5), (5, 5), (5, 5)
    ]
    assert {d["spec_replicas"] for d in ticks} == {2}
    assert service_version(busy) == version
    assert '"agent_stopped"' in log


def test_exit_codes_for_unreachable_sources_and_bad_input(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
) -> None:
    service = make_service("codes", replicas=1)
    write_policy(tmp_path, service)
    common = ("--policies", str(tmp_path), "--port", "0")

    no_prometheus = autoscaler("dry-run", "--once", *common,
                               "--prometheus-url", f"http://127.0.0.1:{free_port()}")
    assert no_prometheus.returncode == 1
    assert by_service(no_prometheus.stdout)[service]["reason"] == "MetricsMissing"

    no_docker = autoscaler("dry-run", "--once", *common, "--prometheus-url", prometheus.url,
                           env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert no_docker.returncode == 1
    assert "swarm_listing_failed" in no_docker.stdout

    (tmp_path / "broken.yaml").write_text("service: x\nmax_replica: 3\n")
    contained = autoscaler("dry-run", "--once", *common, "--prometheus-url", prometheus.url)
    assert contained.returncode == 0, "an invalid policy stops only itself"
    assert list(by_service(contained.stdout)) == [service]
    assert "policy_rejected" in contained.stdout
    assert "max_replica: unknown key (did you mean 'max_replicas'?)" in contained.stdout

    bad_interval = autoscaler("run", "--interval", "soon", *common)
    assert bad_interval.returncode == 2
    assert "--interval" in bad_interval.stderr


def test_the_decision_log_is_json_lines_only(tmp_path: Path, prometheus: RunningPrometheus
                                             ) -> None:
    write_policy(tmp_path, f"nothing{uuid.uuid4().hex[:6]}")
    done = autoscaler("dry-run", "--once", "--policies", str(tmp_path),
                      "--prometheus-url", prometheus.url, "--port", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(json.loads(line)["event"] for line in lines)


def test_policy_edits_are_taken_live_and_a_broken_edit_keeps_the_last_good_one(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    busy = make_service("reload", replicas=2)
    folder = tmp_path / "policies"
    folder.mkdir()
    policy = write_policy(folder, busy)
    set_load(prometheus, load_exporter, busy, 500)
    log = tmp_path / "agent.log"
    agent = start_agent("dry-run", log, AUTOSCALER_POLICIES=str(folder), AUTOSCALER_PORT="0",
                        AUTOSCALER_PROMETHEUS_URL=prometheus.url)
    try:
        wait_for("a first decision", lambda: decisions(log.read_text()), 30)
        write_policy(folder, busy, max_replicas=3)
        wait_for("the edit", lambda: [e.get("change") for e in events(log, "policy_reloaded")]
                 [-1:] == ["changed"], 30)
        wait_for("a decision capped by the new max_replicas",
                 lambda: decisions(log.read_text())[-1]["reason"] == "TooManyReplicas", 30)
        policy.write_text(policy.read_text().replace("max_replicas", "max_replica"))
        wait_for("the rejection", lambda: events(log, "policy_rejected"), 30)
        ticks_before = len(decisions(log.read_text()))
        wait_for("two more ticks", lambda: len(decisions(log.read_text())) >= ticks_before + 2,
                 30)
        assert stop_agent(agent) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    (rejected,) = events(log, "policy_rejected")
    assert rejected["kept"] == "last good version"
    assert any("did you mean 'max_replicas'" in p for p in rejected["problems"])
    assert events(log, "policy_reloaded")[-1]["changed_keys"] == ["max_replicas"]
    last = decisions(log.read_text())[-1]
    assert (last["desired_replicas"], last["reason"]) == (3, "TooManyReplicas")


def test_a_second_agent_records_not_leader_and_applies_nothing(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    busy = make_service("leader", replicas=1)
    write_policy(tmp_path, busy, max_replicas=3)
    set_load(prometheus, load_exporter, busy, 300)
    log = tmp_path / "first.log"
    first = start_agent("run", log, AUTOSCALER_POLICIES=str(tmp_path), AUTOSCALER_PORT="0",
                        AUTOSCALER_PROMETHEUS_URL=prometheus.url)
    try:
        wait_for("the first agent to lead", lambda: any(
            e["leader"] for e in events(log, "leadership")), 30)
        wait_running(busy, 3)
        set_load(prometheus, load_exporter, busy, 100)
        version = service_version(busy)

        second = autoscaler("run", "--once", "--policies", str(tmp_path),
                            "--prometheus-url", prometheus.url, "--port", "0")

        assert second.returncode == 0, second.stderr
        decision = by_service(second.stdout)[busy]
        assert (decision["reason"], decision["applied"]) == ("NotLeader", False)
        assert service_version(busy) == version
        assert stop_agent(first) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert not [d for d in decisions(log.read_text()) if d["reason"] == "NotLeader"]


def test_a_predictive_policy_without_enough_history_says_so_and_decides_reactively(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    busy = make_service("predict", replicas=2)
    write_policy(tmp_path, busy, strategy="predictive", predictive={"min_history": "1h"})
    set_load(prometheus, load_exporter, busy, 500)
    time.sleep(16)  # so that one step of the 15 s history grid holds the series

    done = autoscaler("dry-run", "--once", "--policies", str(tmp_path),
                      "--prometheus-url", prometheus.url, "--port", "0")

    assert done.returncode == 0, done.stderr
    decision = by_service(done.stdout)[busy]
    assert (decision["strategy"], decision["desired_replicas"]) == ("predictive", 5)
    assert decision["fallback_reason"] == "InsufficientHistory"
    assert decision["forecast"] == {"load": {"value": None, "with_margin": None}}
    (untrained,) = [e for e in map(json.loads, done.stdout.splitlines())
                    if e["event"] == "forecaster_not_trained"]
    assert untrained["reason"] == "InsufficientHistory" and untrained["points"] > 0
