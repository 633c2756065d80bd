"""A predictive policy's budget of scaling actions, and the fall-back when it is spent.

Issue 19's bound against thrashing: at most twice the scaling actions of `target` alone,
plus one an hour. Each service's changes of its count in force, and those of its `target`
alone run (`PredictivePlanner`), are counted over the last WINDOW; once RESERVE or fewer
of the day's allowance (`ACTIONS_FACTOR x target alone's + ACTIONS_PER_HOUR x 24`) are
left, its forecasts are not used (`fallback_reason: TooManyActions`) until more than
RESERVE + RESUME_MARGIN are, so that the fall-back does not switch on and off every tick.
A rolling bound: at every tick a forecast is used, the last day's actions are within the
allowance; `target` alone's actions late one day still earn allowance early the next. The
other limits keep the count from thrashing in the first place; this one stops it where
they did not (a forecast whose point jitters by more than the release band on a flat
load).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autoscaler.core.durations import format_duration

WINDOW = timedelta(days=1)
ACTIONS_FACTOR = 2
ACTIONS_PER_HOUR = 1
RESERVE = 2
"""Actions kept in hand when the fall-back starts: the release of the forecast's count it
makes, and one more."""
RESUME_MARGIN = 4
"""The fall-back ends once more than RESERVE + RESUME_MARGIN actions are left."""


@dataclass
class ActionBudget:
    """One service's scaling actions and its `target` alone run's, over the last WINDOW."""

    own: deque[datetime] = field(default_factory=deque)
    alone: deque[datetime] = field(default_factory=deque)
    in_force: int | None = None
    """The count in force after the tick before, or the one someone else set since (None:
    none known yet: the next change is not counted)."""
    alone_count: int | None = None
    """`target` alone's count of the tick before (None: none yet)."""
    spent: bool = False
    """The forecasts are not used, until more than RESERVE + RESUME_MARGIN actions are
    left."""

    def allowance(self) -> int:
        """How many actions the last WINDOW allows the service."""
        hours = WINDOW / timedelta(hours=1)
        return ACTIONS_FACTOR * len(self.alone) + round(ACTIONS_PER_HOUR * hours)

    def allows(self, now: datetime) -> bool:
        """Whether the forecasts may be used at `now`."""
        self._forget_before(now - WINDOW, now)
        left = self.allowance() - len(self.own)
        if left <= RESERVE:
            self.spent = True
        elif left > RESERVE + RESUME_MARGIN:
            self.spent = False
        return not self.spent

    def settled(self, now: datetime, in_force: int, alone: int | None) -> None:
        """The count in force after the tick at `now`, and `target` alone's: each change
        since the tick before is an action."""
        if self.in_force is not None and in_force != self.in_force:
            self.own.append(now)
        if alone is not None and self.alone_count is not None and alone != self.alone_count:
            self.alone.append(now)
        self.in_force = in_force
        if alone is not None:
            self.alone_count = alone

    def describe(self) -> str:
        """The budget as the decision's message says it."""
        actions = "action" if len(self.own) == 1 else "actions"
        return (f"{len(self.own)} scaling {actions} in the last {format_duration(WINDOW)}, "
                f"where {ACTIONS_FACTOR} x `target` alone's {len(self.alone)} + "
                f"{self.allowance() - ACTIONS_FACTOR * len(self.alone)} are allowed")

    def _forget_before(self, start: datetime, now: datetime) -> None:
        for times in (self.own, self.alone):
            # The clock set back: what was done then counts as done now (as `as_of` has
            # it), so that a step back does not lift a spent budget at once.
            ahead = 0
            while times and times[-1] > now:
                times.pop()
                ahead += 1
            times.extend([now] * ahead)
            while times and times[0] <= start:
                times.popleft()
