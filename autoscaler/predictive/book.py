"""The forecasters of the predictive policies: one per (service, metric), trained when due.

The forecaster module (numpy, scikit-learn) is imported when the book first needs it, at a
predictive policy's first forecast or training: an agent without one never loads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from autoscaler.core.spec import MetricSpec, Policy
from autoscaler.core.strategies import MetricForecast

if TYPE_CHECKING:
    from autoscaler.predictive.forecaster import Forecast, ForecastSettings, MetricForecaster

RETRY = timedelta(hours=1)
"""The longest wait before training again after a failed training."""


class ForecastBook:
    """The forecasters of the predictive policies, one per (service, metric), and when each
    policy was last trained."""

    def __init__(self, tick: timedelta) -> None:
        self.tick = tick
        self._forecasters: dict[tuple[str, str], MetricForecaster] = {}
        self._settings: dict[tuple[str, str], ForecastSettings] = {}
        self._next_training: dict[str, datetime] = {}

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
        """The metric's forecaster; a new one when its forecast settings change."""
        from autoscaler.predictive.forecaster import MetricForecaster

        key = (policy.service, metric.name)
        settings = self.settings_for(policy, metric)
        if self._settings.get(key) != settings:
            self._forecasters[key] = MetricForecaster(settings)
            self._settings[key] = settings
            self._next_training.pop(policy.service, None)
        return self._forecasters[key]

    def due(self, policy: Policy, now: datetime) -> bool:
        """Training is due every `retrain_every` (an hour after a failed one, at most)."""
        next_training = self._next_training.get(policy.service)
        return next_training is None or now >= next_training

    def trained(self, policy: Policy, now: datetime, *, ok: bool) -> None:
        every = policy.predictive.retrain_every
        self._next_training[policy.service] = now + (every if ok else min(every, RETRY))

    def forecast(self, policy: Policy, values: Mapping[str, float | None], now: datetime
                 ) -> tuple[dict[str, MetricForecast], str | None]:
        """Feed this tick's values and forecast each metric; the first fall-back reason."""
        forecasts: dict[str, MetricForecast] = {}
        reasons = []
        for metric in policy.metrics:
            found = self.forecast_metric(policy, metric, values.get(metric.name), now)
            forecasts[metric.name] = MetricForecast(
                found.point, None if found.reason else found.with_margin,
                None if found.reason else found.worst_case)
            if found.reason:
                reasons.append(found.reason)
        return forecasts, (reasons[0] if reasons else None)

    def forecast_metric(self, policy: Policy, metric: MetricSpec, value: float | None,
                        now: datetime) -> Forecast:
        """Feed the metric's value seen at `now` to its forecaster; its forecast."""
        forecaster = self.forecaster(policy, metric)
        forecaster.observe(now, value)
        return forecaster.forecast(now)
