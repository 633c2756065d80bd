"""parse_duration and format_duration: the durations ops write in policy files."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autoscaler.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30s", timedelta(seconds=30), id="seconds"),
        pytest.param("5m", timedelta(minutes=5), id="minutes"),
        pytest.param("1h", timedelta(hours=1), id="hours"),
        pytest.param("1d", timedelta(days=1), id="days"),
        pytest.param("1h30m", timedelta(hours=1, minutes=30), id="compound"),
        pytest.param("500ms", timedelta(milliseconds=500), id="milliseconds"),
        pytest.param("1.5m", timedelta(seconds=90), id="fractional-unit"),
        pytest.param("15", timedelta(seconds=15), id="bare-number-text"),
        pytest.param("2.5", timedelta(seconds=2.5), id="bare-fraction-text"),
        pytest.param(15, timedelta(seconds=15), id="bare-int"),
        pytest.param(0.25, timedelta(seconds=0.25), id="bare-float"),
        pytest.param(0, timedelta(0), id="zero-int"),
        pytest.param("0s", timedelta(0), id="zero-text"),
        pytest.param("  30s ", timedelta(seconds=30), id="surrounding-blanks"),
    ],
)
def test_parse_duration_accepts(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("", "such as 30s", id="empty-text"),
        pytest.param("soon", "such as 30s", id="word"),
        pytest.param("5x", "such as 30s", id="unknown-unit"),
        pytest.param("30 s", "such as 30s", id="blank-before-unit"),
        pytest.param("s30", "such as 30s", id="unit-first"),
        pytest.param("1.5.2s", "such as 30s", id="two-points"),
        pytest.param("-5", "zero or more", id="negative-text"),
        pytest.param(-1, "zero or more", id="negative-number"),
        pytest.param("nan", "got 'nan'", id="nan-text"),
        pytest.param(float("inf"), "zero or more", id="infinite"),
        pytest.param(True, "such as 30s", id="bool"),
        pytest.param(None, "such as 30s", id="none"),
        pytest.param(["30s"], "such as 30s", id="list"),
    ],
)
def test_parse_duration_rejects_with_operator_message(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"must be a (finite )?duration") as raised:
        parse_duration(value)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=15), "15s", id="seconds"),
        pytest.param(timedelta(seconds=90), "90s", id="not-whole-minutes"),
        pytest.param(timedelta(minutes=5), "5m", id="minutes"),
        pytest.param(timedelta(hours=2), "2h", id="hours"),
        pytest.param(timedelta(days=1), "1d", id="days"),
        pytest.param(timedelta(milliseconds=500), "0.5s", id="fraction"),
        pytest.param(timedelta(days=14, seconds=1), "1209601s", id="a-million-seconds-in-full"),
        pytest.param(timedelta(seconds=691201.5), "691201.5s", id="large-with-a-fraction"),
    ],
)
def test_format_duration_shortest_exact(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected
    assert parse_duration(expected) == value
