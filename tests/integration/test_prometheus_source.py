"""PrometheusSource and the query plan against a real Prometheus."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.core.model import Series
from autoscaler.core.ports import SourceUnavailable
from autoscaler.core.queries import MetricValues, assign_values, plan_queries
from autoscaler.core.spec import Policy, parse_policy
from tests.integration.conftest import LoadExporter, RunningPrometheus, free_port


def policy(service: str, query: str) -> Policy:
    document = {"service": service, "max_replicas": 10,
                "metrics": [{"name": "load", "query": query, "target": 10}]}
    parsed = parse_policy(yaml.safe_dump(document).encode(), f"{service}.yaml")
    assert isinstance(parsed, Policy), parsed
    return parsed


def gather(prometheus: RunningPrometheus, policies: list[Policy]
           ) -> tuple[dict[str, MetricValues], int]:
    source = PrometheusSource(prometheus.url)
    plan = plan_queries(policies)
    answers: dict[str, list[Series] | None] = {}
    for query in plan:
        try:
            answers[query] = source.query(query)
        except SourceUnavailable:
            answers[query] = None
    return assign_values(plan, answers), len(plan)


def test_one_query_serves_every_service_and_matches_whole_names(
    prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    tag = uuid.uuid4().hex[:6]
    dashed, underscored = f"shop-web-{tag}", f"a_b{tag}"
    lookalike = f"{dashed}-canary"  # would match shop-web-... were the names not anchored
    load_exporter.gauge.labels(dashed).set(120)
    load_exporter.gauge.labels(underscored).set(30)
    load_exporter.gauge.labels(lookalike).set(999)
    prometheus.wait_value(f'astest_load{{service="{lookalike}"}}', 999)
    query = 'sum by (service) (astest_load{service=~"{{services}}"})'

    values, queries = gather(prometheus, [policy(dashed, query), policy(underscored, query)])

    assert queries == 1
    assert values == {dashed: {"load": 120.0}, underscored: {"load": 30.0}}


def test_a_per_service_query_runs_once_per_service(
    prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    first, second = f"one{uuid.uuid4().hex[:6]}", f"two{uuid.uuid4().hex[:6]}"
    load_exporter.gauge.labels(first).set(7)
    load_exporter.gauge.labels(second).set(9)
    prometheus.wait_value(f'astest_load{{service="{second}"}}', 9)
    query = 'sum(astest_load{service="{{service}}"})'

    values, queries = gather(prometheus, [policy(first, query), policy(second, query)])

    assert queries == 2
    assert values == {first: {"load": 7.0}, second: {"load": 9.0}}


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            'sum by (service) (astest_load{service=~"{{services}}"}) / 0', id="nan-or-inf"
        ),
        pytest.param('sum by (service) (astest_load{service=~"{{services}}-none"})', id="empty"),
        pytest.param('astest_load{service=~"{{services}}"} or '
                     'label_replace(astest_load{service=~"{{services}}"}, "x", "1", "", "")',
                     id="several-series"),
        pytest.param('sum by (service) (rate(astest_load{service=~"{{services}}"}[1m)',
                     id="bad-query"),
    ],
)
def test_a_degenerate_answer_is_missing_never_zero(
    prometheus: RunningPrometheus, load_exporter: LoadExporter, query: str
) -> None:
    service = f"deg{uuid.uuid4().hex[:6]}"
    load_exporter.gauge.labels(service).set(0)
    prometheus.wait_value(f'astest_load{{service="{service}"}}', 0)

    values, _ = gather(prometheus, [policy(service, query)])

    assert values == {service: {"load": None}}


def test_a_query_longer_than_a_url_can_be_is_answered(
    prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    service = f"long{uuid.uuid4().hex[:6]}"
    load_exporter.gauge.labels(service).set(5)
    prometheus.wait_value(f'astest_load{{service="{service}"}}', 5)
    names = [f"absent-service-{index:06d}" for index in range(60_000)] + [service]
    query = 'sum by (service) (astest_load{service=~"' + "|".join(names) + '"})'
    with pytest.raises(OSError):  # as a GET: more than Go's 1 MiB of request line and headers
        prometheus.query(query)

    series = PrometheusSource(prometheus.url, timeout=30).query(query)

    assert len(query) > 1 << 20
    assert [(dict(s.labels), s.value) for s in series] == [({"service": service}, 5.0)]


def test_a_scalar_answer_is_one_unlabelled_series(prometheus: RunningPrometheus) -> None:
    series = PrometheusSource(prometheus.url).query("scalar(vector(4.5))")

    assert [(dict(s.labels), s.value) for s in series] == [({}, 4.5)]


def test_nan_passes_through_as_a_float(prometheus: RunningPrometheus) -> None:
    series = PrometheusSource(prometheus.url).query("vector(0) / 0")

    assert len(series) == 1 and math.isnan(series[0].value)


def test_a_refused_query_and_an_absent_server_are_unavailable(
    prometheus: RunningPrometheus,
) -> None:
    with pytest.raises(SourceUnavailable, match="refused the query"):
        PrometheusSource(prometheus.url).query("sum(")
    with pytest.raises(SourceUnavailable, match="did not answer"):
        PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=2).query("vector(1)")


def test_history_is_the_services_series_at_the_step(
    prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    mine, other = f"hist{uuid.uuid4().hex[:6]}", f"other{uuid.uuid4().hex[:6]}"
    load_exporter.gauge.labels(mine).set(42)
    load_exporter.gauge.labels(other).set(7)
    prometheus.wait_value(f'astest_load{{service="{other}"}}', 7)
    time.sleep(4)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(seconds=10)

    times, values = PrometheusSource(prometheus.url).history(
        'astest_load{service=~"' + f"{mine}|{other}" + '"}', service=mine,
        service_label="service", per_service=False, start=start, end=end,
        step=timedelta(seconds=1),
    )

    assert times[0] == start and len(times) == 10
    assert values[-1] == 42.0
    assert set(v for v in values if v is not None) == {42.0}
