"""The one place that builds the real objects: the adapters and the engine.

It sits below `runtime/` (the agent) and `offline/` (backtest, report, demo), which both
import it, and takes plain arguments, not their settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from autoscaler.adapters.decision_log import LogDecisionSink, LogHolds
from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.adapters.prometheus_access import PrometheusAccess
from autoscaler.adapters.swarm import DockerConnection, SwarmScaler
from autoscaler.adapters.swarm_lease import SwarmLease, new_holder_id
from autoscaler.apply import DEFAULT_WORKERS
from autoscaler.core.labels import Template
from autoscaler.core.ports import (
    DecisionSink,
    HistorySource,
    Leadership,
    MetricsSource,
    ServiceScaler,
)
from autoscaler.core.spec import Policy
from autoscaler.engine import Engine
from autoscaler.predictive.book import ForecastBook
from autoscaler.predictive.planner import PredictivePlanner

AFTER_APPLIES = 0.1
"""The share of the interval kept, after the last apply can end, for the tick to settle and
record its decisions (about 0.5 s at 10,000 services)."""


def call_deadline(interval: timedelta) -> float:
    """Seconds one call to Docker or Prometheus may take: 10, or a third of the interval if
    shorter. An apply is one call (an update), so one started a deadline before the next
    tick ends by it, and a tick has at least two thirds of its interval to start applies
    in (10 s of a 15 s interval)."""
    return round(min(10.0, interval.total_seconds() / 3), 2)


def prometheus_source(access: PrometheusAccess | str, *, timeout: float = 10.0
                      ) -> PrometheusSource:
    """Prometheus (an access, or a plain URL), for the agent's queries and for the history
    commands replay; each request ends within `timeout` seconds."""
    return PrometheusSource(access, timeout=timeout)


def build_engine(
    *,
    metrics: MetricsSource,
    swarm: ServiceScaler,
    sink: DecisionSink,
    tick: timedelta,
    dry_run: bool = False,
    leadership: Leadership | None = None,
    policies: Mapping[str, Policy] | None = None,
    templates: Mapping[str, Template] | None = None,
    book: ForecastBook | None = None,
    seed_history: bool = True,
    apply_workers: int = DEFAULT_WORKERS,
    apply_time: timedelta | None = None,
    query_time: timedelta | None = None,
    answer_time: timedelta | None = None,
) -> Engine:
    """An engine over these sources, with the predictive planner. `book` (default: a new
    one at `tick`) lets replays share forecasts; `seed_history` False starts each service
    with empty stabilization history (the backtest's start)."""
    planner = PredictivePlanner(book or ForecastBook(tick), seeded=seed_history)
    return Engine(metrics=metrics, swarm=swarm, sink=sink, planner=planner, dry_run=dry_run,
                  leadership=leadership, policies=policies, templates=templates,
                  seed_history=seed_history, apply_workers=apply_workers,
                  apply_time=apply_time, query_time=query_time, answer_time=answer_time)


@dataclass(frozen=True)
class LiveParts:
    """What the agent drives: the engine, the history its forecasters train on, and the
    lease (None: dry-run, which never acts and so takes none)."""

    engine: Engine
    history: HistorySource
    leadership: Leadership | None


def build_live(*, prometheus: PrometheusAccess | str, interval: timedelta, dry_run: bool,
               lease_label: str, apply_workers: int = DEFAULT_WORKERS,
               log_holds: LogHolds = "all") -> LiveParts:
    """The engine against the real Prometheus and Swarm, logging each decision. Each call
    to Docker or Prometheus has `call_deadline(interval)`; an apply is one call (the
    update of the listed spec: SwarmScaler.scale), and none starts later than one such
    deadline plus `AFTER_APPLIES` of the interval before the next tick is due, so that the
    applies end, and the tick records its decisions, by then; but for the first round,
    which starts however late the tick got there (`Applier`). No query starts later than
    one deadline into the tick once one failed, nor than an interval however Prometheus
    answers (`MetricsGatherer`)."""
    deadline = call_deadline(interval)
    connection = DockerConnection(timeout=deadline, pool=apply_workers + 2)
    leadership = None if dry_run else SwarmLease(
        connection, ttl=3 * interval, holder=new_holder_id(), label=lease_label
    )
    source = prometheus_source(prometheus, timeout=deadline)
    engine = build_engine(metrics=source, swarm=SwarmScaler(connection),
                          sink=LogDecisionSink(log_holds), tick=interval, dry_run=dry_run,
                          leadership=leadership, apply_workers=apply_workers,
                          apply_time=interval * (1 - AFTER_APPLIES)
                          - timedelta(seconds=deadline),
                          query_time=timedelta(seconds=deadline), answer_time=interval)
    return LiveParts(engine, source, leadership)
