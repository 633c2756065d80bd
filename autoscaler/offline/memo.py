"""Forecasts shared between replays of one trace.

A forecast depends on the values seen and the forecast settings only (a metric's `limit`
among them), so replays that differ in targets or `behavior` (a sweep, tuning) can share
one memo instead of forecasting again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.predictive.book import ForecastBook
from autoscaler.predictive.forecaster import Forecast, ForecastSettings

ForecastMemo = dict[tuple[str, str, ForecastSettings, datetime], Forecast]
"""(service, metric, settings, time) -> the forecast made then."""


class MemoBook(ForecastBook):
    """A forecast book that takes forecasts from the memo when it has them, and trains only
    when some forecast the training would serve is not in it: the replay trains after the
    tick at `now`, so its first is the next tick's."""

    def __init__(self, tick: timedelta, memo: ForecastMemo) -> None:
        super().__init__(tick)
        self._memo = memo

    def due(self, policy: Policy, now: datetime) -> bool:
        return super().due(policy, now) and any(
            self._key(policy, m, now + self.tick) not in self._memo for m in policy.metrics)

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        key = self._key(policy, metric, now)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = super().forecast_metric(policy, metric, value, now)
        return found

    def _key(self, policy: Policy, metric: MetricSpec, now: datetime
             ) -> tuple[str, str, ForecastSettings, datetime]:
        return (policy.service, metric.name, self.settings_for(policy, metric), now)
