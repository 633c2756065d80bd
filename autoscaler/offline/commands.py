"""The commands that need no Swarm: backtest, report and demo. Reads the inputs, replays,
writes the reports, and says what it did; exit codes as in `autoscaler.cli`."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TextIO

from autoscaler.adapters.prometheus_access import PrometheusAccess
from autoscaler.core.durations import format_duration
from autoscaler.core.spec import Policy, PolicyProblem
from autoscaler.core.text import printable
from autoscaler.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNREACHABLE
from autoscaler.offline.replay import (
    BacktestError,
    PolicyRun,
    Progress,
    fed_metric,
    ready_after,
    replay,
    replay_settings,
    startup_set_by,
)
from autoscaler.offline.reports import backtest as backtest_report
from autoscaler.offline.reports import dry_run as decision_report
from autoscaler.offline.reports.document import Table, cell_text, write_report
from autoscaler.offline.traces import CsvOptions, Trace, TraceError, load_csv, plural
from autoscaler.policy_files import read_alternative


@dataclass(frozen=True)
class BacktestInputs:
    policy_files: Sequence[Path]
    out: Path
    capacity: float | None
    slo_utilisation: float
    startup: timedelta | None
    """None: the start-up the predictive policies set (`default_startup`)."""
    warmup: timedelta
    metric: str | None
    steps_csv: Path | None = None
    """A folder for one CSV a policy, one row a scored step (`write_steps`)."""
    slo_budget: float = backtest_report.DEFAULT_SLO_BUDGET
    """The most SLO violation, in % of the scored steps, of a policy the verdict may choose."""


def _progress(out: TextIO, label: str) -> Progress:
    """Progress of one replay: a line that updates in place on a terminal, else every 25 %."""
    started = time.monotonic()
    shown: set[int] = set()

    def report(done: int, total: int) -> None:
        percent = 100 * done // total
        rate = done / max(time.monotonic() - started, 1e-9)
        text = f"  {label}: {percent:3d} % ({done}/{total} steps, {rate:,.0f} steps/s)"
        if out.isatty():
            out.write("\r" + text + ("\n" if done == total else ""))
            out.flush()
        elif percent // 25 not in shown or done == total:
            shown.add(percent // 25)
            print(text, file=out)
    return report


def load_backtest_policies(files: Sequence[Path], err: TextIO | None = None
                   ) -> tuple[list[tuple[str, Policy]], list[PolicyProblem]]:
    """Each file on its own: policies compared in one run may name the same service. A
    metric without a query is noted on `err` (default stderr)."""
    err = err or sys.stderr
    policies, problems = [], []
    for file in files:
        parsed, unqueried = read_alternative(file)
        if isinstance(parsed, Policy):
            policies.append((str(file), parsed))
            for name in unqueried:
                print(f"note: {file}: metric {name} has no query: in a backtest the trace "
                      "feeds it (validate and the agent need one)", file=err)
        else:
            problems.extend(parsed)
    return policies, problems


def say_trace(trace: Trace, err: TextIO) -> None:
    """What reading the trace did: its warnings, then its notes."""
    for warning in trace.warnings:
        print(f"warning: {trace.source}: {warning}", file=err)
    for note in trace.notes:
        print(f"note: {trace.source}: {note}", file=err)


def run_backtest(trace: Trace, inputs: BacktestInputs) -> int:
    out, err = sys.stdout, sys.stderr
    say_trace(trace, err)
    policies, problems = load_backtest_policies(inputs.policy_files, err)
    if problems:
        for problem in problems:
            print(problem, file=err)
        return EXIT_BAD_INPUT
    runs: list[PolicyRun] = []
    given = inputs.capacity is not None
    try:
        for _, policy in policies:
            fed_metric(policy, inputs.metric)
        settings = replay_settings(
            [p for _, p in policies], capacity=inputs.capacity, startup=inputs.startup,
            slo_utilisation=inputs.slo_utilisation, warmup=inputs.warmup, metric=inputs.metric,
        )
        capacity, startup = settings.capacity, settings.startup
        origin = backtest_report.capacity_origin(settings, given=given)
        print(f"replaying {len(trace)} steps of {trace.source} (capacity {capacity:g} per "
              f"replica, {origin}; a new replica ready "
              f"{format_duration(ready_after(settings, trace))} after the decision)", file=err)
        for file, policy in policies:
            own = startup_set_by(policy)
            if own is not None and own != startup:
                print(f"  {file} forecasts for a start-up of {format_duration(own)}; the "
                      f"simulated cluster's is {format_duration(startup)}", file=err)
            runs.append(replay(policy, file, trace, settings, _progress(err, file)))
    except BacktestError as error:
        print(f"autoscaler: {error}", file=err)
        return EXIT_BAD_INPUT
    table = backtest_report.comparison_table(runs, settings)
    decided = backtest_report.run_verdict(runs, inputs.slo_budget, table)
    write_report(backtest_report.document(runs, settings, trace, capacity_given=given,
                                          budget=inputs.slo_budget),
                 {**backtest_report.summary(runs, settings, trace, capacity_given=given),
                  "verdict": decided.record()},
                 inputs.out)
    print_verdict(decided, out)
    print(file=out)
    print_table(table, out)
    print(f"\nreport: {inputs.out / 'report.html'} (also report.md and summary.json)", file=out)
    if inputs.steps_csv is not None:
        inputs.steps_csv.mkdir(parents=True, exist_ok=True)
        written = [inputs.steps_csv / name for name in backtest_report.steps_file_names(runs)]
        for run, path in zip(runs, written, strict=True):
            backtest_report.write_steps(run, path)
        print(f"steps: {', '.join(map(str, written))} (one row a scored step)", file=out)
    return EXIT_OK


def _wrapped(text: str, first: str, rest: str) -> str:
    """`text` without Markdown, wrapped at 100 columns, never between a number and its %."""
    glued = backtest_report.plain(text).replace(" %", "\u00a0%")
    return textwrap.fill(glued, width=100, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False).replace("\u00a0", " ")


def print_verdict(verdict: backtest_report.Verdict, out: TextIO) -> None:
    """The verdict as the report's first lines say it, wrapped for a terminal."""
    print(_wrapped(verdict.lead, "Verdict: ", "  "), file=out)
    for point in verdict.points:
        print(_wrapped(point, "  - ", "    "), file=out)
    for warning in verdict.warnings:
        print(_wrapped(warning, "  warning: ", "    "), file=out)


def print_table(table: Table, out: TextIO) -> None:
    """The metric table: the best of each row starred, then what each row means."""
    cells = [[cell_text(cell) + (" " if i == 0 else "*" if (r, i) in table.marked else " ")
              for i, cell in enumerate(row)] for r, row in enumerate(table.rows)]
    lines = [[f"{cell} " if i else str(cell) for i, cell in enumerate(table.header)], *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(table.header))]
    for line in lines:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                        for i, cell in enumerate(line)).rstrip(), file=out)
    if table.marked:
        print("* the best of its row (the lowest)", file=out)
    if table.notes:
        print("\nWhat each row means (docs/backtest.md defines them):", file=out)
        for row, note in zip(table.rows, table.notes, strict=False):
            if note:
                print(_wrapped(f"{row[0]}: {note}", "  ", "      "), file=out)


def with_csv(trace_file: Path, options: CsvOptions | None, then: Callable[[Trace], int]
             ) -> int:
    """`then` on the trace a CSV holds; exit 2 with the reason when it cannot be read."""
    try:
        trace = load_csv(trace_file, options)
    except TraceError as error:
        print(f"autoscaler: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return then(trace)


def with_prometheus_range(access: PrometheusAccess, query: str, start: datetime,
                          end: datetime, step: timedelta, then: Callable[[Trace], int]) -> int:
    """`then` on a Prometheus range as a trace; exit 1 when Prometheus does not answer, 2
    when it refuses the query as bad or its answer is no one series."""
    from autoscaler.bootstrap import prometheus_source
    from autoscaler.core.ports import QueryRefused, SourceUnavailable
    from autoscaler.offline.history import range_trace

    try:
        trace = range_trace(prometheus_source(access), query, start=start, end=end, step=step)
    except QueryRefused as error:
        print(f"autoscaler: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SourceUnavailable as error:
        print(f"autoscaler: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TraceError as error:
        print(f"autoscaler: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return then(trace)


def backtest_csv(trace_file: Path, inputs: BacktestInputs,
                 options: CsvOptions | None = None) -> int:
    return with_csv(trace_file, options, lambda trace: run_backtest(trace, inputs))


def backtest_prometheus(access: PrometheusAccess, query: str, start: datetime, end: datetime,
                        step: timedelta, inputs: BacktestInputs) -> int:
    return with_prometheus_range(access, query, start, end, step,
                                 lambda trace: run_backtest(trace, inputs))


def report_from_log(log: Path, out: Path) -> int:
    try:
        services, reading = decision_report.read_log(
            log, lambda lines: print(f"  {log}: {lines:,} lines read", file=sys.stderr,
                                     flush=True))
    except decision_report.LogError as error:
        print(f"autoscaler: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for warning in reading.warnings():
        print(printable(f"warning: {log}: {warning}"), file=sys.stderr)
    write_report(decision_report.document(services, str(log), reading),
                 decision_report.summary(services, str(log), reading), out)
    if reading.other_events:
        print(printable(f"passed over {decision_report.other_events(reading)}"))
    for name, service in services.items():
        print(printable(f"{name}: {plural(len(service.times), 'decision')}, "
                        f"{plural(len(service.changes), 'change')}, "
                        + ", ".join(f"{k} {v}" for k, v in sorted(service.reasons.items()))))
    print(f"\nreport: {out / 'report.html'} (also report.md and summary.json)")
    return EXIT_OK


DEMO_TRACE = "worldcup98-3-weeks.csv.gz"
DEMO_POLICIES = ("threshold.yaml", "target.yaml", "predictive.yaml")


def demo(out: Path, slo_budget: float = backtest_report.DEFAULT_SLO_BUDGET) -> int:
    """Backtest the shipped example policies on the shipped trace; no Docker, no Prometheus."""
    data = resources.files("autoscaler") / "demo"
    with resources.as_file(data) as folder:
        trace = load_csv(folder / DEMO_TRACE)
        print("The demo replays three weeks of the 1998 World Cup web site's traffic "
              "(requests per minute, eight days of history, then the tournament's first two "
              "weeks) through the agent's engine with each example policy:", file=sys.stderr)
        for name in DEMO_POLICIES:
            print(f"  {folder / name}", file=sys.stderr)
        inputs = BacktestInputs(
            policy_files=[folder / name for name in DEMO_POLICIES], out=out, capacity=None,
            slo_utilisation=0.9, startup=None, warmup=timedelta(days=8),
            metric=None, slo_budget=slo_budget,
        )
        return run_backtest(trace, inputs)
