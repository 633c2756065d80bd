"""The retrain job takes the tick lock one policy's training at a time, so that ticks run
between the trainings of many predictive policies due at once."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from autoscaler.adapters.decision_log import LogDecisionSink
from autoscaler.policy_files import PolicyWatcher
from autoscaler.runtime import agent as agent_module
from autoscaler.runtime.agent import Agent
from autoscaler.runtime.telemetry import Telemetry
from tests.unit.fakes import FakeHistory, FakeSwarm
from tests.unit.test_engine import NOW, by_service, daily_cycle, engine_of

POLICY = ("service: {name}\nstrategy: predictive\nmax_replicas: 9\n"
          "predictive: {{startup: 5m, min_history: 1d}}\n"
          "metrics: [{{name: rps, query: 'q{{{{services}}}}', target: 100}}]\n")


class _RecordingHistory(FakeHistory):
    def __init__(self, events: list[str]) -> None:
        super().__init__(daily_cycle(2))
        self.events = events

    def history(self, promql: str, *, service: str, **keys: Any) -> Any:
        self.events.append(f"trained {service}")
        return super().history(promql, service=service, **keys)


class _TickOnFirstTraining:
    """Stands in for the agent's log: the first `forecaster_trained` line (written between
    two trainings) runs a tick, as the scheduler's tick job would at that moment."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.agent: Agent | None = None

    def info(self, event: str, **_: Any) -> None:
        if event == "forecaster_trained" and "tick" not in self.events:
            assert self.agent is not None
            self.agent.tick()  # the tick lock is free here, or this would wait forever
            self.events.append("tick")

    warning = exception = error = info


def test_a_tick_runs_between_two_policies_trainings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    swarm = FakeSwarm()
    for name in ("api", "web"):
        (tmp_path / f"{name}.yaml").write_text(POLICY.format(name=name))
        swarm.add(name, 2)
    log = _TickOnFirstTraining(events)
    monkeypatch.setattr(agent_module, "log", log)
    engine = engine_of(metrics=by_service({"api": 150.0, "web": 150.0}), swarm=swarm,
                       sink=LogDecisionSink("all"), dry_run=True, tick=timedelta(minutes=1))
    agent = log.agent = Agent(engine, interval=timedelta(minutes=1), telemetry=Telemetry(),
                              watcher=PolicyWatcher(tmp_path),
                              history=_RecordingHistory(events), clock=lambda: NOW)

    agent.retrain()

    assert events == ["trained api", "tick", "trained web"]


def test_a_step_trains_the_policies_in_force_at_that_step(tmp_path: Path) -> None:
    """A tick between two steps may have dropped a service: its policy is not trained."""
    watcher_folder = tmp_path / "policies"
    watcher_folder.mkdir()
    for name in ("api", "web"):
        (watcher_folder / f"{name}.yaml").write_text(POLICY.format(name=name))
    watcher = PolicyWatcher(watcher_folder)
    watcher.refresh()
    engine = engine_of(metrics=by_service({}), swarm=FakeSwarm(), sink=LogDecisionSink("all"),
                       dry_run=True, tick=timedelta(minutes=1), policies=watcher.policies)
    events: list[str] = []
    steps = engine.retraining(NOW, _RecordingHistory(events))

    engine.train(next(steps))
    (watcher_folder / "web.yaml").unlink()
    watcher.refresh()
    engine.set_policies(watcher.policies, watcher.templates)

    assert list(steps) == []
    assert events == ["trained api"]


class _SlowHistory(FakeHistory):
    """A Prometheus whose history queries answer only once a tick has run (or after 10 s)."""

    def __init__(self, ticked: threading.Event) -> None:
        super().__init__(daily_cycle(3))
        self.ticked = ticked
        self.ticked_first: bool | None = None
        self.querying = threading.Event()

    def history(self, promql: str, *, service: str, **keys: Any) -> Any:
        self.querying.set()
        self.ticked_first = self.ticked.wait(10)
        return super().history(promql, service=service, **keys)


class _StopAfterTraining:
    """The agent's log: notes the first tick, and stops the agent once a training is done."""

    def __init__(self, ticked: threading.Event) -> None:
        self.ticked = ticked
        self.trained: list[str] = []

    def info(self, event: str, **_: Any) -> None:
        if event == "tick_summary":
            self.ticked.set()
        if event in ("forecaster_trained", "forecaster_not_trained", "retrain_failed"):
            self.trained.append(event)
            os.kill(os.getpid(), signal.SIGTERM)

    warning = exception = error = info


def test_the_first_tick_does_not_wait_for_the_first_trainings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ticked = threading.Event()
    swarm = FakeSwarm()
    (tmp_path / "web.yaml").write_text(POLICY.format(name="web"))
    swarm.add("web", 2)
    log = _StopAfterTraining(ticked)
    monkeypatch.setattr(agent_module, "log", log)
    history = _SlowHistory(ticked)
    engine = engine_of(metrics=by_service({"web": 150.0}), swarm=swarm,
                       sink=LogDecisionSink("all"), dry_run=True, tick=timedelta(minutes=1))
    agent = Agent(engine, interval=timedelta(minutes=1), telemetry=Telemetry(),
                  watcher=PolicyWatcher(tmp_path), history=history)

    before = signal.getsignal(signal.SIGTERM)

    assert agent.run_forever(port=0)

    assert history.ticked_first is True
    assert signal.getsignal(signal.SIGTERM) is before
    assert log.trained == ["forecaster_trained"]



def test_a_tick_runs_while_a_training_reads_its_history(tmp_path: Path) -> None:
    """The history queries, many range requests at up to the query deadline each, run
    without the tick lock: a Prometheus slow to answer them does not hold the ticks."""
    ticked = threading.Event()
    history = _SlowHistory(ticked)
    swarm = FakeSwarm()
    (tmp_path / "web.yaml").write_text(POLICY.format(name="web"))
    swarm.add("web", 2)
    engine = engine_of(metrics=by_service({"web": 150.0}), swarm=swarm,
                       sink=LogDecisionSink("all"), dry_run=True, tick=timedelta(minutes=1))
    agent = Agent(engine, interval=timedelta(minutes=1), telemetry=Telemetry(),
                  watcher=PolicyWatcher(tmp_path), history=history, clock=lambda: NOW)
    training = threading.Thread(target=agent.retrain)
    training.start()
    assert history.querying.wait(10)

    assert agent.tick() is not None
    ticked.set()
    training.join(20)
    assert history.ticked_first is True
