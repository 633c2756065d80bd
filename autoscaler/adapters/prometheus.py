"""Prometheus as a metrics source: instant and range queries over its HTTP API.

Each query is a POST with a form-encoded body (query, time; start, end, step for a range),
so a long `{{services}}` alternation never meets a limit on the length of a URL. The whole
exchange of one request - connect, TLS, send, headers, body - ends by a deadline (`timeout`
seconds), not a per-read timeout: a server that trickles its answer is abandoned at the
deadline, its connection closed (see http_client). Credentials and TLS files come from a
PrometheusAccess; no secret reaches an error message (see prometheus_access).

Every degenerate answer is named here, as SourceUnavailable, before a value reaches the
core:
- no answer: the connection is refused or fails, TLS fails, the deadline passes;
- a refusal: an HTTP status other than 2xx (Prometheus's errorType and error are quoted,
  401 and 403 say to check the credentials), a redirect (not followed: a POST's body and
  the credentials stay with the URL given), or a JSON answer whose status is "error";
- an answer that is not the query API's: not JSON, not an object, no `data`;
- the wrong resultType: an instant query answering a matrix or a string, a range query
  answering anything but a matrix, or a shape that does not match the type;
- a value that is not a number, or a range's sample at a time that is not a finite one.
At most DECODED_AT_ONCE_BYTES of answers are decoded at once, each only if it came within its
deadline (see MAX_ANSWER_BYTES).
NaN and infinities of an instant query pass through as floats; the core reads them as
missing. Those of a range are dropped, as a step with no sample.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, NoReturn

import requests
import urllib3
from requests.auth import AuthBase

from autoscaler.adapters.http_client import deadline_session, within
from autoscaler.adapters.prometheus_access import PrometheusAccess, read_secret
from autoscaler.core.model import Series
from autoscaler.core.ports import QueryRefused, SourceUnavailable

__all__ = ["PrometheusAccess", "PrometheusSource", "read_secret"]

_RANGE_POINTS = 10_000  # Prometheus refuses more than 11,000 points a series
_EXCERPT = 200
MAX_ANSWER_BYTES = 64 << 20
"""The largest answer read: an instant query over 10,000 services answers a few MB, a range
of `_RANGE_POINTS` under 1 MB a series. Decoded, an answer of small series takes about ten
times its size and a few seconds of CPU (650 MB and 6.5 s for 61 MB of 600,000 series on 2
cores), so at most one such answer's worth is decoded at once (DECODED_AT_ONCE_BYTES):
eight queries that forgot their `sum by`, decoded side by side, took 4.9 GB and a tick of
45 s at a 15 s interval. An answer that waits for others' decoding past its own deadline is
not decoded at all, so the queries of a tick end by their deadline and one answer's
decoding."""
DECODED_AT_ONCE_BYTES = MAX_ANSWER_BYTES
"""The most bytes of answers decoded at once: one answer at the size limit, or many small
ones side by side. Decoded one at a time whatever their size, the small answers that came
while a large one was decoded waited for it past their deadline: one query that forgot its
`sum by` failed every other query of the tick."""


class _DecodingRoom:
    """The bytes of the answers being decoded, at most `size`; an answer larger than that
    takes all of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._taken = 0
        self._changed = threading.Condition()

    def enter(self, body: int, *, timeout: float) -> int | None:
        """Room for a body of `body` bytes, within `timeout` seconds: the bytes taken, to
        give back to `leave`, or None when there was none in time."""
        need = min(body, self.size)
        with self._changed:
            if not self._changed.wait_for(lambda: self._taken + need <= self.size, timeout):
                return None
            self._taken += need
        return need

    def leave(self, taken: int) -> None:
        with self._changed:
            self._taken -= taken
            self._changed.notify_all()


class _Authorization(AuthBase):
    """Sets the Authorization header; its repr says nothing of the credentials. As the
    session's auth, it also keeps requests from reading ~/.netrc."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "_Authorization(<redacted>)"


class PrometheusSource:
    """Prometheus at `access` (a PrometheusAccess, or a plain URL); every request ends
    within `timeout` seconds, its whole exchange included."""

    def __init__(self, access: PrometheusAccess | str, *, timeout: float = 10.0) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"the timeout must be a positive number of seconds, not {timeout}")
        self.access = access if isinstance(access, PrometheusAccess) else PrometheusAccess(access)
        self.url = self.access.url
        self.timeout = timeout
        self._session = deadline_session()
        self._session.headers.update({"Accept": "application/json",
                                      "User-Agent": "swarm-autoscaler"})
        self._session.headers.update(dict(self.access.headers))
        authorization = self.access.authorization()
        if authorization is not None:
            self._session.auth = _Authorization(authorization)
        ca_bundle, cert, key = self.access.tls_files()
        self._verify: str | bool = ca_bundle if ca_bundle is not None else True
        self._cert: str | tuple[str, str] | None = (cert, key) if cert and key else cert
        self._decoding = _DecodingRoom(DECODED_AT_ONCE_BYTES)

    def __repr__(self) -> str:
        return f"PrometheusSource({self.access!r}, timeout={self.timeout:g})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def query(self, promql: str, *, at: datetime | None = None) -> list[Series]:
        """An instant query, at `at` or (None) at Prometheus's own now."""
        form = {"query": promql}
        if at is not None:
            form["time"] = _stamp(at)
        with self._redacting(), self._answer("/api/v1/query", form) as data:
            kind, result = data.get("resultType"), data.get("result")
            if kind not in ("vector", "scalar"):
                self._fail(f"answered with a {kind!r} result, not an instant vector or scalar")
            return _series(result, self.url)

    def range_series(self, promql: str, *, start: datetime, end: datetime, step: timedelta
                     ) -> list[dict[int, float]]:
        """A range query over [start, end] at `step`: per series, step index -> value (finite
        values only), in range queries of at most 10,000 points (Prometheus refuses more than
        11,000 a series). The pieces' series are joined by their labels: a series that ends
        where another begins, at a piece's edge, stays two."""
        count = int((end - start) / step) + 1
        times = [start + index * step for index in range(count)]
        found: dict[tuple[tuple[tuple[str, str], ...], int], dict[int, float]] = {}
        for first in range(0, count, _RANGE_POINTS):
            last = min(count, first + _RANGE_POINTS) - 1
            seen: Counter[tuple[tuple[str, str], ...]] = Counter()
            for series in self._range(promql, times[first], times[last], step):
                labels = series.get("metric")
                named = tuple(sorted((str(k), str(v)) for k, v in labels.items())) \
                    if isinstance(labels, dict) else ()
                seen[named] += 1  # an answer naming one series twice has two
                values = found.setdefault((named, seen[named]), {})
                for index, value in self._samples(series, start, step):
                    if math.isfinite(value):
                        values[index] = value
        return list(found.values())

    def history(
        self, promql: str, *, service: str, service_label: str, per_service: bool,
        start: datetime, end: datetime, step: timedelta,
    ) -> tuple[list[datetime], list[float | None]]:
        """The service's series over [start, end) at `step`, in range queries of at most
        10,000 points (Prometheus refuses more than 11,000 a series)."""
        count = max(0, math.ceil((end - start) / step - 1e-9))
        times = [start + index * step for index in range(count)]
        found: dict[int, float] = {}
        for first in range(0, count, _RANGE_POINTS):
            last = min(count, first + _RANGE_POINTS) - 1
            for series in self._range(promql, times[first], times[last], step):
                labels = series.get("metric")
                labels = labels if isinstance(labels, dict) else {}
                if not per_service and labels.get(service_label) != service:
                    continue
                for index, value in self._samples(series, start, step):
                    if index in found:
                        raise SourceUnavailable(f"the history of {promql} has several series "
                                                f"for {service}")
                    if math.isfinite(value):
                        found[index] = value
        return times, [found.get(index) for index in range(count)]

    def _range(self, promql: str, start: datetime, end: datetime, step: timedelta
               ) -> list[dict[str, Any]]:
        form = {"query": promql, "start": _stamp(start), "end": _stamp(end),
                "step": f"{step.total_seconds():g}"}
        with self._redacting(), self._answer("/api/v1/query_range", form) as data:
            kind, result = data.get("resultType"), data.get("result")
            if kind != "matrix" or not isinstance(result, list):
                self._fail(f"answered a range query with a {kind!r} result, not a matrix")
            if not all(isinstance(series, dict) for series in result):
                self._fail("answered with a matrix of an unknown shape")
            return result

    def _samples(self, series: dict[str, Any], start: datetime, step: timedelta
                 ) -> Iterator[tuple[int, float]]:
        values = series.get("values", [])
        with self._redacting():
            if not isinstance(values, list) or not all(_is_sample(pair) for pair in values):
                self._fail("answered with a matrix of an unknown shape")
            for stamp, text in values:
                at = _number(stamp, self.url)
                if not math.isfinite(at):
                    self._fail(f"sent a sample time that is not a finite number: {_quoted(stamp)}")
                seconds = at - start.timestamp()
                yield round(seconds / step.total_seconds()), _number(text, self.url)

    @contextmanager
    def _answer(self, path: str, form: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The `data` of the API's answer to a form POST, or SourceUnavailable; its room
        among the answers decoded (DECODED_AT_ONCE_BYTES) is held inside, for what the caller
        makes of it too."""
        body, status, reason, location, deadline = self._post(path, form)
        taken = self._decoding.enter(len(body), timeout=max(0.0, deadline - time.monotonic()))
        if taken is None:
            self._fail(f"did not answer within {self.timeout:g} s (its answer came, and "
                       "waited for others' to be read)")
        try:
            yield self._data(body, status, reason, location)
        finally:
            self._decoding.leave(taken)

    def _post(self, path: str, form: dict[str, str]
              ) -> tuple[bytes, int, str, str | None, float]:
        """The body, status, reason and Location of the answer to a form POST, and the
        deadline it was read by; SourceUnavailable when none came."""
        try:
            with within(self.timeout) as deadline, self._session.post(
                f"{self.url}{path}", data=form, timeout=self.timeout, stream=True,
                allow_redirects=False, verify=self._verify, cert=self._cert,
            ) as response:
                body = self._read_body(response)
                status, reason = response.status_code, response.reason
                location = response.headers.get("Location")
        except (requests.RequestException, urllib3.exceptions.HTTPError,
                http.client.HTTPException, OSError, UnicodeError) as error:
            if time.monotonic() >= deadline:
                self._fail(f"did not answer within {self.timeout:g} s")
            self._fail(f"did not answer: {type(error).__name__}: {error}")
        return body, status, reason, location, deadline

    def _data(self, body: bytes, status: int, reason: str, location: str | None
              ) -> dict[str, Any]:
        """The `data` of an answer, or SourceUnavailable."""
        if 300 <= status < 400:
            self._fail(f"refused the query: HTTP {status} {reason}, a redirect to "
                       f"{self._excerpt(location or '')} (not followed: give the URL it "
                       "points to)")
        answer = _json(body)
        if not 200 <= status < 300:
            hint = " (check the credentials)" if status in (401, 403) else ""
            self._fail(f"refused the query: HTTP {status} {reason}{hint}: "
                       f"{self._error_text(answer, body)}", bad_query=_bad_data(answer))
        if answer is _NOT_JSON:
            self._fail("sent an answer that is not the query API's: not JSON: "
                       + self._excerpt(body))
        if not isinstance(answer, dict):
            self._fail("sent an answer that is not the query API's: not a JSON object")
        if answer.get("status") != "success":
            self._fail(f"refused the query: {self._error_text(answer, body)}",
                       bad_query=_bad_data(answer))
        data = answer.get("data")
        if not isinstance(data, dict):
            self._fail("sent an answer that is not the query API's: no data")
        return data

    def _read_body(self, response: requests.Response) -> bytes:
        """The answer's body, at most MAX_ANSWER_BYTES: a server that sends without end
        is refused before it takes the agent's memory (the deadline bounds the time)."""
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=1 << 16):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                self._fail(f"sent an answer larger than {MAX_ANSWER_BYTES:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _error_text(self, answer: Any, body: bytes) -> str:
        """What an error answer says: Prometheus's errorType and error, or the start of
        the body."""
        if isinstance(answer, dict) and ("error" in answer or "errorType" in answer):
            return self._excerpt(f"{answer.get('errorType', 'error')}: {answer.get('error', '')}")
        return self._excerpt(body)

    def _excerpt(self, text: bytes | str) -> str:
        """The start of a text from the server, secrets blanked before it is cut."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = " ".join(self.access.redact(text).split())
        if not text:
            return "an empty answer"
        return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."

    def _fail(self, what: str, *, bad_query: bool = False) -> NoReturn:
        error = QueryRefused if bad_query else SourceUnavailable
        raise error(self.access.redact(f"Prometheus at {self.url} {what}"))

    @contextmanager
    def _redacting(self) -> Iterator[None]:
        """Any SourceUnavailable raised inside, with every secret blanked from its message
        (an answer may echo what it was sent), and none of the exceptions behind it kept."""
        try:
            yield
        except SourceUnavailable as error:
            raise type(error)(self.access.redact(str(error))) from None


_NOT_JSON = object()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        return _NOT_JSON


def _bad_data(answer: Any) -> bool:
    """Prometheus's answer to a query it cannot parse or run as written."""
    return isinstance(answer, dict) and answer.get("errorType") == "bad_data"


def _stamp(moment: datetime) -> str:
    return f"{moment.timestamp():.3f}"


def _series(result: Any, url: str) -> list[Series]:
    if _is_sample(result):
        return [Series({}, _number(result[1], url))]
    if not isinstance(result, list):
        raise SourceUnavailable(f"Prometheus at {url} answered with {type(result).__name__}")
    series = []
    for item in result:
        if not isinstance(item, dict) or not _is_sample(item.get("value")):
            raise SourceUnavailable(
                f"Prometheus at {url} answered with a range or an unknown shape, "
                "not an instant vector"
            )
        metric = item.get("metric")
        labels = {str(k): str(v) for k, v in metric.items()} if isinstance(metric, dict) else {}
        series.append(Series(labels, _sample(item["value"][1])))
    return series


def _sample(text: Any) -> float:
    """One series' value in a vector; NaN (missing, to that series' service alone) where it
    is not a number, so that one bad series does not fail a query shared by many."""
    try:
        return float(text)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _is_sample(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and not isinstance(value[1], list | dict)


def _number(text: Any, url: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError, OverflowError):
        raise SourceUnavailable(
            f"Prometheus at {url} sent a value that is not a number: {_quoted(text)}"
        ) from None


def _quoted(value: Any) -> str:
    """A value of the answer as a message quotes it: at most `_EXCERPT` characters, as a
    value may be megabytes long and the message is logged every tick."""
    quoted = repr(value)
    return quoted if len(quoted) <= _EXCERPT else quoted[:_EXCERPT] + "..."
