"""How long the predictive model takes to train on 14 days at one point a minute, and to
forecast one tick.

    .venv/bin/python benchmarks/training_time.py [TRACE.csv] [--repeat 5] [--tick 15s]

Trains the demo's predictive policy's forecaster on the last 14 days of a trace (default: the
demo's three weeks of WorldCup98, the tournament's first two), at the trace's step or at the
agent's `--tick`, `--repeat` times and prints each training's time and the median, then the
mean time of one forecast. The metric is given a `limit` (its target), so that the worst case
is trained and forecast too. The issue's bar: training one service on 14 days takes well under
a second. Figures vary with the machine's load: compare them within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta
from importlib import resources
from pathlib import Path

from autoscaler.core.durations import format_duration, parse_duration
from autoscaler.core.spec import Policy, parse_policy
from autoscaler.offline.traces import load_csv
from autoscaler.predictive.book import ForecastBook
from autoscaler.predictive.forecaster import MetricForecaster

DEMO = resources.files("autoscaler") / "demo"
FORECASTS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", nargs="?", type=Path,
                        help="CSV trace (default: the demo's, one point a minute)")
    parser.add_argument("--repeat", type=int, default=5, help="trainings to time (default 5)")
    parser.add_argument("--tick", type=parse_duration, default=None, metavar="DURATION",
                        help="the agent's tick, a divisor of the trace's step, such as 15s (the "
                             "agent's default): each point is repeated to fill it, as the agent "
                             "reads its history at its tick (default: the trace's step)")
    arguments = parser.parse_args()
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    path = arguments.trace or Path(str(DEMO / "worldcup98-3-weeks.csv.gz"))
    trace = load_csv(path)
    tick = arguments.tick or trace.step
    if tick <= timedelta(0) or trace.step % tick:
        parser.error(f"--tick {format_duration(tick)} does not divide the trace's step "
                     f"({format_duration(trace.step)})")
    policy = parse_policy((DEMO / "predictive.yaml").read_bytes(), "predictive.yaml")
    assert isinstance(policy, Policy), policy
    steps = round(policy.predictive.history / trace.step)
    if len(trace) < steps:
        parser.error(f"{path} holds {len(trace)} steps, fewer than the policy's history "
                     f"({steps} steps)")
    per_step = trace.step // tick
    values: list[float | None] = [v for v in trace.values[len(trace) - steps:]
                                  for _ in range(per_step)]
    start = trace.time(len(trace) - steps)
    times = [start + index * tick for index in range(len(values))]
    print(f"trace: {path}, the last {policy.predictive.history.days} days: {len(values):,} "
          f"points at a {format_duration(tick)} tick")
    metric = policy.metrics[0]
    settings = ForecastBook(tick=tick).settings_for(
        policy, metric.model_copy(update={"limit": metric.target}))
    seconds = []
    for _ in range(arguments.repeat):
        forecaster = MetricForecaster(settings)
        started = time.perf_counter()
        failure = forecaster.train(times, values)
        seconds.append(time.perf_counter() - started)
        if failure:
            raise SystemExit(f"training failed: {failure}")
    print("training: " + ", ".join(f"{s:.3f}" for s in seconds)
          + f" s; median {statistics.median(seconds):.3f} s")
    started = time.perf_counter()
    for _ in range(FORECASTS):
        forecaster.forecast(times[-1])
    print(f"one forecast: {(time.perf_counter() - started) / FORECASTS * 1000:.2f} ms "
          f"(mean of {FORECASTS})")


if __name__ == "__main__":
    main()
