"""A simulated cluster behind the same ports as Prometheus and Swarm, for the backtest.

One service. At each step the metric every query sees is the load of the step before (one
scrape late). A scale-up adds replicas that are ready `startup_steps` later; a scale-down
cancels pending replicas first (the latest-ready first), then removes ready ones, at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta

from autoscaler.core.model import Series, ServiceState
from autoscaler.offline.traces import Trace


class SimulatedCluster:
    def __init__(self, *, service: str, service_label: str, ready: int, startup_steps: int,
                 trace: Trace) -> None:
        self.service = service
        self._trace = trace
        self._label = service_label
        self.ready = ready
        self._startup_steps = startup_steps
        self._pending: list[tuple[int, int]] = []  # (step it is ready at, replicas)
        self.pending = 0
        """Replicas decided and not ready yet."""
        self._step = 0
        self._now: datetime | None = None
        self._metric: float | None = None
        self._version = 1
        self._last_scaled_at: datetime | None = None
        self._labels: dict[str, str] = {}
        self.actions = 0

    def begin_step(self, step: int, now: datetime, metric: float | None) -> None:
        """Move to `step`: replicas due by then become ready; the metric is `metric`."""
        self._step, self._now, self._metric = step, now, metric
        if self._pending and self._pending[0][0] <= step:
            due = sum(count for ready_at, count in self._pending if ready_at <= step)
            self.ready += due
            self.pending -= due
            self._pending = [p for p in self._pending if p[0] > step]

    def query(self, promql: str) -> list[Series]:
        if self._metric is None:
            return []
        return [Series({self._label: self.service}, self._metric)]

    def history(
        self, promql: str, *, service: str, service_label: str, per_service: bool,
        start: datetime, end: datetime, step: timedelta,
    ) -> tuple[list[datetime], list[float | None]]:
        """The metric as the engine saw it (the load of the step before) over [start, end),
        up to the current step, whose value the engine has seen: the trace's past only."""
        trace = self._trace
        first = max(1, math.ceil((start - trace.start) / trace.step - 1e-9))
        last = min(self._step + 1, math.ceil((end - trace.start) / trace.step - 1e-9))
        stride = max(1, round(step / trace.step))
        indices = range(first, last, stride)
        return [trace.time(i) for i in indices], [trace.values[i - 1] for i in indices]

    def list_services(self) -> dict[str, ServiceState]:
        state = ServiceState(self.service, self.service, self._version, self.ready + self.pending,
                             self._last_scaled_at, dict(self._labels), self._last_scaled_at)
        return {self.service: state}

    def scale(self, service: ServiceState, replicas: int, *, labels: Mapping[str, str]
              ) -> None:
        change = replicas - (self.ready + self.pending)
        if change == 0:
            return
        self._labels.update(labels)
        self.actions += 1
        self._version += 1
        self._last_scaled_at = self._now
        if change > 0:
            self._pending.append((self._step + self._startup_steps, change))
            self.pending += change
            self.begin_step(self._step, self._now or datetime.min, self._metric)
            return
        to_remove = -change
        while to_remove and self._pending:
            ready_at, count = self._pending.pop()
            taken = min(count, to_remove)
            to_remove -= taken
            self.pending -= taken
            if count > taken:
                self._pending.append((ready_at, count - taken))
        self.ready -= to_remove
