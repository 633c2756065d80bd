"""The small interfaces the engine drives; adapters implement them."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from autoscaler.core.decide import Plan
from autoscaler.core.memory import ServiceMemory
from autoscaler.core.model import Decision, Series, ServiceState
from autoscaler.core.spec import Policy


class SourceUnavailable(Exception):
    """A metrics source or the Swarm could not answer; the tick records it and goes on."""


class QueryRefused(SourceUnavailable):
    """The source answered that the query itself is bad (Prometheus's `bad_data`): bad
    input, where the rest of SourceUnavailable may pass."""


class ScaleConflict(Exception):
    """The service changed since it was listed (optimistic concurrency); decide again."""


class ScaleFailed(Exception):
    """The Swarm refused or failed the update."""


class MetricsSource(Protocol):
    def query(self, promql: str) -> list[Series]:
        """Run an instant query; raise SourceUnavailable when there is no usable answer."""
        ...


class ServiceScaler(Protocol):
    def list_services(self) -> dict[str, ServiceState]:
        """Every service by name; raise SourceUnavailable when the listing fails."""
        ...

    def scale(self, service: ServiceState, replicas: int, *, labels: Mapping[str, str]
              ) -> None:
        """Set the replica count of `service` as listed and, in the same update, these
        labels of the service's own (not its tasks'), changing nothing else.

        Raise ScaleConflict when the service's version moved on, ScaleFailed otherwise.
        """
        ...


class DecisionSink(Protocol):
    def record(self, decision: Decision) -> None: ...


class Leadership(Protocol):
    """At most one agent acts at a time: the one holding the lease."""

    def acquire(self, now: datetime) -> bool:
        """Take or renew the lease; False while another agent holds it.

        Raise SourceUnavailable when the lease cannot be read or written.
        """
        ...

    def release(self) -> None:
        """Give the lease up, if held, so that another agent can take it at once."""
        ...

    def paused_all(self) -> bool:
        """Whether the node that holds the lease carries the pause label, as last read."""
        ...


class HistorySource(Protocol):
    def history(
        self, promql: str, *, service: str, service_label: str, per_service: bool,
        start: datetime, end: datetime, step: timedelta,
    ) -> tuple[list[datetime], list[float | None]]:
        """The service's series of a query over [start, end) at `step` (None: no sample);
        raise SourceUnavailable when there is no usable answer."""
        ...


@dataclass(frozen=True)
class Retrained:
    """One forecaster's training: on how many points, and why it failed (None: trained)."""

    service: str
    metric: str
    points: int
    failure: str | None
    seconds: float = 0.0


class Training(Protocol):
    """One policy's training."""

    policy: Policy

    def fetch(self) -> None:
        """Read the history to train on: the slow part, which touches nothing the ticks
        share, so that it can run without the tick lock."""
        ...

    def train(self) -> list[Retrained]:
        """Train on what `fetch` read (fetching first if it has not run): what each of the
        policy's trainings did."""
        ...


class Planner(Protocol):
    """What a strategy needs beside the metrics, kept between ticks (predictive: the
    forecasters and the target-alone run). The engine asks it for every policy and knows
    no strategy itself."""

    def plan(self, policy: Policy, *, metrics: Mapping[str, float | None], spec: int,
             now: datetime, leader: bool, memory: ServiceMemory | None = None) -> Plan:
        """The inputs `decide` needs for `policy` at `now` (NO_PLAN: none); `memory` is the
        service's own, with the changes its record holds."""
        ...

    def settle(self, service: str, *, spec: int, in_force: int) -> None:
        """The service's spec count after this tick's apply, and the count in force for the
        decisions (the dry run's shadow count; the spec otherwise)."""
        ...

    def retraining(self, policies: Sequence[Policy], now: datetime, history: HistorySource
                   ) -> Iterator[Training]:
        """What is due for training on the history before `now`, one policy a step; each
        step is trained before the next is asked for."""
        ...

    def keep_only(self, services: Collection[str]) -> None:
        """Forget the services not managed any more."""
        ...

    def forget(self, service: str) -> None:
        """Forget one service (removed and made again under its name: a new service)."""
        ...
