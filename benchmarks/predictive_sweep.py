"""Predictive against reactive scaling on traces of different shapes: the trade-off between
cost and SLO violations, the saving at an SLO budget, the forecast's MASE and how much each
strategy scales.

    .venv/bin/python benchmarks/predictive_sweep.py [--traces DIR] [--budget 0.1]
        [--only NAME ...] [--target-cache FILE] [--trace CSV ... [--fill HOW]]

The shared traces are looked for in `../shared/traces` next to this repository, or next to
the one it was cloned from; the others ship in `benchmarks/data/` or are made here from a
seed (benchmarks/README.md says which, their source and licence).

For each trace: capacity = the trace's 99th percentile per step / 20, max_replicas 1000, and
`target` = u x capacity for u = 0.05 .. 0.95 by 0.05, for the `target` and `predictive`
strategies; predictive's `limit` is the SLO line, 0.9 x capacity, and its other keys but
`startup` are the policy's defaults, what an operator gets. The first half of each
trace is history only; the sweep is scored on the second half. Settings were chosen on the
first halves of the CHOSEN_ON traces; the others are held out. `--trace CSV` adds any trace
in the backtest's CSV form (held out, named by its file), at a start-up of the fewest whole
steps that make whole minutes, at least one, unless `--startup` says otherwise.
Everything runs through `autoscaler.offline.replay.replay`, the agent's own engine. Prints
the trade-off table and, per trace and start-up: the ratio of the best predictive setting's
replica-hours to the best reactive one's at the SLO budget (share of steps in violation,
default 0.1 %), the forecast's MASE on the scored half, both strategies' scaling actions an
hour, the needless raises a day and the largest raise the load never used, and whether the
bars hold. Two processes.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from autoscaler.cli import duration_argument
from autoscaler.core.spec import Policy, parse_policy
from autoscaler.core.strategies import NEEDLESS, ceil_slack
from autoscaler.offline.memo import ForecastMemo
from autoscaler.offline.replay import BacktestSettings, replay, startup_steps
from autoscaler.offline.scoring import needless_raises
from autoscaler.offline.traces import FILLS, CsvOptions, Trace, TraceError, load_csv
from autoscaler.predictive.features import LAGS
from autoscaler.predictive.forecaster import MIN_TRAINING_ROWS

DATA = Path(__file__).resolve().parent / "data"
UTILISATIONS = [round(0.05 * i, 2) for i in range(1, 20)]
STRATEGIES = ("target", "predictive")
CHOSEN_ON = ("WorldCup98", "NASA")
"""The traces whose first halves the settings were chosen on; the others are held out."""
COMPARED_ON = {"bursty": "the margin's window and the limits against thrashing were compared "
                         "on its scored half",
               "quiet": "the cap on the target rule's raise and the raise band were made for its "
                        "needless raises"}
"""Held-out traces that later choices were nonetheless compared on, and which."""


def role_of(trace: str) -> str:
    """How far a trace is held out from the choice of the settings."""
    base = trace.split("/")[0]
    if base in CHOSEN_ON:
        return "chosen on" if "/" not in trace else f"the 5-minute means of {base}, chosen on"
    return f"held out, but {COMPARED_ON[trace]}" if trace in COMPARED_ON else "held out"


DAYS = 14
START = datetime(2026, 1, 5, tzinfo=UTC)
"""A Monday: days 5, 6, 12 and 13 are the weekends."""
MINUTE = timedelta(minutes=1)


def daily(minutes: NDArray[np.int64], low: float, high: float,
          peak_hour: float = 14.0) -> NDArray[np.float64]:
    """A smooth daily cycle from `low`, twelve hours off the peak, to `high` at `peak_hour`."""
    phase = 2 * np.pi * ((minutes % 1440) / 1440 - peak_hour / 24)
    return low + (high - low) * (1 + np.cos(phase)) / 2


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> NDArray[np.float64]:
    """An AR(1) series of `n` points from 0, with shocks of standard deviation `sd`."""
    shocks = rng.normal(0, sd, n)
    out = np.zeros(n)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + shocks[t]
    return out


def requests(rate: NDArray[np.float64], rng: np.random.Generator, name: str) -> Trace:
    """Requests a minute at `rate`, with Poisson noise."""
    counts = rng.poisson(np.maximum(rate, 0.0)).astype(float).tolist()
    return Trace(START, MINUTE, counts, name)


def bursty(seed: int = 19) -> Trace:
    """A daily cycle of 100 to 300 requests a minute, and about six bursts a day of 2 to 20
    minutes at 2 to 8 times the load, starting at once."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    rate = 200 + 100 * np.sin(2 * np.pi * (minutes % 1440) / 1440 - np.pi / 2)
    for start in rng.integers(0, len(minutes) - 20, size=6 * DAYS):
        rate[start:start + rng.integers(2, 21)] *= rng.uniform(2, 8)
    return requests(rate, rng, "bursty")


def cpu(seed: int = 101) -> Trace:
    """A service's CPU % at 5-minute points: 15 to 55 % through a weekday, 10 to 35 % at
    weekends, AR(1) noise, and three batch jobs a week at random times, 20 to 40 minutes at
    15 to 25 points more."""
    rng = np.random.default_rng(seed)
    n = DAYS * 288
    minutes = np.arange(n) * 5
    weekend = (minutes // 1440) % 7 >= 5
    values = np.where(weekend, daily(minutes, 10, 35), daily(minutes, 15, 55))
    values += ar1(rng, n, 0.8, 2.5)
    for start in rng.integers(0, n - 8, size=3 * DAYS // 7):
        values[start:start + int(rng.integers(4, 9))] += rng.uniform(15, 25)
    return Trace(START, 5 * MINUTE, np.clip(values, 2, 100).round(2).tolist(), "cpu")


def level_shift(seed: int = 102) -> Trace:
    """A daily cycle of 200 to 600 requests a minute that drops to 40 % for days 9 and 10
    (traffic moved to another region) and comes back: both inside the scored half."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    rate = daily(minutes, 200, 600)
    rate[8 * 1440:10 * 1440] *= 0.4
    return requests(rate, rng, "level-shift")


def hourly_job(seed: int = 103) -> Trace:
    """About 150 requests a minute, and five times as many for the first five minutes of
    every hour (a periodic job): a spike the load's own history foretells."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    rate = np.where(minutes % 60 < 5, 750.0, 150.0)
    return requests(rate, rng, "hourly-job")


def random_walk(seed: int = 104) -> Trace:
    """About 300 requests a minute that follow no clock: a geometric random walk (steps of
    0.8 % a minute), pulled back towards 300 over about a day."""
    rng = np.random.default_rng(seed)
    n = DAYS * 1440
    steps = rng.normal(0, 0.008, n)
    logged = np.empty(n)
    logged[0] = np.log(300)
    for t in range(1, n):
        logged[t] = logged[t - 1] + (np.log(300) - logged[t - 1]) / 1440 + steps[t]
    return requests(np.exp(logged), rng, "random-walk")


def growth(seed: int = 105) -> Trace:
    """A daily cycle of 100 to 300 requests a minute on the first day, growing 4 % a day, with
    slow wobbles of about 5 %."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    wobble = ar1(rng, len(minutes), 0.95, 0.05 * np.sqrt(1 - 0.95 ** 2))
    rate = daily(minutes, 100, 300) * 1.04 ** (minutes / 1440) * (1 + wobble)
    return requests(rate, rng, "growth")


def quiet(seed: int = 106) -> Trace:
    """A quiet service: 0.5 to 6 requests a minute through the day, many minutes with none."""
    rng = np.random.default_rng(seed)
    return requests(daily(np.arange(DAYS * 1440), 0.5, 6), rng, "quiet")


def lognormal(seed: int = 107) -> Trace:
    """A daily cycle of 50 to 250 requests a minute under heavy noise: each minute's rate
    the cycle's times a lognormal factor (sigma 0.3), as an API whose callers batch."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    rate = daily(minutes, 50, 250) * np.exp(rng.normal(0, 0.3, len(minutes)))
    return requests(rate, rng, "lognormal")


def sawtooth(seed: int = 108) -> Trace:
    """A backlog drained every six hours: 50 requests a minute rising steadily to 450, then
    back to 50 at once, four times a day."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    return requests(50 + 400 * (minutes % 360) / 360, rng, "sawtooth")


def weekend_off(seed: int = 109) -> Trace:
    """A business application: a daily cycle of 100 to 500 requests a minute on weekdays,
    a tenth of it at weekends."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    weekend = (minutes // 1440) % 7 >= 5
    rate = daily(minutes, 100, 500) * np.where(weekend, 0.1, 1.0)
    return requests(rate, rng, "weekend-off")


def spikes(seed: int = 110) -> Trace:
    """About 50 requests a minute (20 to 80 over the day), and spikes of a single minute at
    random, four a day on average, each adding 250 requests or more (Pareto of shape 1.5:
    half of them over 400, one in a hundred over 5,000)."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(DAYS * 1440)
    rate = 50 + 30 * np.sin(2 * np.pi * (minutes % 1440) / 1440)
    at = rng.choice(len(minutes), 4 * DAYS, replace=False)
    rate[at] += 250 * (rng.pareto(1.5, len(at)) + 1)
    return requests(rate, rng, "spikes")


def batch_windows(seed: int = 111) -> Trace:
    """A service that is off or on: 5 requests a minute, and 500 during four batch windows
    a day of 40 to 90 minutes, each starting up to half an hour from its usual time (2:00,
    9:00, 14:00, 20:00)."""
    rng = np.random.default_rng(seed)
    rate = np.full(DAYS * 1440, 5.0)
    for day in range(DAYS):
        for hour in (2, 9, 14, 20):
            begin = day * 1440 + hour * 60 + int(rng.integers(-30, 31))
            rate[begin:begin + int(rng.integers(40, 91))] = 500.0
    return requests(rate, rng, "batch-windows")


def averaged(trace: Trace, steps: int, name: str) -> Trace:
    """The trace's mean over each `steps` steps: a coarser metric of the same load."""
    whole = len(trace) // steps * steps
    values = np.asarray(trace.values[:whole]).reshape(-1, steps).mean(axis=1).tolist()
    return Trace(trace.start, trace.step * steps, values, name)


@dataclass(frozen=True)
class Source:
    name: str
    load: Callable[[Path], Trace]
    startups: tuple[timedelta, ...]
    shared: bool = True
    """Read from the shared traces' directory (the others ship here or are made here)."""


GIVEN_SHORTEST = timedelta(days=4)
"""The shortest trace `--trace` takes: its first half, history only, must hold a day for the
model's first training and a day of its errors, and the scored half a day to compare the
forecast with the one-day seasonal naive one (MASE)."""

def given_name(file: Path) -> str:
    """A `--trace`'s name in the tables: its file's, without `.csv` or `.csv.gz`."""
    return file.name.removesuffix(".gz").removesuffix(".csv")


def default_startup(step: timedelta) -> timedelta:
    """A given trace's start-up: the fewest whole steps that make at least a minute and a
    whole number of minutes, as the tables count start-ups in minutes."""
    steps = 1
    while steps * step < MINUTE or (steps * step) % MINUTE:
        steps += 1
    return steps * step


def load_given(file: Path, options: CsvOptions) -> Trace:
    """A `--trace`, refused (TraceError) where the sweep could not score it."""
    loaded = load_csv(file, options)
    if len(loaded) * loaded.step < GIVEN_SHORTEST:
        days = len(loaded) * loaded.step / timedelta(days=1)
        raise TraceError(f"{file}: {days:.1f} days of load; the sweep needs at "
                         f"least {GIVEN_SHORTEST.days} days (history for the model in the "
                         "first half, a day scored in the second)")
    if capacity_of(loaded) <= 0:
        raise TraceError(f"{file}: the load's 99th percentile is 0, so a replica's capacity "
                         "(a twentieth of it) would be 0: nothing to scale")
    return loaded


def given_startup_refusal(trace: Trace, startup: timedelta) -> str | None:
    """Why `startup` cannot be swept on `trace`, or None."""
    if startup < MINUTE or startup % trace.step:
        return (f"a start-up of {startup} is not a whole number of the trace's steps "
                f"({trace.step}) of at least a minute")
    # The model's rows need the longest lag before them and the horizon after them.
    needed = max(LAGS) + startup_steps(startup, trace.step) + 1 + MIN_TRAINING_ROWS
    if len(trace) // 2 < needed:
        return (f"its first half holds {len(trace) // 2} steps; at a start-up of {startup} "
                f"the model needs {needed} to train on (longer history, or a finer step)")
    return None


def _shared(file: str) -> Callable[[Path], Trace]:
    return lambda directory: load_csv(directory / file)


SOURCES = [
    Source("WorldCup98", _shared("worldcup98-requests-per-minute.csv"),
           (timedelta(minutes=1), timedelta(minutes=5))),
    Source("NASA", _shared("nasa-http-requests-per-minute.csv"),
           (timedelta(minutes=1), timedelta(minutes=5))),
    Source("WorldCup98/5m", lambda d: averaged(
        load_csv(d / "worldcup98-requests-per-minute.csv"), 5, "WorldCup98/5m"),
        (timedelta(minutes=5),)),
    Source("NASA/5m", lambda d: averaged(
        load_csv(d / "nasa-http-requests-per-minute.csv"), 5, "NASA/5m"),
        (timedelta(minutes=5),)),
    Source("taylor", lambda _: load_csv(DATA / "taylor-electricity-half-hourly.csv"),
           (timedelta(minutes=30),), shared=False),
    Source("bursty", lambda _: bursty(), (timedelta(minutes=2),), shared=False),
    Source("cpu", lambda _: cpu(), (timedelta(minutes=5),), shared=False),
    Source("level-shift", lambda _: level_shift(), (timedelta(minutes=2),), shared=False),
    Source("hourly-job", lambda _: hourly_job(), (timedelta(minutes=1),), shared=False),
    Source("random-walk", lambda _: random_walk(), (timedelta(minutes=2),), shared=False),
    Source("growth", lambda _: growth(), (timedelta(minutes=5),), shared=False),
    Source("quiet", lambda _: quiet(), (timedelta(minutes=1),), shared=False),
    Source("lognormal", lambda _: lognormal(), (timedelta(minutes=1),), shared=False),
    Source("sawtooth", lambda _: sawtooth(), (timedelta(minutes=2),), shared=False),
    Source("weekend-off", lambda _: weekend_off(), (timedelta(minutes=5),), shared=False),
    Source("spikes", lambda _: spikes(), (timedelta(minutes=1),), shared=False),
    Source("batch-windows", lambda _: batch_windows(), (timedelta(minutes=1),), shared=False),
]


@dataclass(frozen=True)
class Row:
    trace: str
    startup_min: int
    strategy: str
    u: float
    cost_ratio: float
    replica_hours: float
    slo_violation_pct: float
    under_time_pct: float
    actions_per_hour: float
    smape_pct: float | None
    mase: float | None
    needless_per_day: float
    """Raises to more than NEEDLESS x what the largest load of the following horizon needs
    at target (for predictive, also above target's count at the same u), a simulated day."""
    unused: tuple[int, int, int, int]
    """The largest raise the load never used: (excess, count before, count after, count
    the following horizon's load needed at target); excess 0 if none."""
    billed_runs: tuple[tuple[int, int], ...] = ()
    """`target` only: its billed counts as (count, steps) runs, for the predictive rows and
    the cache."""


def default_traces() -> Path:
    """The shared traces: next to this repository (`../shared/traces`), or, for a clean clone
    made elsewhere, next to the repository it was cloned from."""
    repository = Path(__file__).resolve().parents[1]
    places = [repository.parent / "shared" / "traces"]
    try:
        origin = subprocess.run(
            ["git", "-C", str(repository), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
    except OSError:
        origin = ""
    if origin and Path(origin).is_dir():
        places.append(Path(origin).resolve().parent / "shared" / "traces")
    return next((place for place in places if place.is_dir()), places[0])


def capacity_of(trace: Trace) -> float:
    ordered = sorted(trace.values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 20


def policy(strategy: str, u: float, settings: BacktestSettings) -> Policy:
    """`target` = u x capacity; predictive's `limit` is the SLO line, what a replica serves
    at `slo_utilisation` of its capacity."""
    target = u * settings.capacity
    metric: dict[str, object] = {"name": "requests", "query": "q", "target": target}
    if strategy == "predictive":  # above the SLO line (u 0.95) the limit is the target
        metric["limit"] = max(settings.slo_utilisation * settings.capacity, target)
    document = {
        "service": "bench", "min_replicas": 1, "max_replicas": 1000, "strategy": strategy,
        "metrics": [metric],
        "predictive": {"startup": f"{int(settings.startup.total_seconds())}s"},
    }
    parsed = parse_policy(yaml.safe_dump(document).encode(), f"{strategy}.yaml")
    assert isinstance(parsed, Policy), parsed
    return parsed


@dataclass(frozen=True)
class Job:
    """One trace at one start-up; `file` and how to read it for a trace given with
    `--trace`."""

    name: str
    directory: Path
    startup_seconds: int
    cached: dict[str, dict[str, object]]
    file: Path | None = None
    options: CsvOptions = field(default_factory=CsvOptions)


def sweep(job: Job) -> list[Row]:
    """One trace's rows at one start-up. One OpenMP thread for the model's training: the two
    processes already fill two cores, and more threads than cores made training many times
    slower."""
    with threadpool_limits(limits=1):
        if job.file is not None:
            trace = load_given(job.file, job.options)
        else:
            trace = next(s for s in SOURCES if s.name == job.name).load(job.directory)
        return sweep_trace(job.name, trace, timedelta(seconds=job.startup_seconds),
                           job.cached)


def sweep_trace(name: str, trace: Trace, startup: timedelta,
                cached: dict[str, dict[str, object]]) -> list[Row]:
    """`cached`: the `target` rows already replayed, by trace, start-up and u."""
    capacity = capacity_of(trace)
    warmup = (len(trace) // 2) * trace.step
    rows = []
    memo: ForecastMemo = {}
    settings = BacktestSettings(capacity=capacity, startup=startup, warmup=warmup)
    horizon = startup_steps(startup, trace.step) + 1
    minutes = int(startup.total_seconds() // 60)
    load = trace.values[math.ceil(warmup / trace.step - 1e-9):]
    reference: dict[float, list[int]] = {}
    for strategy in STRATEGIES:
        for u in UTILISATIONS:
            key = f"{name}|{minutes}|{u}"
            if strategy == "target" and key in cached:
                fields = dict(cached[key])
                fields["unused"] = tuple(fields["unused"])  # type: ignore[arg-type]
                fields["billed_runs"] = tuple(
                    tuple(r) for r in fields["billed_runs"])  # type: ignore[attr-defined]
                row = Row(**fields)  # type: ignore[arg-type]
                reference[u] = [count for count, n in row.billed_runs for _ in range(n)]
                rows.append(row)
                continue
            started = time.monotonic()
            run = replay(policy(strategy, u, settings), f"{strategy}.yaml", trace, settings,
                         forecast_memo=memo)
            billed = list(run.billed)
            target = u * capacity
            if strategy == "target":
                reference[u] = billed
            against = reference.get(u) if strategy == "predictive" else None
            scores = run.scores
            rows.append(Row(
                name, minutes, strategy, u, scores.replica_hours / scores.oracle_replica_hours,
                scores.replica_hours, scores.slo_violation_pct,
                scores.under_provisioned_time_pct, scores.scaling_actions_per_hour,
                run.forecast.smape_pct if run.forecast else None,
                run.forecast.mase if run.forecast else None,
                len(needless_raises(billed, load, target=target, horizon=horizon,
                                    reference=against)) * 86400
                / (len(billed) * trace.step.total_seconds()),
                largest_unused(billed, load, target=target, horizon=horizon,
                               reference=against),
                runs_of(billed) if strategy == "target" else (),
            ))
            print(f"  {name} startup {startup} {strategy:>10} u={u}: "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    return rows


def runs_of(counts: list[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for count in counts:
        if out and out[-1][0] == count:
            out[-1] = (count, out[-1][1] + 1)
        else:
            out.append((count, 1))
    return tuple(out)


def largest_unused(billed: list[int], load: list[float], *, target: float, horizon: int,
                   reference: list[int] | None) -> tuple[int, int, int, int]:
    """The largest raise above both the count before it and what the largest load of the
    following horizon needed at target (and the reference's count)."""
    found = (0, 0, 0, 0)
    for t in range(1, len(billed)):
        if billed[t] <= billed[t - 1]:
            continue
        needed = ceil_slack(max(load[t:t + horizon + 1]) / target)
        floor = max(billed[t - 1], needed, reference[t] if reference is not None else 0)
        if billed[t] - floor > found[0]:
            found = (billed[t] - floor, billed[t - 1], billed[t], needed)
    return found


def best(rows: list[Row], budget: float) -> Row | None:
    meeting = [r for r in rows if r.slo_violation_pct <= budget]
    return min(meeting, key=lambda r: r.replica_hours) if meeting else None


def meets(best_row: Row | None, group: list[Row], strategy: str) -> str:
    """The best setting that meets the budget, or the one that comes closest."""
    if best_row is not None:
        return (f"u={best_row.u} ({best_row.replica_hours:,.0f} replica-hours, "
                f"{best_row.slo_violation_pct:.3f} %)")
    closest = min((r for r in group if r.strategy == strategy),
                  key=lambda r: (r.slo_violation_pct, r.replica_hours))
    return (f"none (closest u={closest.u}, {closest.slo_violation_pct:.3f} %, "
            f"{closest.replica_hours:,.0f} replica-hours)")


def report(rows: list[Row], budget: float) -> list[str]:
    """Prints the tables; returns the bars missed."""
    print("\nTrade-off: replica-hours / oracle replica-hours, SLO violation % of steps, scaling "
          "actions an hour; predictive's needless raises a day")
    print(f"{'trace':<14}{'startup':>8}{'u':>6}   {'target':>24}   {'predictive':>32}")
    by_key = {(r.trace, r.startup_min, r.u, r.strategy): r for r in rows}
    for trace, startup, u in sorted({(r.trace, r.startup_min, r.u) for r in rows}):
        reactive = by_key[(trace, startup, u, "target")]
        predictive = by_key[(trace, startup, u, "predictive")]
        print(f"{trace:<14}{startup:>6} m{u:>6}   "
              f"{reactive.cost_ratio:7.3f} {reactive.slo_violation_pct:7.3f} % "
              f"{reactive.actions_per_hour:6.2f}   "
              f"{predictive.cost_ratio:7.3f} {predictive.slo_violation_pct:7.3f} % "
              f"{predictive.actions_per_hour:6.2f} {predictive.needless_per_day:6.2f}")
    return at_budget(rows, budget)


def at_budget(rows: list[Row], budget: float) -> list[str]:
    """Per trace and start-up: the ratio of the best settings' replica-hours at the budget,
    the MASE, the scaling, and the bars."""
    print(f"\nAt an SLO budget of {budget} % of steps (settings chosen on the first halves of "
          f"{', '.join(CHOSEN_ON)}; the others held out):")
    missed = []
    top = max(UTILISATIONS)
    for trace, startup in sorted({(r.trace, r.startup_min) for r in rows}):
        group = [r for r in rows if (r.trace, r.startup_min) == (trace, startup)]
        reactive = best([r for r in group if r.strategy == "target"], budget)
        predictive = best([r for r in group if r.strategy == "predictive"], budget)
        mase = next((r.mase for r in group if r.strategy == "predictive"), None)
        label = f"{trace}, {startup} m start-up ({role_of(trace)})"
        shown_mase = f"{mase:.3f}" if mase is not None else "-"
        if reactive is not None and predictive is not None:
            ratio = predictive.replica_hours / reactive.replica_hours
            bar = 0.85 if (trace, startup) == ("WorldCup98", 5) else \
                1.02 if reactive.u == top else 0.95 if mase is not None and mase < 0.8 else 1.0
            verdict = "meets" if ratio <= bar else "MISSES"
            print(f"  {label}: ratio {ratio:.3f} (bar {bar:.2f}: {verdict}); MASE {shown_mase}")
            if ratio > bar:
                missed.append(f"{label}: ratio {ratio:.3f} > {bar:.2f}")
        else:
            print(f"  {label}: no ratio; MASE {shown_mase}")
            if reactive is not None:
                missed.append(f"{label}: predictive meets the budget at no u")
        print(f"      best reactive {meets(reactive, group, 'target')}; "
              f"best predictive {meets(predictive, group, 'predictive')}")
        for name, chosen in (("reactive", reactive), ("predictive", predictive)):
            if chosen is None:
                continue
            same = {r.strategy: r for r in group if r.u == chosen.u}
            print(f"      at {name}'s best u={chosen.u}: actions/hour target "
                  f"{same['target'].actions_per_hour:.2f}, predictive "
                  f"{same['predictive'].actions_per_hour:.2f}")
        worst_actions = max((by_u_pair(group, u) for u in UTILISATIONS),
                            key=lambda pair: pair[1].actions_per_hour
                            - 2 * pair[0].actions_per_hour)
        worst_needless = max((r for r in group if r.strategy == "predictive"),
                             key=lambda r: r.needless_per_day)
        unused = max((r for r in group if r.strategy == "predictive"),
                     key=lambda r: r.unused[0])
        reactive_row, predictive_row = worst_actions
        over = predictive_row.actions_per_hour - (2 * reactive_row.actions_per_hour + 1)
        print(f"      thrash: most actions/hour against 2 x target's + 1 at u={predictive_row.u}"
              f" ({predictive_row.actions_per_hour:.2f} against "
              f"{2 * reactive_row.actions_per_hour + 1:.2f}: "
              f"{'holds' if over <= 0 else 'EXCEEDED'}); most needless raises (above "
              f"{NEEDLESS:g} x the need and target's count) a day "
              f"{worst_needless.needless_per_day:.2f} at u={worst_needless.u} "
              f"({'holds' if worst_needless.needless_per_day <= 1 else 'EXCEEDED'})")
        if unused.unused[0]:
            excess, before, after, needed = unused.unused
            print(f"      largest raise the load never used: {before} -> {after} at "
                  f"u={unused.u}, where the following horizon's load needed {needed} "
                  f"({excess} above the most of both)")
        if over > 0:
            missed.append(f"{label}: {predictive_row.actions_per_hour:.2f} actions/hour at "
                          f"u={predictive_row.u}, over 2 x {reactive_row.actions_per_hour:.2f}"
                          " + 1")
        if worst_needless.needless_per_day > 1:
            missed.append(f"{label}: {worst_needless.needless_per_day:.2f} needless raises a "
                          f"day at u={worst_needless.u}")
    return missed


def by_u_pair(group: list[Row], u: float) -> tuple[Row, Row]:
    same = {r.strategy: r for r in group if r.u == u}
    return same["target"], same["predictive"]


def given_jobs(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> list[Job]:
    """A job for each `--trace`, refused as a usage error where the sweep could not score
    it; what reading it assumed or repaired is said on stderr. Never the cache: another file
    of the same name would read this one's rows."""
    options = CsvOptions(fill=arguments.fill, resample=arguments.resample,
                         column=arguments.column)
    if not arguments.trace and options != CsvOptions():
        parser.error("--fill, --resample and --column say how to read a --trace: give one")
    jobs: list[Job] = []
    taken = {s.name for s in SOURCES}
    for file in arguments.trace:
        name = given_name(file)
        if any(job.file is not None and job.file.resolve() == file.resolve() for job in jobs):
            parser.error(f"--trace {file}: given twice")
        if name in taken:
            parser.error(f"--trace {file}: another trace is named {name}: rename the file")
        taken.add(name)
        try:
            trace = load_given(file, options)
        except TraceError as error:
            parser.error(f"--trace: {error}")
        startup = timedelta(minutes=arguments.startup) if arguments.startup is not None \
            else default_startup(trace.step)
        refusal = given_startup_refusal(trace, startup)
        if refusal is not None:
            parser.error(f"--trace {file}: {refusal}")
        for said in (*trace.notes, *trace.warnings):
            print(f"--trace {file}: {said}", file=sys.stderr)
        jobs.append(Job(name, arguments.traces, int(startup.total_seconds()), {}, file,
                        options))
    return jobs


def planned(argv: list[str] | None = None
            ) -> tuple[argparse.Namespace, dict[str, dict[str, object]], list[Job]]:
    """The options (`traces` resolved), the cached `target` rows and the sweeps to run.
    Refused as usage errors, before anything runs: a name no trace has and a start-up no
    chosen trace is run at (either ran nothing and printed "Every bar holds."), shared
    traces missing from the directory (the traces that ship here run without them), and a
    `--trace` that cannot be read, is too short, or has another trace's name."""
    names = [s.name for s in SOURCES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=Path, default=None,
                        help="the directory of the shared traces (default: ../shared/traces "
                             "next to this repository, or to the one it was cloned from); "
                             "taylor and the generated traces run without it")
    parser.add_argument("--budget", type=float, default=0.1,
                        help="SLO budget, %% of steps in violation (default 0.1)")
    parser.add_argument("--only", nargs="+", default=None, choices=names, metavar="NAME",
                        help=f"these traces only (of {', '.join(names)})")
    parser.add_argument("--target-cache", type=Path, default=None,
                        help="a JSON file of `target` rows, read and written: `target` does "
                             "not depend on the forecast, so iterating on predictive needs "
                             "them once")
    parser.add_argument("--startup", type=int, default=None,
                        help="this start-up only, in minutes (a --trace's start-up)")
    parser.add_argument("--trace", type=Path, action="append", default=[], metavar="CSV",
                        help="also sweep this trace, a CSV as `autoscaler backtest --trace` "
                             "reads (at least 4 days; held out, named by its file, at a "
                             "start-up of the fewest whole steps that make whole minutes, at "
                             "least one, unless --startup says otherwise); repeat for several. "
                             "With --trace, the built-in traces run only if --only names them")
    parser.add_argument("--fill", choices=FILLS, default=None,
                        help="with --trace: fill missing steps with 0, the value before, or "
                             "interpolated (default: a gap is an error)")
    parser.add_argument("--resample", type=duration_argument, default=None, metavar="DURATION",
                        help="with --trace: put the rows on this step, e.g. 1m (each step the "
                             "mean of its rows)")
    parser.add_argument("--column", default=None, metavar="NAME",
                        help="with --trace: the header of the value column (default: one "
                             "named like value or requests, else the second)")
    arguments = parser.parse_args(argv)
    arguments.traces = arguments.traces or default_traces()
    names_chosen = arguments.only if arguments.only is not None \
        else [] if arguments.trace else names
    chosen = [s for s in SOURCES if s.name in names_chosen]
    cache_file = arguments.target_cache
    cached = json.loads(cache_file.read_text()) if cache_file and cache_file.is_file() else {}
    jobs = [Job(s.name, arguments.traces, int(startup.total_seconds()), cached)
            for s in chosen for startup in s.startups
            if arguments.startup is None or startup.total_seconds() == 60 * arguments.startup]
    jobs += given_jobs(parser, arguments)
    if not jobs:
        parser.error(f"--startup {arguments.startup}: no trace chosen runs at it (" + "; ".join(
            f"{s.name}: {', '.join(str(t // timedelta(minutes=1)) for t in s.startups)}"
            for s in chosen) + ")")
    shared = [s.name for s in chosen if s.shared and any(job.name == s.name for job in jobs)]
    if shared and not (arguments.traces / "worldcup98-requests-per-minute.csv").is_file():
        parser.error(f"{arguments.traces} lacks the shared traces ({', '.join(shared)}): "
                     "pass --traces DIR, or --only taylor bursty")
    return arguments, cached, jobs


def target_rows_to_cache(rows: list[Row], jobs: list[Job]) -> dict[str, dict[str, object]]:
    """The `target` rows to keep in `--target-cache`, by trace, start-up and u: never a
    given trace's, as another file of the same name would read them."""
    given_names = {job.name for job in jobs if job.file is not None}
    return {f"{r.trace}|{r.startup_min}|{r.u}": asdict(r)
            for r in rows if r.strategy == "target" and r.trace not in given_names}


def main() -> None:
    arguments, cached, jobs = planned()
    print(f"traces: {arguments.traces}", flush=True)
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(sweep, jobs))
    rows = [row for part in parts for row in part]
    if arguments.target_cache:
        cached.update(target_rows_to_cache(rows, jobs))
        arguments.target_cache.write_text(json.dumps(cached))
    missed = report(rows, arguments.budget)
    print("\nBars missed:" if missed else "\nEvery bar holds.")
    for line in missed:
        print(f"  {line}")
    print(f"\n{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
