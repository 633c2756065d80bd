"""Prometheus as a metrics source: instant queries through prometheus-api-client.

Every degenerate answer is named here before a value reaches the core: an HTTP or
connection error, a timeout, an answer that is not a vector or scalar, a value that does
not parse. NaN and infinities pass through as floats; the core reads them as missing.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from autoscaler.model import Series
from autoscaler.ports import SourceUnavailable
from autoscaler.traces import Trace, TraceError, regular


class PrometheusSource:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._client = PrometheusConnect(
            url=self.url, disable_ssl=False, retry=Retry(total=0), timeout=timeout
        )

    def query(self, promql: str) -> list[Series]:
        try:
            result = self._client.custom_query(promql, timeout=self._timeout)
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
        return _series(result, self.url)


    def range_trace(self, promql: str, *, start: datetime, end: datetime, step: timedelta
                    ) -> Trace:
        """A range query answering one series, as a trace at `step`. A step with no sample
        takes the value before it (0 before the first), as Prometheus's staleness would."""
        try:
            result = self._client.custom_query_range(
                promql, start_time=start, end_time=end, step=str(int(step.total_seconds())),
            )
        except PrometheusApiClientException as error:
            raise SourceUnavailable(
                f"Prometheus at {self.url} refused the query: {error}"
            ) from error
        except requests.RequestException as error:
            raise SourceUnavailable(
                f"Prometheus at {self.url} did not answer: {type(error).__name__}: {error}"
            ) from error
        if not isinstance(result, list) or len(result) != 1:
            count = len(result) if isinstance(result, list) else 0
            raise TraceError(f"the query must answer one series, it answered {count}: "
                             "aggregate it (sum by nothing, or filter to one service)")
        samples = {float(t): float(v) for t, v in result[0].get("values", [])}
        seconds = step.total_seconds()
        count = int((end - start).total_seconds() // seconds) + 1
        values, last = [], 0.0
        for index in range(count):
            value = samples.get(start.timestamp() + index * seconds)
            last = last if value is None or not math.isfinite(value) else value
            values.append(last)
        return regular([start + index * step for index in range(count)], values,
                        f"{self.url} {promql}")


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
