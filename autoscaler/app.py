"""The one place that builds the real objects from settings."""

from __future__ import annotations

from autoscaler.adapters.decision_log import LogDecisionSink
from autoscaler.adapters.prometheus import PrometheusSource
from autoscaler.adapters.swarm import SwarmScaler
from autoscaler.agent import Agent
from autoscaler.engine import Engine
from autoscaler.policy.spec import Policy
from autoscaler.settings import Settings
from autoscaler.telemetry import Telemetry


def build_agent(settings: Settings, policies: dict[str, Policy]) -> Agent:
    engine = Engine(
        metrics=PrometheusSource(settings.prometheus_url),
        swarm=SwarmScaler(),
        sink=LogDecisionSink(),
        dry_run=settings.dry_run,
        policies=policies,
    )
    return Agent(engine, interval=settings.interval, telemetry=Telemetry())
