"""The apply step of a tick: the scale calls side by side on a small pool, each started only
before the tick's deadline for applies, each failing on its own."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from autoscaler.core.model import Reason, ServiceState
from autoscaler.core.ports import ScaleConflict, ScaleFailed, ServiceScaler

DEFAULT_WORKERS = 16
"""Scale calls side by side: at 50 ms a call (one update a change), 500 changes take about
1.6 s, well within the 8.5 s of a 15 s interval a tick gives its applies (bootstrap.build_live)."""


@dataclass(frozen=True)
class ScaleRequest:
    service: ServiceState
    replicas: int
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Applied:
    """What became of one scale call: `failure` None when applied, else the decision's
    reason and what went wrong; `seconds` after the tick began when it was done."""

    failure: tuple[Reason, str] | None
    seconds: float


class Applier:
    """Runs a tick's scale calls on at most `workers` threads. A call not started by the
    deadline is not made: the service is decided again next tick. The first round (one call
    a worker) starts whatever the time: when the listing, the queries and the lease used up
    the tick's time for applies (a Docker slow on each call, yet within its deadline), the
    changes are made a round a tick, late by one call at most, rather than never."""

    def __init__(self, swarm: ServiceScaler, *, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._swarm = swarm
        self.workers = workers

    def apply(self, requests: Sequence[ScaleRequest], *, began: float,
              deadline: float | None) -> list[Applied]:
        """The requests' results, in order; `began` and `deadline` on `time.monotonic`."""
        def one(turn: int, request: ScaleRequest) -> Applied:
            if deadline is not None and turn >= self.workers and time.monotonic() >= deadline:
                return Applied((Reason.APPLY_FAILED, "the tick's time for applies ran out "
                                "before this one's turn: decided again next tick"),
                               time.monotonic() - began)
            try:
                self._swarm.scale(request.service, request.replicas, labels=request.labels)
            except ScaleConflict as error:
                return Applied((Reason.CONFLICT, str(error)), time.monotonic() - began)
            except ScaleFailed as error:
                return Applied((Reason.APPLY_FAILED, str(error)), time.monotonic() - began)
            return Applied(None, time.monotonic() - began)

        if len(requests) <= 1 or self.workers == 1:
            return [one(turn, request) for turn, request in enumerate(requests)]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests)),
                                thread_name_prefix="apply") as pool:
            return list(pool.map(one, range(len(requests)), requests))
