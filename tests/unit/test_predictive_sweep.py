"""The predictive sweep's command line: what it runs, refused before anything runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks.predictive_sweep import DAYS, SOURCES, Source, planned


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
    assert [(name, seconds) for name, _, seconds, _ in jobs] == [("taylor", 1800),
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
