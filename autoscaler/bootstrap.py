"""The one place that builds the real objects from settings."""

from __future__ import annotations

from autoscaler.adapters.decision_log import LogDecisionSink
from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.adapters.swarm import DockerConnection, SwarmScaler
from autoscaler.adapters.swarm_lease import SwarmLease, new_holder_id
from autoscaler.engine import Engine
from autoscaler.policy_files import PolicyWatcher
from autoscaler.runtime.agent import Agent
from autoscaler.runtime.settings import Settings
from autoscaler.runtime.telemetry import Telemetry


def prometheus_source(url: str, *, timeout: float = 10.0) -> PrometheusSource:
    """Prometheus at `url`, for the agent's queries and for the history commands replay."""
    return PrometheusSource(url, timeout=timeout)


def build_agent(settings: Settings, watcher: PolicyWatcher) -> Agent:
    """The agent for `settings`; dry-run takes no lease, since it never acts."""
    connection = DockerConnection()
    leadership = None if settings.dry_run else SwarmLease(
        connection, ttl=3 * settings.interval, holder=new_holder_id(), label=settings.lease
    )
    prometheus = prometheus_source(
        settings.prometheus_url, timeout=min(10.0, settings.interval.total_seconds())
    )
    engine = Engine(
        metrics=prometheus,
        swarm=SwarmScaler(connection),
        sink=LogDecisionSink(),
        dry_run=settings.dry_run,
        leadership=leadership,
        tick=settings.interval,
    )
    return Agent(engine, interval=settings.interval, telemetry=Telemetry(), watcher=watcher,
                 history=prometheus, leadership=leadership)
