"""`autoscaler report` on hostile logs: every line is read or skipped with a warning, and no
line stops the report."""

from __future__ import annotations

import gzip
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autoscaler.cli import main

START = datetime(2026, 11, 30, 12, tzinfo=UTC)


def decision(tick: int, **fields: Any) -> str:
    """A scaling_decision line as the agent writes it, at tick `tick` of 15 s."""
    return json.dumps({
        "timestamp": (START + timedelta(seconds=15 * tick)).isoformat().replace("+00:00", "Z"),
        "service": "web", "strategy": "target", "current_replicas": 2, "spec_replicas": 2,
        "recommended_replicas": 2, "desired_replicas": 2, "reason": "WithinTolerance",
        "message": "m", "metrics": {"rps": 100.0}, "dry_run": True, "applied": False,
        "policy_file": "p.yaml", "policy_source": "file", "event": "scaling_decision",
        **fields})


@pytest.mark.parametrize(("second", "decisions", "not_json"), [
    pytest.param(decision(1).replace('"rps": 100.0', '"rps": 1' + "0" * 400), 2, [],
                 id="a metric too large for a float"),
    pytest.param(decision(1, desired_replicas=10**400), 2, [],
                 id="a count too large for a float"),
    pytest.param(decision(1).replace('"rps": 100.0', '"rps": 1' + "0" * 5000), 1, [2],
                 id="an integer of more digits than Python reads"),
    pytest.param('{"event": "scaling_decision", "a": ' + "[" * 100_000 + "]" * 100_000 + "}",
                 1, [2], id="JSON nested deeper than Python reads"),
    pytest.param(decision(1, service=r"web$\foo{$", metrics={r"$\frac{$": 1.0}), 2, [],
                 id="names with a pair of $, which charts would read as TeX"),
])
def test_a_hostile_line_is_read_or_skipped_and_the_report_is_written(
        tmp_path: Path, second: str, decisions: int, not_json: list[int]) -> None:
    log = tmp_path / "dry-run.log"
    log.write_text(decision(0) + "\n" + second + "\n")
    out = tmp_path / "report"

    assert main(["report", "--log", str(log), "--out", str(out)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert sum(s["decisions"] for s in summary["services"]) == decisions
    assert summary["lines_not_json_events"] == not_json


LOG = "\n".join(decision(tick, desired_replicas=2 + tick // 5) for tick in range(40)) + "\n"


@pytest.mark.parametrize(("stored", "from_stdin", "cut_short"), [
    pytest.param(LOG.encode(), False, False, id="a file"),
    pytest.param(gzip.compress(LOG.encode()), False, False, id="a gzip'd file"),
    pytest.param(LOG.encode(), True, False, id="stdin"),
    pytest.param(gzip.compress(LOG.encode()), True, False, id="gzip'd on stdin"),
    pytest.param(gzip.compress(LOG.encode())[:-20], False, True,
                 id="a gzip'd file cut short: the lines before"),
])
def test_the_log_may_be_gzipd_or_on_stdin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stored: bytes, from_stdin: bool, cut_short: bool) -> None:
    log = tmp_path / "dry-run.log.1"
    log.write_bytes(stored)
    out = tmp_path / "report"
    if from_stdin:
        monkeypatch.setattr(sys, "stdin", log.open())

    assert main(["report", "--log", "-" if from_stdin else str(log), "--out", str(out)]) == 0

    (web,) = json.loads((out / "summary.json").read_text())["services"]
    assert 30 < web["decisions"] < 40 if cut_short else web["decisions"] == 40
    assert ("could not be read to its end" in capsys.readouterr().err) == cut_short


TICKS = [decision(tick, current_replicas=2 + max(tick - 1, 0) // 5, desired_replicas=2 + tick // 5,
                  message=f"tick {tick}") for tick in range(20)]
"""Twenty ticks of one agent; a change at every fifth (ticks 5, 10 and 15)."""


@pytest.mark.parametrize(("lines", "warning", "skipped"), [
    pytest.param(TICKS[10:] + TICKS[:10], "1 decision earlier than the service's one before",
                 {"decisions_out_of_order": [11]}, id="a rotated log read in the wrong order"),
    pytest.param(TICKS + TICKS[5:15], "skipped 10 scaling_decisions that the log already had",
                 {"decisions_duplicated": list(range(21, 31))}, id="lines read twice"),
    pytest.param(TICKS + [line.replace('"tick', '"another agent') for line in TICKS[:3]],
                 "skipped 3 scaling_decisions for a service and time that already had another",
                 {"decisions_conflicting": [21, 22, 23]}, id="two agents logging one service"),
])
def test_the_report_is_in_time_order_with_each_decision_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], warning: str,
        skipped: dict[str, list[int]]) -> None:
    log = tmp_path / "dry-run.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"

    assert main(["report", "--log", str(log), "--out", str(out)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    (web,) = summary["services"]
    assert (web["decisions"], web["changes"], web["replicas_first"],
            web["replicas_last_desired"]) == (20, 3, 2, 5)
    assert (web["from"], web["to"]) == ("2026-11-30T12:00:00+00:00", "2026-11-30T12:04:45+00:00")
    assert {key: summary[key] for key in skipped} == skipped
    assert warning in capsys.readouterr().err
    changes = [line for line in (out / "report.md").read_text().splitlines()
               if line.startswith("| 2026")]
    assert [line.split(" | ")[-1] for line in changes] == ["tick 5 |", "tick 10 |", "tick 15 |"]


def test_a_warning_read_twice_is_counted_once(tmp_path: Path) -> None:
    """`cat dry-run.log dry-run.log`: the decisions read again are skipped, and so are the
    availability and load_imbalance warnings, which the report counts by service."""
    warnings = [json.dumps({"event": kind, "service": "web", "problem": "uneven",
                            "timestamp": f"2026-11-30T12:00:{second}Z"})
                for kind, second in (("availability", 15), ("load_imbalance", 15),
                                     ("load_imbalance", 30))]
    lines = TICKS + warnings
    log = tmp_path / "dry-run.log"
    log.write_text("\n".join(lines + lines) + "\n")
    out = tmp_path / "report"

    assert main(["report", "--log", str(log), "--out", str(out)]) == 0

    (web,) = json.loads((out / "summary.json").read_text())["services"]
    assert web["warnings"] == {"availability": 1, "load_imbalance": 2}


def test_a_long_log_shows_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("autoscaler.offline.reports.dry_run.PROGRESS_LINES", 10)
    log = tmp_path / "dry-run.log"
    log.write_text(LOG)  # 40 lines

    assert main(["report", "--log", str(log), "--out", str(tmp_path / "report")]) == 0

    err = capsys.readouterr().err
    assert [line.split(": ")[-1] for line in err.splitlines() if "lines read" in line] == [
        "10 lines read", "20 lines read", "30 lines read", "40 lines read"]


@pytest.mark.parametrize("line_break", [pytest.param("\n", id="line-feed"),
                                        pytest.param("\r", id="carriage-return")])
def test_html_and_line_breaks_from_the_log_stay_text_in_report_md(
        tmp_path: Path, line_break: str) -> None:
    """In every place report.md shows text from the log: the service's name, a decision's
    message and reason (a table, and a paragraph), another event's name (the intro)."""
    hostile = "<script>alert(1)</script>"
    log = tmp_path / "dry-run.log"
    log.write_text("\n".join([
        decision(0, service="web" + hostile, reason="Held" + hostile),
        decision(1, service="web" + hostile, desired_replicas=3, reason="Held" + hostile,
                 message=f"first line{line_break}| second line " + hostile),
        json.dumps({"event": "other" + hostile, "timestamp": "2026-11-30T12:00:30Z"})]) + "\n")

    assert main(["report", "--log", str(log), "--out", str(tmp_path / "report")]) == 0

    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "<script>" not in markdown
    assert "other&lt;script>" in markdown and "Reasons: Held&lt;script>" in markdown
    rows = [line for line in markdown.splitlines() if "first line" in line]
    assert len(rows) == 1 and rows[0].startswith("| ") and "first line \\| second line" in rows[0]
    assert "\r" not in markdown


@pytest.mark.parametrize(("desired", "said"), [
    pytest.param([2], "1 decision (dry-run) from 2026-11-30 12:00:00 to 2026-11-30 12:00:00; "
                 "**0 changes**", id="one-decision"),
    pytest.param([2, 3], "2 decisions (dry-run) from 2026-11-30 12:00:00 to "
                 "2026-11-30 12:00:15; **1 change**", id="one-change"),
    pytest.param([2, 3, 4], "3 decisions (dry-run) from 2026-11-30 12:00:00 to "
                 "2026-11-30 12:00:30; **2 changes**", id="two-changes"),
])
def test_a_service_s_counts_are_in_the_right_number(tmp_path: Path, desired: list[int],
                                                    said: str) -> None:
    """It read "**1 changes** it would have made"."""
    log = tmp_path / "dry-run.log"
    log.write_text("".join(decision(tick, current_replicas=2 if tick == 0 else desired[tick - 1],
                                    desired_replicas=count) + "\n"
                           for tick, count in enumerate(desired)))

    assert main(["report", "--log", str(log), "--out", str(tmp_path / "report")]) == 0

    assert said in (tmp_path / "report" / "report.md").read_text()
