"""The alert rules in compose/alerts.yml: `promtool check rules` accepts them, promtool's unit
tests (`promtool test rules`, input series below) show each rule firing when it should, with
its labels and annotations, and silent when it should not; and a real Prometheus loads them
while it scrapes a running agent whose Prometheus is unreachable, evaluates every rule without
error, and fires the dependency rule and the stuck-service rule from the agent's own series.

The helpers at the top (a Prometheus with a config of the test's, an agent as a process) are
shared with test_dashboard.py."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import PROMETHEUS_BINARY, RunningPrometheus, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "compose" / "alerts.yml"
PROMTOOL = "/usr/bin/promtool"
QUERY = 'sum by (service) (astest_load{service=~"{{services}}"})'
LEASE = f"astest.lease.{uuid.uuid4().hex[:8]}"
"""These tests' agents share a lease of their own, apart from any other agent on the Swarm."""


# --- Shared helpers --------------------------------------------------------------------


def api(url: str, path: str, **params: str) -> Any:
    """GET a Prometheus API path; its `data`, or AssertionError with Prometheus's error."""
    address = f"{url}{path}?{urllib.parse.urlencode(params)}" if params else f"{url}{path}"
    try:
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    if body.get("status") != "success":
        raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


@contextlib.contextmanager
def running_prometheus(folder: Path, config: dict[str, Any]) -> Iterator[RunningPrometheus]:
    """Debian's Prometheus on 127.0.0.1 with this config, until the block ends."""
    if not Path(PROMETHEUS_BINARY).exists():
        pytest.fail(f"{PROMETHEUS_BINARY} is missing; run `bash .ci/setup.sh`", pytrace=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [PROMETHEUS_BINARY, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"),
    )
    running = RunningPrometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{running.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return process.poll() is not None  # exited: fail below with its log

    try:
        wait_for("Prometheus to be ready", ready, 60)
        assert process.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def scraping(agent_port: int, *, rule_files: list[str] | None = None) -> dict[str, Any]:
    """A Prometheus config that scrapes the agent every second and evaluates every second."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files or [],
        "scrape_configs": [{"job_name": "autoscaler",
                            "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]}],
    }


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOSCALER_")}
    return {**env, "AUTOSCALER_LEASE": LEASE, **extra}


@contextlib.contextmanager
def running_agent(log: Path, *, policies: Path, prometheus_url: str, port: int
                  ) -> Iterator[subprocess.Popen[str]]:
    """`autoscaler dry-run` every second, /metrics on 127.0.0.1:port; stopped after."""
    agent = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "dry-run", "--interval", "1s"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env=clean_env({"AUTOSCALER_POLICIES": str(policies), "AUTOSCALER_PORT": str(port),
                       "AUTOSCALER_PROMETHEUS_URL": prometheus_url,
                       "AUTOSCALER_LISTEN": "127.0.0.1"}),
    )
    try:
        yield agent
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        finally:
            if agent.poll() is None:
                agent.kill()


def write_policy(folder: Path, service: str, **overrides: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "service": service, "min_replicas": 1, "max_replicas": 10,
        "metrics": [{"name": "load", "query": QUERY, "target": 100}],
    }
    document.update(overrides)
    path = folder / f"{service}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def agent_metric_names(port: int) -> set[str]:
    """Every sample name the agent's /metrics can expose (from its TYPE lines)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created")}
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def metric_names_in(promql: str) -> set[str]:
    """The agent's metric names a PromQL expression uses."""
    return set(re.findall(r"\bautoscaler_[a-z_]+\b", promql))


# --- The rules file ----------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for r in rules() if r["alert"] == name]
    return found


def annotations(name: str, labels: dict[str, str], value: str = "") -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for an alert with these labels and
    this value (already formatted as the template's function would)."""
    def render(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        return re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
    return {key: render(text) for key, text in rule(name)["annotations"].items()}


def firing(name: str, value: str = "", **labels: str) -> dict[str, Any]:
    """An expected alert of promtool's alert_rule_test."""
    labels = {**labels, "severity": rule(name)["labels"]["severity"]}
    return {"exp_labels": labels, "exp_annotations": annotations(name, labels, value)}


A = {"job": "autoscaler", "instance": "agent-1:9180"}
B = {"job": "autoscaler", "instance": "agent-2:9180"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inside = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{inside}}}", "values": values}


def at(time: str, name: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": time, "alertname": name, "exp_alerts": list(alerts)}


NO_TICK = "AutoscalerNoTick"
TICKS_THEN_STOPS = "0+15x20 300x40"
"""A tick every 15 s until 300 s, then none (samples every 15 s)."""

UNIT_TESTS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    # alert: (evaluation_interval, promtool test cases)
    NO_TICK: ("15s", [
        {"interval": "15s", "input_series": [
            series("autoscaler_last_tick_timestamp_seconds", TICKS_THEN_STOPS, **A),
            series("autoscaler_interval_seconds", "15x60", **A)],
         "alert_rule_test": [
             at("5m", NO_TICK),
             at("6m", NO_TICK),  # 60 s without a tick, > 3 intervals: pending for 1m
             at("7m30s", NO_TICK, firing(NO_TICK, "2m 30s", **A))]},
        # A 60 s interval: 150 s without a tick is fine, 300 s is not.
        {"interval": "15s", "input_series": [
            series("autoscaler_last_tick_timestamp_seconds", TICKS_THEN_STOPS, **A),
            series("autoscaler_interval_seconds", "60x60", **A)],
         "alert_rule_test": [
             at("7m30s", NO_TICK),
             at("10m", NO_TICK, firing(NO_TICK, "5m 0s", **A))]},
        # An agent without autoscaler_interval_seconds: 15 s assumed.
        {"interval": "15s", "input_series": [
            series("autoscaler_last_tick_timestamp_seconds", TICKS_THEN_STOPS, **A)],
         "alert_rule_test": [
             at("5m", NO_TICK),
             at("7m30s", NO_TICK, firing(NO_TICK, "2m 30s", **A))]},
        # Never a tick finished: the gauge stays 0.
        {"interval": "15s", "input_series": [
            series("autoscaler_last_tick_timestamp_seconds", "0x20", **A),
            series("autoscaler_interval_seconds", "15x20", **A)],
         "alert_rule_test": [
             at("1m30s", NO_TICK),
             at("3m", NO_TICK, firing(NO_TICK, "3m 0s", **A))]},
    ]),
    "AutoscalerAbsent": ("1m", [
        {"interval": "1m", "input_series": [series("up", "1x20", job="other")],
         "alert_rule_test": [
             at("4m", "AutoscalerAbsent"),
             at("6m", "AutoscalerAbsent", firing("AutoscalerAbsent"))]},
        {"interval": "1m", "input_series": [
            series("autoscaler_last_tick_timestamp_seconds", "0+60x20", **A)],
         "alert_rule_test": [at("10m", "AutoscalerAbsent")]},
    ]),
    "AutoscalerPrometheusUnreachable": ("1m", [
        {"interval": "1m", "input_series": [
            series("autoscaler_dependency_up", "1x5 0x20", dependency="prometheus", **A),
            series("autoscaler_dependency_up", "1x25", dependency="prometheus", **B),
            series("autoscaler_dependency_up", "0x25", dependency="docker", **B)],
         "alert_rule_test": [
             at("5m", "AutoscalerPrometheusUnreachable"),
             at("8m", "AutoscalerPrometheusUnreachable"),  # pending since 6m
             at("10m", "AutoscalerPrometheusUnreachable", firing(
                 "AutoscalerPrometheusUnreachable", dependency="prometheus", **A))]},
    ]),
    "AutoscalerQueryErrors": ("1m", [
        {"interval": "1m", "input_series": [
            # A: 2 failed queries a minute while others answer. B: all fail (the rule above
            # fires instead). Agent-3: none fail.
            series("autoscaler_errors_total", "0+2x40", source="prometheus", **A),
            series("autoscaler_dependency_up", "1x40", dependency="prometheus", **A),
            series("autoscaler_errors_total", "0+2x40", source="prometheus", **B),
            series("autoscaler_dependency_up", "0x40", dependency="prometheus", **B),
            series("autoscaler_errors_total", "0x40", source="prometheus", job="autoscaler",
                   instance="agent-3:9180"),
            series("autoscaler_dependency_up", "1x40", dependency="prometheus",
                   job="autoscaler", instance="agent-3:9180")],
         "alert_rule_test": [
             at("9m", "AutoscalerQueryErrors"),
             at("15m", "AutoscalerQueryErrors",
                firing("AutoscalerQueryErrors", "10", source="prometheus", **A))]},
    ]),
    "AutoscalerDockerUnreachable": ("1m", [
        {"interval": "1m", "input_series": [
            series("autoscaler_dependency_up", "1x5 0x20", dependency="docker", **A),
            series("autoscaler_dependency_up", "0x25", dependency="prometheus", **B),
            series("autoscaler_dependency_up", "1x25", dependency="docker", **B)],
         "alert_rule_test": [
             at("5m", "AutoscalerDockerUnreachable"),
             at("7m", "AutoscalerDockerUnreachable"),
             at("9m", "AutoscalerDockerUnreachable", firing(
                 "AutoscalerDockerUnreachable", dependency="docker", **A))]},
    ]),
    "AutoscalerServiceStuck": ("1m", [
        {"interval": "1m", "input_series": [
            # Four ticks a minute. web: fine for 10 minutes, then Unschedulable every tick.
            series("autoscaler_decisions_total", "0+4x10 40x30", service="web",
                   reason="WithinTolerance", **A),
            series("autoscaler_decisions_total", "_x10 1+4x30", service="web",
                   reason="Unschedulable", **A),
            # fresh: MetricsMissing from its first decision.
            series("autoscaler_decisions_total", "1+4x40", service="fresh",
                   reason="MetricsMissing", **A),
            # api: MetricsMissing now and then, other reasons between: not stuck.
            series("autoscaler_decisions_total", "0+2x40", service="api",
                   reason="MetricsMissing", **A),
            series("autoscaler_decisions_total", "0+2x40", service="api",
                   reason="DesiredWithinRange", **A),
            # A follower agent's NotLeader for web hides nothing of its leader's.
            series("autoscaler_decisions_total", "0+4x40", service="web",
                   reason="NotLeader", **B)],
         "alert_rule_test": [
             at("8m", "AutoscalerServiceStuck"),
             at("13m", "AutoscalerServiceStuck", firing(
                 "AutoscalerServiceStuck", service="fresh", reason="MetricsMissing", **A)),
             at("22m", "AutoscalerServiceStuck", firing(
                 "AutoscalerServiceStuck", service="fresh", reason="MetricsMissing", **A)),
             at("28m", "AutoscalerServiceStuck",
                firing("AutoscalerServiceStuck", service="fresh", reason="MetricsMissing",
                       **A),
                firing("AutoscalerServiceStuck", service="web", reason="Unschedulable",
                       **A))]},
    ]),
    "AutoscalerTasksUnschedulable": ("1m", [
        {"interval": "1m", "input_series": [
            series("autoscaler_unschedulable_tasks", "0x5 2x20", service="web", **A),
            series("autoscaler_unschedulable_tasks", "0x25", service="api", **A)],
         "alert_rule_test": [
             at("14m", "AutoscalerTasksUnschedulable"),
             at("17m", "AutoscalerTasksUnschedulable", firing(
                 "AutoscalerTasksUnschedulable", "2", service="web", **A))]},
    ]),
    "AutoscalerAtMaxReplicas": ("5m", [
        {"interval": "5m", "input_series": [
            series("autoscaler_desired_replicas", "10x20", service="web", **A),
            series("autoscaler_max_replicas", "10x20", service="web", **A),
            series("autoscaler_desired_replicas", "5x20", service="api", **A),
            series("autoscaler_max_replicas", "10x20", service="api", **A)],
         "alert_rule_test": [
             at("55m", "AutoscalerAtMaxReplicas"),
             at("65m", "AutoscalerAtMaxReplicas", firing(
                 "AutoscalerAtMaxReplicas", "10", service="web", **A))]},
    ]),
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail(f"{PROMTOOL} is missing (Debian's prometheus package)", pytrace=False)
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_every_rule_has_unit_tests_that_see_it_fire_and_stay_silent() -> None:
    assert sorted(UNIT_TESTS) == sorted(r["alert"] for r in rules())
    for name, (_, cases) in UNIT_TESTS.items():
        checks = [check for case in cases for check in case["alert_rule_test"]]
        assert all(check["alertname"] == name for check in checks), name
        assert any(check["exp_alerts"] for check in checks), f"{name} never fires"
        assert any(not check["exp_alerts"] for check in checks), f"{name} never silent"
    for found in rules():
        assert found["labels"]["severity"] in ("critical", "warning"), found["alert"]
        assert set(found["annotations"]) == {"summary", "description"}, found["alert"]


@pytest.mark.parametrize("name", sorted(UNIT_TESTS))
def test_promtool_unit_tests(name: str, tmp_path: Path) -> None:
    evaluation_interval, cases = UNIT_TESTS[name]
    tests = tmp_path / f"{name}.test.yml"
    tests.write_text(yaml.safe_dump({
        "rule_files": [str(ALERTS)], "evaluation_interval": evaluation_interval,
        "tests": cases,
    }))
    done = promtool("test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_stacks_prometheus_loads_the_rules_where_the_override_puts_them(
    tmp_path: Path,
) -> None:
    """prometheus.yml names a glob that the override's alerts config matches; rendered as
    Swarm renders it, promtool accepts the config."""
    template = (ROOT / "compose" / "prometheus.yml").read_text()
    (pattern,) = yaml.safe_load(template.replace("{{", "").replace("}}", ""))["rule_files"]
    override = yaml.safe_load((ROOT / "compose" / "grafana.yml").read_text())
    (alerts,) = [c for c in override["services"]["prometheus"]["configs"]
                 if c["source"] == "alerts"]
    assert fnmatch.fnmatch(alerts["target"], pattern)
    assert override["configs"]["alerts"]["file"] == "./alerts.yml"
    assert "template_driver" not in override["configs"]["alerts"]
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(template.replace(
        '{{ index .Service.Labels "com.docker.stack.namespace" }}', "swarmscale"))
    done = promtool("check", "config", str(rendered))
    assert done.returncode == 0, done.stdout + done.stderr


# --- A real Prometheus, a real agent ------------------------------------------------------


def rule_states(prometheus: RunningPrometheus) -> dict[tuple[str, str], dict[str, Any]]:
    """(group, alert) -> the rule as /api/v1/rules shows it."""
    groups = api(prometheus.url, "/api/v1/rules", type="alert")["groups"]
    return {(group["name"], found["name"]): found
            for group in groups for found in group["rules"]}


def test_a_real_prometheus_evaluates_the_rules_on_a_running_agent(
    tmp_path: Path, make_service: Callable[..., str],
) -> None:
    """The agent's Prometheus URL points nowhere: every query fails. The rules as shipped go
    pending (their `for` holds them), a copy without `for` fires at once: the dependency
    rule for the agent, the stuck-service rule for its service (MetricsMissing)."""
    service = make_service("alerts", replicas=1)
    write_policy(tmp_path / "policies", service)
    immediate = yaml.safe_load(ALERTS.read_text())
    for group in immediate["groups"]:
        group["name"] += "-immediate"
        for each in group["rules"]:
            each.pop("for", None)
    (tmp_path / "alerts-immediate.yml").write_text(yaml.safe_dump(immediate))
    agent_port = free_port()
    config = scraping(agent_port,
                      rule_files=[str(ALERTS), str(tmp_path / "alerts-immediate.yml")])

    with running_agent(tmp_path / "agent.log", policies=tmp_path / "policies",
                       prometheus_url=f"http://127.0.0.1:{free_port()}", port=agent_port), \
            running_prometheus(tmp_path / "prometheus", config) as prometheus:
        def state(group: str, alert: str) -> str:
            return str(rule_states(prometheus)[(group, alert)]["state"])

        wait_for("the immediate dependency rule to fire", lambda: state(
            "autoscaler-immediate", "AutoscalerPrometheusUnreachable") == "firing", 60)
        wait_for("the immediate stuck-service rule to fire", lambda: state(
            "autoscaler-immediate", "AutoscalerServiceStuck") == "firing", 60)
        wait_for("the immediate Docker rule to be quiet", lambda: state(
            "autoscaler-immediate", "AutoscalerDockerUnreachable") == "inactive", 60)
        states = rule_states(prometheus)
        exposed = agent_metric_names(agent_port)

    names = [r["alert"] for r in rules()]
    assert sorted(states) == sorted(
        (group, name) for group in ("autoscaler", "autoscaler-immediate") for name in names)
    for key, found in states.items():
        assert (found["health"], found.get("lastError", "")) == ("ok", ""), key
        assert not found["lastEvaluation"].startswith("0001"), f"{key} never evaluated"
    # As shipped: the dependency rule holds for its 3 minutes; the agent ticks and reaches
    # Docker, and is scraped.
    assert states[("autoscaler", "AutoscalerPrometheusUnreachable")]["state"] == "pending"
    for name in ("AutoscalerNoTick", "AutoscalerAbsent", "AutoscalerDockerUnreachable",
                 "AutoscalerAtMaxReplicas", "AutoscalerTasksUnschedulable"):
        assert states[("autoscaler", name)]["state"] != "firing", name
    instance = f"127.0.0.1:{agent_port}"
    (down,) = states[("autoscaler-immediate", "AutoscalerPrometheusUnreachable")]["alerts"]
    assert down["labels"] == {"alertname": "AutoscalerPrometheusUnreachable",
                              "dependency": "prometheus", "instance": instance,
                              "job": "autoscaler", "severity": "critical"}
    assert down["annotations"]["summary"] == f"Every query of the autoscaler {instance} fails"
    stuck = states[("autoscaler-immediate", "AutoscalerServiceStuck")]["alerts"]
    assert [(a["labels"]["service"], a["labels"]["reason"]) for a in stuck] == [
        (service, "MetricsMissing")]
    assert stuck[0]["annotations"]["summary"] == (
        f"{service} has been held (MetricsMissing) for 10 minutes")
    # Every metric a rule reads is one the agent exposes.
    for found in rules():
        assert metric_names_in(found["expr"]) <= exposed, found["alert"]
