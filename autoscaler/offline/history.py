"""A trace from a Prometheus range: the history `backtest --prometheus-url` replays."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from autoscaler.offline.traces import Trace, TraceError, regular


class RangeSource(Protocol):
    url: str

    def range_series(self, promql: str, *, start: datetime, end: datetime, step: timedelta
                     ) -> list[dict[int, float]]:
        """Per series of a range query, step index -> value; SourceUnavailable on failure."""
        ...


def range_trace(source: RangeSource, promql: str, *, start: datetime, end: datetime,
                step: timedelta) -> Trace:
    """A range query answering one series, as a trace at `step`. A step with no sample
    takes the value before it (0 before the first), as Prometheus's staleness would."""
    found = source.range_series(promql, start=start, end=end, step=step)
    if len(found) > 1:
        raise TraceError(f"the query must answer one series, it answered {len(found)}:"
                         " aggregate it (sum by nothing, or filter to one service)")
    samples = found[0] if found else {}
    if not samples:
        raise TraceError("the query answered no series over that range")
    count = int((end - start) / step) + 1
    values, last_value = [], 0.0
    for index in range(count):
        value = samples.get(index)
        if value is not None:
            last_value = value
        values.append(last_value)
    return regular([start + index * step for index in range(count)], values,
                   f"{source.url} {promql}")
