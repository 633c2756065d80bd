"""How many trace steps a second the backtest replays, per strategy, through the real engine.

    .venv/bin/python benchmarks/backtest_speed.py [TRACE.csv]

Replays the scored part of a trace (default: the shared WorldCup98 trace if it is there, else
the demo's) with a `target` and a `threshold` policy and prints steps/s for each. The issue's
bar: at least 10,000 steps/s for a `target` policy. Figures vary with the machine's load: run
it twice, and compare policies within one run.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from importlib import resources
from pathlib import Path

from autoscaler.core.spec import Policy, parse_policy
from autoscaler.offline.replay import BacktestSettings, replay
from autoscaler.offline.traces import load_csv

SHARED = (Path(__file__).resolve().parents[2] / "shared" / "traces"
          / "worldcup98-requests-per-minute.csv")


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    elif SHARED.exists():
        path = SHARED
    else:
        path = Path(str(resources.files("autoscaler") / "demo" / "worldcup98-3-weeks.csv.gz"))
    trace = load_csv(path)
    demo = resources.files("autoscaler") / "demo"
    print(f"trace: {path} ({len(trace)} steps)")
    for name in ("target.yaml", "threshold.yaml"):
        policy = parse_policy((demo / name).read_bytes(), name)
        assert isinstance(policy, Policy), policy
        settings = BacktestSettings(capacity=2000 / 0.7, warmup=timedelta(days=8))
        started = time.perf_counter()
        run = replay(policy, name, trace, settings)
        seconds = time.perf_counter() - started
        print(f"{policy.strategy:>10}: {len(run.load):,} steps in {seconds:.2f} s = "
              f"{len(run.load) / seconds:,.0f} steps/s")


if __name__ == "__main__":
    main()
