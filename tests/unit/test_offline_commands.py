"""backtest, report and demo from the command line: inputs, exit codes and what they write."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autoscaler.adapters.decision_log import decision_fields
from autoscaler.cli import main
from autoscaler.core.balance import Spread
from autoscaler.core.model import Decision, Reason
from autoscaler.core.placement import Placement
from autoscaler.offline.reports.dry_run import read_decisions
from autoscaler.offline.traces import TraceError, load_csv

TARGET = "service: web\nmax_replicas: 50\nmetrics: [{name: rps, query: q, target: 7}]\n"
THRESHOLD = ("service: web\nmax_replicas: 50\nstrategy: threshold\nmetrics: [{name: rps, "
             "query: q, scale_up_above: 9, scale_down_below: 3}]\n")


def write_trace(path: Path, values: list[float], step: str = "00:01:00") -> Path:
    start = datetime(2026, 1, 1)
    minutes = int(step.split(":")[1])
    lines = ["minute,requests"] + [
        f"{start + timedelta(minutes=i * minutes):%Y-%m-%d %H:%M:%S},{v:g}"
        for i, v in enumerate(values)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_backtest_writes_the_summary_and_the_reports(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "t.csv", [10, 20, 80, 80, 80, 20, 10, 10] * 40)
    (tmp_path / "target.yaml").write_text(TARGET)
    (tmp_path / "threshold.yaml").write_text(THRESHOLD)
    out = tmp_path / "out"

    code = main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "target.yaml"),
                 "--policy", str(tmp_path / "threshold.yaml"), "--out", str(out),
                 "--warmup", "1h", "--startup", "2m"])

    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["capacity"] == pytest.approx(10)
    assert summary["settings"]["scored_steps"] == 320 - 60
    assert [p["strategy"] for p in summary["policies"]] == ["target", "threshold"]
    for record in summary["policies"]:
        assert sum(record["decisions_by_reason"].values()) == 260
        assert record["replica_hours"] > 0
    markdown = (out / "report.md").read_text()
    assert "| SLO violation % |" in markdown
    assert "(policy1-overview.svg)" in markdown and (out / "policy1-overview.svg").exists()
    assert "<svg" in (out / "report.html").read_text()
    assert "replica-hours" in capsys.readouterr().out


def test_a_console_reader_that_goes_away_costs_no_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`autoscaler backtest ... | head -1`: the steps CSV, written after the table, used to
    be lost to a BrokenPipeError and its traceback."""
    trace = write_trace(tmp_path / "t.csv", [10, 20, 80, 80, 80, 20, 10, 10] * 40)
    (tmp_path / "target.yaml").write_text(TARGET)
    for name in ("stdout", "stderr"):
        reader, writer = os.pipe()
        os.close(reader)
        monkeypatch.setattr(sys, name, io.TextIOWrapper(os.fdopen(writer, "wb"),
                                                      line_buffering=True))

    code = main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "target.yaml"),
                 "--out", str(tmp_path / "out"), "--warmup", "1h",
                 "--steps-csv", str(tmp_path / "steps")])

    assert code == 0
    assert (tmp_path / "out" / "report.html").exists()
    assert (tmp_path / "steps" / "policy1-target.csv").exists()


@pytest.mark.parametrize("command", [
    pytest.param(["validate", "{policy}"], id="validate"),
    pytest.param(["report", "--log", "{log}", "--out", "{out}"], id="report"),
])
def test_a_console_reader_gone_before_the_last_flush_changes_no_exit(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`autoscaler validate policies | grep -q ok`: stdout to a pipe is block-buffered, so
    what it holds meets the closed pipe only when flushed; left to the interpreter's last
    flush, that printed a BrokenPipeError and made the exit status 120."""
    (tmp_path / "web.yaml").write_text(TARGET)
    log = tmp_path / "dry-run.log"
    log.write_text(decision_line(datetime(2026, 11, 30, 12, tzinfo=UTC), 2, 2,
                                 Reason.WITHIN_TOLERANCE, 200) + "\n")
    streams = []
    for name in ("stdout", "stderr"):
        reader, writer = os.pipe()
        os.close(reader)
        streams.append(io.TextIOWrapper(os.fdopen(writer, "wb")))
        monkeypatch.setattr(sys, name, streams[-1])

    code = main([part.format(policy=tmp_path / "web.yaml", log=log, out=tmp_path / "out")
                 for part in command])

    assert code == 0
    for stream in streams:
        stream.flush()  # as the interpreter does at exit: no BrokenPipeError


def test_a_predictive_backtest_reports_its_startup_in_whole_steps_and_its_fallbacks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A predictive policy's start-up is the simulated cluster's unless --startup is given;
    at a 5-minute step, 2 minutes is one step. Ten hours are too little history to train on,
    and the report says so (the first tick has no model at all: the agent trains after it)."""
    trace = write_trace(tmp_path / "t.csv", [10, 20, 80, 80] * 30, step="00:05:00")
    (tmp_path / "p.yaml").write_text(TARGET + "strategy: predictive\npredictive: {startup: 2m}\n")
    out = tmp_path / "out"

    code = main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--out", str(out), "--warmup", "1h"])

    assert code == 0
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert (settings["startup_seconds"], settings["ready_after_seconds"]) == (120, 300)
    report = (out / "report.md").read_text()
    assert "ready 5m after the decision (the start-up, 2m, in whole steps)" in report
    assert "At 108 steps the forecast was not used (InsufficientHistory 107, NoModel 1)" in report
    assert "forecast not used (InsufficientHistory): the target rule alone |" in report
    assert "a new replica ready 5m after the decision" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--policy", "{threshold}"], "give --capacity", id="no-target-no-capacity"),
        pytest.param(["--policy", "{target}", "--metric", "cpu"], "no metric 'cpu' (it has rps)",
                     id="unknown-metric"),
        pytest.param(["--policy", "{missing}"], "not a readable file", id="missing-policy"),
        pytest.param(["--policy", "{broken}"], "max_replica: unknown key", id="invalid-policy"),
        pytest.param(["--policy", "{target}", "--warmup", "30d"], "warm-up", id="warmup-too-long"),
    ],
)
def test_backtest_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    args: list[str], message: str) -> None:
    trace = write_trace(tmp_path / "t.csv", [1.0] * 100)
    files = {"threshold": THRESHOLD, "target": TARGET, "broken": "service: x\nmax_replica: 2\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    paths = {name: str(tmp_path / f"{name}.yaml") for name in [*files, "missing"]}

    code = main(["backtest", "--trace", str(trace), "--out", str(tmp_path / "out"),
                 *[a.format(**paths) for a in args]])

    assert code == 2
    assert message in capsys.readouterr().err


def test_a_trace_with_a_gap_or_a_bad_value_is_refused(tmp_path: Path) -> None:
    gap = tmp_path / "gap.csv"
    gap.write_text("minute,requests\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,1\n"
                   "2026-01-01 00:03:00,1\n")
    with pytest.raises(TraceError, match="step changes"):
        load_csv(gap)
    bad = tmp_path / "bad.csv"
    bad.write_text("minute,requests\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,lots\n")
    with pytest.raises(TraceError, match="line 3"):
        load_csv(bad)


def test_a_gzipped_trace_with_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"time,value\n0,1\n60,2.5\n120,3\n"))

    trace = load_csv(path)

    assert (trace.step, trace.values) == (timedelta(minutes=1), [1.0, 2.5, 3.0])


def test_a_trace_in_unix_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,value\n1700000000000,1\n1700000060000,2\n1700000120000,3\n")

    trace = load_csv(path)

    assert trace.start == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert trace.step == timedelta(minutes=1)


def test_an_unreadable_time_names_its_line_and_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,value\n2026-01-01 00:00:00,1\n01/02/2026 00:01,2\n")

    with pytest.raises(TraceError, match=r"line 3: cannot read the time '01/02/2026 00:01': "
                                         r"use ISO 8601 .* Unix milliseconds"):
        load_csv(path)


def decision_line(at: datetime, current: int, desired: int, reason: Reason, rps: float | None
                  ) -> str:
    decision = Decision(
        service="web", strategy="target", time=at, reason=reason, message=f"rps {rps}",
        metrics={"rps": rps}, policy_file="p.yaml", dry_run=True, current_replicas=current,
        spec_replicas=2, recommended_replicas=desired, desired_replicas=desired,
    )
    return json.dumps({**decision_fields(decision), "event": "scaling_decision",
                       "level": "info"})


def test_report_shows_where_the_tasks_ran_and_how_evenly_the_load_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 18: the decisions' placement and balance, and the agent's availability and
    load_imbalance warnings, per service in the report and its summary."""
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    lines = []
    for tick, (nodes, cv, hottest, uneven) in enumerate(
            [(3, 0.10, 0.40, False), (1, 0.81, 0.71, False), (1, 0.79, 0.70, True)]):
        decision = Decision(
            service="web", strategy="target", time=start + timedelta(seconds=15 * tick),
            reason=Reason.WITHIN_TOLERANCE, message="rps 300", metrics={"rps": 300.0},
            policy_file="p.yaml", dry_run=True, current_replicas=3, spec_replicas=3,
            recommended_replicas=3, desired_replicas=3,
            placement=Placement(3, nodes, more_nodes_could_run_it=True),
            balance=Spread("rps", 3, cv, hottest), imbalanced=uneven)
        lines.append(json.dumps({**decision_fields(decision), "event": "scaling_decision"}))
    lines += [json.dumps({"event": "availability", "service": "web", "problem": "one node",
                          "running": 3, "nodes": 1}),
              json.dumps({"event": "load_imbalance", "service": "web", "problem": "uneven"}),
              json.dumps({"event": "load_imbalance", "service": "web", "problem": None})]
    log = tmp_path / "dry-run.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"

    assert main(["report", "--log", str(log), "--out", str(out)]) == 0

    (web,) = json.loads((out / "summary.json").read_text())["services"]
    assert (web["nodes_last"], web["on_one_node_decisions"], web["imbalanced_decisions"]) \
        == (1, 2, 1)
    assert (web["cv_max"], web["hottest_share_max"]) == (0.81, 0.71)
    assert web["warnings"] == {"availability": 1, "load_imbalance": 1}
    markdown = (out / "report.md").read_text()
    assert "all on one node while others could run some** at 2 decisions" in markdown
    assert "coefficient of variation up to 0.81, the hottest task's share up to 71%" in markdown
    assert "uneven for its `balance.for`** at 1 decision (1 load_imbalance warning)" in markdown
    assert (out / "service1-balance.svg").exists()


def test_report_turns_a_dry_run_log_into_a_report(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    lines = [
        '{"event": "agent_started", "level": "info"}',
        decision_line(start, 2, 2, Reason.WITHIN_TOLERANCE, 200),
        "web.1.abc@node    | " + decision_line(start + timedelta(seconds=15), 2, 5,
                                               Reason.DESIRED_WITHIN_RANGE, 500),
        decision_line(start + timedelta(seconds=30), 5, 5, Reason.METRICS_MISSING, None),
        "not json at all",
    ]
    log = tmp_path / "dry-run.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"

    assert main(["report", "--log", str(log), "--out", str(out)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    (web,) = summary["services"]
    assert (web["decisions"], web["changes"], summary["lines_skipped"]) == (3, 1, 2)
    assert web["decisions_by_reason"] == {"DesiredWithinRange": 1, "MetricsMissing": 1,
                                          "WithinTolerance": 1}
    markdown = (out / "report.md").read_text()
    assert "| 2026-11-30T12:00:15Z | 2 | 5 | DesiredWithinRange | rps 500 |" in markdown
    assert (out / "service1-replicas.svg").exists()
    assert "3 decisions, 1 change," in capsys.readouterr().out


def test_the_report_reads_a_forecasts_worst_case_where_the_metric_has_a_limit() -> None:
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    lines = []
    for index, forecast in enumerate([
        {"rps": {"value": 400.0, "with_margin": 440.0}},
        {"rps": {"value": 420.0, "with_margin": 460.0, "worst_case": 530.0}},
    ]):
        decision = Decision(
            service="web", strategy="predictive", time=start + index * timedelta(seconds=15),
            reason=Reason.WITHIN_TOLERANCE, message="m", metrics={"rps": 400.0},
            policy_file="p.yaml", dry_run=True, current_replicas=5, spec_replicas=5,
            recommended_replicas=5, desired_replicas=5, forecast=forecast)
        lines.append(json.dumps({**decision_fields(decision), "event": "scaling_decision"}))

    services, _ = read_decisions(lines)

    assert services["web"].metrics["rps forecast with margin"] == [440.0, 460.0]
    assert services["web"].metrics["rps forecast worst case"] == [None, 530.0]


def test_report_of_a_log_without_decisions_exits_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "empty.log"
    log.write_text('{"event": "agent_started"}\n')

    assert main(["report", "--log", str(log), "--out", str(tmp_path / "o")]) == 2
    assert "no scaling_decision line" in capsys.readouterr().err


def test_the_demo_needs_nothing_but_the_package(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"

    assert main(["demo", "--out", str(out)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert [p["strategy"] for p in summary["policies"]] == ["threshold", "target", "predictive"]
    assert summary["policies"][2]["smape_pct"] < 20
    assert summary["settings"]["scored_steps"] == 30240 - 8 * 1440
    assert "SLO violation %" in capsys.readouterr().out
