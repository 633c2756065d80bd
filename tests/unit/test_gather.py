"""The gather step: the tick's queries side by side, and no query started once the tick's
time for them ran out."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from autoscaler.core.labels import ManagedPolicy
from autoscaler.core.model import Series
from autoscaler.core.ports import QueryRefused, SourceUnavailable
from autoscaler.gather import MetricsGatherer
from tests.unit.conftest import build_policy

SERVICES = [f"s{i:02d}" for i in range(40)]


class SlowPrometheus:
    """Each query waits `seconds`, then fails as one past its deadline would (`answers`:
    answers nothing instead, as a slow Prometheus that answers)."""

    def __init__(self, seconds: float, *, answers: bool = False) -> None:
        self.seconds = seconds
        self.answers = answers
        self.asked = 0
        self.queries: list[str] = []

    def query(self, promql: str) -> list[Series]:
        self.asked += 1
        self.queries.append(promql)
        time.sleep(self.seconds)
        if self.answers:
            return []
        raise SourceUnavailable(f"Prometheus did not answer within {self.seconds} s")


def per_service_policies() -> list[ManagedPolicy]:
    return [ManagedPolicy(build_policy(service=name, metrics=[
        {"name": "rps", "query": 'sum(rate(r{service="{{service}}"}[1m]))', "target": 10}]),
        f"{name}.yaml", "file") for name in SERVICES]


def test_no_query_starts_after_the_ticks_time_for_queries() -> None:
    """40 queries, one a service, eight at a time, each waiting 0.1 s: with 0.15 s for
    queries, the rounds that start within it are asked and the rest say why they were not,
    so the gather ends within that time and one query's deadline, not after five rounds."""
    prometheus = SlowPrometheus(0.1)
    gatherer = MetricsGatherer(prometheus, timedelta(seconds=0.15))

    queried = gatherer.gather(per_service_policies())

    assert queried.queries == len(SERVICES)
    assert len(queried.errors) == len(SERVICES)
    assert 8 <= prometheus.asked < len(SERVICES)
    not_asked = [e for e in queried.errors.values() if e.startswith("not asked")]
    assert len(not_asked) == len(SERVICES) - prometheus.asked


def test_without_a_time_for_queries_every_query_is_asked() -> None:
    prometheus = SlowPrometheus(0.01)

    MetricsGatherer(prometheus).gather(per_service_policies())

    assert prometheus.asked == len(SERVICES)


def test_a_prometheus_that_answers_is_asked_every_query_past_the_time_for_queries() -> None:
    """The time for queries stops only a Prometheus that fails: one that answers, however
    slowly in all, is asked each query, so no service goes without its metrics for it."""
    prometheus = SlowPrometheus(0.05, answers=True)

    queried = MetricsGatherer(prometheus, timedelta(seconds=0.06)).gather(
        per_service_policies())

    assert prometheus.asked == len(SERVICES)
    assert queried.errors == {}


def test_a_slow_prometheus_that_answers_is_asked_until_the_time_for_answers_in_turn(
) -> None:
    """40 queries answered in 0.05 s each, eight at a time, with 0.06 s for answers: a
    tick asks the rounds that start within it, not all five; the next starts with those
    not asked, so that within five ticks every service's query has been asked."""
    prometheus = SlowPrometheus(0.05, answers=True)
    gatherer = MetricsGatherer(prometheus, answer_time=timedelta(seconds=0.06))
    policies = per_service_policies()

    asked_by_tick = []
    for _ in range(5):
        before = len(prometheus.queries)
        queried = gatherer.gather(policies)
        asked_by_tick.append(prometheus.queries[before:])
        not_asked = [q for q, e in queried.errors.items() if e.startswith("not asked")]
        assert len(not_asked) == len(SERVICES) - len(asked_by_tick[-1])

    assert all(8 <= len(asked) < len(SERVICES) for asked in asked_by_tick)
    assert len({q for asked in asked_by_tick for q in asked}) == len(SERVICES)


class OneBadQuery:
    """Answers each query after `seconds`, but refuses the first service's at once with
    `refusal` (a query Prometheus cannot parse, or a Prometheus that fails)."""

    def __init__(self, seconds: float, refusal: SourceUnavailable) -> None:
        self.seconds = seconds
        self.refusal = refusal
        self.answered = 0

    def query(self, promql: str) -> list[Series]:
        if f'"{SERVICES[0]}"' in promql:
            raise self.refusal
        time.sleep(self.seconds)
        self.answered += 1
        return [Series({}, 1.0)]


@pytest.mark.parametrize(("refusal", "all_others_asked"), [
    pytest.param(QueryRefused("Prometheus refused the query: bad_data: parse error"), True,
                 id="one-policy's-bad-query-stops-no-other"),
    pytest.param(SourceUnavailable("Prometheus did not answer"), False,
                 id="a-failing-prometheus-stops-the-rest-in-time"),
])
def test_only_a_failing_prometheus_stops_the_queries(
        refusal: SourceUnavailable, all_others_asked: bool) -> None:
    """A query refused as bad is that policy's problem: the other services' queries, which
    Prometheus answers, are all asked even past the time for queries."""
    prometheus = OneBadQuery(0.05, refusal)

    queried = MetricsGatherer(prometheus, timedelta(seconds=0.06)).gather(
        per_service_policies())

    others = len(SERVICES) - 1
    assert (prometheus.answered == others) is all_others_asked
    assert (len(queried.errors) == 1) is all_others_asked
    assert queried.values[SERVICES[0]]["rps"] is None
