"""The running agent's main loop: a wall clock set back does not hold its ticks."""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, cast

import pytest
from apscheduler.schedulers import base as scheduler_base

from autoscaler.policy_files import PolicyWatcher
from autoscaler.runtime import agent as agent_module
from autoscaler.runtime.agent import Agent
from autoscaler.runtime.telemetry import Telemetry
from tests.unit.fakes import FakeHistory, FakeMetrics, FakeSwarm, ListSink
from tests.unit.test_engine import engine_of


class _ClockSetBack:
    """The agent's log: once two ticks are done, sets the wall clock (as the scheduler and the
    agent read it) back an hour; two ticks after that, stops the agent."""

    def __init__(self, shift: list[timedelta]) -> None:
        self.shift = shift
        self.ticks_before = 0
        self.ticks_after = 0

    def info(self, event: str, **_: Any) -> None:
        if event != "tick_summary":
            return
        if self.ticks_before < 2:
            self.ticks_before += 1
            if self.ticks_before == 2:
                self.shift[0] = timedelta(hours=-1)
            return
        self.ticks_after += 1
        if self.ticks_after == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    warning = error = exception = info


def test_a_clock_set_back_an_hour_does_not_hold_the_ticks_for_an_hour(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shift = [timedelta(0)]

    class ShiftedClock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> ShiftedClock:
            return cast(ShiftedClock, datetime.now(tz) + shift[0])

    monkeypatch.setattr(scheduler_base, "datetime", ShiftedClock)
    monkeypatch.setattr(agent_module, "datetime", ShiftedClock)
    log = _ClockSetBack(shift)
    monkeypatch.setattr(agent_module, "log", log)
    engine = engine_of(metrics=FakeMetrics(lambda _: []), swarm=FakeSwarm(),
                       sink=ListSink(), dry_run=True)
    agent = Agent(engine, interval=timedelta(seconds=1), telemetry=Telemetry(),
                  watcher=PolicyWatcher(tmp_path), history=FakeHistory([]))
    gives_up = threading.Timer(10, os.kill, (os.getpid(), signal.SIGTERM))
    gives_up.start()
    try:
        assert agent.run_forever(port=0)
    finally:
        gives_up.cancel()

    assert log.ticks_after == 2, "no tick ran in the 10 s after the clock was set back"
