"""autoscaler tune: the search (pure, on made-up scores) and the command on small synthetic
traces through the real replay: the recommendation meets the budget and is the cheapest
candidate, none may meet it, threshold bounds move together, progress is shown."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.cli import main
from autoscaler.core.spec import Policy, parse_policy
from autoscaler.offline import tune_command
from autoscaler.offline.replay import BacktestSettings, replay
from autoscaler.offline.scoring import Scores
from autoscaler.offline.traces import load_csv
from autoscaler.offline.tune import (
    DEFAULT_GRID,
    Candidate,
    Knob,
    Trial,
    efficient,
    parse_grid,
    refinement,
    search,
)
from autoscaler.offline.tune_command import tuned_text

TARGET = """# a comment that stays
service: web
min_replicas: 1
max_replicas: 60
metrics:
  - {name: rps, query: q, target: 7}   # flow style, commented
behavior:
  scale_down: {stabilization: 2m}
"""
THRESHOLD = ("service: web\nmax_replicas: 60\nstrategy: threshold\nmetrics: [{name: rps, "
             "query: q, scale_up_above: 9, scale_down_below: 3}]\n")


def scores(cost: float, violation: float) -> Scores:
    return Scores(replica_hours=cost, oracle_replica_hours=1.0, slo_violation_pct=violation,
                  under_provisioned_time_pct=violation, over_provisioned_time_pct=0.0,
                  under_provisioning_accuracy=0.0, over_provisioning_accuracy=0.0,
                  instability_pct=0.0, scaling_actions_per_hour=0.0)


class Made:
    """An `Evaluate` of made-up scores: cost falls and violations rise with u."""

    def __init__(self, knee: float) -> None:
        self.knee = knee
        self.batches: list[list[float]] = []

    def __call__(self, batch: Sequence[Candidate]) -> list[Trial]:
        self.batches.append([c.utilisation for c in batch])
        return [Trial(c, scores(100 / c.utilisation, max(0.0, (c.utilisation - self.knee) * 10)))
                for c in batch]


KNOB = Knob("rps", 0, ("target",), (7.0,))


def test_the_search_recommends_the_cheapest_within_the_budget_after_refining() -> None:
    evaluate = Made(knee=0.625)  # within 0.1 % up to u 0.635

    frontier = search(KNOB, capacity=10, grid=parse_grid(DEFAULT_GRID), refine=0.01,
                      budget=0.1, evaluate=evaluate)

    grid, refined = evaluate.batches
    assert grid[0] == pytest.approx(0.7) and len(grid) == 1 + 19 - 1  # 0.7 is the given one
    assert refined == [0.56, 0.57, 0.58, 0.59, 0.61, 0.62, 0.63, 0.64]
    assert frontier.recommended is not None
    assert frontier.recommended.utilisation == pytest.approx(0.63)
    assert frontier.recommended.candidate.values == (6.3,)
    assert frontier.refined_around == pytest.approx(0.6)
    assert [t.utilisation for t in frontier.trials] == sorted(t.utilisation
                                                              for t in frontier.trials)
    assert frontier.given is not None and frontier.given.candidate.values == (7.0,)


def test_the_search_recommends_nothing_when_no_candidate_meets_the_budget() -> None:
    evaluate = Made(knee=0.0)  # every u violates

    frontier = search(KNOB, capacity=10, grid=[0.2, 0.4, 0.6], refine=0.05, budget=0.1,
                      evaluate=evaluate)

    assert frontier.recommended is None
    assert frontier.least_violating.utilisation == pytest.approx(0.05)
    assert evaluate.batches[1] == [0.05, 0.1, 0.15, 0.25, 0.3, 0.35]  # around 0.2, mirrored


def test_refinement_stays_between_the_neighbours_and_below_the_top() -> None:
    assert refinement(1.0, [0.8, 0.9, 1.0], 0.03) == [0.91, 0.94, 0.97]
    assert refinement(0.5, [0.5], 0.01) == []
    assert refinement(0.5, [0.4, 0.5, 0.6], 0) == []


@pytest.mark.parametrize(("points", "expected"), [
    ([(0.2, 100, 0.0), (0.4, 60, 0.0), (0.6, 50, 0.05)], [0.4, 0.6]),  # 0.2 costs more for 0
    ([(0.2, 100, 0.0), (0.4, 97, 0.2), (0.6, 95, 0.1)], [0.2, 0.6]),  # 0.4: dearer, worse
    ([(0.2, 80, 0.1), (0.4, 80, 0.1)], [0.4]),  # a tie is shown once, as the search picks
    ([(0.2, 70, 0.0), (0.4, 80, 0.0), (0.6, 60, 0.3), (0.8, 50, 1.0)], [0.2, 0.6, 0.8]),
])
def test_the_frontier_keeps_only_the_trials_no_other_beats(
        points: list[tuple[float, float, float]], expected: list[float]) -> None:
    trials = [Trial(Candidate(u, (u,)), scores(cost, violation))
              for u, cost, violation in points]

    assert [t.utilisation for t in efficient(trials)] == expected


@pytest.mark.parametrize("evaluate", [
    pytest.param(lambda c: scores(96.0, 0.0), id="all-equal-within-the-budget"),
    pytest.param(lambda c: scores(96.0, 0.5), id="all-equal-over-the-budget"),
])
def test_the_recommended_and_the_least_violating_are_on_the_frontier(
        evaluate: Callable[[Candidate], Scores]) -> None:
    """A load that never needs more than min_replicas scores every candidate alike: the
    trial recommended (or the least violating) must not be the one marked dominated."""
    frontier = search(KNOB, capacity=10, grid=[0.3, 0.6, 0.9], refine=0.05, budget=0.1,
                      evaluate=lambda batch: [Trial(c, evaluate(c)) for c in batch])

    chosen = frontier.recommended or frontier.least_violating
    assert any(trial is chosen for trial in frontier.efficient)


def test_a_target_over_the_limit_is_not_tried() -> None:
    knob = Knob("rps", 0, ("target",), (5.0,), ceiling=6.0)

    frontier = search(knob, capacity=10, grid=[0.2, 0.5, 0.8], refine=0, budget=0.1,
                      evaluate=Made(knee=1.0))

    assert frontier.skipped == [0.8]
    assert [t.candidate.values for t in frontier.trials] == [(2.0,), (5.0,)]


def test_threshold_bounds_keep_their_ratio() -> None:
    knob = Knob("rps", 0, ("scale_up_above", "scale_down_below"), (2400.0, 1200.0))

    assert knob.values_at(0.3, 2000 / 0.7) == (857.143, 428.571)


@pytest.mark.parametrize(("text", "expected"), [
    ("0.1:1.0:0.05", [round(0.1 + 0.05 * i, 2) for i in range(19)]),
    ("0.5,0.3,0.3", [0.3, 0.5]),
])
def test_the_grid(text: str, expected: list[float]) -> None:
    assert parse_grid(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["0.1:1.0", "0:1:0.1", "a,b", "0.5:0.1:0.1", "-1,0.5",
                                  "0.5,1.5", "0.5:1.5:0.5"])
def test_a_bad_grid_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        parse_grid(text)


def test_the_tuned_text_changes_only_the_value_and_adds_the_comment() -> None:
    text = tuned_text(TARGET, KNOB, (6.3,), "measured so\nand so")

    assert text == "# measured so\n# and so\n" + TARGET.replace("target: 7}", "target: 6.3}")


def test_a_value_behind_an_alias_is_written_again_without_comments() -> None:
    original = ("t: &t 7\nservice: web\nmax_replicas: 5\n"
                "metrics: [{name: r, query: q, target: *t}]\n")

    text = tuned_text(original, Knob("r", 0, ("target",), (7.0,)), (6.0,), "tuned")

    assert text.startswith("# tuned\n")
    assert yaml.safe_load(text)["metrics"][0]["target"] == 6.0
    assert yaml.safe_load(text)["t"] == 7


# -- the command, through the real replay -----------------------------------------------


def load(minute: int) -> float:
    """A swing, half again as much for 6 minutes in 40: from u 0.5 up some rises come
    faster than the replicas, at 0.9 / 1.5 = 0.6 all of them."""
    return (100 + 50 * math.sin(2 * math.pi * minute / 90)) * (1.5 if minute % 40 < 6 else 1)


def write_trace(path: Path, values: list[float]) -> Path:
    start = datetime(2026, 1, 1)
    rows = [f"{start + timedelta(minutes=i):%Y-%m-%d %H:%M:%S},{v:g}"
            for i, v in enumerate(values)]
    path.write_text("minute,requests\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write_trace(tmp_path / "t.csv", [load(m) for m in range(300)])


def tune(tmp_path: Path, trace: Path, policy: str, *extra: str) -> tuple[int, Path]:
    (tmp_path / "p.yaml").write_text(policy)
    out = tmp_path / "out"
    code = main(["tune", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--out", str(out), "--warmup", "1h", "--startup", "2m", "--jobs", "1", *extra])
    return code, out


def test_tune_recommends_the_cheapest_candidate_within_the_budget(
        tmp_path: Path, trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = tune(tmp_path, trace, TARGET, "--slo-budget", "1")

    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    record = summary["policies"][0]
    within = [c for c in record["candidates"] if c["slo_violation_pct"] <= 1]
    best = record["recommended"]
    assert best["slo_violation_pct"] <= 1
    assert best["replica_hours"] == min(c["replica_hours"] for c in within)
    assert any(c["slo_violation_pct"] > 1 for c in record["candidates"])
    for c in record["candidates"]:
        as_good = [o for o in record["candidates"] if o is not c
                   and o["replica_hours"] <= c["replica_hours"]
                   and o["slo_violation_pct"] <= c["slo_violation_pct"]]
        better = [o for o in as_good if (o["replica_hours"], o["slo_violation_pct"])
                  != (c["replica_hours"], c["slo_violation_pct"])]
        assert not better if c["on_frontier"] else as_good
    assert summary["settings"]["capacity"] == pytest.approx(10)
    assert summary["settings"]["capacity_source"] == "assumed"
    written = (out / "p.yaml").read_text()
    assert written.startswith("# Tuned by `autoscaler tune`: metrics[0] (rps) target 7 ->")
    assert written.endswith(TARGET.replace("target: 7}", f"target: {best['values']['target']:g}}}"))
    assert (out / "frontier.svg").exists() and "<svg" in (out / "report.html").read_text()
    printed = capsys.readouterr().out
    assert "capacity 10 per replica (assumed: the first policy target, 7, / 0.7" in printed
    marked = [line for line in printed.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and marked[0].endswith("recommended")
    assert f"recommended for p.yaml: u {best['utilisation']:.2f}" in printed

    # the search's answer against every utilisation from 0.1 to 1 in steps of 0.01
    policy = parse_policy(TARGET.encode(), "p.yaml")
    assert isinstance(policy, Policy)
    settings = BacktestSettings(capacity=10, startup=timedelta(minutes=2),
                                warmup=timedelta(hours=1))
    sweep = {}
    for step in range(10, 101):
        metric = policy.metrics[0].model_copy(update={"target": step / 10})
        run = replay(policy.model_copy(update={"metrics": [metric]}), "p.yaml",
                     load_csv(trace), settings)
        sweep[step / 100] = run.scores
    cheapest = min((u for u, s in sweep.items() if s.slo_violation_pct <= 1),
                   key=lambda u: sweep[u].replica_hours)
    assert abs(best["utilisation"] - cheapest) <= 0.05


def test_the_tuned_file_counts_the_candidates_within_the_budget_among_those_tried(
        tmp_path: Path, trace: Path) -> None:
    code, out = tune(tmp_path, trace, TARGET, "--grid", "0.2:1.0:0.2", "--refine", "0",
                     "--slo-budget", "1")

    assert code == 0
    candidates = json.loads((out / "summary.json").read_text())["policies"][0]["candidates"]
    within = sum(c["slo_violation_pct"] <= 1 for c in candidates)
    assert 0 < within < len(candidates)
    comment = " ".join(line.removeprefix("# ") for line in
                       (out / "p.yaml").read_text().splitlines() if line.startswith("# "))
    assert f"the cheapest of the {within} of {len(candidates)} candidates tried within the " \
        "budget." in comment


def test_with_no_candidate_within_the_budget_it_says_so_and_writes_no_policy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Spikes beyond max_replicas: every candidate violates."""
    spiky = write_trace(tmp_path / "t.csv", [5000 if m % 30 == 0 else 10 for m in range(240)])

    code, out = tune(tmp_path, spiky, TARGET, "--grid", "0.2:0.8:0.2", "--slo-budget", "0")

    assert code == 0
    printed = capsys.readouterr().out
    assert "no candidate of p.yaml meets the SLO budget of 0 % of steps in violation: nothing " \
        "recommended, no policy written. The least violating: u " in printed
    assert not (out / "p.yaml").exists()
    record = json.loads((out / "summary.json").read_text())["policies"][0]
    assert record["recommended"] is None
    assert record["least_violating"]["slo_violation_pct"] == min(
        c["slo_violation_pct"] for c in record["candidates"])
    assert "none meets the budget" in (out / "report.md").read_text()


def test_threshold_bounds_are_tuned_together(tmp_path: Path, trace: Path) -> None:
    code, out = tune(tmp_path, trace, THRESHOLD, "--capacity", "10", "--slo-budget", "1",
                     "--grid", "0.3:0.9:0.2", "--refine", "0.05")

    assert code == 0
    record = json.loads((out / "summary.json").read_text())["policies"][0]
    assert record["tuned_keys"] == ["scale_up_above", "scale_down_below"]
    for candidate in record["candidates"]:
        values = candidate["values"]
        assert values["scale_down_below"] == pytest.approx(values["scale_up_above"] / 3,
                                                           rel=1e-5)
    best = record["recommended"]
    metric = yaml.safe_load((out / "p.yaml").read_text())["metrics"][0]
    assert (metric["scale_up_above"], metric["scale_down_below"]) == (
        best["values"]["scale_up_above"], best["values"]["scale_down_below"])
    assert best["values"]["scale_up_above"] == pytest.approx(10 * best["utilisation"], rel=1e-5)


def test_the_backtest_the_tuned_file_names_gives_the_figures_tune_printed(
        tmp_path: Path) -> None:
    """Read with --fill, an assumed capacity of 2000 / 0.7 (2857.142857...) and a load at
    exactly 7 replicas' worth at the SLO line: the options written must be the ones used,
    to the last digit."""
    values = [16000.0] * 30 + [18000.0] * 40 + [16000.0] * 30
    trace = write_trace(tmp_path / "gap.csv", values)
    lines = trace.read_text().splitlines()
    trace.write_text("\n".join(lines[:50] + lines[51:]) + "\n")
    policy = "service: web\nmax_replicas: 60\nmetrics: [{name: rps, query: q, target: 2000}]\n"
    (tmp_path / "p.yaml").write_text(policy)
    out = tmp_path / "tuned"
    assert main(["tune", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--out", str(out), "--warmup", "10m", "--jobs", "1", "--fill", "previous",
                 "--grid", "0.6,0.7,0.8,0.9", "--refine", "0"]) == 0
    recommended = json.loads((out / "summary.json").read_text())["policies"][0]["recommended"]
    comment = " ".join(line.lstrip("# ") for line in (out / "p.yaml").read_text().splitlines()
                       if line.startswith("#"))
    options = comment.split("gives the same figures with ")[1].rstrip(".").split()

    assert "--fill" in options and str(2000 / 0.7) in options
    assert main(["backtest", "--trace", str(trace), "--policy", str(out / "p.yaml"),
                 "--out", str(tmp_path / "again"), *options]) == 0
    (again,) = json.loads((tmp_path / "again" / "summary.json").read_text())["policies"]
    assert again["replica_hours"] == pytest.approx(recommended["replica_hours"])
    assert again["slo_violation_pct"] == pytest.approx(recommended["slo_violation_pct"])


def test_progress_counts_the_candidates_on_stderr(
        tmp_path: Path, trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = tune(tmp_path, trace, TARGET, "--grid", "0.2,0.4,0.6", "--refine", "0.1")

    assert code == 0
    tried = len(json.loads((out / "summary.json").read_text())["policies"][0]["candidates"])
    lines = [line for line in capsys.readouterr().err.splitlines() if "candidates" in line]
    assert len(lines) == tried
    assert lines[0].startswith("  p.yaml: 1/4 candidates (")  # the given and the grid
    assert lines[-1].startswith(f"  p.yaml: {tried}/{tried} candidates (")
    assert "u 0.70: " in lines[0] and "replica-hours" in lines[0]


def test_a_predictive_policy_forecasts_once_for_all_its_candidates(
        tmp_path: Path, trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoscaler.predictive.book import ForecastBook

    calls: list[object] = []
    made: list[str | None] = []
    forecast_metric = ForecastBook.forecast_metric

    def counted(self: ForecastBook, *a: Any) -> Any:
        calls.append(a)
        found = forecast_metric(self, *a)
        made.append(found.reason)
        return found

    monkeypatch.setattr(ForecastBook, "forecast_metric", counted)
    predictive = TARGET + "strategy: predictive\npredictive: {startup: 2m, min_history: 1h}\n"

    code, out = tune(tmp_path, trace, predictive.replace("target: 7}", "target: 7, limit: 8}"),
                     "--grid", "0.3:0.9:0.3", "--refine", "0")

    assert code == 0
    record = json.loads((out / "summary.json").read_text())["policies"][0]
    assert record["not_tried_over_limit"] == [0.9]
    assert len(record["candidates"]) == 3  # 0.7 as given, 0.3, 0.6
    assert len(calls) == 300 - 60  # one forecast a scored step, for the first candidate only
    assert made.count(None) >= 100  # in use (trained), once the history is long enough


def test_worker_processes_give_the_same_frontier(tmp_path: Path, trace: Path) -> None:
    frontiers = []
    for jobs in ("1", "2"):
        code, out = tune(tmp_path, trace, TARGET, "--grid", "0.3:0.9:0.3", "--refine", "0.1",
                         "--slo-budget", "1", "--jobs", jobs)
        assert code == 0
        record = json.loads((out / "summary.json").read_text())["policies"][0]
        frontiers.append((record["candidates"], record["recommended"]["utilisation"]))
    assert frontiers[0] == frontiers[1]


def _marked(mark: str) -> list[int]:
    """The processes whose environment holds `mark`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


def test_sigterm_leaves_no_worker_behind(tmp_path: Path) -> None:
    """A tune stopped by SIGTERM (`timeout`, a CI job cancelled, `kill`) shuts its worker
    pool down: killed outright, its workers and their server waited forever for work."""
    trace = write_trace(tmp_path / "t.csv", [load(m) for m in range(3 * 1440)])
    (tmp_path / "p.yaml").write_text(TARGET)
    mark = f"AUTOSCALER_TEST_MARK={uuid.uuid4()}"
    name, value = mark.split("=")
    command = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "tune", "--trace", str(trace), "--policy",
         str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out"), "--warmup", "1d",
         "--grid", "0.1:1.0:0.01", "--jobs", "2"],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, name: value},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert command.stderr is not None
        for line in command.stderr:
            if " 3/" in line:  # the third candidate replayed: the workers are up
                break
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while _marked(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marked(mark) == []
    finally:
        command.kill()
        for pid in _marked(mark):
            os.kill(pid, signal.SIGKILL)


def _removed(path: Path) -> None:
    path.unlink()


def _a_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _edited(path: Path) -> None:
    path.write_text(TARGET.replace("# a comment that stays", "# edited meanwhile"))


@pytest.mark.parametrize("meanwhile", [
    pytest.param(_removed, id="removed"),
    pytest.param(_a_fifo, id="replaced-by-a-fifo"),
    pytest.param(_edited, id="edited"),
])
def test_the_tuned_policy_edits_the_text_the_search_began_with(
        tmp_path: Path, trace: Path, monkeypatch: pytest.MonkeyPatch,
        meanwhile: Callable[[Path], None]) -> None:
    """A search takes minutes: the policy file may change meanwhile, and it is not read
    again (gone, it was a traceback and the search lost; a FIFO, a wait for ever)."""
    searching = tune_command.search

    def search_while_the_file_changes(*args: Any, **kwargs: Any) -> Any:
        meanwhile(tmp_path / "p.yaml")
        return searching(*args, **kwargs)

    monkeypatch.setattr(tune_command, "search", search_while_the_file_changes)

    code, out = tune(tmp_path, trace, TARGET, "--grid", "0.3:0.9:0.3", "--slo-budget", "1")

    assert code == 0
    written = (out / "p.yaml").read_text()
    assert "# a comment that stays" in written and "edited meanwhile" not in written


def test_out_may_not_be_the_policies_own_folder(tmp_path: Path, trace: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(TARGET)

    code = main(["tune", "--trace", str(trace), "--policy", str(tmp_path / "p.yaml"),
                 "--out", str(tmp_path), "--warmup", "1h"])

    assert code == 2
    assert "would overwrite" in capsys.readouterr().err


def test_a_threshold_policy_alone_needs_a_capacity(tmp_path: Path, trace: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = tune(tmp_path, trace, THRESHOLD)

    assert code == 2
    assert "give --capacity" in capsys.readouterr().err


def test_what_reading_the_trace_warned_of_is_in_the_report_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace with a gap filled by --fill: the console's note is also in report.md and in
    summary.json, where the figures that depend on it are."""
    start = datetime(2026, 1, 1)
    rows = [f"{start + timedelta(minutes=m):%Y-%m-%d %H:%M:%S},{load(m):g}"
            for m in range(300) if m != 150]
    trace = tmp_path / "gap.csv"
    trace.write_text("minute,requests\n" + "\n".join(rows) + "\n")

    code, out = tune(tmp_path, trace, TARGET, "--fill", "previous")

    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    notes = summary["settings"]["trace_notes"] + summary["settings"]["trace_warnings"]
    assert notes, "nothing said of the filled gap"
    markdown = (out / "report.md").read_text()
    assert all(note in markdown for note in notes)
    printed = capsys.readouterr().err
    assert all(note in printed for note in notes)
