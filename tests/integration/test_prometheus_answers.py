"""PrometheusSource against a server that answers as the test says: the requests it sends
(form POSTs) and every degenerate answer it names."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.adapters import prometheus
from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.core.ports import SourceUnavailable
from tests.integration.http_fakes import (
    Answer,
    ScriptedServer,
    Seen,
    api_answer,
    matrix,
    vector,
)

END = datetime(2024, 1, 1, tzinfo=UTC)
START, STEP = END - timedelta(seconds=4), timedelta(seconds=1)


def form(seen: Seen) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(seen.body.decode(), strict_parsing=True))


def test_an_instant_query_is_a_form_post_with_nothing_in_the_url() -> None:
    promql = 'sum by (service) (up{service=~"' + "|".join(f"s{i}" for i in range(5000)) + '"})'
    with ScriptedServer(lambda seen: vector("1")) as server:
        PrometheusSource(server.url).query(promql)
        PrometheusSource(server.url).query("up", at=END)

    first, second = server.seen
    assert (first.method, first.path) == ("POST", "/api/v1/query")
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(first) == {"query": promql}
    assert form(second) == {"query": "up", "time": f"{END.timestamp():.3f}"}


def test_range_requests_are_form_posts_with_start_end_and_step() -> None:
    with ScriptedServer(lambda seen: matrix("1")) as server:
        source = PrometheusSource(f"{server.url}/prefix/")
        source.range_series("up", start=START, end=END, step=STEP)
        source.history("up", service="s0", service_label="service", per_service=False,
                       start=START, end=END, step=STEP)

    for seen, last in zip(server.seen, (END, END - STEP), strict=True):
        assert (seen.method, seen.path) == ("POST", "/prefix/api/v1/query_range")
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form(seen) == {"query": "up", "start": f"{START.timestamp():.3f}",
                              "end": f"{last.timestamp():.3f}", "step": "1"}


def test_a_long_range_is_asked_in_requests_of_at_most_10000_points() -> None:
    with ScriptedServer(lambda seen: matrix()) as server:
        PrometheusSource(server.url).range_series(
            "up", start=END - 25_000 * STEP, end=END, step=STEP)

    points = [(float(form(seen)["end"]) - float(form(seen)["start"])) + 1
              for seen in server.seen]
    assert points == [10_000, 10_000, 5_001]


DEGENERATE_INSTANT = {
    "status-error": (Answer(status=400, body=json.dumps(
        {"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()),
        r"refused the query: HTTP 400 Bad Request: bad_data: parse error"),
    "error-in-a-200": (api_answer(None, status="error"), "refused the query"),
    "unavailable": (Answer(status=503, body=b"<html>upstream down</html>",
                           headers={"Content-Type": "text/html"}),
                    "refused the query: HTTP 503 Service Unavailable: <html>upstream down"),
    "unauthorized": (Answer(status=401, body=b"Unauthorized"),
                     r"HTTP 401 Unauthorized \(check the credentials\)"),
    "redirect": (Answer(status=302, headers={"Location": "https://elsewhere:9090/"}),
                 "redirect to https://elsewhere:9090/ .not followed"),
    "not-json": (Answer(body=b"<html>hello</html>"),
                 "sent an answer that is not the query API's: not JSON"),
    "not-an-object": (Answer(body=b"[1, 2]"), "not the query API's: not a JSON object"),
    "no-data": (Answer(body=b'{"status": "success"}'), "not the query API's: no data"),
    "a-matrix": (matrix("1"), "answered with a 'matrix' result, not an instant vector"),
    "a-string": (api_answer({"resultType": "string", "result": [1.0, "x"]}),
                 "answered with a 'string' result"),
    "wrong-shape": (api_answer({"resultType": "vector", "result": [{"values": []}]}),
                    "unknown shape"),
    "nested-too-deep": (Answer(body=b"[" * 100_000 + b"]" * 100_000),
                        "sent an answer that is not the query API's: not JSON"),
}


@pytest.mark.parametrize("answer,message", DEGENERATE_INSTANT.values(),
                         ids=DEGENERATE_INSTANT.keys())
def test_a_degenerate_instant_answer_is_unavailable(answer: Answer, message: str) -> None:
    with ScriptedServer(lambda seen: answer) as server, \
            pytest.raises(SourceUnavailable, match=message) as raised:
        PrometheusSource(server.url).query("up")

    assert str(raised.value).startswith(f"Prometheus at {server.url} ")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert len(server.seen) == 1  # a redirect is not followed


DEGENERATE_RANGE = {
    "a-vector": (vector("1"), "answered a range query with a 'vector' result, not a matrix"),
    "not-a-number": (matrix("1", "many"), "sent a value that is not a number: 'many'"),
    "bad-stamp": (api_answer({"resultType": "matrix", "result": [
        {"metric": {}, "values": [["noon", "1"]]}]}), "not a number: 'noon'"),
    "wrong-shape": (api_answer({"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1, "2", 3]]}]}), "a matrix of an unknown shape"),
    "not-json": (Answer(body=b"{"), "not JSON"),
}


@pytest.mark.parametrize("answer,message", DEGENERATE_RANGE.values(),
                         ids=DEGENERATE_RANGE.keys())
def test_a_degenerate_range_answer_is_unavailable(answer: Answer, message: str) -> None:
    with ScriptedServer(lambda seen: answer) as server:
        source = PrometheusSource(server.url)
        with pytest.raises(SourceUnavailable, match=message):
            source.range_series("up", start=START, end=END, step=STEP)
        with pytest.raises(SourceUnavailable, match=message):
            source.history("up", service="s0", service_label="service", per_service=True,
                           start=START, end=END, step=STEP)


def test_an_answer_past_the_size_limit_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that sends without end is refused before it takes the agent's memory."""
    monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", 100_000)
    answer = api_answer({"resultType": "vector", "result": [
        {"metric": {"service": f"s{index}"}, "value": [1700000000.0, "1"]}
        for index in range(5_000)]})
    with ScriptedServer(lambda seen: answer) as server, \
            pytest.raises(SourceUnavailable, match="larger than 100,000 bytes"):
        PrometheusSource(server.url).query("up")


def test_large_answers_are_decoded_one_at_a_time_and_only_by_their_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight large answers decoded side by side took 4.9 GB and a tick of 45 s at a 15 s
    interval: one at a time (here, answers the size of the room), and an answer still
    waiting for others' decoding at its deadline is dropped, so the queries end by their
    deadline and one decoding."""
    decode_seconds, deadline = 0.4, 1.0
    decoding, most = 0, 0
    counting = threading.Lock()

    def slow_json(body: bytes) -> object:
        nonlocal decoding, most
        with counting:
            decoding += 1
            most = max(most, decoding)
        time.sleep(decode_seconds)
        with counting:
            decoding -= 1
        return json.loads(body)

    def ask(source: PrometheusSource) -> str:
        try:
            source.query("up")
        except SourceUnavailable as error:
            return str(error)
        return "answered"

    monkeypatch.setattr(prometheus, "_json", slow_json)
    monkeypatch.setattr(prometheus, "DECODED_AT_ONCE_BYTES", len(vector("1").body))
    with ScriptedServer(lambda seen: vector("1")) as server:
        source = PrometheusSource(server.url, timeout=deadline)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(ask, [source] * 6))
        took = time.monotonic() - started

    assert most == 1
    assert "answered" in outcomes
    assert any(outcome.endswith("waited for others' to be read)") for outcome in outcomes)
    assert took < deadline + decode_seconds + 0.5


def test_a_large_answer_being_decoded_holds_up_no_small_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One query that forgot its `sum by` answered 60 MB, seconds to decode: decoded one at
    a time whatever their size, the small answers that came meanwhile waited for it past
    their deadline, and every other query of the tick failed (33 of 40 at a 6 s interval,
    none without the wait). Small answers are decoded beside a large one."""
    large, small = vector(*["1"] * 100), vector("1")
    decode_seconds, deadline = 1.0, 0.5

    def slow_json(body: bytes) -> object:
        if body == large.body:
            time.sleep(decode_seconds)
        return json.loads(body)

    def ask(source: PrometheusSource, promql: str) -> str:
        try:
            source.query(promql)
        except SourceUnavailable as error:
            return str(error)
        return "answered"

    monkeypatch.setattr(prometheus, "_json", slow_json)
    with ScriptedServer(lambda seen: large if form(seen)["query"] == "large" else small
                        ) as server, ThreadPoolExecutor(max_workers=7) as pool:
        source = PrometheusSource(server.url, timeout=deadline)
        decoding_large = pool.submit(ask, source, "large")
        time.sleep(0.2)
        outcomes = list(pool.map(ask, [source] * 6, [f"small{i}" for i in range(6)]))

    assert outcomes == ["answered"] * 6
    assert decoding_large.result() == "answered"


def test_a_history_series_whose_labels_are_no_mapping_is_not_the_services() -> None:
    answer = api_answer({"resultType": "matrix", "result": [
        {"metric": ["service", "s0"], "values": [[END.timestamp() - 1, "4"]]}]})
    with ScriptedServer(lambda seen: answer) as server:
        source = PrometheusSource(server.url)
        _, shared = source.history("up", service="s0", service_label="service",
                                   per_service=False, start=START, end=END, step=STEP)
        _, own = source.history("up", service="s0", service_label="service",
                                per_service=True, start=START, end=END, step=STEP)

    assert not any(shared) and 4.0 in own


def test_one_bad_series_is_missing_alone_not_the_whole_answer() -> None:
    """A query shared by many services: a series whose value is not a number is missing
    for its own service; one whose labels are not a mapping has none."""
    answer = api_answer({"resultType": "vector", "result": [
        {"metric": {"service": "s0"}, "value": [1700000000.0, "many"]},
        {"metric": {"service": "s1"}, "value": [1700000000.0, "2"]},
        {"metric": ["service", "s2"], "value": [1700000000.0, "3"]}]})
    with ScriptedServer(lambda seen: answer) as server:
        found = PrometheusSource(server.url).query("up")

    assert [series.labels for series in found] == [{"service": "s0"}, {"service": "s1"}, {}]
    assert math.isnan(found[0].value) and [s.value for s in found[1:]] == [2.0, 3.0]


def test_nan_and_infinities_pass_through_an_instant_query_and_are_gaps_in_a_range() -> None:
    with ScriptedServer(lambda seen: vector("NaN", "+Inf", "-Inf", "2")) as server:
        values = [series.value for series in PrometheusSource(server.url).query("up")]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 2.0]

    start = END.timestamp() - 4
    with ScriptedServer(lambda seen: matrix("1", "NaN", "+Inf", "4", start=start)) as server:
        source = PrometheusSource(server.url)
        assert source.range_series("up", start=START, end=END, step=STEP) == [{0: 1.0, 3: 4.0}]
        assert source.history("up", service="s0", service_label="service", per_service=False,
                              start=START, end=END, step=STEP
                              )[1] == [1.0, None, None, 4.0]
