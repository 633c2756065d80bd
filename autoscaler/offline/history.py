"""A trace from a Prometheus range: the history `backtest --prometheus-url` replays."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from autoscaler.offline.traces import Trace, TraceError, plural, regular, shown_time


class RangeSource(Protocol):
    url: str

    def range_series(self, promql: str, *, start: datetime, end: datetime, step: timedelta
                     ) -> list[dict[int, float]]:
        """Per series of a range query, step index -> value; SourceUnavailable on failure."""
        ...


def range_trace(source: RangeSource, promql: str, *, start: datetime, end: datetime,
                step: timedelta) -> Trace:
    """A range query answering one series, as a trace at `step`. A step with no usable sample
    (none, NaN, an infinity: the source leaves those out; or a negative value, which no load
    is) takes the value before it (0 before the first), as Prometheus's staleness would; the
    trace warns of how many did."""
    found = source.range_series(promql, start=start, end=end, step=step)
    if len(found) > 1:
        raise TraceError(f"the query must answer one series, it answered {len(found)}:"
                         " aggregate it (sum by nothing, or filter to one service)")
    samples = found[0] if found else {}
    if not samples:
        raise TraceError("the query answered no series over that range")
    count = int((end - start) / step) + 1
    values, last_value = [], 0.0
    empty: list[int] = []
    negative: list[int] = []
    for index in range(count):
        value = samples.get(index)
        if value is None:
            empty.append(index)
        elif value < 0:
            negative.append(index)
        else:
            last_value = value
        values.append(last_value)
    times = [start + index * step for index in range(count)]
    warnings = []
    for found_at, what in ((empty, "no finite sample (none, NaN or an infinity)"),
                           (negative, "a negative value, which no load is")):
        if found_at:
            warnings.append(f"{plural(len(found_at), 'step')} of {count:,} had {what}, first at "
                            f"{shown_time(times[found_at[0]])}: each took the value before it")
    trace = regular(times, values, f"{source.url} {promql}")
    return replace(trace, warnings=tuple(warnings))
