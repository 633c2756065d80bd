"""How evenly a service's load spreads over its tasks. Adding replicas does not help a load
that DNS round-robin caching or sticky clients keep on a few tasks: the agent says so. Pure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Spread:
    """One metric's load over the tasks: the coefficient of variation (population standard
    deviation / mean) and the hottest task's share of the total."""

    metric: str
    tasks: int
    cv: float
    hottest_share: float


def spread(metric: str, loads: Sequence[float]) -> Spread | None:
    """None with fewer than two tasks or no load at all: nothing to spread. Worked out on
    the loads as shares of the hottest (both figures are ratios), so that loads near the
    float's limits (1e308 twice; 5e-324 and 0) neither overflow nor divide by zero."""
    peak = max(loads, default=0.0)
    if len(loads) < 2 or not 0 < peak < math.inf:
        return None
    shares = [load / peak for load in loads]
    total = math.fsum(shares)
    return Spread(metric, len(loads), statistics.pstdev(shares) / (total / len(shares)),
                  1 / total)


def least_even(tasks: Mapping[str, Sequence[float]]) -> Spread | None:
    """The per-task metric whose load spreads least evenly, if any has a spread."""
    found = [s for metric, loads in sorted(tasks.items()) if (s := spread(metric, loads))]
    return max(found, key=lambda s: s.cv, default=None)


def uneven_since(previous: datetime | None, found: Spread | None, *, max_cv: float,
                 now: datetime) -> datetime | None:
    """Since when the load has been uneven (cv above `max_cv`) without a break; None while
    it is even or not known."""
    if found is None or found.cv <= max_cv:
        return None
    return previous or now


def is_imbalanced(since: datetime | None, *, lasting: timedelta, now: datetime) -> bool:
    return since is not None and now - since >= lasting
