"""Load traces: a series of values at a regular step, from a CSV file or a Prometheus range.

Reading a CSV says what it did: a trace carries `notes` (the column read, gaps filled, the
resampling) and `warnings` (what was assumed or repaired: a first row read as data, rows
sorted), which the commands print and the report repeats. What cannot be read without a
guess (duplicate times, a gap without `--fill`) is an error that says how to fix it."""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Literal, NamedTuple

from autoscaler.core.durations import format_duration


class TraceError(ValueError):
    """A trace that cannot be read or is not at a regular step; the message says why."""


@dataclass(frozen=True)
class Trace:
    """Values at a regular step: `values[i]` was measured at `start + i * step`."""

    start: datetime
    step: timedelta
    values: list[float]
    source: str
    notes: tuple[str, ...] = ()
    """What reading the trace did that its reader should know: the column read, the gaps
    filled, the resampling."""
    warnings: tuple[str, ...] = ()
    """What reading the trace assumed or repaired: a first row read as data, rows sorted."""

    def time(self, index: int) -> datetime:
        return self.start + index * self.step

    def __len__(self) -> int:
        return len(self.values)


Fill = Literal["zero", "previous", "interpolate"]
FILLS: tuple[Fill, ...] = ("zero", "previous", "interpolate")
_FILLED = {
    "zero": "with 0",
    "previous": "with the value before each",
    "interpolate": "by linear interpolation",
}
_FILLED_STEPS = {
    "zero": "set to 0",
    "previous": "given the value of the step before",
    "interpolate": "interpolated linearly between the steps around them",
}


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV trace (the backtest's --fill, --resample and --column)."""

    fill: Fill | None = None
    """Missing steps: 0, the value before, or interpolated; None: a gap is an error."""
    resample: timedelta | None = None
    """Put the rows on this step: the mean of the rows in each step, an empty step filled
    as `fill` says (default interpolated)."""
    column: str | None = None
    """The header of the value column; None: the one named like a value, else the second."""


UNIX_MILLISECONDS_FROM = 1e11
"""A Unix time at least this large is read as milliseconds (as Grafana and many exporters
write them): as seconds it would be after the year 5000."""

MAX_STEPS = 10_000_000
"""The most steps a filled or resampled trace may have: a mistyped year or a tiny
--resample would otherwise exhaust the memory."""

MAX_TRACE_BYTES = 1 << 30
"""The most bytes of a trace read, unpacked: MAX_STEPS rows are a few hundred MB, and a
small gzip'd file may unpack to more than the memory."""

SHOWN = 5
"""Of a list of lines or times, how many a message names."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def shown_time(time: datetime) -> str:
    """A time as messages write it: ISO 8601, `Z` for UTC."""
    return time.isoformat().replace("+00:00", "Z")


def plural(count: int, word: str) -> str:
    """`1 row`, `2 rows`."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def shown_lines(lines: Sequence[int], limit: int = SHOWN) -> str:
    """`line 4`, `lines 4, 9`, `lines 1, 2, 3, 4, 5 and 7 more`."""
    named = ", ".join(str(n) for n in lines[:limit])
    more = f" and {len(lines) - limit:,} more" if len(lines) > limit else ""
    return f"line{'' if len(lines) == 1 else 's'} {named}{more}"


class _Point(NamedTuple):
    time: datetime
    value: float
    line: int


@dataclass
class _Said:
    notes: list[str]
    warnings: list[str]


def load_csv(path: Path, options: CsvOptions | None = None) -> Trace:
    """A CSV with a timestamp column and a value column (the first two columns, or those
    named like `minute`/`time`/`timestamp` and `requests`/`value`, or `options.column`),
    with a header or without one (a first row that reads as a time and a value is data).
    Rows out of time order are sorted (a warning); duplicate times and gaps are errors
    unless `options` says how to resolve them."""
    options = options or CsvOptions()
    try:
        with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as file:
            raw = file.read(MAX_TRACE_BYTES + 1)
        if len(raw) > MAX_TRACE_BYTES:
            raise TraceError(f"{path}: over {MAX_TRACE_BYTES:,} bytes"
                             f"{' unpacked' if path.suffix == '.gz' else ''}: not a trace a "
                             "backtest takes (cut it to the weeks you want to replay)")
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, csv.Error) as error:
        raise TraceError(f"{path}: cannot read the trace ({error})") from error
    said = _Said([], [])
    first = next((i for i, row in enumerate(rows) if _filled(row)), None)
    if first is None:
        raise TraceError(f"{path}: the file holds no rows")
    width = len(rows[first])
    if _is_data(rows[first]):
        if options.column is not None:
            raise TraceError(f"{path}: --column {options.column} names a column, but the file "
                             f"has no header (line {first + 1} is a time and a value): add a "
                             "header, or leave --column out")
        time_column, value_column, data_from = 0, 1, first
        said.warnings.append(
            f"no header: line {first + 1} reads as a time and a value, so it is kept as data "
            f"(the time in column 1, the value in column 2{_of_columns(width)})")
    else:
        time_column, value_column = _columns(rows[first], path, options.column, said)
        data_from = first + 1
        looks = _looks_like_data(rows[first], time_column, value_column)
        if looks:
            said.warnings.append(
                f"line {first + 1} is read as the header, though its {looks}: if it is a row "
                "of data, it is not in the trace")
    points: list[_Point] = []
    for number, row in enumerate(rows[data_from:], start=data_from + 1):
        if not _filled(row):
            continue
        where = f"{path}: line {number}"
        if _filled(row[width:]):
            raise TraceError(f"{where}: {len(row)} fields, where line {first + 1} has {width} "
                             f"({_NO_SEPARATORS}: 1,234 is two fields)")
        if time_column >= len(row) or not row[time_column].strip():
            raise TraceError(f"{where}: no time in column {time_column + 1}")
        if value_column >= len(row) or not row[value_column].strip():
            raise TraceError(f"{where}: no value in column {value_column + 1}")
        try:
            time = parse_time(row[time_column])
        except ValueError as error:
            raise TraceError(f"{where}: {error}") from None
        try:
            value = float(row[value_column])
        except ValueError:
            hint = f" ({_NO_SEPARATORS})" if "," in row[value_column] else ""
            raise TraceError(f"{where}: column {value_column + 1} "
                             f"({_cell(row[value_column])}) is not a number{hint}") from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(f"{path}: line {number}: a load must be a finite number >= 0")
        points.append(_Point(time, value, number))
    if len(points) < 2:
        raise TraceError(f"{path}: a trace needs at least two rows of values, got "
                         f"{len(points)}")
    points = _sorted(points, said)
    if options.resample is not None:
        start, values = _resample(points, options.resample, options.fill, path, said)
        step = options.resample
    else:
        _refuse_duplicates(points, path)
        start, step, values = _on_grid(points, options.fill, path, said)
    return Trace(start, step, values, str(path), tuple(said.notes), tuple(said.warnings))


_NO_SEPARATORS = "write numbers without a thousands separator, and decimals with a point"
"""How a trace's numbers are written: a comma in a number, quoted or not, is not read (1,5
may be one and a half or fifteen)."""


def _cell(text: str) -> str:
    """A cell as a message quotes it: at most 40 characters."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _filled(row: Sequence[str]) -> bool:
    return any(cell.strip() for cell in row)


def _is_data(row: Sequence[str]) -> bool:
    """A row that reads as a time and a value: not a header."""
    if len(row) < 2:
        return False
    try:
        parse_time(row[0])
        float(row[1])
    except ValueError:
        return False
    return True


def _looks_like_data(row: Sequence[str], time_column: int, value_column: int) -> str:
    """What in a header row reads as data: `time column reads as a time`, or ''."""
    found = []
    try:
        parse_time(row[time_column])
        found.append(f"column {time_column + 1} reads as a time")
    except ValueError:
        pass
    try:
        float(row[value_column])
        found.append(f"column {value_column + 1} as a number")
    except ValueError:
        pass
    return " and ".join(found)


def _of_columns(width: int) -> str:
    return f", of {width}" if width > 2 else ""


_OTHER_SEPARATORS = ";\t|"
"""What a spreadsheet's export may separate columns with instead of the comma a trace needs."""
_TIME_NAMES = ("timestamp", "time", "minute", "second", "date", "datetime", "ts")
_VALUE_NAMES = ("value", "requests", "load", "count", "rate")


def _columns(header: Sequence[str], path: Path, column: str | None, said: _Said
             ) -> tuple[int, int]:
    names = [h.strip() for h in header]
    lowered = [n.lower() for n in names]
    if len(names) < 2:
        separator = next((s for s in _OTHER_SEPARATORS if header and s in header[0]), None)
        hint = (f": the columns are separated by commas, not {separator!r}"
                if separator else "")
        raise TraceError(f"{path}: needs a timestamp column and a value column, got "
                         f"{header}{hint}")
    time_column = next((i for i, n in enumerate(lowered) if n in _TIME_NAMES), 0)
    if column is not None:
        matches = [i for i, n in enumerate(names) if n == column] or \
            [i for i, n in enumerate(lowered) if n == column.strip().lower()]
        listed = ", ".join(names)
        if not matches:
            raise TraceError(f"{path}: --column {column}: no such column (the header has "
                             f"{listed})")
        if matches[0] == time_column:
            raise TraceError(f"{path}: --column {column} is the time column; name the value "
                             f"column (the header has {listed})")
        value_column = matches[0]
    else:
        value_column = next(
            (i for i, n in enumerate(lowered) if n in _VALUE_NAMES and i != time_column),
            1 if time_column == 0 else 0)
    if column is not None or len(names) > 2:
        how = "as --column says" if column is not None else "--column NAME reads another"
        said.notes.append(
            f"the value is column {value_column + 1}, {names[value_column]!r}, and the time "
            f"column {time_column + 1}, {names[time_column]!r}, of {', '.join(names)} "
            f"({how})")
    return time_column, value_column


def _sorted(points: list[_Point], said: _Said) -> list[_Point]:
    """The points in time order; rows out of order are sorted, with a warning."""
    late: list[tuple[_Point, datetime]] = []
    latest = points[0].time
    for point in points[1:]:
        if point.time < latest:
            late.append((point, latest))
        else:
            latest = point.time
    if not late:
        return points
    point, after = late[0]
    said.warnings.append(
        f"{plural(len(late), 'row')} out of time order, the first on line {point.line} "
        f"({shown_time(point.time)}, after {shown_time(after)}): sorted by time")
    return sorted(points, key=lambda p: p.time)


def _refuse_duplicates(points: list[_Point], path: Path) -> None:
    lines: dict[datetime, list[int]] = {}
    for point in points:
        lines.setdefault(point.time, []).append(point.line)
    twice = [(time, found) for time, found in lines.items() if len(found) > 1]
    if not twice:
        return
    rows = sum(len(found) for _, found in twice)
    named = "; ".join(f"{shown_time(time)} on {shown_lines(found)}" for time, found
                      in twice[:3])
    more = f"; and {plural(len(twice) - 3, 'time')} more" if len(twice) > 3 else ""
    raise TraceError(
        f"{path}: {plural(len(twice), 'time')} given more than once ({rows:,} rows): {named}"
        f"{more}; a trace needs one value per time: remove the duplicates, or give "
        "--resample DURATION to average the rows of each step")


def _grid_step(points: list[_Point]) -> timedelta:
    """The step most pairs of rows are apart (the shortest of the most frequent)."""
    gaps = Counter(b.time - a.time for a, b in pairwise(points))
    most = max(gaps.values())
    return min(gap for gap, count in gaps.items() if count == most)


def _on_grid(points: list[_Point], fill: Fill | None, path: Path, said: _Said
             ) -> tuple[datetime, timedelta, list[float]]:
    """The points as a trace at their step: a row off the step is an error, a gap is one
    unless `fill` says how to fill it."""
    step = _grid_step(points)
    start = points[0].time
    gaps: list[tuple[_Point, _Point]] = []
    for before, after in pairwise(points):
        apart = after.time - before.time
        if apart % step:
            raise TraceError(
                f"{path}: the step changes at {shown_time(after.time)} (line {after.line}: "
                f"{format_duration(apart)} after the row before instead of "
                f"{format_duration(step)}), off the {format_duration(step)} step of the "
                "other rows: give --resample DURATION to put the trace on a regular step "
                "(the mean of the rows in each step)")
        if apart != step:
            gaps.append((before, after))
    if not gaps:
        if fill is not None:
            said.notes.append(f"--fill {fill}: no gap to fill")
        return start, step, [p.value for p in points]
    missing = sum((after.time - before.time) // step - 1 for before, after in gaps)
    before, after = gaps[0]
    gaps_text = plural(len(gaps), 'gap')
    steps_text = f"{plural(missing, 'missing step')} of {format_duration(step)} in all"
    if fill is None:
        raise TraceError(
            f"{path}: the step changes at {shown_time(after.time)} (line {after.line}: "
            f"{format_duration(after.time - before.time)} after the row before instead of "
            f"{format_duration(step)}): {gaps_text}, {steps_text}; a trace needs a regular "
            "step: give --fill zero|previous|interpolate to fill the missing steps, or "
            f"--resample {format_duration(step)}")
    count = (points[-1].time - start) // step + 1
    _check_size(count, step, path)
    known = {(p.time - start) // step: p.value for p in points}
    said.notes.append(f"filled {gaps_text} {_FILLED[fill]} ({steps_text}); the first after "
                      f"{shown_time(before.time)} (line {before.line})")
    return start, step, _filled_values(known, count, fill)


def _check_size(count: int, step: timedelta, path: Path) -> None:
    if count > MAX_STEPS:
        raise TraceError(f"{path}: at a {format_duration(step)} step the trace would have "
                         f"{count:,} steps, over the {MAX_STEPS:,} a backtest takes: check "
                         "the times, or give a longer --resample")


def _filled_values(known: dict[int, float], count: int, fill: Fill) -> list[float]:
    """Values at steps 0 .. count - 1 from the `known` ones (steps 0 and count - 1 among
    them), a missing one filled as `fill` says."""
    values: list[float] = []
    before = 0
    indices = sorted(known)
    for after in indices:
        for index in range(before + 1, after):
            if fill == "zero":
                values.append(0.0)
            elif fill == "previous":
                values.append(known[before])
            else:
                share = (index - before) / (after - before)
                values.append(known[before] + (known[after] - known[before]) * share)
        values.append(known[after])
        before = after
    return values


def _resample(points: list[_Point], step: timedelta, fill: Fill | None, path: Path,
              said: _Said) -> tuple[datetime, list[float]]:
    """The points on a `step` grid aligned to the Unix epoch: each step the mean of its
    rows, a step without a row filled as `fill` says (default interpolated)."""
    start = _EPOCH + ((points[0].time - _EPOCH) // step) * step
    count = (points[-1].time - start) // step + 1
    _check_size(count, step, path)
    if count < 2:
        raise TraceError(f"{path}: at a {format_duration(step)} step the rows make "
                         f"{plural(count, 'step')}; a trace needs at least two: give a "
                         "shorter --resample")
    rows: dict[int, list[float]] = {}
    for point in points:
        rows.setdefault((point.time - start) // step, []).append(point.value)
    # Each value shared out before the sum: two rows near the float's limit (1e308) would
    # sum past it.
    known = {index: math.fsum(v / len(values) for v in values) for index, values in rows.items()}
    several = sum(1 for values in rows.values() if len(values) > 1)
    empty = count - len(rows)
    how = fill or "interpolate"
    text = (f"resampled to a {format_duration(step)} step: {plural(len(points), 'row')} "
            f"into {plural(count, 'step')}, {len(rows):,} the mean of their rows "
            f"({several:,} of them of several rows)")
    if empty:
        text += f", {empty:,} without a row {_FILLED_STEPS[how]}"
    said.notes.append(text)
    times = Counter(point.time for point in points)
    twice = [time for time, seen in times.items() if seen > 1]
    if twice:
        said.notes.append(
            f"{plural(len(twice), 'time')} given more than once ("
            f"{sum(times[t] for t in twice):,} rows, the first {shown_time(twice[0])}): "
            "averaged in their step")
    return start, _filled_values(known, count, how)


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
                "regular step"
            )
    return Trace(times[0], step, values, source)
