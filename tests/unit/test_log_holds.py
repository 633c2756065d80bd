"""Log volume under the operator's control: `--log-holds changes` logs a hold only when the
service's reason or desired count changes; every tick logs one `tick_summary`; the first
load of the policies is one `policies_loaded` line."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoscaler.adapters.decision_log import (
    LogDecisionSink,
    LogHolds,
    Seen,
    is_hold,
    tick_counts,
    worth_logging,
)
from autoscaler.cli import parse_arguments
from autoscaler.core.model import Decision, Reason
from autoscaler.policy_files import PolicyWatcher
from autoscaler.runtime.agent import Agent
from autoscaler.runtime.telemetry import Telemetry
from tests.unit.fakes import FakeLeadership, FakeMetrics, FakeSwarm
from tests.unit.test_engine import engine_of

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
R = Reason


def decision(reason: Reason = R.WITHIN_TOLERANCE, desired: int | None = 3, *,
             current: int | None = 3, service: str = "web", applied: bool = False,
             dry_run: bool = False, metrics: dict[str, float | None] | None = None,
             at: datetime = NOW) -> Decision:
    return Decision(service=service, strategy="target", time=at, reason=reason, message="m",
                    metrics={"rps": 1.0} if metrics is None else metrics,
                    policy_file="web.yaml", dry_run=dry_run, current_replicas=current,
                    spec_replicas=current, recommended_replicas=desired,
                    desired_replicas=desired, applied=applied)


@pytest.mark.parametrize(
    ("made", "hold"),
    [
        pytest.param(decision(R.WITHIN_TOLERANCE), True, id="within-tolerance"),
        pytest.param(decision(R.SCALE_UP_STABILIZED), True, id="up-stabilized"),
        pytest.param(decision(R.SCALE_DOWN_STABILIZED), True, id="down-stabilized"),
        pytest.param(decision(R.METRICS_MISSING), True, id="metrics-missing"),
        pytest.param(decision(R.SCALE_UP_STABILIZED, 5), False,
                     id="stabilized-part-way-up-is-a-change"),
        pytest.param(decision(R.METRICS_MISSING, 5), False, id="missing-but-raised"),
        pytest.param(decision(R.DESIRED_WITHIN_RANGE), False, id="desired-within-range"),
        pytest.param(decision(R.SCALE_UP_LIMIT, 5), False, id="scale-up-limit"),
        pytest.param(decision(R.COOLDOWN), False, id="cooldown"),
        pytest.param(decision(R.NOT_LEADER), False, id="not-leader"),
        pytest.param(decision(R.PAUSED, None, current=None), False, id="paused"),
        pytest.param(decision(R.DECISION_FAILED, None, current=None), False, id="failed"),
    ],
)
def test_what_is_a_hold(made: Decision, hold: bool) -> None:
    assert is_hold(made) is hold


@pytest.mark.parametrize(
    ("made", "previous", "mode", "logged"),
    [
        pytest.param(decision(), (R.WITHIN_TOLERANCE, 3), "all", True, id="all-logs-a-repeat"),
        pytest.param(decision(), None, "changes", True, id="first-seen"),
        pytest.param(decision(), (R.WITHIN_TOLERANCE, 3), "changes", False, id="same-hold"),
        pytest.param(decision(), (R.SCALE_DOWN_STABILIZED, 3), "changes", True,
                     id="another-reason"),
        pytest.param(decision(R.WITHIN_TOLERANCE, 4, current=4), (R.WITHIN_TOLERANCE, 3),
                     "changes", True, id="another-count"),
        pytest.param(decision(), (R.SCALE_UP_LIMIT, 3), "changes", True,
                     id="after-a-change"),
        pytest.param(decision(R.METRICS_MISSING), (R.METRICS_MISSING, 3), "changes", False,
                     id="still-missing"),
        pytest.param(decision(R.METRICS_MISSING), (R.WITHIN_TOLERANCE, 3), "changes", True,
                     id="goes-missing"),
        pytest.param(decision(R.SCALE_UP_LIMIT, 5), (R.SCALE_UP_LIMIT, 5), "changes", True,
                     id="a-change-is-always-logged"),
        pytest.param(decision(R.DESIRED_WITHIN_RANGE), (R.DESIRED_WITHIN_RANGE, 3), "changes",
                     True, id="not-a-hold-reason"),
        pytest.param(decision(R.NOT_LEADER), (R.NOT_LEADER, 3), "changes", True,
                     id="not-leader-is-always-logged"),
        pytest.param(decision(R.DECISION_FAILED, None, current=None),
                     (R.DECISION_FAILED, None), "changes", True, id="a-failure-always"),
    ],
)
def test_worth_logging(made: Decision, previous: Seen | None, mode: LogHolds,
                       logged: bool) -> None:
    assert worth_logging(made, previous, mode) is logged


def logged_ticks(ticks: list[list[Decision]], mode: LogHolds | None) -> list[list[str]]:
    sink = LogDecisionSink(mode)
    out = []
    for at, tick in enumerate(ticks):
        with capture_logs() as logs:
            for made in tick:
                sink.record(replace(made, time=NOW + timedelta(seconds=15 * at)))
        out.append([f"{e['service']}:{e['reason']}:{e['desired_replicas']}" for e in logs])
    return out


def test_changes_logs_each_service_s_holds_once_until_they_change() -> None:
    ticks = [
        [decision(service="a"), decision(R.SCALE_UP_LIMIT, 5, service="b")],
        [decision(service="a"), decision(R.WITHIN_TOLERANCE, 5, current=5, service="b")],
        [decision(service="a"), decision(R.WITHIN_TOLERANCE, 5, current=5, service="b")],
        [decision(R.METRICS_MISSING, service="a"),
         decision(R.WITHIN_TOLERANCE, 5, current=5, service="b")],
    ]

    assert logged_ticks(ticks, "changes") == [
        ["a:WithinTolerance:3", "b:ScaleUpLimit:5"],
        ["b:WithinTolerance:5"],
        [],
        ["a:MetricsMissing:3"],
    ]
    assert [len(tick) for tick in logged_ticks(ticks, "all")] == [2, 2, 2, 2]


def test_a_service_gone_for_a_tick_is_logged_again_when_it_comes_back() -> None:
    """A service not decided in a tick is forgotten: the sink keeps no state for services
    long gone."""
    ticks = [[decision(service="a")], [decision(service="b")], [decision(service="a")]]

    assert logged_ticks(ticks, "changes") == [
        ["a:WithinTolerance:3"], ["b:WithinTolerance:3"], ["a:WithinTolerance:3"]]


@pytest.mark.parametrize(
    ("made", "counted"),
    [
        pytest.param(decision(R.SCALE_UP_LIMIT, 5, applied=True), "changed", id="applied"),
        pytest.param(decision(R.SCALE_UP_LIMIT, 5, dry_run=True), "changed",
                     id="dry-run-would-change"),
        pytest.param(decision(R.NOT_LEADER, 5), "", id="not-leader-changes-nothing"),
        pytest.param(decision(), "held", id="hold"),
        pytest.param(decision(R.METRICS_MISSING, metrics={"rps": None}), "held missing",
                     id="missing-hold"),
        pytest.param(decision(R.SCALE_UP_LIMIT, 5, applied=True,
                              metrics={"rps": 9.0, "cpu": None}), "changed missing",
                     id="one-metric-missing-and-scaled"),
        pytest.param(decision(R.APPLY_FAILED, 5), "failed", id="apply-failed"),
        pytest.param(decision(R.CONFLICT, 5), "failed", id="conflict"),
        pytest.param(decision(R.DECISION_FAILED, None, current=None, metrics={}), "failed",
                     id="decision-failed"),
        pytest.param(decision(R.SERVICE_NOT_FOUND, None, current=None, metrics={"rps": 1.0}),
                     "", id="not-found"),
    ],
)
def test_tick_counts(made: Decision, counted: str) -> None:
    expected = {"decided": 1, "changed": 0, "held": 0, "missing": 0, "failed": 0}
    for name in counted.split():
        expected[name] = 1

    assert tick_counts([made]) == expected


# --- The agent: the first load in one line, a summary line every tick ----------------------

POLICY = "service: {name}\nmax_replicas: 5\nmetrics: [{{name: rps, query: q, target: 10}}]\n"


def agent_for(folder: Path, swarm: FakeSwarm) -> Agent:
    metrics = FakeMetrics(lambda _: [])
    engine = engine_of(metrics=metrics, swarm=swarm, sink=LogDecisionSink("all"),
                       dry_run=True)
    return Agent(engine, interval=timedelta(seconds=15), telemetry=Telemetry(),
                 watcher=PolicyWatcher(folder), history=_NoHistory(),
                 clock=lambda: NOW)


class _NoHistory:
    def history(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("no history asked for")


def events_of(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_the_first_load_is_one_line_and_later_changes_one_line_each(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"s{i}.yaml").write_text(POLICY.format(name=f"s{i}"))
    (tmp_path / "bad.yaml").write_text("service: [\n")
    agent = agent_for(tmp_path, FakeSwarm())

    with capture_logs() as first:
        agent.reload()
    (tmp_path / "s0.yaml").write_text(POLICY.format(name="s0").replace("5", "6"))
    (tmp_path / "new.yaml").write_text(POLICY.format(name="new"))
    with capture_logs() as later:
        agent.reload()

    assert [e["event"] for e in first] == ["policy_rejected", "policies_loaded"]
    assert events_of(first, "policy_rejected")[0]["file"].endswith("bad.yaml")
    (loaded,) = events_of(first, "policies_loaded")
    assert (loaded["policies"], loaded["templates"], loaded["files"]) == (50, 0, 50)
    assert loaded["log_level"] == "info" and "hint" not in loaded
    assert loaded["folder"] == str(tmp_path)
    assert sorted((Path(e["file"]).name, e["change"]) for e in later) == [
        ("new.yaml", "added"), ("s0.yaml", "changed")]


def test_an_empty_folder_still_says_what_it_loaded(tmp_path: Path) -> None:
    agent = agent_for(tmp_path, FakeSwarm())

    with capture_logs() as logs:
        agent.reload()

    assert [(e["event"], e["policies"], e["files"], e["log_level"]) for e in logs] == [
        ("policies_loaded", 0, 0, "warning")]
    assert "nothing is scaled until a *.yaml file is added" in logs[0]["hint"]


def test_every_tick_logs_its_summary(tmp_path: Path) -> None:
    swarm = FakeSwarm()
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(POLICY.format(name=name))
        swarm.add(name, 2)
    agent = agent_for(tmp_path, swarm)

    with capture_logs() as logs:
        agent.tick()
        swarm.down = True
        agent.tick()

    first, down = events_of(logs, "tick_summary")
    assert {k: first[k] for k in ("decided", "changed", "held", "missing", "failed",
                                  "queries", "failed_queries")} == {
        "decided": 2, "changed": 0, "held": 2, "missing": 2, "failed": 0, "queries": 1,
        "failed_queries": 0}
    assert isinstance(first["seconds"], float) and first["seconds"] >= 0
    assert (down["decided"], down["log_level"]) == (0, "info")
    assert len(events_of(logs, "scaling_decision")) == 2


@pytest.mark.parametrize(
    ("leadership", "logged"),
    [
        pytest.param(None, [], id="dry-run-takes-no-lease"),
        pytest.param(FakeLeadership(leader=True), [True], id="run-holds-the-lease"),
        pytest.param(FakeLeadership(leader=False), [False], id="run-follows"),
    ],
)
def test_only_an_agent_that_takes_the_lease_logs_leadership(
    tmp_path: Path, leadership: FakeLeadership | None, logged: list[bool]
) -> None:
    (tmp_path / "a.yaml").write_text(POLICY.format(name="a"))
    swarm = FakeSwarm()
    swarm.add("a", 2)
    engine = engine_of(metrics=FakeMetrics(lambda _: []), swarm=swarm,
                       sink=LogDecisionSink("all"), dry_run=leadership is None,
                       leadership=leadership)
    agent = Agent(engine, interval=timedelta(seconds=15), telemetry=Telemetry(),
                  watcher=PolicyWatcher(tmp_path), history=_NoHistory(), clock=lambda: NOW,
                  leadership=leadership)

    with capture_logs() as logs:
        agent.tick()
        agent.tick()

    assert [e["leader"] for e in events_of(logs, "leadership")] == logged


@pytest.mark.parametrize(
    ("argv", "variable", "expected"),
    [
        pytest.param(["run"], None, "all", id="default"),
        pytest.param(["dry-run"], "changes", "changes", id="variable"),
        pytest.param(["run", "--log-holds", "all"], "changes", "all", id="flag-wins"),
    ],
)
def test_the_option_and_its_variable(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                     variable: str | None, expected: str) -> None:
    if variable is None:
        monkeypatch.delenv("AUTOSCALER_LOG_HOLDS", raising=False)
    else:
        monkeypatch.setenv("AUTOSCALER_LOG_HOLDS", variable)

    assert parse_arguments(argv).log_holds == expected


def test_a_bad_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as flag:
        parse_arguments(["run", "--log-holds", "some"])
    monkeypatch.setenv("AUTOSCALER_LOG_HOLDS", "none")
    with pytest.raises(SystemExit) as variable:
        parse_arguments(["run"])

    assert (flag.value.code, variable.value.code) == (2, 2)
    assert "environment variable AUTOSCALER_LOG_HOLDS='none'" in capsys.readouterr().err
