"""The backtest report decides: the verdict (the cheapest policy within the SLO budget, the
others against it, warnings), the metric table with the best of each row marked and each row
defined, the worst hour centred on its shortfall, the actions in two tables, --slo-budget."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.core.model import Decision, Reason
from autoscaler.offline.commands import print_table, print_verdict
from autoscaler.offline.replay import PolicyRun
from autoscaler.offline.reports import backtest as report
from autoscaler.offline.reports.document import (
    Callout,
    Document,
    Section,
    Table,
    cell_text,
    to_html,
    to_markdown,
)
from autoscaler.offline.scoring import ForecastQuality, Scores
from tests.unit.conftest import build_policy
from tests.unit.test_offline_commands import TARGET, THRESHOLD, write_trace

START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
STEPS = 18720
"""The demo's scored steps: 0.005 % of them is one step, 0.134 % 25."""


def policy_run(file: str, strategy: str, replica_hours: float, violation_pct: float, *,
               actions_per_hour: float = 1.0, mase: float | None = None,
               steps: int = STEPS, under_pct: float | None = None) -> PolicyRun:
    """A run with the given scores; the series are flat (the verdict reads the scores)."""
    keys: dict[str, object] = {"strategy": strategy}
    if strategy == "threshold":
        keys["metrics"] = [{"name": "rps", "query": "q", "scale_up_above": 9,
                            "scale_down_below": 3}]
    scores = Scores(
        replica_hours=replica_hours, oracle_replica_hours=3236.633,
        slo_violation_pct=violation_pct,
        under_provisioned_time_pct=violation_pct if under_pct is None else under_pct,
        over_provisioned_time_pct=98.0, under_provisioning_accuracy=0.001,
        over_provisioning_accuracy=30.0, instability_pct=31.0,
        scaling_actions_per_hour=actions_per_hour)
    return PolicyRun(
        file=file, policy=build_policy(**keys), metric="rps",
        times=[START + i * MINUTE for i in range(steps)], load=[1.0] * steps,
        demand=[1] * steps, supply=[1] * steps, billed=[1] * steps, changes=[], reasons={},
        scores=scores,
        forecast=ForecastQuality(3.9, mase, 100) if strategy == "predictive" else None)


def demo_like() -> list[PolicyRun]:
    return [policy_run("demo/threshold.yaml", "threshold", 4878.0, 0.134, actions_per_hour=1.09),
            policy_run("demo/target.yaml", "target", 4155.083, 0.005, actions_per_hour=2.25),
            policy_run("demo/predictive.yaml", "predictive", 4346.75, 0.0,
                       actions_per_hour=6.946, mase=0.1)]


def test_the_verdict_names_the_cheapest_policy_within_the_budget_and_prices_the_others() -> None:
    verdict = report.verdict(demo_like(), 0.1)

    assert verdict.chosen == "target.yaml"
    assert verdict.within == ("target.yaml", "predictive.yaml")
    assert report.plain(verdict.lead) == (
        "target.yaml (target) is the cheapest policy within the SLO budget (at most 0.1 % of "
        "the scored steps in SLO violation): 4,155 replica-hours, 1.28 x the oracle's 3,237, "
        "with 0.005 % of steps in SLO violation (1 step).")
    assert [report.plain(p) for p in verdict.points] == [
        "predictive.yaml (predictive): +4.6 % replica-hours (4,347) for no step in SLO "
        "violation, against target.yaml's 0.005 % (1 step); within the budget too",
        "threshold.yaml (threshold): 0.134 % of steps in SLO violation (25 steps), over the "
        "budget; +17.4 % replica-hours (4,878)",
    ]


def test_a_tighter_budget_chooses_the_dearer_policy_and_says_what_the_cheaper_risks() -> None:
    verdict = report.verdict(demo_like(), 0.0)

    assert verdict.chosen == "predictive.yaml"
    assert report.plain(verdict.points[0]) == (
        "target.yaml (target): -4.4 % replica-hours (4,155), but 0.005 % of steps in SLO "
        "violation (1 step), over the budget")


def test_when_no_policy_is_within_the_budget_the_verdict_says_so() -> None:
    runs = [policy_run("a.yaml", "target", 100.0, 3.0), policy_run("b.yaml", "target", 150.0, 2.0)]

    verdict = report.verdict(runs, 0.1)

    assert verdict.chosen is None and verdict.within == ()
    assert report.plain(verdict.lead).startswith(
        "No policy is within the SLO budget (at most 0.1 % of the scored steps in SLO "
        "violation). The fewest violations: b.yaml (target), 2 % of steps in SLO violation "
        "(374 steps), 150 replica-hours.")
    assert report.plain(verdict.points[0]) == (
        "a.yaml (target): -33.3 % replica-hours (100), but 3 % of steps in SLO violation "
        "(562 steps), over the budget")


def test_of_equal_cost_the_fewer_violations_win() -> None:
    runs = [policy_run("a.yaml", "target", 100.0, 0.05), policy_run("b.yaml", "target", 100.0, 0.0)]

    verdict = report.verdict(runs, 0.1)

    assert verdict.chosen == "b.yaml"
    assert report.plain(verdict.points[0]).startswith("a.yaml (target): the same replica-hours")


def test_warnings_a_naive_forecast_a_thrashing_policy_and_needless_raises() -> None:
    runs = demo_like()
    runs[2] = policy_run("demo/predictive.yaml", "predictive", 4346.75, 0.0,
                         actions_per_hour=6.946, mase=1.2)

    verdict = report.verdict(runs, 0.1, needless=[None, 0.0, 2.5])
    warnings = [report.plain(w) for w in verdict.warnings]

    assert warnings == [
        "predictive.yaml: its forecast is no better than the naive one (MASE 1.20 >= 1: "
        "repeating yesterday's value at the same time errs as little); the forecast buys "
        "nothing here",
        "predictive.yaml may thrash: 6.95 scaling actions an hour, 4.2 x the others' median "
        "(1.67); each starts or stops tasks (a longer scale-down stabilization or a wider "
        "tolerance makes fewer)",
        "predictive.yaml: 2.5 needless raises a day (raises well above what the load that "
        "followed needed)",
    ]


def test_a_few_actions_on_a_short_trace_are_no_thrashing() -> None:
    """One action in 18 minutes is 3.33 an hour, above twice the others' none."""
    runs = [policy_run("a.yaml", "target", 10.0, 0.0, actions_per_hour=3.33, steps=18),
            policy_run("b.yaml", "target", 10.0, 0.0, actions_per_hour=0.0, steps=18)]

    assert report.verdict(runs, 0.1).warnings == ()


def test_a_policy_held_at_its_max_replicas_most_of_the_time_is_warned_of() -> None:
    held = policy_run("a.yaml", "target", 100.0, 100.0)
    held = PolicyRun(**{**held.__dict__, "reasons": {"TooManyReplicas": 60,
                                                     "WithinTolerance": 40}})
    now_and_then = PolicyRun(**{**held.__dict__, "reasons": {"TooManyReplicas": 40,
                                                             "WithinTolerance": 60}})

    (warning,) = report.verdict([held]).warnings
    assert report.plain(warning).startswith(
        "a.yaml was held at its max_replicas in 60 % of its decisions (TooManyReplicas)")
    assert "unit of the policy's target" in warning
    assert report.verdict([now_and_then]).warnings == ()


def test_no_thrash_warning_below_one_action_an_hour_or_within_twice_the_others() -> None:
    slow = [policy_run("a.yaml", "target", 1.0, 0.0, actions_per_hour=0.1),
            policy_run("b.yaml", "target", 1.0, 0.0, actions_per_hour=0.9)]
    close = [policy_run("a.yaml", "target", 1.0, 0.0, actions_per_hour=2.0),
             policy_run("b.yaml", "target", 1.0, 0.0, actions_per_hour=3.9)]

    assert report.verdict(slow).warnings == ()
    assert report.verdict(close).warnings == ()
    assert report.verdict([slow[1]]).warnings == ()


def test_the_table_marks_the_lowest_of_each_row_but_not_the_oracle_nor_a_tie_of_all() -> None:
    table = report.comparison_table(demo_like())
    rows = {row[0]: index for index, row in enumerate(table.rows)}

    def marked(label: str) -> list[int]:
        return sorted(column for row, column in table.marked if row == rows[label])

    assert marked("replica-hours") == [2]
    assert marked("SLO violation %") == [3]
    assert marked("scaling actions / hour") == [1]
    assert marked("oracle replica-hours") == []
    assert marked("over-provisioned time %") == []  # all 98
    assert marked("forecast MASE") == []  # one value only


def test_every_row_of_the_table_says_in_one_line_what_it_means() -> None:
    runs = demo_like()
    runs[1] = policy_run("demo/target.yaml", "target", 4155.083, 0.005, under_pct=0.01)

    table = report.comparison_table(runs)

    assert len(table.notes) == len(table.rows)
    for row, note in zip(table.rows, table.notes, strict=True):
        assert note and "\n" not in note, row[0]
    assert "under-provisioned time %" in [row[0] for row in table.rows]


def test_an_under_provisioned_row_equal_to_the_slo_row_is_folded_into_it() -> None:
    table = report.comparison_table(demo_like())
    labels = [row[0] for row in table.rows]

    assert "under-provisioned time %" not in labels
    note = table.notes[labels.index("SLO violation %")]
    assert "under-provisioned time %" in note and "equal here" in note
    assert "near 100 % for any headroom" in table.notes[labels.index("over-provisioned time %")]


def test_the_console_stars_the_best_and_defines_the_rows_after_the_verdict() -> None:
    runs = demo_like()
    out = io.StringIO()

    print_verdict(report.verdict(runs), out)
    print_table(report.comparison_table(runs), out)

    text = out.getvalue()
    assert text.startswith("Verdict: target.yaml (target) is the cheapest policy")
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    assert all(not line.startswith("metric") for line in lines[:header])
    hours = next(line for line in lines if line.startswith("replica-hours "))
    assert hours.split() == ["replica-hours", "4,878", "4,155.083*", "4,346.75"]
    assert "* the best of its row (the lowest)" in lines
    assert any(line.startswith("  replica-hours: the cost") for line in lines)


def test_markdown_and_html_show_the_marks_the_notes_and_the_verdict_first(tmp_path: Path) -> None:
    runs = demo_like()
    verdict = report.verdict(runs)
    document = Document("Backtest", ["intro"], [Section("Side by side",
                                                       [report.comparison_table(runs)])],
                        [Callout(verdict.lead, verdict.points, verdict.warnings, "Verdict")])
    markdown = to_markdown(document, tmp_path)
    html = to_html(document)

    assert markdown.index("> **Verdict** **`target.yaml` (target)**") < markdown.index("intro")
    assert "| replica-hours | 4,878 | **4,155.083** | 4,346.75 | the cost:" in markdown
    assert "<section class='callout'><h2>Verdict</h2>" in html
    assert "<td class='num marked'>4,155.083</td>" in html
    assert html.index("callout") < html.index("<table>")


def test_a_table_without_marks_or_notes_renders_as_before(tmp_path: Path) -> None:
    table = Table(["a", "b"], [["x", 1.5]])
    document = Document("T", [], [Section("S", [table])])

    assert "| a | b |\n|---|---|\n| x | 1.5 |" in to_markdown(document, tmp_path)
    assert "<tr><th>a</th><th class='num'>b</th></tr><tr><td>x</td><td class='num'>1.5</td>" \
        in to_html(document)


def shortfall_run(short: dict[int, int], steps: int = 300) -> PolicyRun:
    """A run whose ready replicas are `short[i]` below the demand of 10 at step i."""
    run = policy_run("p.yaml", "target", 1.0, 0.0, steps=steps)
    supply = [10 - short.get(i, 0) for i in range(steps)]
    return PolicyRun(**{**run.__dict__, "demand": [10] * steps, "supply": supply,
                        "billed": supply})


def test_the_worst_hour_is_centred_on_its_shortfall_and_shows_the_recovery() -> None:
    """The hour with the largest summed shortfall ends at the shortfall's last step (the
    sliding window finds it first); the chart is centred on the shortfall instead."""
    run = shortfall_run({150: 1, 151: 3, 152: 2})

    worst = report.worst_hour(run, MINUTE)

    assert worst is not None
    assert worst.hour == (93, 153)
    assert (worst.short_first, worst.short_last, worst.peak, worst.recovered) == (150, 152, 151,
                                                                                   153)
    first, last = worst.shown
    assert last - first >= 60
    assert first < 150 and last > 153 + 10
    assert abs((first + last) / 2 - 151.5) <= 1


def test_the_worst_hour_centres_on_its_worst_episode_not_the_span_of_all() -> None:
    run = shortfall_run({100: 1, 120: 5, 121: 5, 155: 1})

    worst = report.worst_hour(run, MINUTE)

    assert worst is not None
    assert (worst.short_steps, worst.episodes) == (4, 3)
    assert (worst.short_first, worst.short_last, worst.recovered) == (120, 121, 122)
    assert abs(sum(worst.shown) / 2 - 121) <= 1


def test_the_worst_hour_at_the_end_of_the_trace_keeps_its_width() -> None:
    run = shortfall_run({298: 2, 299: 2})

    worst = report.worst_hour(run, MINUTE)

    assert worst is not None and worst.recovered is None
    assert worst.shown == (300 - 60, 300)


def change(at: int, before: int, after: int) -> Decision:
    return Decision(service="web", strategy="target", time=START + at * MINUTE,
                    reason=Reason.DESIRED_WITHIN_RANGE, message=f"-> {after}", metrics={},
                    policy_file="p.yaml", dry_run=True, current_replicas=before,
                    desired_replicas=after, applied=True)


def test_the_actions_are_two_tables_the_worst_hour_then_the_largest_each_in_time_order() -> None:
    run = shortfall_run({150: 1, 151: 3, 152: 2})
    changes = [change(i * 5, 10, 11 if i % 7 else 20) for i in range(60)]
    run = PolicyRun(**{**run.__dict__, "changes": changes})

    worst = report.worst_hour(run, MINUTE)
    blocks = report._changes_blocks(run, worst, MINUTE)

    texts = [b for b in blocks if isinstance(b, str)]
    tables = [b for b in blocks if isinstance(b, Table)]
    assert worst is not None
    drawn_to = f"{START + worst.shown[1] * MINUTE:%H:%M}"  # as the chart's title says
    assert texts[0].startswith("**The worst hour**: the scaling actions from 2026-01-01 ")
    assert f" to {drawn_to} (the chart above)" in texts[0]
    assert texts[1].startswith("**The largest actions**: the ")
    worst_times = [str(row[0]) for row in tables[0].rows]
    largest_times = [str(row[0]) for row in tables[1].rows]
    assert worst_times == sorted(worst_times) and largest_times == sorted(largest_times)
    assert not set(worst_times) & set(largest_times)
    assert len(worst_times) + len(largest_times) == report.SHOWN_CHANGES
    assert sum(row[2] == 20 for row in tables[1].rows) == 7  # the 9 large, less 2 in the hour


def test_a_short_run_lists_every_action_in_one_table() -> None:
    run = PolicyRun(**{**shortfall_run({}).__dict__, "changes": [change(5, 2, 3)]})

    blocks = report._changes_blocks(run, None, MINUTE)

    assert blocks[0] == "Every scaling action, in time order:"
    assert isinstance(blocks[1], Table) and len(blocks[1].rows) == 1


def test_backtest_slo_budget_sets_the_verdict_and_comes_first_on_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "t.csv", [10, 20, 80, 80, 80, 20, 10, 10] * 40)
    (tmp_path / "target.yaml").write_text(TARGET)
    (tmp_path / "threshold.yaml").write_text(THRESHOLD)
    out = tmp_path / "out"

    code = main(["backtest", "--trace", str(trace), "--policy", str(tmp_path / "target.yaml"),
                 "--policy", str(tmp_path / "threshold.yaml"), "--out", str(out),
                 "--warmup", "1h", "--startup", "2m", "--slo-budget", "100"])

    assert code == 0
    verdict = json.loads((out / "summary.json").read_text())["verdict"]
    assert verdict["slo_budget_pct"] == 100
    assert verdict["within_budget"] == ["target.yaml", "threshold.yaml"]
    assert verdict["chosen"] in verdict["within_budget"]
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"Verdict: {verdict['chosen']} (")
    assert stdout.index("Verdict:") < stdout.index("\nmetric ") < stdout.index("report: ")
    html = (out / "report.html").read_text()
    assert html.index("Verdict") < html.index("Side by side")


@pytest.mark.parametrize("budget", ["-1", "101", "lots"])
def test_a_bad_slo_budget_exits_2(tmp_path: Path, budget: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path), "--slo-budget", budget])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(("value", "shown"), [
    (0.0004, "0.0004"), (0.00004, "0.00004"), (0.000412345, "0.000412"), (0.0, "0"),
    (0.001, "0.001"), (0.1234567, "0.123"), (1234.5, "1,234.5"), (25.0, "25"),
])
def test_a_cell_never_shows_a_small_value_as_0(value: float, shown: str) -> None:
    """One step in violation in 250,000 is 0.0004 %: over a budget of 0, and not none."""
    assert cell_text(value) == shown
