"""The backtest's report: the metric table side by side, and per policy the load, the oracle
and the supplied replicas over time, the worst hour of under-provisioning, and the decisions
that shaped the curve; and the per-step CSV of each policy (`--steps-csv`)."""

from __future__ import annotations

import csv
import re
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from autoscaler.core.durations import format_duration
from autoscaler.offline.replay import (
    DEFAULT_UTILISATION_OF_TARGET,
    BacktestSettings,
    PolicyRun,
    ready_after,
)
from autoscaler.offline.reports.charts import Line, line_chart
from autoscaler.offline.reports.document import Chart, Document, Section, Table
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


def metric_table(runs: list[PolicyRun]) -> Table:
    header = ["metric", *(f"{label} ({run.policy.strategy})"
                          for label, run in zip(labels(runs), runs, strict=True))]
    rows = [[label, *(round(getattr(run.scores, key), 3) for run in runs)]
            for key, label in METRICS]
    if any(run.forecast is not None for run in runs):
        for key, label in (("smape_pct", "forecast sMAPE %"), ("mase", "forecast MASE")):
            rows.append([label, *(_rounded(getattr(run.forecast, key, None)) for run in runs)])
    return Table(header, rows)


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(value, 3)


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


def _series_chart(name: str, title: str, run: PolicyRun, first: int, last: int,
                  capacity: float) -> Chart:
    times = run.times[first:last]
    svg = line_chart(
        title, times,
        [Line("load (right axis)", run.load[first:last], step=False, axis="right"),
         Line("billed replicas (ready + starting)", run.billed[first:last], dashed=True),
         Line("oracle demand d", run.demand[first:last]),
         Line("ready replicas s", run.supply[first:last], lowest=True)],
        left_label="replicas", right_label=f"load (capacity {capacity:g} per replica)",
    )
    return Chart(name, svg, title)


def _policy_section(index: int, label: str, run: PolicyRun, settings: BacktestSettings,
                    step: timedelta) -> Section:
    scores = run.scores
    section = Section(f"{label}: {run.policy.strategy}, service {run.policy.service}")
    section.blocks.append(
        f"**{scores.replica_hours:,.0f} replica-hours** against the oracle's "
        f"{scores.oracle_replica_hours:,.0f} ({_ratio(scores)}), SLO violated in "
        f"{scores.slo_violation_pct:.2f} % of steps, under-provisioned "
        f"{scores.under_provisioned_time_pct:.2f} % of the time, "
        f"{len(run.changes):,} scaling actions ({scores.scaling_actions_per_hour:.2f} an hour). "
        f"The trace feeds the metric `{run.metric}`. Policy file: `{run.file}`."
    )
    section.blocks.append(_series_chart(
        f"policy{index}-overview", f"{label}: demand and supply over the scored steps",
        run, 0, len(run.times), settings.capacity))
    worst = _worst_hour(run, step)
    if worst is None:
        section.blocks.append("Never under-provisioned: no worst hour to show.")
    else:
        first, last = worst
        section.blocks.append(_series_chart(
            f"policy{index}-worst-hour",
            f"{label}: the worst hour of under-provisioning, from "
            f"{run.times[first]:%Y-%m-%d %H:%M}", run, first, last, settings.capacity))
    if run.policy.strategy == "predictive":
        section.blocks.append(_forecast_text(run))
    section.blocks.append(
        "Decisions by reason: " + ", ".join(f"{k} {v}" for k, v in run.reasons.items()) + "."
    )
    section.blocks.append(_changes_text(run))
    section.blocks.append(_changes_table(run, worst))
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


def _changes_text(run: PolicyRun) -> str:
    if len(run.changes) <= SHOWN_CHANGES:
        return "Every scaling action:"
    return (f"The scaling actions of the worst hour and the largest ones, {SHOWN_CHANGES} of "
            f"{len(run.changes)}:")


def _changes_table(run: PolicyRun, worst: tuple[int, int] | None) -> Table:
    changes = run.changes
    if len(changes) > SHOWN_CHANGES:
        start = run.times[worst[0]] if worst else None
        end = run.times[worst[1] - 1] if worst else None
        in_worst = [c for c in changes if start is not None and end is not None
                    and start <= c.time <= end]
        largest = sorted(changes, key=lambda c: -abs((c.desired_replicas or 0)
                                                      - (c.current_replicas or 0)))
        chosen = {id(c): c for c in (in_worst + largest)[:SHOWN_CHANGES]}
        changes = sorted(chosen.values(), key=lambda c: c.time)
    return Table(
        ["time", "from", "to", "reason", "why"],
        [[f"{c.time:%Y-%m-%d %H:%M}", c.current_replicas, c.desired_replicas, c.reason,
          c.message] for c in changes],
    )


def _rounded_note(settings: BacktestSettings, trace: Trace) -> str:
    if ready_after(settings, trace) == settings.startup:
        return ""
    return f" (the start-up, {format_duration(settings.startup)}, in whole steps)"


def _input_text(trace: Trace) -> list[str]:
    """What reading the trace did, as the console said it."""
    return ([f"**Warning:** {warning}." for warning in trace.warnings]
            + [f"Reading the trace: {note}." for note in trace.notes])


def document(runs: list[PolicyRun], settings: BacktestSettings, trace: Trace, *,
             capacity_given: bool) -> Document:
    first = runs[0].times[0]
    last = runs[0].times[-1]
    intro = [
        f"Replay of `{trace.source}` ({len(trace)} steps of {format_duration(trace.step)}), "
        f"scored from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} "
        f"({len(runs[0].times)} steps, after a warm-up of {format_duration(settings.warmup)}).",
        *_input_text(trace),
        f"Each policy runs through the agent's own engine, one tick per step, against a "
        f"simulated cluster: the metric at a step is the load of the step before; a new "
        f"replica is ready {format_duration(ready_after(settings, trace))} after the decision"
        f"{_rounded_note(settings, trace)}. One replica carries {settings.capacity:g} at "
        f"100 % ({capacity_origin(settings, given=capacity_given)}); the oracle demand d is "
        f"the fewest replicas that keep each step under {settings.slo_utilisation:.0%} of "
        "that.",
    ]
    sections = [Section("Side by side", [metric_table(runs)])]
    sections.extend(_policy_section(i, label, run, settings, trace.step)
                    for i, (label, run) in enumerate(zip(labels(runs), runs, strict=True),
                                                     start=1))
    return Document("Backtest", intro, sections)


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
