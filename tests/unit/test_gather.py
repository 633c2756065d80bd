"""The gather step: the tick's queries side by side, and no query started once the tick's
time for them ran out."""

from __future__ import annotations

import time
from datetime import timedelta

from autoscaler.core.labels import ManagedPolicy
from autoscaler.core.model import Series
from autoscaler.core.ports import SourceUnavailable
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

    def query(self, promql: str) -> list[Series]:
        self.asked += 1
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
