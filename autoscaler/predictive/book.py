"""The forecasters of the predictive policies: one per (service, metric), trained when due,
and the forecasts they serve, with what keeps their count from thrashing: the cap's base
(the point forecast), the confirmation a large raise waits for, the raise held for a
horizon (`RaiseHold`), the limit that needless raises set (`NeedlessRaises`), and the
budget of scaling actions (`ActionBudget`); `autoscaler.core.strategies` applies them.

The forecaster module (numpy, scikit-learn) is imported when the book first needs it, at a
predictive policy's first forecast or training: an agent without one never loads them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.core.strategies import (
    CONFIRM_ABOVE,
    HeldCount,
    MetricForecast,
    ceil_slack,
    metric_forecast_count,
)
from autoscaler.predictive.actions import ActionBudget
from autoscaler.predictive.needless import NeedlessRaises

if TYPE_CHECKING:
    from autoscaler.predictive.forecaster import Forecast, ForecastSettings, MetricForecaster

RETRY = timedelta(hours=1)
"""The longest wait before training again after a failed training."""

TOO_MANY_ACTIONS = "TooManyActions"
"""The fall-back reason while a service's budget of scaling actions is spent."""

LATE = 1.5
"""What a tick earlier is, in ticks: a forecast made more than this many ticks before (an
operator's pause, a switch of strategy, a tick that failed between) confirms nothing."""


@dataclass
class RaiseHold:
    """One metric's recent raises of its forecast's count (a count above the one in force the
    tick before), each held for a horizon, at most at the count in force after it
    (`settle`): a raise released the next tick, when the forecast jitters, is undone
    minutes after it was made, an action each way. A count that only follows a falling
    forecast is not held, so a descent costs nothing more. Also what the forecast asked
    for the tick before, and its point forecast then, which a large raise waits for
    (`confirm`)."""

    counted_at: tuple[float | None, float | None]
    """The metric's (target, limit) the counts were counted at."""
    raises: deque[tuple[datetime, int]] = field(default_factory=deque)
    last: int | None = None
    """The forecast's count of the tick before, with its held raise, at most what was
    applied (None: no forecast in use then)."""
    asked: tuple[datetime, int] | None = None
    """When the forecast was last asked, and what it asked for then, before this limit and
    the hold (None: no forecast in use then)."""
    pointed: tuple[datetime, float] | None = None
    """When the forecast was last asked, and its point forecast then."""
    unsettled: bool = False
    """This tick's count is a raise the apply has not settled yet (`settle`)."""

    def confirm(self, forecast: MetricForecast, metric: MetricSpec, value: float | None,
                now: datetime, tick: timedelta) -> MetricForecast:
        """`forecast` with its `unconfirmed` limit: a count above CONFIRM_ABOVE x what the
        larger of the last value and the point forecast (the lower of this tick's and the
        tick before's) needs is made only once the forecast of the tick before (at most
        LATE ticks before `now`) asked for as much: a spike of one tick's forecast raises
        the count to that share at most. Remembers what this one asks for, and its point."""
        counted = metric_forecast_count(metric, forecast)
        before, self.asked = self.asked, (now, counted.replicas) if counted is not None else None
        asked = before[1] if before is not None \
            and timedelta(0) < now - before[0] <= LATE * tick else None
        pointed, self.pointed = self.pointed, (
            (now, forecast.value) if forecast.value is not None else None)
        point = forecast.value or 0.0
        if pointed is not None and timedelta(0) < now - pointed[0] <= LATE * tick:
            point = min(point, pointed[1])
        if counted is None or not metric.target:
            return forecast
        seen = value if value is not None and math.isfinite(value) else 0.0
        # ceil_slack: a huge finite value (an exporter's "unlimited") must not overflow.
        prompt = ceil_slack(CONFIRM_ABOVE * ceil_slack(max(seen, point, 0.0) / metric.target))
        return replace(forecast, unconfirmed=max(prompt, asked or 0))

    def apply(self, forecast: MetricForecast, count: int | None, now: datetime,
              hold: timedelta) -> MetricForecast:
        """`forecast`, with the largest raise of the last `hold` (the latest of equals) where
        it is above `count`, this tick's count; this tick's count kept if it is a raise."""
        if self.raises and self.raises[-1][0] > now:  # the clock set back
            self.raises.clear()
        while self.raises and self.raises[0][0] <= now - hold:
            self.raises.popleft()
        if count is None:
            self.last = None
            return forecast
        held = None
        if self.raises:
            at, replicas = max(self.raises, key=lambda pair: (pair[1], pair[0]))
            if replicas > count:
                held = HeldCount(replicas, at, hold)
        self.unsettled = self.last is None or count > self.last
        if self.unsettled:
            self.raises.append((now, count))
        self.last = max(count, held.replicas if held is not None else 0)
        return forecast if held is None else replace(forecast, held=held)

    def settle(self, in_force: int) -> int | None:
        """The count in force after this tick (`in_force`: the spec after the apply, or a
        dry run's shadow count): the raise made this tick, and the count in force, are at
        most that much. A raise the rate limits or the bounds held back is held only as far
        as it was made, never raised further after the forecast fell. The raise made this
        tick, as far as it was made (None: none)."""
        made = None
        if self.unsettled and self.raises:
            at, replicas = self.raises[-1]
            made = min(replicas, in_force)
            self.raises[-1] = (at, made)
        self.unsettled = False
        if self.last is not None:
            self.last = min(self.last, in_force)
        return made


class ForecastBook:
    """The forecasters of the predictive policies, one per (service, metric), and when each
    policy was last trained."""

    def __init__(self, tick: timedelta) -> None:
        self.tick = tick
        self._forecasters: dict[tuple[str, str], MetricForecaster] = {}
        self._settings: dict[tuple[str, str], tuple[ForecastSettings, str]] = {}
        """Per (service, metric): what its forecaster was made for."""
        self._next_training: dict[str, datetime] = {}
        self._holds: dict[tuple[str, str], RaiseHold] = {}
        """Per (service, metric): its recent raises and what it asked for last."""
        self._unsettled: dict[str, list[tuple[RaiseHold, NeedlessRaises | None, datetime]]] \
            = {}
        """Per service: the raises of this tick's forecasts, and when it was, until
        `settled`."""
        self._needless: dict[tuple[str, str], NeedlessRaises] = {}
        """Per (service, metric): its raises awaiting a verdict, and the limit the needless
        ones set. Kept over a release, as it judges the forecaster, which is kept too."""
        self._budgets: dict[str, ActionBudget] = {}
        """Per service: its scaling actions and `target` alone's over the last day."""
        self._ticked: dict[str, datetime] = {}
        """Per service: when its forecasts were last asked for, until `settled`."""
        self._metrics: dict[str, frozenset[str]] = {}
        """Per service: the metrics its policy had at its last forecast."""

    def settings_for(self, policy: Policy, metric: MetricSpec | None = None) -> ForecastSettings:
        """The forecast settings of `policy`, and of `metric` (its limit) if given."""
        from autoscaler.predictive.forecaster import ForecastSettings

        spec = policy.predictive
        horizon = spec.horizon_for(self.tick)
        return ForecastSettings(
            step=self.tick, horizon_steps=max(1, math.ceil(horizon / self.tick - 1e-9)),
            history=spec.history, min_history=spec.min_history,
            margin_quantile=spec.margin_quantile, max_error_pct=spec.max_error_pct,
            retrain_every=spec.retrain_every, worst_case_window=spec.worst_case_window,
            limit=metric.limit if metric is not None else None,
        )

    def forecaster(self, policy: Policy, metric: MetricSpec) -> MetricForecaster:
        """The metric's forecaster; a new one when its forecast settings or its query change
        (a new query is another series: the old one's model, values and errors say nothing
        of it)."""
        from autoscaler.predictive.forecaster import MetricForecaster

        key = (policy.service, metric.name)
        settings = self.settings_for(policy, metric)
        if self._settings.get(key) != (settings, metric.query):
            self._forecasters[key] = MetricForecaster(settings)
            self._settings[key] = (settings, metric.query)
            self._next_training.pop(policy.service, None)
        return self._forecasters[key]

    def due(self, policy: Policy, now: datetime) -> bool:
        """Training is due every `retrain_every` (an hour after a failed one, at most), and
        at once when the clock was set back past that."""
        next_training = self._next_training.get(policy.service)
        return next_training is None or now >= next_training \
            or next_training - now > policy.predictive.retrain_every

    def trained(self, policy: Policy, now: datetime, *, ok: bool) -> None:
        every = policy.predictive.retrain_every
        self._next_training[policy.service] = now + (every if ok else min(every, RETRY))

    def forecast(self, policy: Policy, values: Mapping[str, float | None], now: datetime
                 ) -> tuple[dict[str, MetricForecast], str | None]:
        """Feed this tick's values and forecast each metric; the first fall-back reason. Each
        forecast carries its cap's base, the most it may ask for unconfirmed, while its
        needless raises limit it and while the load contradicts it, and the raise it
        holds. None is used while the service's budget of scaling actions is spent."""
        forecasts: dict[str, MetricForecast] = {}
        self._keep_metrics_of(policy)
        budget = self._budgets.setdefault(policy.service, ActionBudget())
        reasons = [] if budget.allows(now) else [TOO_MANY_ACTIONS]
        self._ticked[policy.service] = now
        hold = policy.predictive.horizon_for(self.tick)
        unsettled = self._unsettled[policy.service] = []
        for metric in policy.metrics:
            found = self.forecast_metric(policy, metric, values.get(metric.name), now)
            unused = found.reason or budget.spent
            forecast = MetricForecast(
                found.point, None if unused else found.with_margin,
                None if unused else found.worst_case, cap_base=found.point,
                spread=found.spread)
            raises = self._hold(policy.service, metric)
            forecast = raises.confirm(forecast, metric, values.get(metric.name), now,
                                      self.tick)
            needless = self._needless_raises(policy.service, metric)
            if needless is not None:
                needless.observe(values.get(metric.name), now, hold, self.tick)
                forecast = replace(forecast, after_needless=needless.limit(raises.last))
            if found.contradicted:
                forecast = replace(forecast, contradicted=raises.last or 0)
            counted = metric_forecast_count(metric, forecast)
            forecasts[metric.name] = raises.apply(
                forecast, counted.replicas if counted is not None else None, now, hold)
            unsettled.append((raises, needless, now))
            if found.reason:
                reasons.append(found.reason)
        return forecasts, (reasons[0] if reasons else None)

    def settled(self, service: str, in_force: int, *, alone: int | None = None) -> None:
        """The service's count in force after this tick (`in_force`: the spec after the
        apply, or a dry run's shadow count): no raise of its forecasts is held above it. A
        raise above the count in force before and `target` alone's count (`alone`) is
        judged once its horizon has passed. A change of either since the tick before is a
        scaling action of its budget."""
        for raises, needless, at in self._unsettled.pop(service, ()):
            made = raises.settle(in_force)
            if needless is not None:
                needless.settled(at, made, in_force, alone)
        ticked = self._ticked.pop(service, None)
        budget = self._budgets.get(service)
        if ticked is not None and budget is not None:
            budget.settled(ticked, in_force, alone)

    def budget_note(self, service: str) -> str:
        """What the decision's message says of the service's spent budget of actions."""
        budget = self._budgets.get(service)
        return "" if budget is None else budget.describe()

    def forget_all_but(self, services: Collection[str]) -> None:
        """Drop the forecasters, raises and training times of services not managed any
        more."""
        known = {service for service, _ in self._forecasters} | set(self._next_training) \
            | {service for service, _ in self._holds} | set(self._unsettled) \
            | {service for service, _ in self._needless} | set(self._budgets) \
            | set(self._metrics)
        for service in known.difference(services):
            self.forget(service)

    def _keep_metrics_of(self, policy: Policy) -> None:
        """Drop what is kept for the service's metrics that its policy no longer has (a
        metric renamed or removed by a reload), once, when its metrics change."""
        names = frozenset(m.name for m in policy.metrics)
        if self._metrics.get(policy.service, names) != names:
            for keyed in (self._forecasters, self._settings, self._holds, self._needless):
                for key in [key for key in keyed
                            if key[0] == policy.service and key[1] not in names]:
                    del keyed[key]
        self._metrics[policy.service] = names

    def forget(self, service: str) -> None:
        """Drop one service's forecasters, raises (needless ones too), budget of actions and
        training time: a service made again under the same name starts afresh."""
        for keyed in (self._forecasters, self._settings, self._needless):
            for key in [key for key in keyed if key[0] == service]:
                del keyed[key]
        self._budgets.pop(service, None)
        self._metrics.pop(service, None)
        self.release(service)
        self._next_training.pop(service, None)

    def release(self, service: str, in_force: int | None = None) -> None:
        """Drop one service's held raises, and what its forecasts asked for last, but not
        its forecasters: the count they were held at is no longer the one in force (someone
        else set another, or another strategy ran in between), and a raise held from before
        would lift the count back to it. The verdicts on its raises stay, as the forecasters
        do, and its actions, but not the count in force they were judged against; its
        actions are counted from `in_force` (the count someone else set; None: unknown):
        someone else's change is not one of them, the agent's answer to it is."""
        for key in [key for key in self._holds if key[0] == service]:
            del self._holds[key]
        for key, needless in self._needless.items():
            if key[0] == service:
                needless.in_force = None
        if service in self._budgets:
            self._budgets[service].in_force = in_force
        self._unsettled.pop(service, None)
        self._ticked.pop(service, None)

    def _needless_raises(self, service: str, metric: MetricSpec) -> NeedlessRaises | None:
        """The metric's needless raises, counted at its present target (None: no target)."""
        if not metric.target:
            return None
        key = (service, metric.name)
        found = self._needless.get(key)
        if found is None or found.target != metric.target:
            found = self._needless[key] = NeedlessRaises(metric.target)
        return found

    def _hold(self, service: str, metric: MetricSpec) -> RaiseHold:
        """The metric's raises, counted at its present target and limit."""
        key, counted_at = (service, metric.name), (metric.target, metric.limit)
        found = self._holds.get(key)
        if found is None or found.counted_at != counted_at:
            found = self._holds[key] = RaiseHold(counted_at)
        return found

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        """Feed the metric's value seen at `now` to its forecaster; its forecast."""
        forecaster = self.forecaster(policy, metric)
        forecaster.observe(now, value)
        return forecaster.forecast(now)
