"""The forecasters of the predictive policies: one per (service, metric), trained when due."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta

from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.core.strategies import MetricForecast
from autoscaler.predictive.forecast import Forecast, ForecastSettings, MetricForecaster

RETRY = timedelta(hours=1)
"""The longest wait before training again after a failed training."""


ForecastMemo = dict[tuple[str, str, ForecastSettings, datetime], Forecast]
"""Forecasts already made: (service, metric, settings, time) -> forecast(). A forecast
depends on the values seen and the settings only (a metric's `limit` among them), so replays
of one trace that differ in targets or `behavior` (a benchmark's sweep) can share one memo
instead of forecasting again."""


class ForecastBook:
    """The forecasters of the predictive policies, one per (service, metric), and when each
    policy was last trained."""

    def __init__(self, tick: timedelta, memo: ForecastMemo | None = None) -> None:
        self.tick = tick
        self._memo = memo
        self._forecasters: dict[tuple[str, str], MetricForecaster] = {}
        self._settings: dict[tuple[str, str], ForecastSettings] = {}
        self._next_training: dict[str, datetime] = {}

    def settings_for(self, policy: Policy, metric: MetricSpec | None = None) -> ForecastSettings:
        """The forecast settings of `policy`, and of `metric` (its limit) if given."""
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
        """The metric's forecaster; a new one when its forecast settings change."""
        key = (policy.service, metric.name)
        settings = self.settings_for(policy, metric)
        if self._settings.get(key) != settings:
            self._forecasters[key] = MetricForecaster(settings)
            self._settings[key] = settings
            self._next_training.pop(policy.service, None)
        return self._forecasters[key]

    def due(self, policy: Policy, now: datetime) -> bool:
        """Training is due every `retrain_every` (an hour after a failed one, at most); never
        when the memo holds the forecasts."""
        next_training = self._next_training.get(policy.service)
        if next_training is not None and now < next_training:
            return False
        if self._memo is None:
            return True
        return any((policy.service, m.name, self.settings_for(policy, m), now) not in self._memo
                   for m in policy.metrics)

    def trained(self, policy: Policy, now: datetime, *, ok: bool) -> None:
        every = policy.predictive.retrain_every
        self._next_training[policy.service] = now + (every if ok else min(every, RETRY))

    def forecast(self, policy: Policy, values: Mapping[str, float | None], now: datetime
                 ) -> tuple[dict[str, MetricForecast], str | None]:
        """Feed this tick's values and forecast each metric; the first fall-back reason."""
        forecasts: dict[str, MetricForecast] = {}
        reasons = []
        for metric in policy.metrics:
            forecaster = self.forecaster(policy, metric)
            key = (policy.service, metric.name, forecaster.settings, now)
            if self._memo is not None and key in self._memo:
                found = self._memo[key]
            else:
                forecaster.observe(now, values.get(metric.name))
                found = forecaster.forecast(now)
                if self._memo is not None:
                    self._memo[key] = found
            forecasts[metric.name] = MetricForecast(
                found.point, None if found.reason else found.with_margin,
                None if found.reason else found.worst_case)
            if found.reason:
                reasons.append(found.reason)
        return forecasts, (reasons[0] if reasons else None)
