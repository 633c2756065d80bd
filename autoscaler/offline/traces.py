"""Load traces: a series of values at a regular step, from a CSV file or a Prometheus range."""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


class TraceError(ValueError):
    """A trace that cannot be read or is not at a regular step; the message says why."""


@dataclass(frozen=True)
class Trace:
    """Values at a regular step: `values[i]` was measured at `start + i * step`."""

    start: datetime
    step: timedelta
    values: list[float]
    source: str

    def time(self, index: int) -> datetime:
        return self.start + index * self.step

    def __len__(self) -> int:
        return len(self.values)


UNIX_MILLISECONDS_FROM = 1e11
"""A Unix time at least this large is read as milliseconds (as Grafana and many exporters
write them): as seconds it would be after the year 5000."""


def parse_time(text: str) -> datetime:
    """ISO 8601 (`1998-06-10 12:00:00`, naive read as UTC), Unix seconds or Unix
    milliseconds."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    try:
        if number is not None:
            seconds = number / 1000 if abs(number) >= UNIX_MILLISECONDS_FROM else number
            return datetime.fromtimestamp(seconds, UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f"cannot read the time {text!r}: use ISO 8601 (1998-06-10 12:00:00, read as UTC "
            "without a zone), Unix seconds or Unix milliseconds"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_csv(path: Path) -> Trace:
    """A CSV with a header, a timestamp column and a value column (the first two columns,
    or those named like `minute`/`time`/`timestamp` and `requests`/`value`)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as error:
        raise TraceError(f"{path}: cannot read the trace ({error})") from error
    if len(rows) < 3:
        raise TraceError(f"{path}: a trace needs a header and at least two rows")
    time_column, value_column = _columns(rows[0], path)
    times: list[datetime] = []
    values: list[float] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            times.append(parse_time(row[time_column]))
            value = float(row[value_column])
        except (ValueError, IndexError) as error:
            raise TraceError(f"{path}: line {number}: {error}") from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(f"{path}: line {number}: a load must be a finite number >= 0")
        values.append(value)
    return regular(times, values, str(path))


_TIME_NAMES = ("timestamp", "time", "minute", "second", "date", "datetime", "ts")
_VALUE_NAMES = ("value", "requests", "load", "count", "rate")


def _columns(header: Sequence[str], path: Path) -> tuple[int, int]:
    names = [h.strip().lower() for h in header]
    time_column = next((i for i, n in enumerate(names) if n in _TIME_NAMES), 0)
    value_column = next((i for i, n in enumerate(names) if n in _VALUE_NAMES and i != time_column),
                        1 if time_column == 0 else 0)
    if len(names) < 2:
        raise TraceError(f"{path}: needs a timestamp column and a value column, got {header}")
    return time_column, value_column


def regular(times: list[datetime], values: list[float], source: str) -> Trace:
    """A trace from sorted times at one regular step; missing steps are an error."""
    if len(times) < 2:
        raise TraceError(f"{source}: a trace needs at least two points")
    step = times[1] - times[0]
    if step <= timedelta(0):
        raise TraceError(f"{source}: times must increase")
    for index in range(1, len(times)):
        if times[index] - times[index - 1] != step:
            raise TraceError(
                f"{source}: the step changes at {times[index].isoformat()} "
                f"({times[index] - times[index - 1]} instead of {step}); a trace needs a "
                "regular step (fill gaps with 0 if no request came)"
            )
    return Trace(times[0], step, values, source)
