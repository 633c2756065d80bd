"""What each strategy recommends for one service, before any limit. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from autoscaler.core.durations import format_duration
from autoscaler.core.queries import MetricValues
from autoscaler.core.spec import MetricSpec, Policy

SLACK = 1e-9
"""Float slack in comparisons and ceilings: 330 on 3 x 100 is within 0.1, ceil(2.1/0.7) is 3."""


@dataclass(frozen=True)
class Proposal:
    """One metric's count. `replicas` is None when the metric is missing."""

    metric: str
    replicas: int | None
    within_tolerance: bool
    explanation: str


@dataclass(frozen=True)
class Recommendation:
    """The strategy's count for a service, and how it was reached."""

    replicas: int
    within_tolerance: bool
    missing_blocked: bool
    explanation: str
    driver: str | None = None
    """The metric whose proposal is the largest (None: every metric is missing)."""


LARGEST_COUNT = 2**53
"""Counts from a value so large that it divides to more are this: the bounds then take
over (`math.ceil` of an infinity would raise)."""


def ceil_slack(value: float) -> int:
    return math.ceil(value - SLACK) if value < LARGEST_COUNT else LARGEST_COUNT


def floor_slack(value: float) -> int:
    return math.floor(value + SLACK) if value < LARGEST_COUNT else LARGEST_COUNT


def target_count(
    *, value: float, current: int, target: float, tolerance: float
) -> tuple[int, bool]:
    """The HPA rule: (count, within_tolerance)."""
    if current == 0:
        return ceil_slack(value / target), False
    ratio = value / (current * target)
    if abs(ratio - 1.0) <= tolerance + SLACK:
        return current, True
    return ceil_slack(value / target), False


def threshold_count(
    *, value: float, current: int, up_above: float, down_below: float, step: int
) -> tuple[int, bool]:
    """Add or remove `step` when the per-replica value leaves its bounds: (count, within)."""
    if current == 0:
        return (step if value > 0 else 0), False
    per_replica = value / current
    if per_replica > up_above + SLACK:
        return current + step, False
    if per_replica < down_below - SLACK:
        return max(current - step, 0), False
    return current, True


def propose(metric: MetricSpec, policy: Policy, current: int, value: float | None,
            rejected: str | None = None) -> Proposal:
    """`rejected`: why the value the answer held was rejected (it is then None)."""
    if value is None or not math.isfinite(value):
        return Proposal(metric.name, None, False, rejected or f"{metric.name} is missing")
    if value < 0:  # the gatherer rejects them first; a load is never below zero
        return Proposal(metric.name, None, False, f"{metric.name} is negative ({value:g})")
    if policy.strategy == "threshold":
        assert metric.scale_up_above is not None and metric.scale_down_below is not None
        count, within = threshold_count(
            value=value, current=current, up_above=metric.scale_up_above,
            down_below=metric.scale_down_below, step=policy.step,
        )
        per = f"{value / current:g} per replica" if current else f"{value:g} at 0 replicas"
        bounds = f"scale down below {metric.scale_down_below:g}, up above {metric.scale_up_above:g}"
        return Proposal(metric.name, count, within, f"{metric.name} {per} ({bounds}) -> {count}")
    assert metric.target is not None
    count, within = target_count(
        value=value, current=current, target=metric.target, tolerance=policy.tolerance
    )
    replicas = "replica" if current == 1 else "replicas"
    shown = f"{metric.name} {value:g} over {current} {replicas} (target {metric.target:g} each)"
    note = " within tolerance" if within else ""
    return Proposal(metric.name, count, within, f"{shown}{note} -> {count}")


def recommend(policy: Policy, current: int, values: Mapping[str, float | None]) -> Recommendation:
    """The largest proposal among the metrics present; a missing metric blocks a decrease.

    `values` from `assign_values` say why each missing one is missing."""
    rejected = values.rejected if isinstance(values, MetricValues) else {}
    proposals = [propose(m, policy, current, values.get(m.name), rejected.get(m.name))
                 for m in policy.metrics]
    present = [p for p in proposals if p.replicas is not None]
    explanation = "; ".join(p.explanation for p in proposals)
    if not present:
        return Recommendation(current, False, True, f"{explanation}: hold at {current}")
    best = max(p.replicas for p in present if p.replicas is not None)
    winner = next(
        (p for p in present if p.replicas == best and p.within_tolerance),
        next(p for p in present if p.replicas == best),
    )
    if best < current and len(present) < len(proposals):
        return Recommendation(
            current, False, True, f"{explanation}: a missing metric blocks scaling down"
        )
    return Recommendation(best, winner.within_tolerance, False, explanation, winner.metric)


FORECAST_CAP = 1.2
"""A forecast asks for at most this many times the replicas' worth of its point forecast at
`target` (rounded down, never under what the point forecast needs): the margin and the
worst case are there for the misses of a forecast that is mostly right, and the more they
may add, the more a point forecast above the load raises the count past what the load
uses (issue 19's "needless raise": half as much again). With the margin carried at the
limit, a quarter rather than a half cut those raises on noisy traffic (NASA's trace, 12 a
day to 1.6), and a fifth, once the release band read the cap rounded up, to 1.3 without
costing a ratio on any trace of the sweep (docs/predictive.md)."""


CONFIRM_ABOVE = 1.25
"""A forecast's count above this many times what the larger of the load and the point
forecast (the lower of this tick's and the tick before's) needs is made only if the
forecast of the tick before asked for as much: a spike of one tick's forecast, its point or
its margin or worst case, raises the count to this share of the load's or the steady
point's needs at most."""


ABOVE_LOAD = 2.0
"""A forecast the load contradicts raises nothing: when the load was under 1 / ABOVE_LOAD
of every forecast made for the last horizon (an outage, while the time of day still
forecasts traffic; the tail of a burst that the recent values still carry), the forecast may
keep the count it set the tick before, as it may yet be right that the load comes back, but
not raise it. Let through, such forecasts raised the count through an outage, and jittering
at a few replicas raised it a replica again every few minutes: on NASA's trace most of its
needless raises (docs/predictive.md)."""


NEEDLESS = 1.5
"""How far above what the load of the following horizon needs a raise is needless (issue
19's bound: at most one such raise a simulated day)."""


def is_needless(replicas: int, peak: float, target: float) -> bool:
    """Whether a raise to `replicas` is more than NEEDLESS x what `peak`, the largest load
    of the horizon after it, needs at `target`."""
    return replicas > NEEDLESS * ceil_slack(peak / target)


@dataclass(frozen=True)
class HeldCount:
    """The largest raise of a metric's forecast count within the last horizon (a count above
    the one in force the tick before, at most what was applied), and when it was made."""

    replicas: int
    at: datetime
    hold: timedelta
    """How long a forecast's count is held (the horizon)."""


@dataclass(frozen=True)
class MetricForecast:
    """One metric's forecast at the horizon, as the predictive strategy reads it."""

    value: float | None
    """The model's forecast."""
    with_margin: float | None
    """What the strategy scales on against `target`: the forecast plus the margin (None in
    fall-back)."""
    worst_case: float | None = None
    """The forecast raised by the largest share of the load missed over the worst-case
    window, which the replicas must carry at the metric's `limit` (None for a metric without
    one, and in fall-back)."""
    cap_base: float | None = None
    """What the cap is taken from, the point forecast as the book serves it: the count asked
    for is at most FORECAST_CAP x its replicas' worth at `target` (None: no cap)."""
    held: HeldCount | None = None
    """The largest raise of this metric's forecast count within the last horizon before
    now, at most what was applied: a floor under this one's, so that a forecast's raise is
    not undone the next tick (None: none held)."""
    unconfirmed: int | None = None
    """The most this forecast may ask for: the larger of what the forecast of the tick before
    asked for and CONFIRM_ABOVE x what the larger of the last value and the point forecast
    (the lower of this tick's and the tick before's) needs (None: no such limit)."""
    contradicted: int | None = None
    """The most this forecast may ask for while the load contradicts it (`ABOVE_LOAD`): its
    count of the tick before, 0 if it had none (None: not contradicted)."""
    after_needless: int | None = None
    """The most this forecast may ask for while its needless raises limit it
    (`NeedlessRaises`, a day for each): NEEDLESS x what the lower of the last two values
    needs, or its count of the tick before if more (None: no such limit)."""
    spread: float = 0.0
    """How far the forecast typically misses, as a share of `value`: the raise band's width
    where that is wider than the policy's `tolerance` and the metric has a `limit`
    (`within_raise_band`)."""


@dataclass(frozen=True)
class ForecastCount:
    """What the forecasts ask for: the largest over the metrics of each one's count,
    `margin_count` or `ceil(worst case / limit)` where the metric sets a `limit` and that is
    more, capped (`cap_base`), at most `unconfirmed`, `after_needless` and `contradicted`,
    and raised to its `held` raise (`metric_forecast_count`, `forecast_count`)."""

    replicas: int
    explanation: str
    asked: int | None = None
    """The largest count a metric's forecast asked for before the cap and the confirmation
    (None: as `replicas`)."""
    at_limit: int = 0
    """The largest count that a metric's margin or worst case at its `limit` set, after the
    same limits (0: none did): a raise to it is made whatever the tolerance, as the current
    count would carry the forecast's misses past the SLO line."""
    releasing_at: int | None = None
    """`replicas` with each metric's cap rounded up rather than down (None: as `replicas`):
    what `decide`'s release band reads. The cap rounds down as a limit on a raise; read the
    same way on a release, a point forecast that jitters across the cap's rounding line
    lowers the count and raises it again every few minutes (docs/predictive.md)."""
    spread: float = 0.0
    """The typical miss (`MetricForecast.spread`) of the metric whose count is `replicas`,
    the smallest of those tied: the raise band's width where wider than `tolerance`."""
    counts: tuple[tuple[int, float], ...] = ()
    """Each metric's count and its forecast's typical miss: each count above the current one
    must be within its own metric's band (`within_raise_band`). A quiet metric's wide miss
    says nothing of another metric's raise."""


@dataclass(frozen=True)
class MetricCount:
    """One metric's forecast count before any hold, and how it was reached."""

    replicas: int
    unrounded: float
    """The same count before its rounding: the ask before `ceil`, the cap before `floor`
    (what `after_needless` and `contradicted` hold back left out)."""
    explanation: str
    at_limit: int = 0
    """The part of `replicas` that the margin or the worst case at the metric's `limit` set
    (0: none, or no `limit`)."""


def margin_count(metric: MetricSpec, forecast: MetricForecast) -> MetricCount:
    """What the forecast and its margin ask for, and how: `ceil(forecast with margin /
    target)`; for a metric with a `limit`, the larger of `ceil(forecast / target)` and
    `ceil(forecast with margin / limit)`.

    The margin covers what the forecast may miss, and a miss costs the SLO only past the
    limit: read at the target, which already leaves room below the limit, it counted that
    room twice, and on noisy traffic asked for half as much again as the load needed (NASA's
    trace: 42 such raises a day, 12 with the margin at the limit; docs/predictive.md)."""
    assert forecast.with_margin is not None and metric.target
    if not metric.limit or forecast.value is None:
        unrounded = forecast.with_margin / metric.target
        count = ceil_slack(unrounded)
        return MetricCount(count, unrounded, f"{metric.name} {forecast.with_margin:g} -> {count}")
    at_target = ceil_slack(forecast.value / metric.target)
    at_limit = ceil_slack(forecast.with_margin / metric.limit)
    return MetricCount(
        max(at_target, at_limit),
        max(forecast.value / metric.target, forecast.with_margin / metric.limit),
        f"{metric.name} {forecast.value:g} -> {at_target}, with margin {forecast.with_margin:g} "
        f"at limit {metric.limit:g} each -> {at_limit}", at_limit)


def asked_count(metric: MetricSpec, forecast: MetricForecast) -> int:
    """What a forecast in use asks for before any limit: `margin_count`, or `ceil(worst case
    / limit)` where the metric sets a `limit` and that is more."""
    count = margin_count(metric, forecast).replicas
    if metric.limit and forecast.worst_case is not None:
        count = max(count, ceil_slack(forecast.worst_case / metric.limit))
    return count


def metric_forecast_count(metric: MetricSpec, forecast: MetricForecast | None
                          ) -> MetricCount | None:
    """One metric's count and how it was reached, before any hold: `margin_count`,
    `ceil(worst case / limit)` where the metric sets a `limit` and that is more, at most
    FORECAST_CAP x the replicas' worth of `cap_base` at `target`, at most `unconfirmed`,
    `after_needless` and `contradicted`; None without a forecast in use."""
    if forecast is None or forecast.with_margin is None or not metric.target:
        return None
    asked = margin_count(metric, forecast)
    count, unrounded, note = asked.replicas, asked.unrounded, asked.explanation
    at_limit = asked.at_limit
    if metric.limit and forecast.worst_case is not None:
        unrounded = max(unrounded, forecast.worst_case / metric.limit)
        worst = ceil_slack(forecast.worst_case / metric.limit)
        at_limit = max(at_limit, worst)
        if worst > count:
            count = worst
            note += (f", worst case {forecast.worst_case:g} at limit {metric.limit:g} "
                     f"each -> {worst}")
    if forecast.cap_base is not None:
        worth = forecast.cap_base / metric.target
        cap_unrounded = max(FORECAST_CAP * worth, ceil_slack(worth), 1)
        unrounded = min(unrounded, cap_unrounded)
        cap = floor_slack(cap_unrounded)
        if count > cap:
            count = cap
            note += (f", capped at {cap} ({FORECAST_CAP:g} x the {worth:.3g} replicas' worth "
                     f"of the forecast {forecast.cap_base:g})")
    if forecast.unconfirmed is not None:
        unrounded = min(unrounded, forecast.unconfirmed)
        if count > forecast.unconfirmed:
            count = forecast.unconfirmed
            note += (f", {count} until the next tick asks for more too (a raise beyond "
                     f"{CONFIRM_ABOVE:g} x what the load or the point forecast needs is asked "
                     "two ticks running)")
    # Not on `unrounded`: these two hold back raises, not releases, and the band reads the
    # count with its cap rounded up whether the forecast may raise or not.
    if forecast.after_needless is not None and count > forecast.after_needless:
        count = forecast.after_needless
        note += (f", at most {count} after a raise the load never used ({NEEDLESS:g} x "
                 "what the load needs, or the count of the tick before, for a day per such "
                 "raise)")
    if forecast.contradicted is not None and count > forecast.contradicted:
        count = forecast.contradicted
        limit = f"above {count} " if count else ""
        note += (f", no raise {limit}while the load is under 1/{ABOVE_LOAD:g} of every "
                 "forecast made for the last horizon")
    return MetricCount(count, unrounded, note, min(at_limit, count))


def forecast_count(
    policy: Policy, forecasts: Mapping[str, MetricForecast]
) -> ForecastCount | None:
    """The forecasts' count; None when no metric has a forecast.

    Tolerance applies to a forecast's raise only where the current count carries the
    margins and worst cases at the `limit` (`within_raise_band`): a forecast that the
    current count cannot carry is the signal the predictive strategy exists for (`decide`
    keeps the current count against a forecast's release within tolerance). Each metric's
    count is capped (`cap_base`), waits for a second tick above a prompt share
    (`unconfirmed`), and is raised to a raise of the last horizon (`held`): released the
    next tick, that raise would be undone minutes after it was made, an action each way,
    when the forecast jitters. The book sets them, and the limits while the load
    contradicts the forecast (`contradicted`) and after a raise went unused
    (`after_needless`).
    """
    counts: dict[str, int] = {}
    asked = releasing_at = at_limit = 0
    spreads: list[tuple[int, float]] = []
    notes = []
    for metric in policy.metrics:
        forecast = forecasts.get(metric.name)
        found = metric_forecast_count(metric, forecast)
        if found is None or forecast is None:
            continue
        count, note = found.replicas, found.explanation
        held = forecast.held
        if held is not None and held.replicas > count:
            count = held.replicas
            note += (f", held at {held.replicas} (asked for at {held.at:%H:%M:%S}; a "
                     f"forecast's count is held for {format_duration(held.hold)})")
        counts[metric.name] = count
        asked = max(asked, count, asked_count(metric, forecast))
        releasing_at = max(releasing_at, count, ceil_slack(found.unrounded))
        at_limit = max(at_limit, found.at_limit)
        # Without a `limit` nothing checks that the count carries the margin at the SLO
        # line, so only the tolerance, never a wider miss, keeps such a metric's raise.
        spreads.append((count, forecast.spread if metric.limit else 0.0))
        notes.append(note)
    if not counts:
        return None
    replicas = max(counts.values())
    spread = min(miss for count, miss in spreads if count == replicas)
    return ForecastCount(replicas, f"forecast with margin: {', '.join(notes)}",
                         asked, at_limit, releasing_at, spread, tuple(spreads))


def raise_band(forecast: ForecastCount, tolerance: float) -> tuple[float, str]:
    """The raise band's width and its name: the policy's `tolerance`, or the forecast's
    typical miss (`spread`) where that is wider."""
    if forecast.spread > tolerance:
        return forecast.spread, f"the forecast's typical miss ({forecast.spread:.0%})"
    return tolerance, "tolerance"


def within_raise_band(forecast: ForecastCount, current: int, tolerance: float) -> bool:
    """Whether the forecasts' count is a raise of the current count by no more than
    `raise_band`'s width, each metric's count by no more than its own (the wider of
    `tolerance` and its forecast's typical miss), and the current count carries what their
    margins and worst cases ask for at the `limit`: such a raise follows the noise of a
    point forecast around the current count, which the target rule's tolerance keeps from
    moving it too. On a quiet service, whose point forecast wanders a few replicas about the
    count, these raises were most of its needless ones; the policy's tolerance alone left
    half of them, as a forecast of a request or two a minute moves by a third from one
    minute to the next (docs/predictive.md)."""
    width, _ = raise_band(forecast, tolerance)
    return current < forecast.replicas <= current * (1.0 + width) + SLACK \
        and forecast.at_limit <= current \
        and all(count <= current * (1.0 + max(tolerance, miss)) + SLACK
                for count, miss in forecast.counts)


def with_forecast(reactive: Recommendation, forecast: ForecastCount | None, *,
                  current: int, tolerance: float) -> Recommendation:
    """The larger of the target rule's count and the forecasts': a forecast can raise the
    count, never lower it, and raises it by no more than `tolerance` only where the current
    count cannot carry its margin or worst case at the `limit` (`within_raise_band`). A
    forecast the cap or the confirmation brought to the rule's count or under it, from
    above, is still said: a limit decided the count."""
    if forecast is None:
        return reactive
    if reactive.replicas <= current and within_raise_band(forecast, current, tolerance):
        _, band = raise_band(forecast, tolerance)
        return replace(reactive, explanation=(
            f"{reactive.explanation}; {forecast.explanation}: {forecast.replicas} is within "
            f"{band} of the current count {current}, which carries it: no raise"))
    if forecast.replicas <= reactive.replicas:
        if forecast.asked is None or forecast.asked <= reactive.replicas:
            return reactive
        return replace(reactive, explanation=(
            f"{reactive.explanation}; {forecast.explanation}: the target rule's "
            f"{reactive.replicas} stands"))
    return Recommendation(forecast.replicas, False, False,
                          f"{reactive.explanation}; {forecast.explanation}")
