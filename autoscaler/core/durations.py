"""Durations as ops write them: `30s`, `5m`, `1h`, `1d`, `1h30m`, or a bare number of seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal

MAX_SECONDS = 365 * 86400.0
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> timedelta:
    """Parse a duration; raise ValueError with a message fit for an operator."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _WHOLE.fullmatch(text):
                raise ValueError(
                    f"must be a duration such as 30s, 5m or 1h, got {value!r}"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError(f"must be a duration such as 30s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a finite duration of zero or more, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"must be at most 365d, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest of `90s`, `5m`, `1h` style that states the duration exactly."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    exact = format(Decimal(value // timedelta(microseconds=1)) / 1_000_000, "f")
    return f"{exact.rstrip('0').rstrip('.') if '.' in exact else exact}s"
