"""How far a forecast was from the load it forecast: the forecaster's fall-back and the
backtest's scoring share one definition."""

from __future__ import annotations


def smape_term(actual: float, forecast: float) -> float:
    """200 |a - f| / (|a| + |f|), 0 when both are 0, never above 200: rounding makes
    200 f / f come out a hair above 200, which would trip a `max_error_pct` of 200."""
    total = abs(actual) + abs(forecast)
    return 0.0 if total == 0 else min(200 * abs(actual - forecast) / total, 200.0)
