"""Tuning a policy: the setting that matters, searched for the cheapest one within an SLO
budget. Pure: candidates in, frontier out; the replays are the caller's (an `Evaluate`).

The setting is the fed metric's `target` (strategies `target` and `predictive`; every other
key stays as given), or for `threshold` its bounds, `scale_up_above` and `scale_down_below`
moved together so that their ratio stays as given. A candidate is a utilisation u of the
replica's capacity: target = u x capacity (threshold: scale_up_above = u x capacity). The
search tries the policy as given and u on a grid (0.1 to 1.0 in steps of 0.05 by default),
then refines around the best one in smaller steps (0.01) up to its neighbours on the grid.
The best is the one with the fewest replica-hours among those whose `slo_violation_pct` is
within the budget; when none is, the search refines around the least violating one and, if
still none is within it, recommends nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.offline.scoring import Scores

DEFAULT_GRID = "0.1:1.0:0.05"
DEFAULT_REFINE = 0.01
SIGNIFICANT_DIGITS = 6
"""Tuned values are rounded to this many significant digits: what is replayed is what the
tuned policy file says."""
_EPSILON = 1e-9


class TuneError(ValueError):
    """A policy or a grid that cannot be tuned; the message says why."""


def parse_grid(text: str) -> list[float]:
    """`START:STOP:STEP` (both ends included, e.g. 0.1:1.0:0.05) or a list `0.3,0.5,0.7`:
    the utilisations to try, ascending, each above 0 and at most 1. ValueError says what is
    wrong."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(part) for part in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ValueError(f"{text!r}: STEP must be above 0 and STOP at least START")
            count = math.floor((stop - start) / step + _EPSILON) + 1
            if count > 1000:
                raise ValueError(f"{text!r} makes {count} candidates: at most 1000")
            values = [round(start + index * step, 6) for index in range(count)]
        else:
            values = [float(part) for part in text.split(",")]
    except ValueError as error:
        if str(error).startswith(repr(text)):
            raise
        raise ValueError(f"{text!r}: give START:STOP:STEP (as 0.1:1.0:0.05) or a list of "
                         "utilisations (as 0.3,0.5,0.7)") from None
    if not values or any(not math.isfinite(v) or not 0 < v <= 1 for v in values):
        raise ValueError(f"{text!r}: every utilisation must be above 0 and at most 1 (a "
                         "target above what a replica carries at 100 % is always violated)")
    return sorted(set(values))


def rounded(value: float) -> float:
    """`value` to `SIGNIFICANT_DIGITS` significant digits."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


@dataclass(frozen=True)
class Knob:
    """What tuning a policy changes: `keys` of its metric `metric` (at `index` in its
    `metrics`), given as `given`."""

    metric: str
    index: int
    keys: tuple[str, ...]
    given: tuple[float, ...]
    ceiling: float | None = None
    """Predictive: the metric's `limit`, which the target must not exceed."""

    def values_at(self, utilisation: float, capacity: float) -> tuple[float, ...]:
        """The tuned keys' values at `utilisation` of `capacity`; a second key keeps its
        ratio to the first."""
        first = utilisation * capacity
        return tuple(rounded(first * value / self.given[0]) for value in self.given)

    def allows(self, values: tuple[float, ...]) -> bool:
        return self.ceiling is None or values[0] <= self.ceiling

    def shown(self, values: tuple[float, ...]) -> str:
        """`target 1571.43`, `scale_up_above 2400, scale_down_below 1200`."""
        return ", ".join(f"{key} {value:g}" for key, value in zip(self.keys, values,
                                                                  strict=True))


def knob_of(policy: Policy, metric: MetricSpec) -> Knob:
    """The keys tuning `policy` changes, of its fed `metric`."""
    index = policy.metrics.index(metric)
    if policy.strategy == "threshold":
        up, down = metric.scale_up_above, metric.scale_down_below
        if up is None or down is None or up <= 0:
            raise TuneError(f"metric {metric.name}: tuning a threshold policy moves its bounds "
                            "together, which needs scale_up_above above 0 and "
                            "scale_down_below")
        return Knob(metric.name, index, ("scale_up_above", "scale_down_below"), (up, down))
    if metric.target is None:
        raise TuneError(f"metric {metric.name} has no target to tune")
    ceiling = metric.limit if policy.strategy == "predictive" else None
    return Knob(metric.name, index, ("target",), (metric.target,), ceiling)


def tuned(policy: Policy, knob: Knob, values: tuple[float, ...]) -> Policy:
    """`policy` with only the knob's keys changed."""
    metrics = list(policy.metrics)
    metrics[knob.index] = metrics[knob.index].model_copy(
        update=dict(zip(knob.keys, values, strict=True)))
    return policy.model_copy(update={"metrics": metrics})


@dataclass(frozen=True)
class Candidate:
    utilisation: float
    values: tuple[float, ...]
    given: bool = False
    """The policy as given (its utilisation need not be on the grid)."""


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    scores: Scores

    @property
    def utilisation(self) -> float:
        return self.candidate.utilisation

    @property
    def violation(self) -> float:
        return self.scores.slo_violation_pct

    @property
    def cost(self) -> float:
        return self.scores.replica_hours


Evaluate = Callable[[Sequence[Candidate]], list[Trial]]
"""Replays a batch of candidates; one trial each, in order."""


@dataclass(frozen=True)
class Frontier:
    knob: Knob
    budget: float
    trials: list[Trial]
    """Every candidate tried, by utilisation."""
    recommended: Trial | None
    """The cheapest trial within the budget; None when none is."""
    least_violating: Trial
    refined_around: float | None = None
    skipped: list[float] = field(default_factory=list)
    """Utilisations not tried: their target would exceed the metric's `limit`."""

    @property
    def given(self) -> Trial | None:
        return next((t for t in self.trials if t.candidate.given), None)

    @property
    def efficient(self) -> list[Trial]:
        return efficient(self.trials)


def efficient(trials: Sequence[Trial]) -> list[Trial]:
    """The trials that no other matches on both replica-hours and violations while beating
    it on one (the Pareto frontier), by violations: each cheaper than every one with
    fewer. A candidate off it is never the better choice, whatever the budget. Of trials
    equal on both, the one `cheapest_within` and `least_violating` pick (the higher u), so
    that what is recommended is never shown off the frontier."""
    found: list[Trial] = []
    for trial in sorted(trials, key=lambda t: (t.violation, t.cost, -t.utilisation)):
        if not found or trial.cost < found[-1].cost:
            found.append(trial)
    return found


def meets(trial: Trial, budget: float) -> bool:
    return trial.violation <= budget + _EPSILON


def cheapest_within(trials: Sequence[Trial], budget: float) -> Trial | None:
    """The fewest replica-hours within the budget; of equals, the fewer violations, then
    the higher utilisation."""
    within = [t for t in trials if meets(t, budget)]
    return min(within, key=lambda t: (t.cost, t.violation, -t.utilisation)) if within else None


def least_violating(trials: Sequence[Trial]) -> Trial:
    return min(trials, key=lambda t: (t.violation, t.cost, -t.utilisation))


def refinement(center: float, grid: Sequence[float], step: float) -> list[float]:
    """Utilisations `step` apart around `center`, strictly between its neighbours on the
    grid (a missing neighbour mirrors the other one), above 0 and at most 1."""
    if step <= 0 or len(grid) < 2:
        return []
    lower = max((u for u in grid if u < center - _EPSILON), default=None)
    upper = min((u for u in grid if u > center + _EPSILON), default=None)
    if lower is None and upper is not None:
        lower = center - (upper - center)
    if upper is None and lower is not None:
        upper = center + (center - lower)
    assert lower is not None and upper is not None
    reach = math.floor((upper - lower) / step) + 1
    found = [round(center + k * step, 6) for k in range(-reach, reach + 1) if k]
    return [u for u in found
            if lower + _EPSILON < u < upper - _EPSILON and _EPSILON < u <= 1 + _EPSILON]


def candidates(utilisations: Sequence[float], knob: Knob, capacity: float,
               tried: set[tuple[float, ...]]) -> tuple[list[Candidate], list[float]]:
    """New candidates at `utilisations` (a value already `tried` is not tried again; `tried`
    is updated) and the utilisations the knob does not allow."""
    new, skipped = [], []
    for utilisation in utilisations:
        values = knob.values_at(utilisation, capacity)
        if not knob.allows(values):
            skipped.append(utilisation)
        elif values not in tried:
            tried.add(values)
            new.append(Candidate(utilisation, values))
    return new, skipped


def search(knob: Knob, *, capacity: float, grid: Sequence[float], refine: float,
           budget: float, evaluate: Evaluate) -> Frontier:
    """Try the policy as given and the grid, then refine around the best; the frontier of
    everything tried."""
    given_values = tuple(rounded(v) for v in knob.given)
    tried = {given_values}
    first = [Candidate(knob.given[0] / capacity, given_values, given=True)]
    on_grid, skipped = candidates(grid, knob, capacity, tried)
    trials = evaluate(first + on_grid)
    center = (cheapest_within(trials, budget) or least_violating(trials)).utilisation
    nearer, more_skipped = candidates(refinement(center, grid, refine), knob, capacity, tried)
    if nearer:
        trials += evaluate(nearer)
    ordered = sorted(trials, key=lambda t: (t.utilisation, not t.candidate.given))
    return Frontier(
        knob=knob, budget=budget, trials=ordered,
        recommended=cheapest_within(ordered, budget), least_violating=least_violating(ordered),
        refined_around=center if nearer else None, skipped=sorted(skipped + more_skipped),
    )
