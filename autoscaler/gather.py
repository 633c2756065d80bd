"""The gather step of a tick: each distinct rendered query once, side by side, and every
answer's values assigned to the services and metrics that asked for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from autoscaler.core.labels import ManagedPolicy
from autoscaler.core.model import Series
from autoscaler.core.ports import MetricsSource, QueryRefused, SourceUnavailable
from autoscaler.core.queries import MetricValues, QueryUse, assign_values, plan_queries

Values = dict[str, MetricValues]
"""Service -> metric -> value (None: missing)."""


@dataclass
class Queried:
    """What the tick's queries got: the values, and the queries that failed with why."""

    values: Values
    queries: int = 0
    errors: dict[str, str] = field(default_factory=dict)


class MetricsGatherer:
    """Runs the tick's queries; plans them again only when the policies change. Once a
    query has failed this tick, no query starts later than `query_time` after the first
    (None: no limit): with many queries (one a service) and a Prometheus that answers none,
    each waiting its whole deadline eight at a time, the tick would otherwise run past its
    interval by as many rounds. A refusal of one query as bad (`QueryRefused`: one policy's
    PromQL) says nothing of the others, so it stops none of them. A Prometheus that answers,
    however slowly, is asked until `answer_time` into the tick (None: no limit), so that
    slow answers to many queries cannot stretch the tick without end; the next tick starts
    with the queries not asked, so that each is asked in turn."""

    def __init__(self, metrics: MetricsSource, query_time: timedelta | None = None,
                 answer_time: timedelta | None = None) -> None:
        self._metrics = metrics
        self._query_time = query_time
        self._answer_time = answer_time
        self._plan_key: tuple[int, ...] = ()
        self._plan: dict[str, list[QueryUse]] = {}
        self._first = 0
        """Where in the plan the next tick's queries start: the first not asked."""

    def gather(self, managed: Sequence[ManagedPolicy]) -> Queried:
        key = tuple(id(m.policy) for m in managed)
        if key != self._plan_key:
            self._plan_key, self._plan = key, plan_queries(m.policy for m in managed)
        answers, errors = self._run(list(self._plan))
        return Queried(assign_values(self._plan, answers), len(self._plan), errors)

    def _run(self, planned: list[str]
             ) -> tuple[dict[str, list[Series] | None], dict[str, str]]:
        """Run the queries side by side, so that a slow Prometheus costs one timeout a tick."""
        started = time.monotonic()
        limit = None if self._query_time is None else self._query_time.total_seconds()
        latest_start = None if limit is None else started + limit
        answering = None if self._answer_time is None else self._answer_time.total_seconds()
        last_start = None if answering is None else started + answering
        first = self._first if self._first < len(planned) else 0
        queries = planned[first:] + planned[:first]

        failed = threading.Event()
        not_asked: list[int] = []

        def run(index: int, query: str) -> list[Series] | str:
            if failed.is_set() and latest_start is not None and time.monotonic() > latest_start:
                not_asked.append(index)
                return (f"not asked: the tick's time for queries ({limit:g} s) ran out while "
                        "others failed")
            if last_start is not None and time.monotonic() > last_start:
                not_asked.append(index)
                return (f"not asked: the tick's time for answers ({answering:g} s) ran out; "
                        "asked first next tick")
            try:
                return self._metrics.query(query)
            except QueryRefused as error:
                return str(error)
            except SourceUnavailable as error:
                failed.set()
                return str(error)

        if len(queries) <= 1:
            results: list[list[Series] | str] = [run(0, query) for query in queries]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(queries))) as pool:
                results = list(pool.map(run, range(len(queries)), queries))
        self._first = (first + min(not_asked)) % len(planned) if not_asked else 0
        answers: dict[str, list[Series] | None] = {}
        errors: dict[str, str] = {}
        for query, answer in zip(queries, results, strict=True):
            if isinstance(answer, str):
                errors[query] = answer
                answers[query] = None
            else:
                answers[query] = answer
        return answers, errors
