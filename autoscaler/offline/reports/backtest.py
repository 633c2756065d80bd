"""The backtest's report: first a verdict (the cheapest policy within the SLO budget, what
each other one costs or risks beside it, warnings), then the metric table side by side (the
best of each row marked, each row defined), then per policy the load and the replicas over
time on one replica scale, the worst hour of under-provisioning centred on its shortfall,
and the decisions that shaped the curve; and the per-step CSV of each policy
(`--steps-csv`)."""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from autoscaler.core.durations import format_duration
from autoscaler.core.model import Decision, Reason
from autoscaler.offline.replay import (
    DEFAULT_UTILISATION_OF_TARGET,
    BacktestSettings,
    PolicyRun,
    ready_after,
    startup_set_by,
    startup_steps,
)
from autoscaler.offline.reports.charts import SupplySeries, supply_chart
from autoscaler.offline.reports.document import (
    ROUNDED_TO_ZERO,
    Block,
    Callout,
    Chart,
    Document,
    Section,
    Table,
    cell_text,
)
from autoscaler.offline.scoring import needless_raises_per_day
from autoscaler.offline.traces import Trace

METRICS = (
    ("replica_hours", "replica-hours"),
    ("oracle_replica_hours", "oracle replica-hours"),
    ("slo_violation_pct", "SLO violation %"),
    ("under_provisioned_time_pct", "under-provisioned time %"),
    ("over_provisioned_time_pct", "over-provisioned time %"),
    ("under_provisioning_accuracy", "under-provisioning accuracy"),
    ("over_provisioning_accuracy", "over-provisioning accuracy"),
    ("instability_pct", "instability %"),
    ("scaling_actions_per_hour", "scaling actions / hour"),
)
SHOWN_CHANGES = 40


def capacity_origin(settings: BacktestSettings, *, given: bool) -> str:
    """Where the capacity came from, as the console and the report say it."""
    if given:
        return "given by --capacity"
    target = settings.capacity * DEFAULT_UTILISATION_OF_TARGET
    return (f"assumed: the first policy target, {target:g}, / {DEFAULT_UTILISATION_OF_TARGET:g}, "
            "as no --capacity was given")


def summary(runs: list[PolicyRun], settings: BacktestSettings, trace: Trace, *,
            capacity_given: bool) -> dict[str, Any]:
    """summary.json: the run's settings and one record per policy."""
    return {
        "settings": {
            "trace": trace.source,
            "trace_step_seconds": trace.step.total_seconds(),
            "trace_steps": len(trace),
            "trace_notes": list(trace.notes),
            "trace_warnings": list(trace.warnings),
            "scored_steps": len(runs[0].load) if runs else 0,
            "scored_from": runs[0].times[0].isoformat() if runs else None,
            "capacity": settings.capacity,
            "capacity_source": "--capacity" if capacity_given else "assumed",
            "slo_utilisation": settings.slo_utilisation,
            "startup_seconds": settings.startup.total_seconds(),
            "ready_after_seconds": ready_after(settings, trace).total_seconds(),
            "warmup_seconds": settings.warmup.total_seconds(),
            "metric": settings.metric,
        },
        "policies": [
            {
                "file": run.file, "service": run.policy.service,
                "strategy": run.policy.strategy, "metric": run.metric,
                **asdict(run.scores),
                "scaling_actions": len(run.changes),
                "needless_raises_per_day": needless_per_day(run, runs, settings),
                "decisions_by_reason": run.reasons,
                **_forecast_record(run),
            }
            for run in runs
        ],
    }


def _forecast_record(run: PolicyRun) -> dict[str, Any]:
    if run.policy.strategy != "predictive":
        return {}
    quality = run.forecast
    return {
        "smape_pct": quality.smape_pct if quality else None,
        "mase": quality.mase if quality else None,
        "forecasts_scored": quality.forecasts_scored if quality else 0,
        "fallbacks_by_reason": run.fallbacks,
        "trainings": len(run.training_seconds),
        "training_seconds_max": max(run.training_seconds, default=None),
    }


def labels(runs: list[PolicyRun]) -> list[str]:
    """Each run's file name, or its whole path where two runs share a name."""
    names = [Path(run.file).name for run in runs]
    return [name if names.count(name) == 1 else run.file for name, run in zip(names, runs,
                                                                              strict=True)]


def metric_table(runs: list[PolicyRun], settings: BacktestSettings | None = None) -> Table:
    header = ["metric", *(f"{label} ({run.policy.strategy})"
                          for label, run in zip(labels(runs), runs, strict=True))]
    rows = [[label, *(_rounded(getattr(run.scores, key)) for run in runs)]
            for key, label in METRICS]
    rows.append(["needless raises / day",
                 *(_rounded(needless_per_day(run, runs, settings)) for run in runs)])
    if any(run.forecast is not None for run in runs):
        for key, label in (("smape_pct", "forecast sMAPE %"), ("mase", "forecast MASE")):
            rows.append([label, *(_rounded(getattr(run.forecast, key, None)) for run in runs)])
    return Table(header, rows)


def needless_per_day(run: PolicyRun, runs: list[PolicyRun],
                     settings: BacktestSettings | None) -> float | None:
    """The run's raises to more than 1.5 x what the largest load of the following horizon
    needs at its metric's target (and, for a predictive run beside a `target` one, above
    that run's count), a simulated day (`scoring.needless_raises`). The horizon: the
    predictive one, the start-up plus a step; None without a target."""
    metric = next((m for m in run.policy.metrics if m.name == run.metric), None)
    if metric is None or not metric.target or len(run.times) < 2:
        return None
    step = run.times[1] - run.times[0]
    startup = startup_set_by(run.policy) or (settings.startup if settings is not None
                                             else run.policy.predictive.startup)
    horizon = run.policy.predictive.horizon if run.policy.strategy == "predictive" \
        and run.policy.predictive.horizon is not None else startup + step
    reference = next((other.billed for other in runs if other.policy.strategy == "target"
                      and len(other.billed) == len(run.billed)), None) \
        if run.policy.strategy == "predictive" else None
    return needless_raises_per_day(
        run.billed, run.load, target=metric.target,
        horizon=max(1, startup_steps(horizon, step)), step_hours=step.total_seconds() / 3600,
        reference=reference)


def _rounded(value: float | None) -> float | str:
    """Three decimals, or three significant digits where three decimals would make it 0 (a
    violation in 250,000 steps is not none)."""
    if value is None:
        return ""
    return float(f"{value:.3g}") if value and abs(value) < ROUNDED_TO_ZERO else round(value, 3)


# -- the verdict -----------------------------------------------------------------------------

DEFAULT_SLO_BUDGET = 0.1
"""The most SLO violation a policy may have to be chosen, in % of the scored steps
(`--slo-budget`)."""
THRASH_FACTOR = 2.0
THRASH_FLOOR = 1.0
THRASH_MIN_ACTIONS = 4
"""A policy thrashes when its scaling actions an hour are above THRASH_FACTOR x the median of
the other policies' and at least THRASH_FLOOR, in THRASH_MIN_ACTIONS actions at least (one
action on a short trace, as the first step down to max_replicas, is no pattern)."""
NEEDLESS_ROW = "needless raises / day"


@dataclass(frozen=True)
class Verdict:
    """What the report decides: `lead` names the cheapest policy within the budget (or says
    none is), `points` what each other policy costs or risks beside it, `warnings` what
    the numbers hide. Markdown-flavoured text (**bold**, `code`); `plain` strips it."""

    budget: float
    chosen: str | None
    """The label of the cheapest policy within the budget; None when none is."""
    within: tuple[str, ...]
    lead: str
    points: tuple[str, ...]
    warnings: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """For summary.json."""
        return {"slo_budget_pct": self.budget, "chosen": self.chosen,
                "within_budget": list(self.within), "lead": plain(self.lead),
                "points": [plain(p) for p in self.points],
                "warnings": [plain(w) for w in self.warnings]}


def plain(text: str) -> str:
    """Report text for the console: without Markdown's ** and backticks."""
    return text.replace("**", "").replace("`", "")


def _pct(value: float) -> str:
    return cell_text(_rounded(value)) if value else "0"


def _steps(run: PolicyRun) -> str:
    steps = round(run.scores.slo_violation_pct * len(run.load) / 100)
    return f"{steps:,} step{'s' if steps != 1 else ''}"


def _violations(run: PolicyRun) -> str:
    """`0.134 % of steps in SLO violation (25 steps)`, or `no step in SLO violation`."""
    if not round(run.scores.slo_violation_pct * len(run.load) / 100):
        return "no step in SLO violation"
    return f"{_pct(run.scores.slo_violation_pct)} % of steps in SLO violation ({_steps(run)})"


def _cost_against(run: PolicyRun, base: PolicyRun) -> str:
    """`+4.6 % replica-hours (4,347)` against `base`."""
    cost, base_cost = run.scores.replica_hours, base.scores.replica_hours
    if not base_cost:
        return f"{_rh(cost)} replica-hours"
    change = 100 * (cost / base_cost - 1)
    if abs(change) < 0.05:
        return f"the same replica-hours ({_rh(cost)})"
    return f"{change:+.1f} % replica-hours ({_rh(cost)})"


def _within(run: PolicyRun, budget: float) -> bool:
    return run.scores.slo_violation_pct <= budget + 1e-9


def _point(label: str, run: PolicyRun, base_label: str, base: PolicyRun, budget: float) -> str:
    """What `run` costs or risks beside the chosen (or least violating) `base`."""
    name = f"`{label}` ({run.policy.strategy})"
    cost = _cost_against(run, base)
    fewer = run.scores.slo_violation_pct < base.scores.slo_violation_pct
    if not _within(run, budget):
        over = f"{_violations(run)}, over the budget"
        return (f"{name}: {over}; {cost}" if run.scores.replica_hours >= base.scores.replica_hours
                else f"{name}: {cost}, but {over}")
    if fewer:
        against = (f"`{base_label}`'s {_pct(base.scores.slo_violation_pct)} % "
                   f"({_steps(base)})")
        return (f"{name}: {cost} for {_violations(run)}, against {against}; within the "
                "budget too")
    return f"{name}: {cost}, and no fewer violations ({_violations(run)})"


def verdict(runs: Sequence[PolicyRun], budget: float = DEFAULT_SLO_BUDGET, *,
            needless: Sequence[float | None] | None = None) -> Verdict:
    """The cheapest policy with at most `budget` % of its scored steps in SLO violation (of
    equal cost, the fewer violations, then the first), and each other policy against it;
    when none is within the budget, each against the least violating. `needless`: the
    needless raises a day of each run, where the table has them."""
    names = labels(list(runs))
    within = [i for i, run in enumerate(runs) if _within(run, budget)]
    budget_text = f"at most {budget:g} % of the scored steps in SLO violation"
    if within:
        best = min(within, key=lambda i: (runs[i].scores.replica_hours,
                                          runs[i].scores.slo_violation_pct, i))
        run = runs[best]
        oracle = run.scores.oracle_replica_hours
        lead = (f"**`{names[best]}` ({run.policy.strategy})** is "
                f"{'the cheapest policy' if len(runs) > 1 else 'the policy'} within the SLO "
                f"budget ({budget_text}): {_rh(run.scores.replica_hours)} replica-hours"
                + (f", {run.scores.replica_hours / oracle:.2f} x the oracle's {_rh(oracle)}"
                   if oracle else "") + f", with {_violations(run)}.")
    else:
        best = min(range(len(runs)), key=lambda i: (runs[i].scores.slo_violation_pct,
                                                     runs[i].scores.replica_hours, i))
        run = runs[best]
        lead = (f"**No policy is within the SLO budget** ({budget_text}). The fewest "
                f"violations: `{names[best]}` ({run.policy.strategy}), {_violations(run)}, "
                f"{_rh(run.scores.replica_hours)} replica-hours. Give the policies more "
                "headroom (a lower target) or accept a larger budget (`--slo-budget`).")
    others = sorted((i for i in range(len(runs)) if i != best),
                    key=lambda i: (not _within(runs[i], budget), runs[i].scores.replica_hours))
    points = tuple(_point(names[i], runs[i], names[best], run, budget) for i in others)
    return Verdict(budget, names[best] if within else None, tuple(names[i] for i in within),
                   lead, points, tuple(_warnings(runs, names, needless)))


def _rh(replica_hours: float) -> str:
    """Replica-hours as the verdict writes them: whole above 100, else three significant
    digits (a short trace's 0.9 replica-hours are not 1, nor 0)."""
    if replica_hours >= 100 or not replica_hours:
        return f"{replica_hours:,.0f}"
    return f"{replica_hours:.3g}"


def _hours(run: PolicyRun) -> float:
    """The scored hours of a run."""
    if len(run.times) < 2:
        return 0.0
    return len(run.times) * (run.times[1] - run.times[0]).total_seconds() / 3600


AT_MAX_SHARE = 0.5
"""A policy held at its max_replicas in this share of its decisions or more is warned of:
its figures say more about the bound (or a trace in another unit) than about the policy."""


def _warnings(runs: Sequence[PolicyRun], names: Sequence[str],
              needless: Sequence[float | None] | None) -> list[str]:
    found = []
    for name, run in zip(names, runs, strict=True):
        mase = run.forecast.mase if run.forecast is not None else None
        if mase is not None and mase >= 1:
            found.append(f"`{name}`: its forecast is no better than the naive one (MASE "
                         f"{mase:.2f} >= 1: repeating yesterday's value at the same time errs "
                         "as little); the forecast buys nothing here")
    for index, (name, run) in enumerate(zip(names, runs, strict=True)):
        others = [r.scores.scaling_actions_per_hour for i, r in enumerate(runs) if i != index]
        rate = run.scores.scaling_actions_per_hour
        if not others:
            continue
        median = statistics.median(others)
        if rate >= THRASH_FLOOR and rate > THRASH_FACTOR * median \
                and rate * _hours(run) >= THRASH_MIN_ACTIONS - 1e-9:
            found.append(f"`{name}` may thrash: {rate:.2f} scaling actions an hour, "
                         + (f"{rate / median:.1f} x" if median else "far above")
                         + (" the others' " if len(others) > 1 else " the other's ")
                         + ("median " if len(others) > 1 else "") + f"({median:.2f}); each "
                         "starts or stops tasks (a longer scale-down stabilization or a wider "
                         "tolerance makes fewer)")
    for name, run in zip(names, runs, strict=True):
        decided = sum(run.reasons.values())
        capped = run.reasons.get(str(Reason.TOO_MANY_REPLICAS), 0)
        if decided and capped / decided >= AT_MAX_SHARE:
            found.append(f"`{name}` was held at its max_replicas in {100 * capped / decided:.0f} "
                         "% of its decisions (TooManyReplicas): the load asked for more. Raise "
                         "max_replicas, or check that the trace counts the load in the unit of "
                         "the policy's target (per second, per minute)")
    for name, value in zip(names, needless or (), strict=False):
        if value is not None and value > 0:
            found.append(f"`{name}`: {value:g} needless raises a day (raises well above what "
                         "the load that followed needed)")
    return found


# -- the metric table: the best of each row marked, each row defined -----------------------

LOWER_IS_BETTER = "lower"
ROW_NOTES: dict[str, tuple[str, str | None]] = {
    "replica-hours": ("the cost: replicas billed (ready or starting) x hours", LOWER_IS_BETTER),
    "oracle replica-hours": ("the floor: the fewest replicas meeting the SLO at each step, "
                             "started instantly, never under the policy's min_replicas; "
                             "the same for policies with the same min_replicas", None),
    "SLO violation %": ("steps where the ready replicas could not carry the load within the "
                        "SLO", LOWER_IS_BETTER),
    "under-provisioned time %": ("steps with fewer ready replicas than the oracle demand: the "
                                 "SLO violations and steps below min_replicas",
                                 LOWER_IS_BETTER),
    "over-provisioned time %": ("steps with more ready replicas than needed: near 100 % for "
                                "any headroom (1 spare replica counts as 50)",
                                LOWER_IS_BETTER),
    "under-provisioning accuracy": ("the mean shortfall, in % of the oracle demand",
                                    LOWER_IS_BETTER),
    "over-provisioning accuracy": ("the mean excess, in % of the oracle demand: what headroom "
                                   "costs", LOWER_IS_BETTER),
    "instability %": ("steps where the ready replicas and the demand did not move alike",
                      LOWER_IS_BETTER),
    "scaling actions / hour": ("changes of the count an hour, whatever their size",
                               LOWER_IS_BETTER),
    NEEDLESS_ROW: ("raises far above what the load that followed needed, a day",
                   LOWER_IS_BETTER),
    "forecast sMAPE %": ("predictive: the forecast's mean symmetric error, 0 to 200 %",
                         LOWER_IS_BETTER),
    "forecast MASE": ("predictive: the forecast's error over repeating yesterday's; below 1 "
                      "beats it", LOWER_IS_BETTER),
}
"""Each row of the metric table: one line saying what it means (from docs/backtest.md),
and whether its lowest value is the best (None: no best, as the oracle's)."""
MERGED_NOTE = ("; the under-provisioned time % (these and steps below min_replicas) is "
               "equal here, so not shown")


def _numeric(cell: object) -> float | None:
    if isinstance(cell, bool) or not isinstance(cell, int | float):
        return None
    return float(cell)


def _best_columns(row: Sequence[object]) -> list[int]:
    """The columns holding the lowest number of a row, when at least two numbers differ."""
    numbers = {column: value for column, cell in enumerate(row)
               if column and (value := _numeric(cell)) is not None}
    if len(numbers) < 2 or len(set(numbers.values())) < 2:
        return []
    lowest = min(numbers.values())
    return [column for column, value in numbers.items() if value == lowest]


def decorated(table: Table) -> Table:
    """The metric table with the best value of each row marked and each row's meaning as a
    last column; the under-provisioned time % row folded into the SLO violation % row where
    the two are equal for every policy."""
    rows = [list(row) for row in table.rows]
    by_label = {str(row[0]): row for row in rows}
    slo, under = by_label.get("SLO violation %"), by_label.get("under-provisioned time %")
    merged = slo is not None and under is not None and slo[1:] == under[1:]
    if merged:
        rows = [row for row in rows if row is not under]
    marked: set[tuple[int, int]] = set()
    notes: list[str] = []
    for index, row in enumerate(rows):
        note, better = ROW_NOTES.get(str(row[0]), ("", None))
        notes.append(note + (MERGED_NOTE if merged and row is slo else ""))
        if better == LOWER_IS_BETTER:
            marked.update((index, column) for column in _best_columns(row))
    return Table(table.header, rows, frozenset(marked), notes)


def row_values(table: Table, label: str) -> list[object] | None:
    """The cells after the label of the row named `label`, if the table has it."""
    return next((list(row[1:]) for row in table.rows if row[0] == label), None)


def comparison_table(runs: list[PolicyRun], settings: BacktestSettings | None = None) -> Table:
    """`metric_table`, `decorated`: what the report and the console show."""
    return decorated(metric_table(runs, settings))


def run_verdict(runs: list[PolicyRun], budget: float, table: Table) -> Verdict:
    """`verdict`, with the needless raises where `table` (the metric table) has them."""
    needless = row_values(table, NEEDLESS_ROW)
    return verdict(runs, budget, needless=None if needless is None
                   else [_numeric(value) for value in needless])


def _worst_hour(run: PolicyRun, step: timedelta) -> tuple[int, int] | None:
    """The hour (as [first, last) step indices) with the largest replica shortfall."""
    width = max(1, round(timedelta(hours=1) / step))
    shortfall = [max(d - s, 0) for d, s in zip(run.demand, run.supply, strict=True)]
    if not any(shortfall):
        return None
    window = sum(shortfall[:width])
    best, best_start = window, 0
    for start in range(1, len(shortfall) - width + 1):
        window += shortfall[start + width - 1] - shortfall[start - 1]
        if window > best:
            best, best_start = window, start
    return best_start, min(best_start + width, len(shortfall))


@dataclass(frozen=True)
class WorstHour:
    """The worst hour of under-provisioning and what the chart of it shows, as step
    indices of the scored steps."""

    hour: tuple[int, int]
    """[first, last) of the hour with the largest summed shortfall (`_worst_hour`)."""
    short_steps: int
    episodes: int
    """The under-provisioned steps in the hour, and the runs of consecutive ones they make."""
    short_first: int
    short_last: int
    """The first and last step of its worst episode: the run of consecutive under-provisioned
    steps in the hour with the largest summed shortfall (continued past the hour's ends)."""
    peak: int
    peak_shortfall: int
    recovered: int | None
    """The first step after the episode with the ready replicas meeting the demand."""
    shown: tuple[int, int]
    """[first, last) the chart shows: centred on the episode, with the recovery."""


def worst_hour(run: PolicyRun, step: timedelta) -> WorstHour | None:
    """The worst hour, its worst episode of under-provisioning and the window centred on
    that: at least an hour, and a quarter of an hour (at least a step) beyond either end of
    the episode; None when never under-provisioned."""
    hour = _worst_hour(run, step)
    if hour is None:
        return None
    shortfall = [max(d - s, 0) for d, s in zip(run.demand, run.supply, strict=True)]
    n = len(shortfall)
    episodes: list[tuple[int, int]] = []
    for index in range(*hour):
        if not shortfall[index]:
            continue
        if episodes and episodes[-1][1] == index - 1:
            episodes[-1] = (episodes[-1][0], index)
        else:
            episodes.append((index, index))
    first, last = max(episodes, key=lambda e: (sum(shortfall[e[0]:e[1] + 1]), -e[0]))
    while first > 0 and shortfall[first - 1]:
        first -= 1
    while last + 1 < n and shortfall[last + 1]:
        last += 1
    peak = max(range(first, last + 1), key=lambda i: (shortfall[i], -i))
    width = max(1, round(timedelta(hours=1) / step))
    margin = max(1, round(timedelta(minutes=15) / step))
    half = max(width // 2, (last - first + 1) // 2 + margin + 1)
    centre = (first + last + 1) // 2
    start, end = centre - half, centre + half
    if start < 0:
        start, end = 0, min(n, end - start)
    if end > n:
        start, end = max(0, start - (end - n)), n
    return WorstHour(hour, sum(1 for i in range(*hour) if shortfall[i]), len(episodes),
                     first, last, peak, shortfall[peak],
                     last + 1 if last + 1 < n else None, (start, end))


def _series(run: PolicyRun, settings: BacktestSettings, first: int, last: int) -> SupplySeries:
    per_replica = settings.capacity * settings.slo_utilisation
    return SupplySeries(
        times=run.times[first:last], load=[x / per_replica for x in run.load[first:last]],
        ready=run.supply[first:last], billed=run.billed[first:last],
        short=[s < d for d, s in zip(run.demand[first:last], run.supply[first:last],
                                     strict=True)])


def _top(runs: Sequence[PolicyRun], settings: BacktestSettings,
         windows: Sequence[tuple[int, int]]) -> float:
    """The top of a replica axis that all of `runs` share, each over its window."""
    per_replica = settings.capacity * settings.slo_utilisation
    highest = max((max(max(run.billed[a:b]), max(run.demand[a:b]),
                       max(run.load[a:b]) / per_replica)
                   for run, (a, b) in zip(runs, windows, strict=True) if b > a), default=1.0)
    return float(max(2, math.ceil(highest * 1.08)))


def _load_in_replicas(settings: BacktestSettings) -> str:
    return (f"the load in replicas (load / ({settings.capacity:g} x "
            f"{settings.slo_utilisation:g}), the oracle demand before rounding up)")


def _overview_chart(index: int, label: str, run: PolicyRun, settings: BacktestSettings,
                    step: timedelta, top: float) -> Chart:
    title = f"{label}: load and replicas over the scored steps"
    svg, drawn = supply_chart(title, _series(run, settings, 0, len(run.times)), step, top=top)
    short = sum(1 for d, s in zip(run.demand, run.supply, strict=True) if s < d)
    return Chart(f"policy{index}-overview", svg, (
        f"{label}: {_load_in_replicas(settings)} and the ready replicas over the "
        f"{len(run.times):,} scored steps; "
        + (f"{short:,} under-provisioned step{'s' if short != 1 else ''}, in red. " if short
           else "no step under-provisioned. ")
        + f"{drawn} Every "
        f"policy's overview has this replica scale (0 to {top:g}), so that their heights "
        "compare."))


def _worst_hour_chart(index: int, label: str, run: PolicyRun, worst: WorstHour,
                      settings: BacktestSettings, step: timedelta, top: float) -> Chart:
    times = run.times
    first, last = worst.shown
    marks = [(times[worst.short_first], f"short from {times[worst.short_first]:%H:%M}")]
    if worst.recovered is not None:
        marks.append((times[worst.recovered], f"recovered {times[worst.recovered]:%H:%M}"))
    title = (f"{label}: the worst hour of under-provisioning, "
             f"{times[first]:%Y-%m-%d %H:%M} to {times[last - 1] + step:%H:%M}")
    svg, drawn = supply_chart(title, _series(run, settings, first, last), step, top=top,
                              marks=marks)
    hour_first, hour_last = worst.hour
    steps = worst.short_last - worst.short_first + 1
    recovery = ("; the ready replicas met the demand again at "
                f"{times[worst.recovered]:%H:%M}, "
                f"{format_duration(times[worst.recovered] - times[worst.short_first])} after "
                "it began" if worst.recovered is not None
                else "; it lasted to the end of the trace")
    episodes = (f" in {worst.episodes} episodes" if worst.episodes > 1 else "")
    return Chart(f"policy{index}-worst-hour", svg, (
        f"{label}: the hour with the largest replica shortfall, {times[hour_first]:%H:%M} "
        f"to {times[hour_last - 1] + step:%H:%M}, has {worst.short_steps:,} under-provisioned "
        f"step{'s' if worst.short_steps != 1 else ''}{episodes}. The chart is centred on "
        f"{'the worst episode' if worst.episodes > 1 else 'it'}: {steps:,} "
        f"step{'s' if steps != 1 else ''} from {times[worst.short_first]:%H:%M} to "
        f"{times[worst.short_last]:%H:%M}, up to {worst.peak_shortfall} "
        f"replica{'s' if worst.peak_shortfall != 1 else ''} short (at "
        f"{times[worst.peak]:%H:%M}){recovery}. Its replica scale is its own (0 to "
        f"{top:g}), to show the shortfall. {drawn}"))


def _policy_section(index: int, label: str, run: PolicyRun, settings: BacktestSettings,
                    step: timedelta, top: float) -> Section:
    scores = run.scores
    section = Section(f"{label}: {run.policy.strategy}, service {run.policy.service}")
    section.blocks.append(
        f"**{_rh(scores.replica_hours)} replica-hours** against the oracle's "
        f"{_rh(scores.oracle_replica_hours)} ({_ratio(scores)}), SLO violated in "
        f"{scores.slo_violation_pct:.2f} % of steps, under-provisioned "
        f"{scores.under_provisioned_time_pct:.2f} % of the time, "
        f"{len(run.changes):,} scaling actions ({scores.scaling_actions_per_hour:.2f} an hour). "
        f"The trace feeds the metric `{run.metric}`. Policy file: `{run.file}`."
    )
    section.blocks.append(_overview_chart(index, label, run, settings, step, top))
    worst = worst_hour(run, step)
    if worst is None:
        section.blocks.append("Never under-provisioned: no worst hour to show.")
    else:
        section.blocks.append(_worst_hour_chart(index, label, run, worst, settings, step,
                                                _top([run], settings, [worst.shown])))
    if run.policy.strategy == "predictive":
        section.blocks.append(_forecast_text(run))
    section.blocks.append(
        "Decisions by reason: " + ", ".join(f"{k} {v}" for k, v in run.reasons.items()) + "."
    )
    section.blocks.extend(_changes_blocks(run, worst, step))
    return section


def _forecast_text(run: PolicyRun) -> str:
    quality = run.forecast
    scored = (f"sMAPE {quality.smape_pct:.2f} %"
              + ("" if quality.mase is None else f", MASE {quality.mase:.3f}")
              + f" over {quality.forecasts_scored:,} forecasts") if quality else "none scored"
    trainings = len(run.training_seconds)
    text = (f"Forecasts: {scored}; {trainings} training{'s' if trainings != 1 else ''}"
            + (f" (the longest {max(run.training_seconds):.2f} s)" if trainings else "") + ". ")
    fallbacks = sum(run.fallbacks.values())
    if not fallbacks:
        return text + "The forecast was in use at every step."
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in run.fallbacks.items())
    return (text + f"At {fallbacks:,} steps the forecast was not used ({reasons}) and the "
            "target rule decided alone.")


def _ratio(scores: Any) -> str:
    if not scores.oracle_replica_hours:
        return "no oracle cost"
    return f"{scores.replica_hours / scores.oracle_replica_hours:.2f} x"


SHOWN_WORST = 20
"""Of the SHOWN_CHANGES actions a long run's report lists, at most this many from the worst
hour's chart (those nearest its largest shortfall); the largest of the others fill the rest."""


def _size(change: Decision) -> int:
    return abs((change.desired_replicas or 0) - (change.current_replicas or 0))


def _changes_blocks(run: PolicyRun, worst: WorstHour | None, step: timedelta) -> list[Block]:
    """Every scaling action, or, for a run with more than SHOWN_CHANGES, two tables each in
    time order: those of the worst hour's chart (the steps it draws, to the end of the
    last), then the largest of the others."""
    changes = run.changes
    if not changes:
        return ["No scaling action: the count never changed."]
    if len(changes) <= SHOWN_CHANGES:
        return ["Every scaling action, in time order:", _changes_table(changes)]
    blocks: list[Block] = []
    shown: list[Decision] = []
    if worst is not None:
        start, end = run.times[worst.shown[0]], run.times[worst.shown[1] - 1] + step
        peak = run.times[worst.peak]
        in_window = [c for c in changes if start <= c.time < end]
        shown = sorted(sorted(in_window, key=lambda c: abs(c.time - peak))[:SHOWN_WORST],
                       key=lambda c: c.time)
        count = (f"all {len(shown)}" if len(shown) == len(in_window)
                 else f"the {len(shown)} nearest its largest shortfall, of {len(in_window)}")
        blocks.append(f"**The worst hour**: the scaling actions from {start:%Y-%m-%d %H:%M} "
                      f"to {end:%H:%M} (the chart above), {count}, in time order:"
                      if shown else f"**The worst hour**: no scaling action from "
                      f"{start:%Y-%m-%d %H:%M} to {end:%H:%M} (the chart above).")
        if shown:
            blocks.append(_changes_table(shown))
    taken = {id(c) for c in shown}
    rest = [c for c in changes if id(c) not in taken]
    largest = sorted(sorted(rest, key=lambda c: -_size(c))[:SHOWN_CHANGES - len(shown)],
                     key=lambda c: c.time)
    smallest = min((_size(c) for c in largest), default=0)
    blocks.append(f"**The largest actions**: the {len(largest)} largest of the "
                  f"{'other ' if shown else ''}{len(rest):,} (each a change of {smallest} "
                  f"replica{'s' if smallest != 1 else ''} or more), in time order:")
    blocks.append(_changes_table(largest))
    return blocks


def _changes_table(changes: Sequence[Decision]) -> Table:
    return Table(
        ["time", "from", "to", "reason", "why"],
        [[f"{c.time:%Y-%m-%d %H:%M}", c.current_replicas, c.desired_replicas, c.reason,
          c.message] for c in changes],
    )


def _rounded_note(settings: BacktestSettings, trace: Trace) -> str:
    if ready_after(settings, trace) == settings.startup:
        return ""
    return f" (the start-up, {format_duration(settings.startup)}, in whole steps)"


def input_text(trace: Trace) -> list[str]:
    """What reading the trace did, as the console said it."""
    return ([f"**Warning:** {warning}." for warning in trace.warnings]
            + [f"Reading the trace: {note}." for note in trace.notes])


def document(runs: list[PolicyRun], settings: BacktestSettings, trace: Trace, *,
             capacity_given: bool, budget: float = DEFAULT_SLO_BUDGET) -> Document:
    first = runs[0].times[0]
    last = runs[0].times[-1]
    intro = [
        f"Replay of `{trace.source}` ({len(trace)} steps of {format_duration(trace.step)}), "
        f"scored from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} "
        f"({len(runs[0].times)} steps, after a warm-up of {format_duration(settings.warmup)}).",
        *input_text(trace),
        f"Each policy runs through the agent's own engine, one tick per step, against a "
        f"simulated cluster: the metric at a step is the load of the step before; a new "
        f"replica is ready {format_duration(ready_after(settings, trace))} after the decision"
        f"{_rounded_note(settings, trace)}. One replica carries {settings.capacity:g} at "
        f"100 % ({capacity_origin(settings, given=capacity_given)}); the oracle demand d is "
        f"the fewest replicas that keep each step under {settings.slo_utilisation:.0%} of "
        "that.",
    ]
    table = comparison_table(runs, settings)
    decided = run_verdict(runs, budget, table)
    lead: list[Block] = [Callout(decided.lead, decided.points, decided.warnings,
                                 title="Verdict")]
    top = _top(runs, settings, [(0, len(run.times)) for run in runs])
    sections = [Section("Side by side", [
        "The best value of each row in bold (the lowest; none where all are equal); what "
        "each row means in the last column, the definitions in docs/backtest.md.", table])]
    sections.extend(_policy_section(i, label, run, settings, trace.step, top)
                    for i, (label, run) in enumerate(zip(labels(runs), runs, strict=True),
                                                     start=1))
    return Document("Backtest", intro, sections, lead)


STEP_COLUMNS = ("time", "load", "demand", "billed", "ready", "forecast", "reason")
"""The columns of a steps CSV, one row a scored step; docs/backtest.md says what each is."""


def steps_file_names(runs: list[PolicyRun]) -> list[str]:
    """`policy<N>-<file stem>.csv`, N as in the report's charts."""
    return [f"policy{index}-{re.sub(r'[^A-Za-z0-9._-]', '_', Path(run.file).stem)}.csv"
            for index, run in enumerate(runs, start=1)]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def write_steps(run: PolicyRun, path: Path) -> None:
    """One row a scored step of `run`, in `STEP_COLUMNS`."""
    forecasts = run.forecasts_by_step or [None] * len(run.times)
    reasons = run.reasons_by_step or [""] * len(run.times)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(STEP_COLUMNS)
        for row in zip(run.times, run.load, run.demand, run.billed, run.supply, forecasts,
                       reasons, strict=True):
            time, load, demand, billed, ready, forecast, reason = row
            writer.writerow([time.isoformat().replace("+00:00", "Z"), _number(load), demand,
                             billed, ready, _number(forecast), reason])
