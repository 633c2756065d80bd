"""Prometheus as a metrics source: instant queries through prometheus-api-client.

Every degenerate answer is named here before a value reaches the core: an HTTP or
connection error, a timeout, an answer that is not a vector or scalar, a value that does
not parse. NaN and infinities pass through as floats; the core reads them as missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from autoscaler.core.model import Series
from autoscaler.core.ports import SourceUnavailable


class PrometheusSource:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._client = PrometheusConnect(
            url=self.url, disable_ssl=False, retry=Retry(total=0), timeout=timeout
        )

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Every way a query can fail, as SourceUnavailable with what went wrong."""
        try:
            yield
        except PrometheusApiClientException as error:
            raise SourceUnavailable(
                f"Prometheus at {self.url} refused the query: {error}"
            ) from error
        except requests.RequestException as error:
            raise SourceUnavailable(
                f"Prometheus at {self.url} did not answer: {type(error).__name__}: {error}"
            ) from error
        except (ValueError, KeyError, TypeError) as error:
            raise SourceUnavailable(
                f"Prometheus at {self.url} sent an answer that is not the query API's: {error!r}"
            ) from error

    def query(self, promql: str) -> list[Series]:
        with self._answering():
            result = self._client.custom_query(promql, timeout=self._timeout)
        return _series(result, self.url)


    def range_series(self, promql: str, *, start: datetime, end: datetime, step: timedelta
                     ) -> list[dict[int, float]]:
        """A range query over [start, end] at `step`: per series, step index -> value (finite
        values only), in range queries of at most 10,000 points (Prometheus refuses more than
        11,000 a series)."""
        count = int((end - start) / step) + 1
        times = [start + index * step for index in range(count)]
        found: list[dict[int, float]] = []
        for first in range(0, count, 10_000):
            last = min(count, first + 10_000) - 1
            for number, series in enumerate(self._range(promql, times[first], times[last], step)):
                if number == len(found):
                    found.append({})
                for stamp, text in series.get("values", []):
                    value = float(text)
                    if math.isfinite(value):
                        found[number][round((float(stamp) - start.timestamp())
                                            / step.total_seconds())] = value
        return found

    def history(
        self, promql: str, *, service: str, service_label: str, per_service: bool,
        start: datetime, end: datetime, step: timedelta,
    ) -> tuple[list[datetime], list[float | None]]:
        """The service's series over [start, end) at `step`, in range queries of at most
        10,000 points (Prometheus refuses more than 11,000 a series)."""
        count = max(0, math.ceil((end - start) / step - 1e-9))
        times = [start + index * step for index in range(count)]
        found: dict[int, float] = {}
        for first in range(0, count, 10_000):
            last = min(count, first + 10_000) - 1
            for series in self._range(promql, times[first], times[last], step):
                labels = series.get("metric") or {}
                if not per_service and labels.get(service_label) != service:
                    continue
                for stamp, text in series.get("values", []):
                    index = round((float(stamp) - start.timestamp()) / step.total_seconds())
                    if index in found:
                        raise SourceUnavailable(f"the history of {promql} has several series "
                                                f"for {service}")
                    value = float(text)
                    if math.isfinite(value):
                        found[index] = value
        return times, [found.get(index) for index in range(count)]

    def _range(self, promql: str, start: datetime, end: datetime, step: timedelta
               ) -> list[dict[str, Any]]:
        with self._answering():
            result = self._client.custom_query_range(
                promql, start_time=start, end_time=end, step=f"{step.total_seconds():g}s",
            )
        if not isinstance(result, list):
            raise SourceUnavailable(f"Prometheus at {self.url} answered with no range")
        return [series for series in result if isinstance(series, dict)]


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
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        series.append(Series(labels, _number(item["value"][1], url)))
    return series


def _is_sample(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and not isinstance(value[1], list | dict)


def _number(text: Any, url: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise SourceUnavailable(
            f"Prometheus at {url} sent a value that is not a number: {text!r}"
        ) from None
