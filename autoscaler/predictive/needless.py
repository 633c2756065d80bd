"""A metric's needless forecast raises, and the limit they set on its raises.

A raise of the forecast's count above the count in force before it, and above `target`
alone's, is judged once its horizon has passed, on the values seen after it: one to
more than NEEDLESS x what their peak needs at `target` was needless (`is_needless`, the
backtest's own test). A forecaster that makes such raises forecasts a level the load does
not take: around a batch window that starts at a varying time, the mean of "still off"
and "on". For a day per needless raise, counted from the first, its raises go no further
than NEEDLESS x what the load needs (`MetricForecast.after_needless`): while the load
holds, such a raise is not needless. A soft limit: the raises made before the first verdict
count, as does a raise within the limit where the load falls in its horizon.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autoscaler.core.strategies import NEEDLESS, ceil_slack, floor_slack, is_needless

MEMORY = timedelta(days=1)
"""How long each needless raise limits the forecast's raises: issue 19's bound is one a
day."""


@dataclass
class _Pending:
    """A raise whose horizon has not passed yet."""

    at: datetime
    replicas: int
    peak: float | None = None
    """The largest value seen since the raise (None: none yet)."""


@dataclass
class NeedlessRaises:
    """One metric's raises awaiting their verdict, and the limit the needless ones set."""

    target: float
    """The metric's `target` the raises were counted at."""
    pending: deque[_Pending] = field(default_factory=deque)
    limited_since: datetime | None = None
    """When the first needless raise of the limit in force was made (None: no limit)."""
    needless: int = 0
    """The needless raises since `limited_since`: the limit lasts a MEMORY for each."""
    in_force: int | None = None
    """The count in force after the tick before (None: none settled yet)."""
    seen: tuple[float | None, float | None] = (None, None)
    """The values seen this tick and the tick before (None: missing or not finite)."""

    def observe(self, value: float | None, now: datetime, horizon: timedelta,
                tick: timedelta) -> None:
        """This tick's value. A value seen at a tick is the load of the step before it, so
        a raise's horizon is seen from the tick after it to a tick past its end (half a
        tick either way for a tick's jitter); a raise is judged then, and one judged late,
        after missed ticks, on the values of its horizon that were seen."""
        if (self.pending and self.pending[-1].at > now) \
                or (self.limited_since is not None and self.limited_since > now):
            self.pending.clear()  # the clock set back
            self.limited_since, self.needless = None, 0
        finite = value if value is not None and math.isfinite(value) else None
        self.seen = (finite, self.seen[0])
        end = horizon + tick
        for pending in self.pending:
            if finite is not None and timedelta(0) < now - pending.at <= end + tick / 2:
                pending.peak = finite if pending.peak is None else max(pending.peak, finite)
        while self.pending and now - self.pending[0].at >= end - tick / 2:
            judged = self.pending.popleft()
            if judged.peak is not None and is_needless(judged.replicas, judged.peak,
                                                       self.target):
                self.limited_since = self.limited_since or judged.at
                self.needless += 1
        if self.limited_since is not None \
                and now >= self.limited_since + self.needless * MEMORY:
            self.limited_since, self.needless = None, 0

    def settled(self, now: datetime, raised_to: int | None, in_force: int,
                alone: int | None) -> None:
        """The count in force after this tick, and the forecast's raise made this tick
        (`raised_to`, at most the count in force; None: none): judged if above the count
        in force before and `target` alone's (`alone`; None: not known)."""
        if raised_to is not None and self.in_force is not None and raised_to > self.in_force \
                and (alone is None or raised_to > alone):
            self.pending.append(_Pending(now, raised_to))
        self.in_force = in_force

    def limit(self, last: int | None) -> int | None:
        """The most the forecast may ask for while needless raises limit it: NEEDLESS x
        what the lower of the last two values needs (a noisy load's one high value raises
        it no further), or `last`, its count of the tick before, if more (None: no
        limit)."""
        if self.limited_since is None:
            return None
        values = [value for value in self.seen if value is not None]
        needs = ceil_slack(min(values, default=0.0) / self.target)
        return max(floor_slack(NEEDLESS * needs), last or 0)
