"""Input that says what it did (issue 20): every repair, assumption or refusal of the
backtest's and the report's inputs is a message on the console and in the report, with the
exact words asserted here; and the per-step CSV of `backtest --steps-csv`."""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.offline.traces import CsvOptions, TraceError, load_csv

START = datetime(2026, 1, 1)
POLICY = "service: web\nmax_replicas: 50\nmetrics: [{name: rps, query: q, target: 7}]\n"
PATTERN = [10, 20, 80, 80, 80, 20, 10, 10]
Row = tuple[float, float]
"""(minutes after START, value)."""


def at(minutes: float) -> str:
    return f"{START + timedelta(minutes=minutes):%Y-%m-%d %H:%M:%S}"


def z(minutes: float) -> str:
    """A time as the messages write it."""
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def minutes(count: int) -> list[Row]:
    return [(i, PATTERN[i % len(PATTERN)]) for i in range(count)]


def write_csv(path: Path, rows: list[Row], header: str | None = "minute,requests",
              extra: str = "") -> Path:
    lines = [header] if header is not None else []
    lines += [f"{at(m)},{extra}{v:g}" for m, v in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def backtest(tmp_path: Path, trace: Path, *args: str, policy: str = POLICY) -> int:
    (tmp_path / "p.yaml").write_text(policy)
    return main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--out", str(tmp_path / "out"), "--warmup", "1h", *args])


def report_text(tmp_path: Path) -> str:
    return (tmp_path / "out" / "report.md").read_text()


def summary(tmp_path: Path) -> dict[str, object]:
    settings = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    assert isinstance(settings, dict)
    return settings


# --- the header -------------------------------------------------------------------------


def test_a_csv_without_a_header_keeps_its_first_row_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120), header=None)

    assert backtest(tmp_path, trace) == 0

    message = ("no header: line 1 reads as a time and a value, so it is kept as data (the "
               "time in column 1, the value in column 2)")
    assert f"warning: {trace}: {message}\n" in capsys.readouterr().err
    assert f"**Warning:** {message}." in report_text(tmp_path)
    assert summary(tmp_path)["trace_steps"] == 120
    assert load_csv(trace).values[0] == 10


def test_a_header_row_that_reads_partly_as_data_is_named(tmp_path: Path) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(3), header=f"{at(-1)},lots")

    loaded = load_csv(trace)

    assert loaded.warnings == ("line 1 is read as the header, though its column 1 reads as "
                               "a time: if it is a row of data, it is not in the trace",)
    assert len(loaded) == 3


# --- order and duplicates ----------------------------------------------------------------


def test_rows_out_of_time_order_are_sorted_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = minutes(120)
    rows[5], rows[6] = rows[6], rows[5]
    trace = write_csv(tmp_path / "t.csv", rows)

    assert backtest(tmp_path, trace) == 0

    message = (f"1 row out of time order, the first on line 8 ({z(5)}, after {z(6)}): "
               "sorted by time")
    assert f"warning: {trace}: {message}\n" in capsys.readouterr().err
    assert f"**Warning:** {message}." in report_text(tmp_path)
    assert load_csv(trace).values[:8] == [10, 20, 80, 80, 80, 20, 10, 10]


def test_duplicate_times_are_refused_naming_which_and_how_many(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = minutes(120)
    rows = [*rows[:10], rows[9], *rows[10:20], rows[19], rows[19], *rows[20:]]
    trace = write_csv(tmp_path / "t.csv", rows)

    assert backtest(tmp_path, trace) == 2

    assert capsys.readouterr().err == (
        f"autoscaler: {trace}: 2 times given more than once (5 rows): {z(9)} on lines 11, 12; "
        f"{z(19)} on lines 22, 23, 24; a trace needs one value per time: remove the "
        "duplicates, or give --resample DURATION to average the rows of each step\n")


def test_resample_averages_duplicate_times_and_says_so(tmp_path: Path) -> None:
    rows = minutes(5)
    trace = write_csv(tmp_path / "t.csv", [*rows[:3], (2, 40), *rows[3:]])

    loaded = load_csv(trace, CsvOptions(resample=timedelta(minutes=1)))

    assert loaded.values == [10, 20, 60, 80, 80]
    assert loaded.notes == (
        "resampled to a 1m step: 6 rows into 5 steps, 5 the mean of their rows (1 of them of "
        "several rows)",
        f"1 time given more than once (2 rows, the first {z(2)}): averaged in their step",
    )


def test_resample_averages_values_near_the_floats_limit_without_overflow(tmp_path: Path
                                                                         ) -> None:
    trace = write_csv(tmp_path / "t.csv", [(0, 1e308), (0, 1e308), (1, 5)])

    loaded = load_csv(trace, CsvOptions(resample=timedelta(minutes=1)))

    assert loaded.values == [1e308, 5]


# --- gaps, --fill and --resample ---------------------------------------------------------


def gap_trace(tmp_path: Path) -> Path:
    """120 one-minute rows without minutes 10, 11 and 12."""
    rows = minutes(123)
    return write_csv(tmp_path / "t.csv", rows[:10] + rows[13:])


def test_a_gap_is_an_error_that_says_how_to_fill_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = gap_trace(tmp_path)

    assert backtest(tmp_path, trace) == 2

    assert capsys.readouterr().err == (
        f"autoscaler: {trace}: the step changes at {z(13)} (line 12: 4m after the row before "
        "instead of 1m): 1 gap, 3 missing steps of 1m in all; a trace needs a regular step: "
        "give --fill zero|previous|interpolate to fill the missing steps, or --resample 1m\n")


@pytest.mark.parametrize(
    ("fill", "filled", "how"),
    [
        pytest.param("zero", [0, 0, 0], "with 0", id="zero"),
        pytest.param("previous", [20, 20, 20], "with the value before each", id="previous"),
        pytest.param("interpolate", [35, 50, 65], "by linear interpolation", id="interpolate"),
    ],
)
def test_fill_fills_a_gap_and_says_how(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       fill: str, filled: list[float], how: str) -> None:
    rows = minutes(120)
    rows[9:14] = [(9, 20), (13, 80)]
    trace = write_csv(tmp_path / "t.csv", rows[:-1])

    assert backtest(tmp_path, trace, "--fill", fill) == 0

    message = (f"filled 1 gap {how} (3 missing steps of 1m in all); the first after {z(9)} "
               "(line 11)")
    assert f"note: {trace}: {message}\n" in capsys.readouterr().err
    assert f"Reading the trace: {message}." in report_text(tmp_path)
    values = load_csv(trace, CsvOptions(fill=fill)).values  # type: ignore[arg-type]
    assert values[9:14] == [20, *filled, 80]


def test_fill_on_a_trace_without_a_gap_says_it_filled_nothing(tmp_path: Path) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(3))

    assert load_csv(trace, CsvOptions(fill="zero")).notes == ("--fill zero: no gap to fill",)


def test_resample_aggregates_to_a_regular_step_and_says_how_many(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three rows a minute, 20 s apart, become one step a minute: their mean."""
    rows = [(i / 3, PATTERN[(i // 3) % len(PATTERN)]) for i in range(360)]
    trace = write_csv(tmp_path / "t.csv", rows)

    assert backtest(tmp_path, trace, "--resample", "1m") == 0

    message = ("resampled to a 1m step: 360 rows into 120 steps, 120 the mean of their rows "
               "(120 of them of several rows)")
    assert f"note: {trace}: {message}\n" in capsys.readouterr().err
    assert f"Reading the trace: {message}." in report_text(tmp_path)
    assert summary(tmp_path)["trace_steps"] == 120


def test_resample_interpolates_the_steps_without_a_row(tmp_path: Path) -> None:
    trace = write_csv(tmp_path / "t.csv", [(0, 10), (1, 20), (4, 50), (5, 10)])

    loaded = load_csv(trace, CsvOptions(resample=timedelta(minutes=1)))

    assert loaded.values == [10, 20, 30, 40, 50, 10]
    assert loaded.notes == (
        "resampled to a 1m step: 4 rows into 6 steps, 4 the mean of their rows (0 of them of "
        "several rows), 2 without a row interpolated linearly between the steps around them",)


def test_rows_off_the_step_need_resample(tmp_path: Path) -> None:
    trace = write_csv(tmp_path / "t.csv", [(0, 1), (1, 1), (2, 1), (3.5, 1), (4.5, 1)])

    with pytest.raises(TraceError) as raised:
        load_csv(trace, CsvOptions(fill="zero"))

    assert str(raised.value) == (
        f"{trace}: the step changes at {z(3.5)} (line 5: 90s after the row before instead "
        "of 1m), off the 1m step of the other rows: give --resample DURATION to put the "
        "trace on a regular step (the mean of the rows in each step)")


# --- columns -----------------------------------------------------------------------------


def test_a_csv_with_more_columns_says_which_it_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120), header="minute,errors,requests",
                      extra="1,")

    assert backtest(tmp_path, trace) == 0

    message = ("the value is column 3, 'requests', and the time column 1, 'minute', of "
               "minute, errors, requests (--column NAME reads another)")
    assert f"note: {trace}: {message}\n" in capsys.readouterr().err
    assert f"Reading the trace: {message}." in report_text(tmp_path)


def test_column_picks_the_value_column(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120), header="minute,errors,requests",
                      extra="1,")

    assert backtest(tmp_path, trace, "--column", "errors", "--capacity", "10") == 0

    assert (f"note: {trace}: the value is column 2, 'errors', and the time column 1, "
            "'minute', of minute, errors, requests (as --column says)\n"
            in capsys.readouterr().err)
    assert set(load_csv(trace, CsvOptions(column="errors")).values) == {1}


@pytest.mark.parametrize(
    ("header", "column", "message"),
    [
        pytest.param("minute,errors,requests", "latency",
                     "--column latency: no such column (the header has minute, errors, "
                     "requests)", id="unknown"),
        pytest.param("minute,errors,requests", "minute",
                     "--column minute is the time column; name the value column (the header "
                     "has minute, errors, requests)", id="the-time-column"),
        pytest.param(None, "requests",
                     "--column requests names a column, but the file has no header (line 1 "
                     "is a time and a value): add a header, or leave --column out",
                     id="no-header"),
    ],
)
def test_a_column_that_cannot_be_read_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str | None, column: str,
        message: str) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120), header=header,
                      extra="1," if header else "")

    assert backtest(tmp_path, trace, "--column", column) == 2

    assert capsys.readouterr().err == f"autoscaler: {trace}: {message}\n"


@pytest.mark.parametrize(("text", "hint"), [
    pytest.param("minute;requests\n2026-01-01 00:00;5\n", "not ';'", id="semicolons"),
    pytest.param("2026-01-01 00:00;5\n2026-01-01 00:01;6\n", "not ';'",
                 id="semicolons-no-header"),
    pytest.param("minute\trequests\n2026-01-01 00:00\t5\n", "not '\\t'", id="tabs"),
])
def test_a_csv_of_another_separator_says_a_trace_needs_commas(tmp_path: Path, text: str,
                                                               hint: str) -> None:
    (tmp_path / "t.csv").write_text(text)

    with pytest.raises(TraceError) as raised:
        load_csv(tmp_path / "t.csv")

    assert f"needs a timestamp column and a value column, got {text.splitlines()[:1]}: the " \
        f"columns are separated by commas, {hint}" in str(raised.value)


@pytest.mark.parametrize(("row", "message"), [
    pytest.param(f"{at(5)},1,234", "line 7: 3 fields, where line 1 has 2 (write numbers "
                 "without a thousands separator, and decimals with a point: 1,234 is two "
                 "fields)\n", id="thousands-separator"),
    pytest.param(f'{at(5)},"1,234"', "line 7: column 2 ('1,234') is not a number (write "
                 "numbers without a thousands separator, and decimals with a point)\n",
                 id="thousands-separator-quoted"),
    pytest.param(f'{at(5)},"1,5"', "line 7: column 2 ('1,5') is not a number (write numbers "
                 "without a thousands separator, and decimals with a point)\n",
                 id="decimal-comma"),
    pytest.param(at(5), "line 7: no value in column 2", id="no-value-column"),
    pytest.param(f"{at(5)},", "line 7: no value in column 2", id="empty-value"),
    pytest.param(f"{at(5)},0x1f", "line 7: column 2 ('0x1f') is not a number", id="not-a-number"),
])
def test_a_row_that_does_not_read_is_refused_with_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, message: str) -> None:
    """A CSV is never read with a row changed or dropped silently."""
    trace = write_csv(tmp_path / "t.csv", minutes(120))
    lines = trace.read_text().splitlines()
    lines[6] = row
    trace.write_text("\n".join(lines) + "\n")

    assert backtest(tmp_path, trace) == 2

    assert capsys.readouterr().err.startswith(f"autoscaler: {trace}: {message}")


def test_a_short_row_with_the_time_in_a_later_column_is_refused_with_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "swapped.csv"
    rows = [f"{v:g},{at(m)}" for m, v in minutes(120)]
    rows[5] = "6"
    trace.write_text("requests,minute\n" + "\n".join(rows) + "\n")

    assert backtest(tmp_path, trace) == 2

    assert capsys.readouterr().err.startswith(f"autoscaler: {trace}: line 7: no time in column 2")


def test_the_prometheus_range_options_are_refused_with_a_csv(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120))

    with pytest.raises(SystemExit) as raised:
        backtest(tmp_path, trace, "--start", "2026-01-01", "--step", "5m")

    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: autoscaler backtest ")
    assert ("error: --start, --step apply to --prometheus-url only; a --trace CSV is replayed "
            "whole") in err


@pytest.mark.parametrize(("options", "refused"), [
    pytest.param(["--fill", "zero", "--column", "x"], "--fill, --column apply", id="two"),
    pytest.param(["--fill", "zero"], "--fill applies", id="one"),
])
def test_the_csv_options_are_refused_with_prometheus(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str],
        refused: str) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)

    with pytest.raises(SystemExit) as raised:
        main(["backtest", "--prometheus-url", "http://127.0.0.1:9", "--query", "q",
              "--start", "2026-01-01", "--end", "2026-01-02", "--step", "1m",
              "--policy", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out"), *options])

    assert raised.value.code == 2
    assert (f"error: {refused} to a --trace CSV only; a Prometheus range is already at "
            "--step\n") in capsys.readouterr().err


# --- the capacity ------------------------------------------------------------------------


def test_an_assumed_capacity_is_called_assumed(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120))

    assert backtest(tmp_path, trace) == 0

    assert (f"replaying 120 steps of {trace} (capacity 10 per replica, assumed: the first "
            "policy target, 7, / 0.7, as no --capacity was given; a new replica ready 1m "
            "after the decision)\n") in capsys.readouterr().err
    assert ("One replica carries 10 at 100 % (assumed: the first policy target, 7, / 0.7, as "
            "no --capacity was given)") in report_text(tmp_path)
    assert (summary(tmp_path)["capacity"], summary(tmp_path)["capacity_source"]) \
        == (10, "assumed")


def test_a_given_capacity_is_called_given(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120))

    assert backtest(tmp_path, trace, "--capacity", "12.5") == 0

    assert (f"replaying 120 steps of {trace} (capacity 12.5 per replica, given by "
            "--capacity; a new replica ready 1m after the decision)\n"
            in capsys.readouterr().err)
    assert "One replica carries 12.5 at 100 % (given by --capacity)" in report_text(tmp_path)
    assert summary(tmp_path)["capacity_source"] == "--capacity"


# --- a policy without a query ------------------------------------------------------------


def test_a_backtest_policy_needs_no_query_but_validate_still_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120))
    policy = "service: web\nmax_replicas: 50\nmetrics: [{name: rps, target: 7}]\n"

    assert backtest(tmp_path, trace, policy=policy) == 0
    assert (f"note: {tmp_path / 'p.yaml'}: metric rps has no query: in a backtest the trace "
            "feeds it (validate and the agent need one)\n") in capsys.readouterr().err

    assert main(["validate", str(tmp_path / "p.yaml")]) == 2
    assert "metrics[0].query: required key is missing" in capsys.readouterr().out


def test_other_problems_of_a_policy_without_a_query_are_still_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120))
    policy = "service: web\nmax_replicas: 50\nmetrics: [{name: rps, target: -1}]\n"

    assert backtest(tmp_path, trace, policy=policy) == 2
    assert capsys.readouterr().err == (
        f"{tmp_path / 'p.yaml'}: metrics[0].target: must be greater than 0, got -1\n")


# --- report --log ------------------------------------------------------------------------


def decision(second: int, **changed: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "event": "scaling_decision", "timestamp": f"2026-11-30T12:00:{second:02d}Z",
        "service": "web", "strategy": "target", "current_replicas": 2, "spec_replicas": 2,
        "recommended_replicas": 2, "desired_replicas": 2, "reason": "WithinTolerance",
        "message": "m", "metrics": {"rps": 1.0}, "dry_run": True,
    }
    fields.update(changed)
    return fields


def run_report(tmp_path: Path, lines: list[str]) -> int:
    log = tmp_path / "d.log"
    log.write_text("\n".join(lines) + "\n")
    return main(["report", "--log", str(log), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize(("changed", "skipped", "missing"), [
    pytest.param({"current_replicas": math.inf}, False, "current_replicas", id="count-infinite"),
    pytest.param({"current_replicas": math.nan}, False, "current_replicas", id="count-nan"),
    pytest.param({"desired_replicas": 1e300}, False, "desired_replicas", id="count-huge"),
    pytest.param({"metrics": [1, 2]}, False, None, id="metrics-not-a-mapping"),
    pytest.param({"forecast": {"rps": 5}}, False, None, id="forecast-not-a-mapping"),
    pytest.param({"metrics": {"rps": math.inf}}, False, None, id="metric-infinite"),
    pytest.param({"timestamp": "9999-12-31T23:59:59Z"}, True, None, id="year-9999"),
    pytest.param({"timestamp": 5}, True, None, id="timestamp-not-text"),
    pytest.param({"service": ["a"]}, True, None, id="service-not-text"),
])
def test_a_hostile_decision_line_is_skipped_or_read_with_the_field_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], changed: dict[str, object],
        skipped: bool, missing: str | None) -> None:
    """A report is still written, and the console says what was not read."""
    lines = [json.dumps(decision(0)), json.dumps(decision(1, **changed))]

    assert run_report(tmp_path, lines) == 0

    err = capsys.readouterr().err
    assert ("skipped 1 scaling_decision" in err) == skipped
    if missing is not None:
        assert f"fields missing, shown as (missing): {missing} (line 2)" in err
    assert (tmp_path / "out" / "report.html").is_file()


def test_report_warns_of_the_lines_it_skips(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps({"event": "agent_started"}), json.dumps(decision(0))]
    lines += ["garbage"] * 7 + [json.dumps(decision(1, timestamp="soon")), "",
                                json.dumps({"no": "event"})]

    assert run_report(tmp_path, lines) == 0

    log = tmp_path / "d.log"
    captured = capsys.readouterr()
    assert captured.err == (
        f"warning: {log}: skipped 8 lines that are not a JSON event (lines 3, 4, 5, 6, 7 and "
        "3 more)\n"
        f"warning: {log}: skipped 1 scaling_decision without a timestamp (ISO 8601, years "
        "1970 to 2999) or a service name (line 10)\n")
    assert "passed over 1 line of other events (agent_started 1)\n" in captured.out
    markdown = report_text(tmp_path)
    assert ("**Warning:** skipped 8 lines that are not a JSON event (lines 3, 4, 5, 6, 7 and "
            "3 more).") in markdown
    assert "Passed over: 1 line of other events (agent_started 1)." in markdown
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (written["lines_skipped"], written["lines_not_json_events"],
            written["decisions_unreadable"]) == (10, [3, 4, 5, 6, 7, 8, 9, 12], [10])


@pytest.mark.parametrize(("changed", "other", "shown"), [
    pytest.param({"service": "web\x1b[2J\x1b]0;owned\x07"}, "agent_started",
                 "web\\x1b[2J\\x1b]0;owned\\x07: 1 decision", id="service-escapes"),
    pytest.param({"reason": "Within\u202eTolerance"}, "agent_started",
                 "Within\\u202eTolerance 1", id="reason-bidi-override"),
    pytest.param({}, "tick\x1b[31m\rdone", "tick\\x1b[31m\\rdone 1", id="event-name"),
])
def test_the_console_shows_what_a_log_says_without_its_control_characters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], changed: dict[str, object],
        other: str, shown: str) -> None:
    """A hostile log must not drive the operator's terminal through the console summary."""
    lines = [json.dumps({"event": other}), json.dumps(decision(0, **changed))]

    assert run_report(tmp_path, lines) == 0

    captured = capsys.readouterr()
    assert shown in captured.out
    assert all(c.isprintable() for line in captured.out.splitlines() for c in line)
    assert all(c.isprintable() for line in captured.err.splitlines() for c in line)


def test_a_decision_without_a_reason_is_shown_as_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    without = decision(15, desired_replicas=3)
    del without["reason"], without["message"]
    lines = [json.dumps(decision(0)), json.dumps(without)]

    assert run_report(tmp_path, lines) == 0

    captured = capsys.readouterr()
    assert captured.err == (
        f"warning: {tmp_path / 'd.log'}: 1 decision with fields missing, shown as (missing): "
        "reason (line 2), message (line 2)\n")
    assert "web: 2 decisions, 1 change, (missing) 1, WithinTolerance 1" in captured.out
    markdown = report_text(tmp_path)
    assert "| 2026-11-30T12:00:15Z | 2 | 3 | (missing) | (missing) |" in markdown
    assert "None" not in markdown
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["decisions_missing_fields"] == {"reason": [2], "message": [2]}
    assert written["services"][0]["decisions_by_reason"] == {"(missing)": 1,
                                                             "WithinTolerance": 1}


# --- the steps CSV -----------------------------------------------------------------------


def read_steps(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_steps_csv_writes_every_scored_step_of_every_policy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(120))
    (tmp_path / "p.yaml").write_text(POLICY)
    (tmp_path / "q.yaml").write_text(POLICY.replace("target: 7", "target: 5"))
    steps = tmp_path / "steps"

    assert main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--policy", str(tmp_path / "q.yaml"), "--out", str(tmp_path / "out"),
                 "--warmup", "1h", "--steps-csv", str(steps)]) == 0

    written = [steps / "policy1-p.csv", steps / "policy2-q.csv"]
    assert (f"steps: {written[0]}, {written[1]} (one row a scored step)\n"
            in capsys.readouterr().out)
    rows = read_steps(written[0])
    assert list(rows[0]) == ["time", "load", "demand", "billed", "ready", "forecast", "reason"]
    assert len(rows) == 60
    assert rows[0]["time"] == z(60)
    assert [float(r["load"]) for r in rows] == [PATTERN[m % 8] for m in range(60, 120)]
    assert {r["forecast"] for r in rows} == {""}
    recorded = json.loads((tmp_path / "out" / "summary.json").read_text())["policies"][0]
    assert Counter(r["reason"] for r in rows) == recorded["decisions_by_reason"]
    assert sum(int(r["billed"]) for r in rows) / 60 == pytest.approx(recorded["replica_hours"])
    assert {(r["load"], r["demand"]) for r in rows} == {("10", "2"), ("20", "3"),
                                                        ("80", "9")}  # load / 9, rounded up


def test_steps_csv_of_a_predictive_policy_holds_its_forecasts(tmp_path: Path) -> None:
    trace = write_csv(tmp_path / "t.csv", minutes(24 * 60))
    policy = POLICY + ("strategy: predictive\npredictive: {min_history: 2h, history: 6h, "
                       "retrain_every: 2h, worst_case_window: 2h}\n")
    (tmp_path / "p.yaml").write_text(policy)

    assert main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--out", str(tmp_path / "out"), "--warmup", "3h",
                 "--steps-csv", str(tmp_path / "steps")]) == 0

    rows = read_steps(tmp_path / "steps" / "policy1-p.csv")
    forecasts = [float(r["forecast"]) for r in rows if r["forecast"]]
    assert len(rows) == 21 * 60 and len(forecasts) > 20 * 60
    assert all(0 <= f < 200 for f in forecasts)


def test_a_null_reason_and_a_count_that_is_not_a_number_are_shown_as_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    null_reason = {**decision(15, desired_replicas=3), "reason": None}
    text_count = {**decision(30, desired_replicas=4), "current_replicas": "3"}
    lines = [json.dumps(decision(0)), json.dumps(null_reason), json.dumps(text_count)]

    assert run_report(tmp_path, lines) == 0

    assert capsys.readouterr().err == (
        f"warning: {tmp_path / 'd.log'}: 2 decisions with fields missing, shown as (missing): "
        "reason (line 2), current_replicas (line 3)\n")
    markdown = report_text(tmp_path)
    assert "| 2026-11-30T12:00:15Z | 2 | 3 | (missing) |" in markdown
    assert "None" not in markdown


@pytest.mark.parametrize("packed", [False, True])
def test_a_trace_over_the_size_a_backtest_takes_is_refused_before_it_is_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packed: bool) -> None:
    """A small gzip'd file can unpack to more than the memory."""
    monkeypatch.setattr("autoscaler.offline.traces.MAX_TRACE_BYTES", 1000)
    text = "\n".join(f"{at(m)},{v:g}" for m, v in minutes(120)) + "\n"
    trace = tmp_path / ("t.csv.gz" if packed else "t.csv")
    trace.write_bytes(gzip.compress(text.encode()) if packed else text.encode())

    with pytest.raises(TraceError, match=f"over 1,000 bytes{' unpacked' if packed else ''}"):
        load_csv(trace)
