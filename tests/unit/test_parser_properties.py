"""Whatever anyone writes into a duration, a service's record label, a placement constraint,
a trace file or a decision log, its reader gives its result or its documented error, never
another exception."""

from __future__ import annotations

import gzip
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.core.durations import MAX_SECONDS, parse_duration
from autoscaler.core.placement import Node, may_run_on
from autoscaler.core.record import RECORD_LABEL, RecordedChange, read_record, with_change
from autoscaler.offline.reports.dry_run import read_decisions
from autoscaler.offline.traces import CsvOptions, Fill, Trace, TraceError, load_csv

SETTINGS = settings(max_examples=150, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
"""Any value JSON or YAML carries."""


@SETTINGS
@given(VALUES | st.text(alphabet="0123456789.smhd _-+eE\t", max_size=30))
@example(10**400)
@example("1" * 400 + "ms")
@example("nan")
def test_a_duration_is_one_of_zero_to_365_days_or_a_value_error(value: Any) -> None:
    try:
        duration = parse_duration(value)
    except ValueError:
        return
    except OverflowError:
        assert isinstance(value, int) and not isinstance(value, bool)
        return  # the policy file's guard makes it "at most 365d" (test_spec_properties)
    assert timedelta(0) <= duration <= timedelta(seconds=MAX_SECONDS)


@SETTINGS
@given(st.text(alphabet="0123456789:>, x", max_size=60) | st.text(max_size=30))
@example("99999999999:1>2")
@example("1:1>2," * 2000)
def test_a_record_label_reads_or_is_no_record(text: str) -> None:
    assert isinstance(read_record({RECORD_LABEL: text}), tuple)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 10**10), st.integers(0, 10**6),
                          st.integers(0, 10**6)), min_size=1, max_size=5))
def test_a_record_the_agent_writes_reads_back(changes: list[tuple[int, int, int]]) -> None:
    record: tuple[RecordedChange, ...] = ()
    for stamp, before, after in sorted(changes):
        change = RecordedChange(datetime.fromtimestamp(stamp, UTC), before, after)
        record = read_record({RECORD_LABEL: with_change(record, change,
                                                        keep=timedelta(days=10**5))})
        assert record[-1] == change


NODE = Node("n1", "host", "worker", {"zone": "a"}, {"disk": "ssd"}, ready=True, active=True)
CONSTRAINTS = st.text(max_size=30) | st.builds(
    "".join, st.tuples(
        st.sampled_from(["node.id", "node.hostname", "NODE.ROLE", "node.labels.zone",
                         "engine.labels.disk", "node.platform.os", " node.labels.", ""]),
        st.sampled_from(["==", "!=", "=", "<", " == "]), st.text(max_size=10)))


@SETTINGS
@given(st.lists(CONSTRAINTS, max_size=4))
@example(["node.labels.zone==a" + " " * 100_000 + "b"])
@example(["node.labels." + "a" * 100_000 + "=="])
def test_a_constraint_of_any_text_reads_as_yes_no_or_unknown(constraints: list[str]) -> None:
    assert may_run_on(NODE, constraints) in (True, False, None)


TIMES = st.sampled_from(["1998-06-10 12:00:00", "1998-06-10T12:01:00Z", "0", "60", "1e11",
                         "9e18", "nan", "-1e300", "9999-12-31T23:59:59", "0001-01-01",
                         "1998-06-10T12:00:00+14:00", ""]) | st.text(max_size=12)
LOADS = st.sampled_from(["1", "0", "-1", "nan", "inf", "1e308", "1,5", ""]) \
    | st.text(max_size=8)
ROWS = st.lists(st.tuples(TIMES, LOADS).map(",".join) | st.text(max_size=20), max_size=8)


@SETTINGS
@given(rows=ROWS, header=st.booleans(), packed=st.booleans(),
       fill=st.sampled_from([None, "zero", "previous", "interpolate"]),
       resample=st.sampled_from([None, timedelta(seconds=1), timedelta(days=365)]),
       column=st.sampled_from([None, "value", "x"]))
@example(rows=["0,1", "60,1", "1e11,1"], header=False, packed=False, fill="zero",
         resample=None, column=None)
def test_a_trace_file_is_a_trace_of_finite_loads_or_a_trace_error(
        tmp_path: Path, rows: list[str], header: bool, packed: bool, fill: Fill | None,
        resample: timedelta | None, column: str | None) -> None:
    data = ("time,value\n" * header + "\n".join(rows)).encode("utf-8", "surrogatepass")
    path = tmp_path / ("trace.csv.gz" if packed else "trace.csv")
    path.write_bytes(gzip.compress(data) if packed else data)

    try:
        trace = load_csv(path, CsvOptions(fill, resample, column))
    except TraceError:
        return
    assert isinstance(trace, Trace) and len(trace) >= 2
    assert all(math.isfinite(value) and value >= 0 for value in trace.values)
    assert trace.time(len(trace) - 1) >= trace.start


DECISION = {
    "event": "scaling_decision", "timestamp": "2026-01-01T00:00:00Z", "service": "web",
    "reason": "DesiredWithinRange", "current_replicas": 2, "recommended_replicas": 3,
    "desired_replicas": 3, "message": "m", "metrics": {"rps": 1.0},
    "forecast": {"rps": {"with_margin": 1, "worst_case": 2}},
    "placement": {"nodes": 1, "on_one_node": False},
    "balance": {"cv": 0.1, "hottest_share": 0.5, "imbalanced": False}, "dry_run": True,
}
DECISION_VALUES = VALUES | st.sampled_from([
    "availability", "load_imbalance", "2026-01-01T00:00:00+14:00", "1970-01-01T00:00:00+05:00",
    "2999-12-31T23:59:59-12:00", "10000-01-01", 10**400])
LINES = st.text(max_size=40) | st.dictionaries(
    st.sampled_from([*DECISION, "problem"]), DECISION_VALUES, max_size=4,
).map(lambda changes: "prefix | " * ("event" in changes) + json.dumps({**DECISION, **changes}))


@settings(SETTINGS, max_examples=100)
@given(st.lists(LINES, max_size=6))
def test_decision_lines_of_any_content_keep_each_services_series_aligned(lines: list[str]
                                                                        ) -> None:
    services, reading = read_decisions(lines)

    assert all(isinstance(line, str) for line in reading.warnings())
    for log in services.values():
        series = [log.current, log.desired, log.recommended, log.nodes, log.cv, log.hottest,
                  *log.metrics.values()]
        assert all(len(values) == len(log.times) for values in series)
        assert log.times == sorted(log.times)


@pytest.mark.parametrize("line", [
    pytest.param('{"event": "scaling_decision", "timestamp": ' + "[" * 100_000, id="deep"),
    pytest.param('{"event": "x", "n": ' + "9" * 5000 + "}", id="huge-integer"),
])
def test_a_line_no_json_reader_can_take_is_unreadable(line: str) -> None:
    _, reading = read_decisions([line])

    assert reading.unreadable == [1]
