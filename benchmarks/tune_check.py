"""The check of `autoscaler tune` (issue 20, item 1): on the shipped WorldCup98 weeks it
recommends a target whose utilisation (target / capacity) is within 0.05 of the cheapest one
meeting the SLO budget in a sweep on a 0.01 grid at the same capacity.

    .venv/bin/python benchmarks/tune_check.py [--policy FILE] [--trace CSV] [--last 8d]
        [--warmup 8d] [--budget 0.1] [--jobs 2] [--no-sweep]

Runs `autoscaler tune` (timed), then replays the policy with target = u x capacity for every u
from 0.10 to 1.00 in steps of 0.01 (in `--jobs` processes, a predictive policy's forecasts
shared through a memo per process), prints both answers and their distance, and exits 1 when
it is more than 0.05. `--last 8d --warmup 1d` times tune on a week of scored minutes (the
trace's last eight days). Default: the demo trace and target.yaml, capacity 2000 / 0.7 as
tune assumes it, warm-up 8d: about 25 s for tune and 2 minutes for the sweep here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from importlib import resources
from pathlib import Path

from autoscaler.cli import main as autoscaler
from autoscaler.core.durations import parse_duration
from autoscaler.core.spec import Policy, parse_policy
from autoscaler.offline.memo import ForecastMemo
from autoscaler.offline.replay import (
    BacktestSettings,
    default_capacity,
    default_startup,
    replay,
)
from autoscaler.offline.scoring import Scores
from autoscaler.offline.traces import Trace, load_csv
from autoscaler.offline.tune import knob_of, tuned

DEMO = resources.files("autoscaler") / "demo"
SWEEP = [round(0.01 * i, 2) for i in range(10, 101)]
_MEMO: ForecastMemo = {}


def sweep_one(policy: Policy, trace: Trace, settings: BacktestSettings, u: float
              ) -> tuple[float, Scores]:
    knob = knob_of(policy, policy.metrics[0])
    candidate = tuned(policy, knob, knob.values_at(u, settings.capacity))
    return u, replay(candidate, "sweep", trace, settings, forecast_memo=_MEMO).scores


def sliced(trace: Trace, last: timedelta | None, folder: Path) -> Path:
    """The trace's last `last` as a CSV tune can read."""
    keep = len(trace) if last is None else round(last / trace.step)
    path = folder / "trace.csv"
    rows = [f"{trace.time(i).isoformat()},{trace.values[i]:g}"
            for i in range(len(trace) - keep, len(trace))]
    path.write_text("minute,requests\n" + "\n".join(rows) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", type=Path, default=Path(str(DEMO / "target.yaml")))
    parser.add_argument("--trace", type=Path,
                        default=Path(str(DEMO / "worldcup98-3-weeks.csv.gz")))
    parser.add_argument("--last", type=parse_duration, default=None,
                        help="keep only the trace's last DURATION (e.g. 8d)")
    parser.add_argument("--warmup", default="8d")
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-sweep", action="store_true", help="time tune only")
    arguments = parser.parse_args()

    policy = parse_policy(arguments.policy.read_bytes(), str(arguments.policy))
    assert isinstance(policy, Policy), policy
    with tempfile.TemporaryDirectory() as folder:
        trace_file = sliced(load_csv(arguments.trace), arguments.last, Path(folder))
        trace = load_csv(trace_file)
        started = time.monotonic()
        code = autoscaler(["tune", "--trace", str(trace_file), "--policy", str(arguments.policy),
                           "--out", str(Path(folder) / "out"), "--warmup", arguments.warmup,
                           "--slo-budget", str(arguments.budget),
                           "--jobs", str(arguments.jobs)])
        seconds = time.monotonic() - started
        assert code == 0, code
        summary = json.loads((Path(folder) / "out" / "summary.json").read_text())
    record = summary["policies"][0]
    recommended = record["recommended"]
    print(f"\ntune: {seconds:.0f} s for {len(record['candidates'])} candidates of "
          f"{summary['settings']['scored_steps']:,} scored steps "
          f"({policy.strategy}, {arguments.policy.name})")
    if recommended is None:
        print("tune recommended nothing")
    else:
        print(f"tune recommends u {recommended['utilisation']:.2f}: "
              f"{recommended['replica_hours']:,.1f} replica-hours, "
              f"{recommended['slo_violation_pct']:.3f} % in SLO violation")
    if arguments.no_sweep:
        return 0

    capacity = default_capacity([policy])
    assert capacity is not None and abs(capacity - summary["settings"]["capacity"]) < 1e-9
    settings = BacktestSettings(capacity=capacity, warmup=parse_duration(arguments.warmup),
                                startup=default_startup([policy]))
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=arguments.jobs) as pool:
        results = dict(pool.map(sweep_one, [policy] * len(SWEEP), [trace] * len(SWEEP),
                                [settings] * len(SWEEP), SWEEP, chunksize=4))
    within = [u for u in SWEEP if results[u].slo_violation_pct <= arguments.budget + 1e-9]
    print(f"sweep of {len(SWEEP)} utilisations (0.01 grid): {time.monotonic() - started:.0f} s")
    if not within:
        print("no u on the 0.01 grid meets the budget")
        return 0 if recommended is None else 1
    cheapest = min(within, key=lambda u: results[u].replica_hours)
    print(f"the 0.01 grid's cheapest within {arguments.budget:g} %: u {cheapest:.2f}: "
          f"{results[cheapest].replica_hours:,.1f} replica-hours, "
          f"{results[cheapest].slo_violation_pct:.3f} %")
    if recommended is None:
        print("FAIL: tune recommended nothing")
        return 1
    distance = abs(recommended["utilisation"] - cheapest)
    verdict = "PASS" if distance <= 0.05 + 1e-9 else "FAIL"
    print(f"{verdict}: |{recommended['utilisation']:.2f} - {cheapest:.2f}| = {distance:.2f} "
          "(at most 0.05)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
