"""Whatever Prometheus answers, a query gives series, or SourceUnavailable with a message of
bounded length; never another exception. The answer's bytes go through the source's own
reading (`_post`), from a fake session instead of a socket."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.core.model import Series
from autoscaler.core.ports import SourceUnavailable

END = datetime(2024, 1, 1, tzinfo=UTC)
START, STEP = END - timedelta(seconds=4), timedelta(seconds=1)
SETTINGS = settings(max_examples=200, deadline=2000,
                    suppress_health_check=[HealthCheck.too_slow])
MESSAGE_MAX = 400


class _Response:
    def __init__(self, body: bytes) -> None:
        self.body, self.status_code, self.reason = body, 200, "OK"
        self.headers: dict[str, str] = {}

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield self.body


def answering(body: bytes) -> PrometheusSource:
    source = PrometheusSource("http://127.0.0.1:9")
    source._session.post = lambda *_, **__: _Response(body)  # type: ignore[assignment, method-assign]
    return source


def assert_series_or_unavailable(body: bytes) -> None:
    """The contract of the three queries: their documented results, or SourceUnavailable
    whose message an operator can read in one line of the log."""
    calls: dict[str, Callable[[PrometheusSource], Any]] = {
        "query": lambda source: source.query("up"),
        "range_series": lambda source: source.range_series(
            "up", start=START, end=END, step=STEP),
        "history": lambda source: source.history(
            "up", service="s0", service_label="service", per_service=False,
            start=START, end=END, step=STEP),
    }
    for name, call in calls.items():
        try:
            result = call(answering(body))
        except SourceUnavailable as error:
            assert len(str(error)) < MESSAGE_MAX, (name, str(error)[:MESSAGE_MAX])
            continue
        if name == "query":
            assert all(isinstance(series, Series) for series in result)
        elif name == "range_series":
            assert all(isinstance(found, dict) for found in result)
            assert all(math.isfinite(v) for found in result for v in found.values())
        else:
            times, values = result
            assert len(times) == len(values) == 4


def answer(kind: Any, result: Any) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": kind, "result": result}}
                      ).encode()


@SETTINGS
@given(st.binary(max_size=200))
@example(b"[" * 100_000)
@example(b'{"status": "success", "data": {"resultType": "vector", "result": ' + b"[" * 5000)
def test_any_bytes(body: bytes) -> None:
    assert_series_or_unavailable(body)


LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) \
    | st.sampled_from(["NaN", "+Inf", "-Inf", "1e999", "1704067198", " 1704067199.5 "])
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
SAMPLES = st.lists(LEAVES, min_size=2, max_size=2) | VALUES
SERIES = st.fixed_dictionaries(
    {"metric": st.dictionaries(st.sampled_from(["service", "job"]), VALUES, max_size=2)
     | VALUES},
    optional={"value": SAMPLES, "values": st.lists(SAMPLES, max_size=3) | VALUES},
)


@SETTINGS
@given(st.sampled_from(["vector", "scalar", "matrix", "string", None]),
       st.lists(SERIES, max_size=3) | VALUES)
@example("matrix", [{"metric": {}, "values": [["NaN", "1"]]}])
@example("matrix", [{"metric": {}, "values": [[1e308, "1"]]}])
def test_any_values_in_the_places_of_an_answer(kind: Any, result: Any) -> None:
    assert_series_or_unavailable(answer(kind, result))


@pytest.mark.parametrize("stamp", [
    pytest.param("NaN", id="nan"),
    pytest.param("+Inf", id="inf"),
    pytest.param("-Inf", id="minus-inf"),
    pytest.param("nan" + " " * 10_000, id="nan-and-spaces"),
])
def test_a_range_sample_at_no_finite_time_is_unavailable(stamp: str) -> None:
    body = answer("matrix", [{"metric": {"service": "s0"}, "values": [[stamp, "1"]]}])

    with pytest.raises(SourceUnavailable, match="a sample time that is not a finite number"):
        answering(body).range_series("up", start=START, end=END, step=STEP)
    with pytest.raises(SourceUnavailable, match="a sample time that is not a finite number"):
        answering(body).history("up", service="s0", service_label="service",
                                per_service=False, start=START, end=END, step=STEP)


@pytest.mark.parametrize("body", [
    pytest.param(answer("scalar", [1, "x" * 100_000]), id="scalar"),
    pytest.param(answer("matrix", [{"values": [[1704067197, "x" * 100_000]]}]), id="matrix"),
])
def test_a_long_value_that_is_not_a_number_is_quoted_in_part(body: bytes) -> None:
    with pytest.raises(SourceUnavailable, match="not a number: 'xxx") as raised:
        answering(body).query("up") if b"scalar" in body else \
            answering(body).range_series("up", start=START, end=END, step=STEP)

    assert len(str(raised.value)) < MESSAGE_MAX


class _Pieces:
    """A session whose range answers are `pieces`, one a query."""

    def __init__(self, pieces: list[list[dict[str, Any]]]) -> None:
        self.pieces = iter(pieces)

    def post(self, *_: object, **__: object) -> _Response:
        result = next(self.pieces)
        return _Response(json.dumps({"status": "success",
                                     "data": {"resultType": "matrix", "result": result}}).encode())


def matrix(labels: dict[str, str], stamps: range) -> dict[str, Any]:
    """A series whose every value is its pod's number (a: 1, b: 2)."""
    value = str(" ab".index(labels["pod"]))
    return {"metric": labels, "values": [[float(t), value] for t in stamps]}


@pytest.mark.parametrize(("pieces", "expected"), [
    pytest.param([[matrix({"pod": "a"}, range(0, 3))], [matrix({"pod": "a"}, range(3, 5))]],
                 [(5, {1.0})], id="one series over both pieces"),
    pytest.param([[matrix({"pod": "a"}, range(0, 3))], [matrix({"pod": "b"}, range(3, 5))]],
                 [(3, {1.0}), (2, {2.0})], id="one series ends at the edge, another begins"),
    pytest.param([[matrix({"pod": "a"}, range(0, 3)), matrix({"pod": "b"}, range(0, 3))],
                  [matrix({"pod": "b"}, range(3, 5)), matrix({"pod": "a"}, range(3, 5))]],
                 [(5, {1.0}), (5, {2.0})], id="two series listed in another order"),
])
def test_a_long_range_joins_its_pieces_by_the_series_labels(
        monkeypatch: pytest.MonkeyPatch, pieces: list[list[dict[str, Any]]],
        expected: list[tuple[int, set[float]]]) -> None:
    monkeypatch.setattr("autoscaler.adapters.prometheus._RANGE_POINTS", 3)
    source = PrometheusSource("http://127.0.0.1:9")
    source._session.post = _Pieces(pieces).post  # type: ignore[assignment, method-assign]
    start = datetime.fromtimestamp(0, UTC)

    series = source.range_series("up", start=start, end=start + 4 * STEP, step=STEP)

    assert [(len(s), set(s.values())) for s in series] == expected
