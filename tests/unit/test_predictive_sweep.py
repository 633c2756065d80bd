"""The predictive sweep's command line: what it runs, refused before anything runs."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.predictive_sweep import (
    DAYS,
    SOURCES,
    STRATEGIES,
    UTILISATIONS,
    Job,
    Row,
    Source,
    default_startup,
    planned,
    sweep,
    target_rows_to_cache,
)


@pytest.mark.parametrize("argv, refusal", [
    pytest.param(["--only", "Taylor"], "invalid choice: 'Taylor'", id="a-name-no-trace-has"),
    pytest.param(["--only"], "expected at least one argument", id="no-name"),
    pytest.param(["--only", "taylor", "--startup", "5"], "--startup 5: no trace chosen runs at it",
                 id="a-start-up-no-chosen-trace-runs-at"),
    pytest.param(["--only", "taylor", "NASA"], "lacks the shared traces (NASA)",
                 id="a-shared-trace-missing"),
])
def test_a_sweep_that_would_run_nothing_or_fail_is_refused(
        argv: list[str], refusal: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        planned(["--traces", str(tmp_path), *argv])

    assert exited.value.code == 2
    assert refusal in capsys.readouterr().err


def test_the_traces_that_ship_here_run_without_the_shared_ones(tmp_path: Path) -> None:
    arguments, _, jobs = planned(["--traces", str(tmp_path), "--only", "taylor", "bursty",
                                  "cpu"])

    assert arguments.traces == tmp_path
    assert [(job.name, job.startup_seconds) for job in jobs] == [("taylor", 1800),
                                                                ("bursty", 120), ("cpu", 300)]


@pytest.mark.parametrize("source", [s for s in SOURCES if s.name not in
                                    ("WorldCup98", "NASA", "WorldCup98/5m", "NASA/5m", "taylor")],
                         ids=lambda s: s.name)
def test_a_generated_trace_is_two_weeks_of_load_the_same_each_run(source: Source) -> None:
    """The sweep's figures for a generated trace are comparable from run to run only if the
    trace is: the same seed, the same values."""
    made = source.load(Path("."))

    assert made.values == source.load(Path(".")).values
    assert len(made) * made.step == timedelta(days=DAYS)
    assert min(made.values) >= 0 and max(made.values) > 0


def write_trace(path: Path, days: float, step: timedelta, *, skip: int | None = None,
                scale: float = 1.0) -> Path:
    """A daily cycle of 100 to 300 requests a step, `days` long, times `scale`; `skip`: a
    step left out."""
    start = datetime(2026, 3, 2, tzinfo=UTC)
    steps = int(timedelta(days=days) / step)
    lines = ["time,requests"]
    for i in range(steps):
        if i != skip:
            at = start + i * step
            rate = 200 - 100 * math.cos(2 * math.pi * (at.hour * 60 + at.minute) / 1440)
            lines.append(f"{at.isoformat()},{scale * (rate + 10 * math.sin(i)):.1f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_trace_given_on_the_command_line_is_swept_alone_at_one_of_its_steps(
        tmp_path: Path) -> None:
    five = write_trace(tmp_path / "shop.csv", 4, timedelta(minutes=5))
    half = write_trace(tmp_path / "api.csv", 4, timedelta(seconds=30))

    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"shop|5|0.5": {"trace": "shop"}}))

    _, cached, jobs = planned(["--traces", str(tmp_path), "--trace", str(five),
                               "--trace", str(half), "--target-cache", str(cache)])

    assert [(job.name, job.startup_seconds, job.file) for job in jobs] == [
        ("shop", 300, five), ("api", 60, half)]
    assert "shop|5|0.5" in cached
    assert all(job.cached == {} for job in jobs), "another file named shop.csv made that row"


def test_a_given_trace_runs_beside_the_traces_only_names_and_at_the_startup_asked(
        tmp_path: Path) -> None:
    mine = write_trace(tmp_path / "mine.csv", 4, timedelta(minutes=1))

    _, _, jobs = planned(["--traces", str(tmp_path), "--only", "cpu", "--trace", str(mine),
                          "--startup", "5"])

    assert [(job.name, job.startup_seconds) for job in jobs] == [("cpu", 300), ("mine", 300)]


def test_a_given_traces_gap_is_filled_as_fill_says_and_said(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gap = write_trace(tmp_path / "gap.csv", 4, timedelta(minutes=5), skip=100)

    _, _, jobs = planned(["--traces", str(tmp_path), "--trace", str(gap), "--fill",
                          "interpolate"])

    assert [(job.name, job.options.fill) for job in jobs] == [("gap", "interpolate")]
    assert f"--trace {gap}: " in capsys.readouterr().err


def test_a_gzipped_trace_is_named_without_its_suffixes(tmp_path: Path) -> None:
    plain = write_trace(tmp_path / "plain.csv", 4, timedelta(minutes=5))
    packed = tmp_path / "edge.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))

    _, _, jobs = planned(["--traces", str(tmp_path), "--trace", str(packed)])

    assert [(job.name, job.startup_seconds) for job in jobs] == [("edge", 300)]


@pytest.mark.parametrize("step, startup", [
    (timedelta(seconds=30), timedelta(minutes=1)),
    (timedelta(seconds=90), timedelta(minutes=3)),
    (timedelta(minutes=1), timedelta(minutes=1)),
    (timedelta(minutes=7), timedelta(minutes=7)),
])
def test_a_given_traces_startup_is_the_fewest_steps_that_make_whole_minutes(
        step: timedelta, startup: timedelta) -> None:
    assert default_startup(step) == startup


def test_given_traces_target_rows_stay_out_of_the_cache() -> None:
    jobs = [Job("cpu", Path("."), 300, {}), Job("mine", Path("."), 300, {}, Path("mine.csv"))]
    row = {"strategy": "target", "startup_min": 5, "u": 0.5, "cost_ratio": 1.0,
           "replica_hours": 1.0, "slo_violation_pct": 0.0, "under_time_pct": 0.0,
           "actions_per_hour": 1.0, "smape_pct": None, "mase": None, "needless_per_day": 0.0,
           "unused": (0, 0, 0, 0)}
    rows = [Row(trace=name, **row) for name in ("cpu", "mine")]  # type: ignore[arg-type]

    assert list(target_rows_to_cache(rows, jobs)) == ["cpu|5|0.5"]


@pytest.mark.parametrize("make, refusal", [
    pytest.param(lambda d: write_trace(d / "short.csv", 3.9, timedelta(minutes=5)),
                 "3.9 days of load; the sweep needs at least 4 days", id="under-four-days"),
    pytest.param(lambda d: d / "absent.csv", "cannot read the trace", id="no-such-file"),
    pytest.param(lambda d: write_trace(d / "gap.csv", 4, timedelta(minutes=5), skip=100),
                 "gap", id="a-gap-without-fill"),
    pytest.param(lambda d: write_trace(d / "bursty.csv", 4, timedelta(minutes=5)),
                 "another trace is named bursty: rename the file", id="a-built-in-name"),
    pytest.param(lambda d: write_trace(d / "coarse.csv", 4, timedelta(minutes=30)),
                 "its first half holds 96 steps; at a start-up of 0:30:00 the model needs 162",
                 id="too-few-steps-to-train-on"),
    pytest.param(lambda d: write_trace(d / "idle.csv", 4, timedelta(minutes=5), scale=0),
                 "the load's 99th percentile is 0", id="no-load"),
])
def test_a_given_trace_the_sweep_cannot_use_is_refused_before_anything_runs(
        make: Callable[[Path], Path], refusal: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        planned(["--traces", str(tmp_path), "--trace", str(make(tmp_path))])

    assert exited.value.code == 2
    assert refusal in capsys.readouterr().err


@pytest.mark.parametrize("argv, refusal", [
    pytest.param(["--startup", "0"], "a start-up of 0:00:00 is not a whole number",
                 id="no-startup"),
    pytest.param(["--startup", "7"], "a start-up of 0:07:00 is not a whole number of the "
                 "trace's steps (0:05:00)", id="not-whole-steps"),
])
def test_a_startup_a_given_trace_cannot_run_at_is_refused(
        argv: list[str], refusal: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    mine = write_trace(tmp_path / "mine.csv", 4, timedelta(minutes=5))

    with pytest.raises(SystemExit):
        planned(["--traces", str(tmp_path), "--trace", str(mine), *argv])

    assert refusal in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--fill", "zero"], ["--resample", "5m"],
                                  ["--column", "requests"]], ids=lambda a: a[0])
def test_how_to_read_a_trace_without_one_is_refused(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        planned(["--traces", str(tmp_path), "--only", "cpu", *argv])

    assert "say how to read a --trace: give one" in capsys.readouterr().err


def test_one_file_given_twice_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    mine = write_trace(tmp_path / "mine.csv", 4, timedelta(minutes=5))

    with pytest.raises(SystemExit):
        planned(["--traces", str(tmp_path), "--trace", str(mine), "--trace", str(mine)])

    assert "given twice" in capsys.readouterr().err


def test_two_given_traces_of_one_name_are_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_trace(tmp_path / "a" / "web.csv", 4, timedelta(minutes=5))
    second = write_trace(tmp_path / "b" / "web.csv", 4, timedelta(minutes=5))

    with pytest.raises(SystemExit):
        planned(["--traces", str(tmp_path), "--trace", str(first), "--trace", str(second)])

    assert "another trace is named web" in capsys.readouterr().err


def test_a_given_trace_is_swept_for_both_strategies_at_every_u(tmp_path: Path) -> None:
    mine = write_trace(tmp_path / "mine.csv", 4, timedelta(minutes=5))
    _, _, jobs = planned(["--traces", str(tmp_path), "--trace", str(mine)])

    rows = sweep(jobs[0])

    assert {(row.trace, row.startup_min) for row in rows} == {("mine", 5)}
    assert sorted((row.strategy, row.u) for row in rows) == sorted(
        (strategy, u) for strategy in STRATEGIES for u in UTILISATIONS)
    assert all(row.replica_hours > 0 for row in rows)
    assert any(row.mase is not None for row in rows if row.strategy == "predictive")
