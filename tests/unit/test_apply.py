"""A tick's scale calls run side by side on a bounded pool, each failing on its own, none
started after the tick's time for applies."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autoscaler.core.model import Reason, Series, ServiceState
from autoscaler.core.ports import ScaleFailed
from autoscaler.engine import Engine
from tests.unit.conftest import build_policy
from tests.unit.fakes import FakeLeadership, FakeMetrics, FakeSwarm, ListSink
from tests.unit.test_engine import engine_of

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SERVICES = [f"s{i:02d}" for i in range(20)]


@dataclass
class SlowSwarm(FakeSwarm):
    """Each scale call takes `latency` seconds; counts the calls in flight at once."""

    latency: float = 0.02
    failing: set[str] = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def scale(self, service: ServiceState, replicas: int, *, labels: Mapping[str, str]
              ) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
            if service.name in self.failing:
                raise ScaleFailed("no space left")
            with self.lock:
                super().scale(service, replicas, labels=labels)
        finally:
            with self.lock:
                self.in_flight -= 1


def fleet(swarm: SlowSwarm, **keys: Any) -> tuple[Engine, ListSink]:
    for name in SERVICES:
        swarm.add(name, 1)
    sink = ListSink()
    policies = {f"{name}.yaml": build_policy(service=name) for name in SERVICES}
    metrics = FakeMetrics(lambda _: [Series({"service": n}, 300) for n in SERVICES])
    return engine_of(metrics=metrics, swarm=swarm, sink=sink, dry_run=False,
                     policies=policies, **keys), sink


def test_applies_run_side_by_side_on_at_most_the_pool() -> None:
    swarm = SlowSwarm()
    engine, sink = fleet(swarm, apply_workers=4)

    engine.tick(NOW)

    assert swarm.most_in_flight == 4
    assert sorted(swarm.scaled) == [(name, 3) for name in SERVICES]
    assert [d.service for d in sink.decisions] == SERVICES, "recorded in the policies' order"
    assert all(d.applied and d.applied_at is not None and d.applied_at > NOW
               for d in sink.decisions)


def test_a_failed_apply_stays_with_its_service() -> None:
    swarm = SlowSwarm(failing={"s03"})
    engine, sink = fleet(swarm)

    engine.tick(NOW)

    failed = {d.service: d for d in sink.decisions if not d.applied}
    assert list(failed) == ["s03"]
    assert failed["s03"].reason == Reason.APPLY_FAILED
    assert failed["s03"].applied_at is None
    assert len(swarm.scaled) == len(SERVICES) - 1


def test_past_the_ticks_time_for_applies_only_the_first_round_starts() -> None:
    swarm = SlowSwarm()
    engine, sink = fleet(swarm, apply_workers=4, apply_time=timedelta(0))

    engine.tick(NOW)

    assert sorted(swarm.scaled) == [(name, 3) for name in SERVICES[:4]], "one call a worker"
    deferred = [d for d in sink.decisions if not d.applied]
    assert [d.service for d in deferred] == SERVICES[4:]
    assert {d.reason for d in deferred} == {Reason.APPLY_FAILED}
    assert "ran out before this one's turn" in deferred[0].message

    engine._apply_time = None  # the next tick has time for them
    engine.tick(NOW + timedelta(seconds=15))
    assert len(swarm.scaled) == len(SERVICES), "decided and applied again the next tick"


@dataclass
class SlowListing(SlowSwarm):
    """A Docker that answers each call in `latency`, within its deadline: the listing is
    three calls (services, tasks, nodes)."""

    def list_services(self) -> dict[str, ServiceState]:
        time.sleep(3 * self.latency)
        return super().list_services()


@dataclass
class SlowLease(FakeLeadership):
    seconds: float = 0.0

    def acquire(self, now: object) -> bool:
        time.sleep(self.seconds)
        return super().acquire(now)


def test_a_slow_docker_that_uses_up_the_time_for_applies_still_gets_changes_made() -> None:
    """At a 0.5 s interval (calls of 0.17 s at most), Docker answering each call in 0.07 s:
    the listing and the lease's two calls end past the 0.28 s the tick gives for starting
    applies, in a tick that would end well within its interval. Each tick still applies a
    round, rather than none ever."""
    from autoscaler.bootstrap import AFTER_APPLIES, call_deadline

    interval = timedelta(seconds=0.5)
    apply_time = interval * (1 - AFTER_APPLIES) - timedelta(seconds=call_deadline(interval))
    swarm = SlowListing(latency=0.07)
    leadership = SlowLease(seconds=2 * 0.07)
    engine, sink = fleet(swarm, apply_workers=4, apply_time=apply_time, leadership=leadership)

    for tick in range(2):
        engine.tick(NOW + tick * interval)

    assert len(swarm.scaled) == 8
    assert sum(d.applied for d in sink.decisions) == 8


def test_an_apply_started_in_time_ends_before_the_next_tick_with_room_to_record() -> None:
    """An apply is one Docker call (the update of the listed spec), bounded by the call
    deadline: the agent starts none later than one deadline and a tenth of the interval
    before the next tick, the tenth left for recording the decisions."""
    from autoscaler.bootstrap import build_live

    for seconds, window in ((1, 0.57), (15, 8.5), (60, 44.0)):
        interval = timedelta(seconds=seconds)
        engine = build_live(prometheus="http://127.0.0.1:9", interval=interval,
                            dry_run=True, lease_label="autoscaler.lease").engine
        assert engine._apply_time is not None
        latest_start = engine._apply_time.total_seconds()
        assert abs(latest_start - window) < 1e-9
        assert latest_start >= interval.total_seconds() / 2, "time for applies"


def test_a_tick_that_runs_out_of_time_applies_some_and_defers_the_rest() -> None:
    """One worker, 50 ms a call, 0.12 s for applies: the first few are applied, the others
    say they ran out and are decided again the next tick."""
    swarm = SlowSwarm(latency=0.05)
    engine, sink = fleet(swarm, apply_workers=1, apply_time=timedelta(seconds=0.12))

    engine.tick(NOW)

    applied = [d for d in sink.decisions if d.applied]
    deferred = [d for d in sink.decisions if not d.applied]
    assert 1 <= len(applied) < len(SERVICES)
    assert len(swarm.scaled) == len(applied)
    assert deferred and all(d.reason == Reason.APPLY_FAILED
                            and "ran out before this one's turn" in d.message for d in deferred)
    assert all(d.applied_at is not None for d in applied)


def test_the_docker_connection_keeps_a_connection_for_each_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The applies side by side each need a kept connection, besides the listing's and the
    lease's."""
    from autoscaler import bootstrap

    pools: list[int] = []

    class Recorded(bootstrap.DockerConnection):
        def __init__(self, *, timeout: float = 30.0, pool: int = 10) -> None:
            pools.append(pool)
            super().__init__(timeout=timeout, pool=pool)

    monkeypatch.setattr(bootstrap, "DockerConnection", Recorded)
    bootstrap.build_live(prometheus="http://127.0.0.1:9", interval=timedelta(seconds=15),
                         dry_run=True, lease_label="autoscaler.lease", apply_workers=24)

    assert pools == [26]
