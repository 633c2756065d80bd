"""Fakes that record calls, standing in for the adapters in tests of the pure engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from autoscaler.core.model import Decision, Series, ServiceState
from autoscaler.core.ports import ScaleConflict, ScaleFailed, SourceUnavailable
from autoscaler.core.record import read_record


@dataclass
class FakeMetrics:
    """Answers each query from `answer(query)`; `down` makes every query fail."""

    answer: Callable[[str], list[Series]]
    down: bool = False
    queries: list[str] = field(default_factory=list)

    def query(self, promql: str) -> list[Series]:
        self.queries.append(promql)
        if self.down:
            raise SourceUnavailable("Prometheus is down")
        return self.answer(promql)


@dataclass
class FakeSwarm:
    services: dict[str, ServiceState] = field(default_factory=dict)
    down: bool = False
    refuse_with: type[Exception] | None = None
    scaled: list[tuple[str, int]] = field(default_factory=list)
    listings: int = 0
    lands_after: timedelta = timedelta(0)
    """How long after the tick's time a scale lands: a manager stamps `UpdatedAt` then."""

    def add(self, name: str, replicas: int | None) -> None:
        self.services[name] = ServiceState(name=name, id=f"id-{name}", version=1,
                                           replicas=replicas)

    def list_services(self) -> dict[str, ServiceState]:
        self.listings += 1
        if self.down:
            raise SourceUnavailable("Docker is down")
        return dict(self.services)

    def scale(self, service: ServiceState, replicas: int, *, labels: Mapping[str, str]
              ) -> None:
        if self.refuse_with is ScaleConflict:
            raise ScaleConflict("update out of sequence")
        if self.refuse_with is ScaleFailed:
            raise ScaleFailed("no space left")
        self.scaled.append((service.name, replicas))
        recorded = read_record(labels)
        changed_at = recorded[-1].at + self.lands_after if recorded else None
        self.services[service.name] = replace(
            service, replicas=replicas, version=service.version + 1,
            labels={**service.labels, **labels}, last_scaled_at=changed_at,
            replicas_changed_at=changed_at, updated_at=changed_at,
        )

    def set_by_hand(self, name: str, replicas: int, at: datetime) -> None:
        """Someone else sets the replica count, as `docker service scale` does."""
        service = self.services[name]
        self.services[name] = replace(service, replicas=replicas, version=service.version + 1,
                                      last_scaled_at=at, replicas_changed_at=at, updated_at=at)

    def update_other_than_replicas(self, name: str, at: datetime) -> None:
        """Someone changes the service but not its count (an image, a label)."""
        service = self.services[name]
        self.services[name] = replace(service, version=service.version + 1,
                                      last_scaled_at=None, replicas_changed_at=None,
                                      updated_at=at)


@dataclass
class ListSink:
    decisions: list[Decision] = field(default_factory=list)

    def record(self, decision: Decision) -> None:
        self.decisions.append(decision)


@dataclass
class FakeLeadership:
    leader: bool = True
    down: bool = False
    pause_all: bool = False
    acquired: list[object] = field(default_factory=list)

    def acquire(self, now: object) -> bool:
        self.acquired.append(now)
        if self.down:
            raise SourceUnavailable("lease unreadable")
        return self.leader

    def release(self) -> None:
        self.leader = False

    def paused_all(self) -> bool:
        return self.pause_all


@dataclass
class FakeHistory:
    """Answers every history query with `values` ending just before `end`."""

    values: list[float]
    asked: list[tuple[str, object, object]] = field(default_factory=list)

    def history(self, promql: str, *, service: str, service_label: str, per_service: bool,
                start: datetime, end: datetime, step: timedelta
                ) -> tuple[list[datetime], list[float | None]]:
        self.asked.append((promql, start, end))
        count = len(self.values)
        return [end - (count - i) * step for i in range(count)], list(self.values)
