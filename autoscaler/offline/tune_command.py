"""`autoscaler tune`: the search of `autoscaler.offline.tune` run through the real replay,
its frontier printed, the recommended policies and a report written. Exit codes as in
`autoscaler.cli`."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import shlex
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, TextIO

import yaml

from autoscaler.adapters.prometheus_access import PrometheusAccess
from autoscaler.core.durations import format_duration
from autoscaler.core.spec import Policy, PolicyProblem
from autoscaler.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from autoscaler.offline.commands import (
    load_backtest_policies,
    say_trace,
    with_csv,
    with_prometheus_range,
)
from autoscaler.offline.memo import ForecastMemo
from autoscaler.offline.replay import (
    BacktestError,
    BacktestSettings,
    fed_metric,
    ready_after,
    replay,
    replay_settings,
    scored_range,
)
from autoscaler.offline.reports.backtest import capacity_origin, input_text
from autoscaler.offline.reports.document import Chart, Document, Section, Table, write_report
from autoscaler.offline.scoring import Scores
from autoscaler.offline.traces import CsvOptions, Trace
from autoscaler.offline.tune import (
    Candidate,
    Frontier,
    Knob,
    Trial,
    TuneError,
    knob_of,
    meets,
    search,
    tuned,
)
from autoscaler.policy_files import read_policy_bytes


@dataclass(frozen=True)
class TuneInputs:
    policy_files: Sequence[Path]
    out: Path
    budget: float
    """The SLO budget: the most `slo_violation_pct` (% of scored steps) a candidate may have."""
    capacity: float | None
    slo_utilisation: float
    startup: timedelta | None
    warmup: timedelta
    metric: str | None
    grid: Sequence[float]
    grid_text: str
    refine: float
    jobs: int = 1


@dataclass(frozen=True)
class _Tuned:
    """One policy's search."""

    file: str
    label: str
    policy: Policy
    frontier: Frontier
    original: str
    """The policy file's text as the search began, which the tuned version edits."""
    written: Path | None = None


# Replays in worker processes: the trace, the settings and the forecasts so far are handed
# to each worker once, when it starts.
_WORKER: dict[str, Any] = {}


def _start_worker(trace: Trace, settings: BacktestSettings, memo: ForecastMemo) -> None:
    from threadpoolctl import threadpool_limits

    _WORKER.update(trace=trace, settings=settings, memo=memo,
                   threads=threadpool_limits(limits=1))


def _replay_in_worker(policy: Policy, file: str) -> Scores:
    return replay(policy, file, _WORKER["trace"], _WORKER["settings"],
                  forecast_memo=_WORKER["memo"]).scores


class _Replays:
    """The `Evaluate` of one policy's search: each candidate replayed through `replay`, in
    this process or in `jobs` worker processes; progress on `err`, one line a candidate."""

    def __init__(self, tuned_file: str, label: str, policy: Policy, knob: Knob, trace: Trace,
                 settings: BacktestSettings, memo: ForecastMemo, jobs: int, err: TextIO
                 ) -> None:
        self.file, self.label, self.policy, self.knob = tuned_file, label, policy, knob
        self.trace, self.settings, self.memo, self.jobs, self.err = (
            trace, settings, memo, jobs, err)
        self.done = 0
        self.started = time.monotonic()
        self._pool: ProcessPoolExecutor | None = None
        if jobs > 1:
            from multiprocessing import forkserver

            _forkserver()
            forkserver.ensure_running()

    def __call__(self, batch: Sequence[Candidate]) -> list[Trial]:
        total = self.done + len(batch)
        scores: list[Scores] = []
        pending = list(batch)
        if pending and (self.jobs == 1 or len(pending) == 1 or self._pool is None):
            # The first replay runs here while the workers' server starts; a predictive
            # policy's first trains and forecasts, the others take its forecasts from the
            # memo the workers get.
            scores.append(self._replay(pending[0]))
            self._said(pending[0], scores[-1], total)
            pending = pending[1:]
        if pending and self.jobs == 1:
            for candidate in pending:
                scores.append(self._replay(candidate))
                self._said(candidate, scores[-1], total)
        elif pending:
            scores += self._in_workers(pending, total)
        return [Trial(c, s) for c, s in zip(batch, scores, strict=True)]

    def _replay(self, candidate: Candidate) -> Scores:
        policy = tuned(self.policy, self.knob, candidate.values)
        return replay(policy, self.file, self.trace, self.settings,
                      forecast_memo=self.memo).scores

    def _in_workers(self, batch: Sequence[Candidate], total: int) -> list[Scores]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=_forkserver(), initializer=_start_worker,
                initargs=(self.trace, self.settings, self.memo))
        futures: dict[Future[Scores], Candidate] = {
            self._pool.submit(_replay_in_worker, tuned(self.policy, self.knob, c.values),
                              self.file): c
            for c in batch
        }
        for future in as_completed(futures):
            self._said(futures[future], future.result(), total)
        return [future.result() for future in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _said(self, candidate: Candidate, scores: Scores, total: int) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        text = (f"  {self.label}: {self.done}/{total} candidates ({elapsed:.0f} s), "
                f"u {candidate.utilisation:.2f}: {scores.replica_hours:,.1f} replica-hours, "
                f"{scores.slo_violation_pct:.3f} % in SLO violation")
        if self.err.isatty():
            self.err.write("\r\033[K" + text)
            self.err.flush()
        else:
            print(text, file=self.err, flush=True)


@contextlib.contextmanager
def _sigterm_stops_the_replays() -> Iterator[None]:
    """SIGTERM raises SystemExit (exit 143) while the block runs, as Ctrl-C raises
    KeyboardInterrupt, so that the `finally` shutting the worker pool down runs: killed
    outright, the command would leave its workers and their server waiting for work that
    never comes, holding the trace's memory, until someone kills them. Only the main
    thread may set a signal handler; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _forkserver() -> BaseContext:
    """The workers' context: they fork from a server that has imported this module (and so
    the engine) once, so that they neither copy this process's threads nor import again."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def tune_csv(trace_file: Path, inputs: TuneInputs, options: CsvOptions | None = None) -> int:
    return with_csv(trace_file, options, lambda trace: run_tune(trace, inputs, reading=options))


def tune_prometheus(access: PrometheusAccess, query: str, start: datetime, end: datetime,
                    step: timedelta, inputs: TuneInputs) -> int:
    return with_prometheus_range(access, query, start, end, step,
                                 lambda trace: run_tune(trace, inputs))


def policy_names(files: Sequence[str]) -> list[str]:
    """The file each policy's recommendation is written to in --out: its own name, or
    `policy<N>-<name>` where two policies share a name."""
    names = [Path(file).name for file in files]
    return [name if names.count(name) == 1 else f"policy{index}-{name}"
            for index, name in enumerate(names, 1)]


def run_tune(trace: Trace, inputs: TuneInputs, out: TextIO | None = None,
             err: TextIO | None = None, *, reading: CsvOptions | None = None) -> int:
    """Tune on `trace`, read from a CSV with `reading` (its options, repeated in the tuned
    files' comments), or from Prometheus (None)."""
    out, err = out or sys.stdout, err or sys.stderr
    say_trace(trace, err)
    policies, problems = load_backtest_policies(inputs.policy_files, err)
    if problems:
        for problem in problems:
            print(problem, file=err)
        return EXIT_BAD_INPUT
    texts = {file: _original_text(file) for file, _ in policies}
    unread = [text for text in texts.values() if isinstance(text, PolicyProblem)]
    if unread:
        for problem in unread:
            print(problem, file=err)
        return EXIT_BAD_INPUT
    originals = {file: text for file, text in texts.items() if isinstance(text, str)}
    given = inputs.capacity is not None
    files = [file for file, _ in policies]
    names = policy_names(files)
    try:
        knobs = [_knob(policy, inputs.metric) for _, policy in policies]
        for file, name in zip(files, names, strict=True):
            if (inputs.out / name).resolve() == Path(file).resolve():
                raise TuneError(f"--out {inputs.out} would overwrite {file} with its tuned "
                                "version: give another folder")
        settings = replay_settings(
            [p for _, p in policies], capacity=inputs.capacity, startup=inputs.startup,
            slo_utilisation=inputs.slo_utilisation, warmup=inputs.warmup, metric=inputs.metric,
        )
        capacity = settings.capacity
        scored = len(trace) - scored_range(trace, inputs.warmup)
        print(f"capacity {capacity:g} per replica ({capacity_origin(settings, given=given)}); "
              f"the same for every candidate", file=out)
        print(f"tuning on {scored:,} scored steps of {format_duration(trace.step)} of "
              f"{trace.source} after a warm-up of {format_duration(inputs.warmup)} (a new "
              f"replica ready {format_duration(ready_after(settings, trace))} after the "
              f"decision); SLO budget {inputs.budget:g} % of scored steps", file=err)
        memo: ForecastMemo = {}
        results = []
        started = time.monotonic()
        for (file, policy), knob, label in zip(policies, knobs, names, strict=True):
            replays = _Replays(file, label, policy, knob, trace, settings, memo,
                               inputs.jobs, err)
            try:
                with _sigterm_stops_the_replays():
                    frontier = search(knob, capacity=capacity, grid=inputs.grid,
                                      refine=inputs.refine, budget=inputs.budget,
                                      evaluate=replays)
            finally:
                replays.close()
            if err.isatty():
                err.write("\n")
            results.append(_Tuned(file, label, policy, frontier, originals[file]))
    except (BacktestError, TuneError) as error:
        print(f"autoscaler: {error}", file=err)
        return EXIT_BAD_INPUT
    print(f"  {sum(len(r.frontier.trials) for r in results)} replays in "
          f"{time.monotonic() - started:.0f} s", file=err)
    context = _Context(trace, settings, inputs, given, scored, reading)
    inputs.out.mkdir(parents=True, exist_ok=True)
    results = [_write_policy(result, context) for result in results]
    for result in results:
        print_frontier(result, context, out)
    write_report(document(results, context), summary(results, context), inputs.out)
    print(f"\nreport: {inputs.out / 'report.html'} (also report.md and summary.json)", file=out)
    return EXIT_OK


def _knob(policy: Policy, metric: str | None) -> Knob:
    return knob_of(policy, fed_metric(policy, metric))


@dataclass(frozen=True)
class _Context:
    trace: Trace
    settings: BacktestSettings
    inputs: TuneInputs
    capacity_given: bool
    scored: int
    reading: CsvOptions | None


# -- the console ---------------------------------------------------------------------------


def _saving(trial: Trial, against: Trial | None, budget: float) -> str:
    """How the trial's replica-hours compare with the given policy's."""
    if against is None or against is trial or not against.cost:
        return "" if against is None else " (the policy as given)"
    over = "" if meets(against, budget) else (
        f", which is over the budget at {against.violation:.3f} %")
    return (f" ({100 * (trial.cost / against.cost - 1):+.1f} % replica-hours against the "
            f"policy as given{over})")


def _trial_text(knob: Knob, trial: Trial) -> str:
    return (f"u {trial.utilisation:.2f} ({knob.shown(trial.candidate.values)}): "
            f"{trial.cost:,.1f} replica-hours, {trial.violation:.3f} % of steps in SLO "
            "violation")


def frontier_table(result: _Tuned) -> Table:
    """One row a candidate tried, by utilisation; the recommended one, the given one and
    those off the frontier (another is cheaper with no more violations) marked."""
    frontier = result.frontier
    on_frontier = {id(t) for t in frontier.efficient}
    header = ["", "u", *frontier.knob.keys, "replica-hours", "x oracle", "SLO violation %",
              "note"]
    rows = []
    for trial in frontier.trials:
        notes = [n for n, on in (("recommended", trial is frontier.recommended),
                                 ("given", trial.candidate.given),
                                 ("dominated", id(trial) not in on_frontier)) if on]
        scores = trial.scores
        rows.append([
            "*" if trial is frontier.recommended else "", f"{trial.utilisation:.2f}",
            *(f"{v:g}" for v in trial.candidate.values), f"{scores.replica_hours:,.1f}",
            f"{scores.replica_hours / scores.oracle_replica_hours:.3f}"
            if scores.oracle_replica_hours else "", f"{scores.slo_violation_pct:.3f}",
            ", ".join(notes),
        ])
    return Table(header, rows)


def print_frontier(result: _Tuned, context: _Context, out: TextIO) -> None:
    frontier, knob = result.frontier, result.frontier.knob
    print(f"\n{result.label} ({result.policy.strategy}, service {result.policy.service}): "
          f"metrics[{knob.index}] ({knob.metric}) {knob.shown(knob.given)}, "
          f"u {knob.given[0] / context.settings.capacity:.2f}", file=out)
    table = frontier_table(result)
    widths = [max(len(str(row[i])) for row in [table.header, *table.rows])
              for i in range(len(table.header))]
    for row in [table.header, *table.rows]:
        cells = [str(c).rjust(w) if 0 < i < len(row) - 1 else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip(), file=out)
    if frontier.skipped:
        print(f"not tried: u {', '.join(f'{u:g}' for u in frontier.skipped)} (the target "
              f"would exceed the metric's limit, {knob.ceiling:g})", file=out)
    print(recommendation_text(result, context), file=out)


def recommendation_text(result: _Tuned, context: _Context) -> str:
    frontier, knob = result.frontier, result.frontier.knob
    budget = context.inputs.budget
    best = frontier.recommended
    if best is None:
        return (f"no candidate of {result.label} meets the SLO budget of {budget:g} % of "
                f"steps in violation: nothing recommended, no policy written. The least "
                f"violating: {_trial_text(knob, frontier.least_violating)}.")
    written = f": {result.written}" if result.written is not None else ""
    return (f"recommended for {result.label}: {_trial_text(knob, best)}"
            f"{_saving(best, frontier.given, budget)}, within the budget of {budget:g} %"
            f"{written}")


# -- the tuned policy file -----------------------------------------------------------------


def _number(value: float) -> str:
    """A number as YAML reads it back as the same float (PyYAML wants a dot in a float
    written with an exponent, so none is written)."""
    text = f"{value:g}"
    if "e" in text:
        text = f"{value:f}".rstrip("0").rstrip(".")
    return text


def tuned_text(original: str, knob: Knob, values: tuple[float, ...], comment: str) -> str:
    """The policy file's text with only the tuned keys' values changed, and `comment` (one
    `# ` line per line) first. Where the text cannot be edited in place (say, the value
    sits behind an alias), the document is written again, without its comments."""
    header = "".join(f"# {line}".rstrip() + "\n" for paragraph in comment.splitlines()
                     for line in textwrap.wrap(paragraph, 93) or [""])
    edited = _edited_in_place(original, knob, values)
    if edited is None:
        document = yaml.safe_load(original)
        for key, value in zip(knob.keys, values, strict=True):
            document["metrics"][knob.index][key] = value
        edited = yaml.safe_dump(document, sort_keys=False)
    return header + edited


def _edited_in_place(original: str, knob: Knob, values: tuple[float, ...]) -> str | None:
    try:
        root = yaml.compose(original, Loader=yaml.SafeLoader)
        expected = yaml.safe_load(original)
        metric_node = _mapping_value(root, "metrics").value[knob.index]
        spans = sorted(((node.start_mark.index, node.end_mark.index, _number(value))
                        for key, value in zip(knob.keys, values, strict=True)
                        if isinstance(node := _mapping_value(metric_node, key),
                                      yaml.ScalarNode)),
                       reverse=True)
        if len(spans) != len(knob.keys):
            return None
        text = original
        for start, end, new in spans:
            text = text[:start] + new + text[end:]
        for key, value in zip(knob.keys, values, strict=True):
            expected["metrics"][knob.index][key] = value
        return text if yaml.safe_load(text) == expected else None
    except (yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError):
        return None


def _mapping_value(node: Any, key: str) -> Any:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    raise KeyError(key)


def measured_comment(result: _Tuned, context: _Context) -> str:
    """What the tuned file says of how it was measured."""
    frontier, knob, settings = result.frontier, result.frontier.knob, context.settings
    best = frontier.recommended
    assert best is not None
    given = frontier.given
    capacity = "given by --capacity" if context.capacity_given else "assumed"
    within = sum(meets(trial, frontier.budget) for trial in frontier.trials)
    metric = f" --metric {settings.metric}" if settings.metric else ""
    against = "" if given is None else (
        f" The policy as given ({knob.shown(knob.given)}): {given.cost:,.1f} replica-hours, "
        f"{given.violation:.3f} %.")
    return (
        f"Tuned by `autoscaler tune`: metrics[{knob.index}] ({knob.metric}) "
        f"{knob.shown(knob.given)} -> {knob.shown(best.candidate.values)}, a utilisation of "
        f"{best.utilisation:.2f} of a capacity of {settings.capacity:g} per replica "
        f"({capacity}); nothing else changed.\n"
        f"Measured by replaying {context.trace.source} through the engine: "
        f"{context.scored:,} steps of {format_duration(context.trace.step)} scored from "
        f"{context.trace.time(len(context.trace) - context.scored).isoformat()} after a "
        f"warm-up of {format_duration(settings.warmup)}, a new replica ready "
        f"{format_duration(ready_after(settings, context.trace))} after its decision, the "
        f"SLO at {settings.slo_utilisation:g} of capacity.\n"
        f"{best.cost:,.1f} replica-hours, {best.violation:.3f} % of scored steps in SLO "
        f"violation (budget {frontier.budget:g} %): the cheapest of the {within} of "
        f"{len(frontier.trials)} candidates tried within the budget.{against}\n"
        "`autoscaler backtest` gives the same figures with "
        f"--capacity {float(settings.capacity)!r} --warmup {format_duration(settings.warmup)} "
        f"--startup {format_duration(settings.startup)} --slo-utilisation "
        f"{float(settings.slo_utilisation)!r}{metric}{_reading_options(context.reading)}."
    )


def _reading_options(reading: CsvOptions | None) -> str:
    """The CSV options the trace was read with, as the command line gives them."""
    if reading is None:
        return ""
    given = [("--fill", reading.fill), ("--column", reading.column),
             ("--resample", None if reading.resample is None
              else format_duration(reading.resample))]
    return "".join(f" {flag} {shlex.quote(value)}" for flag, value in given
                   if value is not None)


def _write_policy(result: _Tuned, context: _Context) -> _Tuned:
    best = result.frontier.recommended
    if best is None:
        return result
    path = context.inputs.out / result.label
    path.write_text(tuned_text(result.original, result.frontier.knob, best.candidate.values,
                               measured_comment(result, context)))
    return replace(result, written=path)


def _original_text(file: str) -> str | PolicyProblem:
    """A policy file's text, read as the search begins, through the checks of every reader
    of policy files: read again when the tuned version is written, minutes later, it may be
    gone (a traceback, the search lost) or a FIFO (a wait for ever)."""
    data = read_policy_bytes(file)
    if isinstance(data, PolicyProblem):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return PolicyProblem(file, "", "is not UTF-8 text")


# -- the report ----------------------------------------------------------------------------


def frontier_chart(results: Sequence[_Tuned], budget: float) -> Chart:
    """Replica-hours against SLO violation %, a point per candidate and a line per policy
    through its frontier (the candidates no other beats on both); the recommended ones
    starred, the given ones as diamonds, the budget a dashed line. The violation axis is
    linear up to a tenth of the budget, logarithmic beyond."""
    import matplotlib

    matplotlib.use("Agg")  # as reports.charts: no display needed
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.6))
    for result in results:
        trials, efficient = result.frontier.trials, result.frontier.efficient
        (line,) = axis.plot([t.violation for t in efficient], [t.cost for t in efficient],
                            marker="o", markersize=3.5, linewidth=1.0,
                            label=f"{result.label} ({result.policy.strategy})")
        axis.plot([t.violation for t in trials], [t.cost for t in trials], marker="o",
                  markersize=3.5, color=line.get_color(), alpha=0.35, linestyle="none")
        best, given = result.frontier.recommended, result.frontier.given
        if given is not None:
            axis.plot([given.violation], [given.cost], marker="D", markersize=7,
                      color=line.get_color(), markerfacecolor="none", linestyle="none")
        if best is not None:
            axis.plot([best.violation], [best.cost], marker="*", markersize=15,
                      color=line.get_color(), markeredgecolor="black", linestyle="none")
            axis.annotate(f"u {best.utilisation:.2f}", (best.violation, best.cost),
                          textcoords="offset points", xytext=(8, 6), fontsize=8)
    axis.axvline(budget, color="red", linestyle="--", linewidth=1,
                 label=f"SLO budget {budget:g} %")
    axis.set_xscale("symlog", linthresh=max(budget / 10, 1e-3), linscale=0.5)
    axis.set_xlim(left=0)
    axis.set_xlabel("SLO violation, % of scored steps")
    axis.set_ylabel("replica-hours")
    axis.set_title("Cost against SLO violations, one point a candidate, the line through "
                   "those no other beats on both\n(star: recommended, diamond: as given)",
                   fontsize=11, loc="left")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper right", fontsize=8, framealpha=0.8)
    figure.tight_layout()
    text = io.StringIO()
    figure.savefig(text, format="svg")
    plt.close(figure)
    svg = text.getvalue()
    return Chart("frontier", svg[svg.index("<svg"):],
                 "Replica-hours against SLO violation % of every candidate tried")


def _best_row(result: _Tuned) -> list[object]:
    frontier, knob = result.frontier, result.frontier.knob
    best, given = frontier.recommended, frontier.given
    return [
        result.label, result.policy.strategy, ", ".join(knob.keys), knob.shown(knob.given),
        "none meets the budget" if best is None else knob.shown(best.candidate.values),
        "" if best is None else f"{best.utilisation:.2f}",
        "" if best is None else round(best.cost, 1),
        "" if best is None else round(best.violation, 3),
        "" if best is None or given is None or not given.cost
        else f"{100 * (best.cost / given.cost - 1):+.1f} %",
    ]


def document(results: Sequence[_Tuned], context: _Context) -> Document:
    settings, inputs = context.settings, context.inputs
    intro = [
        f"Each policy's {'/'.join(sorted({k for r in results for k in r.frontier.knob.keys}))} "
        f"searched for the fewest replica-hours with at most {inputs.budget:g} % of the "
        "scored steps in SLO violation, by replaying the trace through the agent's engine "
        "once per candidate (`autoscaler tune`). A candidate is a utilisation u of the "
        f"replica's capacity: target = u x capacity (threshold: scale_up_above = u x "
        f"capacity, scale_down_below in the given ratio to it). Tried: the policy as given, "
        f"u on the grid {inputs.grid_text}, then steps of {inputs.refine:g} around the best "
        "up to its neighbours on the grid.",
        f"Trace: `{context.trace.source}`, {context.scored:,} steps of "
        f"{format_duration(context.trace.step)} scored after a warm-up of "
        f"{format_duration(settings.warmup)}. Capacity {settings.capacity:g} per replica "
        f"({capacity_origin(settings, given=context.capacity_given)}), the same for every "
        f"candidate; the SLO at {settings.slo_utilisation:g} of it; a new replica ready "
        f"{format_duration(ready_after(settings, context.trace))} after its decision. The "
        "figures are those of `autoscaler backtest` (defined in docs/backtest.md).",
        *input_text(context.trace),
    ]
    overview = Section("Recommendations", [
        Table(["policy", "strategy", "tuned", "given", "recommended", "u", "replica-hours",
               "SLO violation %", "against the given"], [_best_row(r) for r in results]),
        frontier_chart(results, inputs.budget),
    ])
    sections = [overview]
    for result in results:
        section = Section(f"{result.label}: {result.policy.strategy}, service "
                          f"{result.policy.service}",
                          [recommendation_text(result, context)])
        if result.frontier.refined_around is not None:
            section.blocks.append(f"Refined around u {result.frontier.refined_around:.2f}.")
        section.blocks.append(frontier_table(result))
        sections.append(section)
    return Document(f"Tuning within an SLO budget of {inputs.budget:g} %", intro, sections)


def _trial_record(knob: Knob, trial: Trial) -> dict[str, Any]:
    return {
        "utilisation": trial.utilisation, "given": trial.candidate.given,
        "values": dict(zip(knob.keys, trial.candidate.values, strict=True)),
        **asdict(trial.scores),
    }


def _candidate_records(frontier: Frontier) -> list[dict[str, Any]]:
    on_frontier = {id(t) for t in frontier.efficient}
    return [{**_trial_record(frontier.knob, t), "on_frontier": id(t) in on_frontier}
            for t in frontier.trials]


def summary(results: Sequence[_Tuned], context: _Context) -> dict[str, Any]:
    settings, inputs, trace = context.settings, context.inputs, context.trace
    return {
        "settings": {
            "trace": trace.source, "trace_step_seconds": trace.step.total_seconds(),
            "trace_steps": len(trace), "scored_steps": context.scored,
            "scored_from": trace.time(len(trace) - context.scored).isoformat(),
            "trace_warnings": list(trace.warnings), "trace_notes": list(trace.notes),
            "capacity": settings.capacity,
            "capacity_source": "--capacity" if context.capacity_given else "assumed",
            "slo_utilisation": settings.slo_utilisation,
            "startup_seconds": settings.startup.total_seconds(),
            "ready_after_seconds": ready_after(settings, trace).total_seconds(),
            "warmup_seconds": settings.warmup.total_seconds(), "metric": settings.metric,
            "slo_budget_pct": inputs.budget, "grid": list(inputs.grid),
            "refine_step": inputs.refine,
        },
        "policies": [
            {
                "file": result.file, "service": result.policy.service,
                "strategy": result.policy.strategy, "metric": result.frontier.knob.metric,
                "tuned_keys": list(result.frontier.knob.keys),
                "given": dict(zip(result.frontier.knob.keys, result.frontier.knob.given,
                                  strict=True)),
                "recommended": None if result.frontier.recommended is None else {
                    **_trial_record(result.frontier.knob, result.frontier.recommended),
                    "written": str(result.written) if result.written else None,
                },
                "least_violating": _trial_record(result.frontier.knob,
                                                 result.frontier.least_violating),
                "refined_around": result.frontier.refined_around,
                "not_tried_over_limit": result.frontier.skipped,
                "candidates": _candidate_records(result.frontier),
            }
            for result in results
        ],
    }
