"""Rate limits and cooldowns hold across a restart and a hand-over, through the record the
agent keeps in the service's labels; operators' pauses and manual changes are honoured."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.model import Reason, Series
from autoscaler.core.record import RECORD_LABEL, read_record
from autoscaler.engine import Engine
from tests.unit.conftest import build_policy
from tests.unit.fakes import FakeLeadership, FakeMetrics, FakeSwarm, ListSink
from tests.unit.test_engine import engine_of

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SLOW_DOWN = {"scale_down": {"max_step": 1, "period": "60s", "stabilization": "0s"}}


def fresh_agent(swarm: FakeSwarm, load: float, *, behavior: dict[str, object] | None = None,
                dry_run: bool = False, leadership: FakeLeadership | None = None
                ) -> tuple[Engine, ListSink]:
    """A new agent process: nothing remembered but what the Swarm holds."""
    sink = ListSink()
    policy = build_policy(service="web", behavior=behavior or SLOW_DOWN,
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    metrics = FakeMetrics(lambda _: [Series({"service": "web"}, load)])
    return engine_of(metrics=metrics, swarm=swarm, sink=sink, dry_run=dry_run,
                     leadership=leadership, policies={"web.yaml": policy},
                     seed_history=False), sink


def test_a_restart_does_not_reset_the_scale_down_rate_limit() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 8)
    first, _ = fresh_agent(swarm, load=100)
    first.tick(NOW)
    assert swarm.scaled == [("web", 7)]

    restarted, sink = fresh_agent(swarm, load=100)
    restarted.tick(NOW + timedelta(seconds=7))

    assert swarm.scaled == [("web", 7)], "the restarted agent scaled down within the period"
    assert sink.decisions[-1].reason == Reason.SCALE_DOWN_LIMIT
    restarted.tick(NOW + timedelta(seconds=61))
    assert swarm.scaled == [("web", 7), ("web", 6)]


def test_a_cooldown_runs_from_the_agents_own_change_not_from_when_it_landed() -> None:
    """A manager stamps the update a moment after the tick; the agent's record holds the
    tick's time, and its cooldown must not last a tick longer for that moment."""
    swarm = FakeSwarm(lands_after=timedelta(milliseconds=50))
    swarm.add("web", 2)
    load = [500.0]
    policy = build_policy(service="web", behavior={"scale_up": {"cooldown": "3m"}},
                          metrics=[{"name": "rps", "query": "q", "target": 100}])
    agent = engine_of(metrics=FakeMetrics(lambda _: [Series({"service": "web"}, load[0])]),
                      swarm=swarm, sink=ListSink(), policies={"web.yaml": policy},
                      seed_history=False)
    agent.tick(NOW)
    load[0] = 900.0

    agent.tick(NOW + timedelta(minutes=3))

    assert swarm.scaled == [("web", 5), ("web", 9)]


def test_a_crash_loop_never_scales_faster_than_the_policy_allows() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 20)
    for second in range(0, 300, 5):
        agent, _ = fresh_agent(swarm, load=100)
        agent.tick(NOW + timedelta(seconds=second))
    assert [count for _, count in swarm.scaled] == [19, 18, 17, 16, 15]


def test_a_cooldown_holds_across_a_hand_over() -> None:
    behavior = {"scale_up": {"cooldown": "5m", "max_step": 10}}
    swarm = FakeSwarm()
    swarm.add("web", 2)
    leader, _ = fresh_agent(swarm, load=400, behavior=behavior, leadership=FakeLeadership())
    standby, sink = fresh_agent(swarm, load=900, behavior=behavior,
                                leadership=FakeLeadership(leader=False))
    leader.tick(NOW)
    standby.tick(NOW + timedelta(seconds=15))
    assert swarm.scaled == [("web", 4)]

    standby._leadership = FakeLeadership()  # the leader died; the standby takes the lease
    standby.tick(NOW + timedelta(seconds=30))

    assert swarm.scaled == [("web", 4)]
    assert sink.decisions[-1].reason == Reason.COOLDOWN


def test_a_clock_set_back_neither_forgets_the_limits_nor_freezes_on_them() -> None:
    """One step down a minute at most. The clock goes back an hour just after a step: the
    next step waits a period from then (the change counts as just made), not for the hour
    the clock needs to catch up, nor not at all."""
    swarm = FakeSwarm()
    swarm.add("web", 8)
    agent, _ = fresh_agent(swarm, load=100)
    agent.tick(NOW)
    assert swarm.scaled == [("web", 7)]

    back = NOW - timedelta(hours=1)
    agent.tick(back)
    agent.tick(back + timedelta(seconds=30))
    assert swarm.scaled == [("web", 7)], "a step within the period after the set-back"
    agent.tick(back + timedelta(seconds=61))
    assert swarm.scaled == [("web", 7), ("web", 6)], "frozen until the clock caught up"


def test_a_cooldown_after_a_clock_set_back_runs_from_the_set_back() -> None:
    """A 60 s scale-down cooldown: the clock goes back an hour after a step down; the next
    step comes 60 s after the set-back, not an hour and a minute later."""
    behavior = {"scale_down": {"max_step": 1, "period": "1s", "stabilization": "0s",
                               "cooldown": "60s"}}
    swarm = FakeSwarm()
    swarm.add("web", 8)
    agent, sink = fresh_agent(swarm, load=100, behavior=behavior)
    agent.tick(NOW)
    assert swarm.scaled == [("web", 7)]

    back = NOW - timedelta(hours=1)
    agent.tick(back)
    agent.tick(back + timedelta(seconds=30))
    assert swarm.scaled == [("web", 7)]
    assert sink.decisions[-1].reason == Reason.COOLDOWN
    agent.tick(back + timedelta(seconds=61))
    assert swarm.scaled == [("web", 7), ("web", 6)]


def test_a_change_recorded_by_a_clock_ahead_is_counted_once() -> None:
    """The leader's clock ran five minutes ahead: its raise of 4 counts once in the rate
    limit of the agent that takes over, however many ticks read it before the clock gets
    there, and the next raise comes a period after it was taken."""
    behavior = {"scale_up": {"max_step": 4, "period": "10m"}}
    swarm = FakeSwarm()
    swarm.add("web", 2)
    leader, _ = fresh_agent(swarm, load=2000, behavior=behavior)
    leader.tick(NOW + timedelta(minutes=5))
    assert swarm.scaled == [("web", 6)]

    successor, sink = fresh_agent(swarm, load=2000, behavior=behavior)
    for minute in range(10):
        successor.tick(NOW + timedelta(minutes=minute))
    assert swarm.scaled == [("web", 6)]
    assert sink.decisions[-1].reason == Reason.SCALE_UP_LIMIT
    successor.tick(NOW + timedelta(minutes=10))
    assert swarm.scaled == [("web", 6), ("web", 10)]


def test_a_change_stamped_years_ahead_counts_once_not_at_every_restart() -> None:
    """A record edited by hand (or by a clock years ahead) holds a change stamped in 2100.
    The first agent to read it counts it as made now, once; it then writes it as made at
    its own change, so the agents that start after it no longer count it as just made: one
    step down a minute, after the first."""
    swarm = FakeSwarm()
    swarm.add("web", 8)
    swarm.services["web"] = replace(swarm.services["web"],
                                    labels={RECORD_LABEL: "4102444800:8>9"})
    for minute in range(3):
        agent, _ = fresh_agent(swarm, load=100)
        agent.tick(NOW + timedelta(minutes=minute))
    assert [count for _, count in swarm.scaled] == [6, 5, 4]


def test_writes_only_with_a_change_and_never_in_dry_run() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    agent, _ = fresh_agent(swarm, load=300)
    agent.tick(NOW)
    assert swarm.scaled == []
    assert RECORD_LABEL not in swarm.services["web"].labels

    dry, sink = fresh_agent(swarm, load=900, dry_run=True)
    dry.tick(NOW)
    assert swarm.scaled == [] and sink.decisions[-1].desired_replicas == 7
    assert RECORD_LABEL not in swarm.services["web"].labels

    agent, _ = fresh_agent(swarm, load=500, behavior={})
    agent.tick(NOW)
    (change,) = read_record(swarm.services["web"].labels)
    assert (change.before, change.after, change.at) == (3, 5, NOW.replace(microsecond=0))


def test_a_count_set_by_hand_is_left_alone_for_the_override_window() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    agent, sink = fresh_agent(swarm, load=500, behavior={})
    agent.tick(NOW)
    assert swarm.scaled == [("web", 5)]

    swarm.set_by_hand("web", 30, at=NOW + timedelta(minutes=1))
    agent.tick(NOW + timedelta(minutes=2))
    agent.tick(NOW + timedelta(minutes=10))
    assert swarm.scaled == [("web", 5)], "the agent fought a person within the window"
    assert [d.reason for d in sink.decisions[-2:]] == [Reason.MANUAL_OVERRIDE] * 2
    assert "changed to 30 by someone else" in sink.decisions[-1].message

    agent.tick(NOW + timedelta(minutes=12))
    assert swarm.scaled[-1] == ("web", 20), "past the window, back within max_replicas"


def test_a_restarted_agent_still_sees_a_change_by_hand() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    agent, _ = fresh_agent(swarm, load=500, behavior={})
    agent.tick(NOW)
    swarm.set_by_hand("web", 1, at=NOW + timedelta(minutes=1))

    restarted, sink = fresh_agent(swarm, load=500, behavior={})
    restarted.tick(NOW + timedelta(minutes=2))

    assert sink.decisions[-1].reason == Reason.MANUAL_OVERRIDE
    assert swarm.scaled == [("web", 5)]


def test_pause_labels_stop_decisions_for_one_service_or_all() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    service = swarm.services["web"]
    swarm.services["web"] = type(service)(**{**service.__dict__,
                                             "labels": {"autoscaler.pause": "true"}})
    agent, sink = fresh_agent(swarm, load=900)
    agent.tick(NOW)
    assert swarm.scaled == [] and sink.decisions[-1].reason == Reason.PAUSED

    swarm.add("web", 3)
    agent, sink = fresh_agent(swarm, load=900, leadership=FakeLeadership(pause_all=True))
    agent.tick(NOW)
    assert swarm.scaled == [] and sink.decisions[-1].reason == Reason.PAUSED
    assert "node that holds the lease" in sink.decisions[-1].message


def test_a_count_set_back_by_hand_to_the_agents_last_one_is_still_a_person_s() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    agent, sink = fresh_agent(swarm, load=500, behavior={})
    agent.tick(NOW)
    swarm.set_by_hand("web", 8, at=NOW + timedelta(minutes=1))
    agent.tick(NOW + timedelta(minutes=12))  # the window is over: 8 is left as it is
    swarm.set_by_hand("web", 5, at=NOW + timedelta(minutes=20))
    agent.tick(NOW + timedelta(minutes=21))
    assert sink.decisions[-1].reason == Reason.MANUAL_OVERRIDE


def set_by_hand_then_edited() -> tuple[FakeSwarm, Engine, ListSink]:
    """An agent scales web 3 -> 5; a person sets 8 a minute later, and another minute later
    changes something else in its spec (a new image, a label)."""
    swarm = FakeSwarm()
    swarm.add("web", 3)
    agent, sink = fresh_agent(swarm, load=500, behavior={})
    agent.tick(NOW)
    swarm.set_by_hand("web", 8, at=NOW + timedelta(minutes=1))
    swarm.update_other_than_replicas("web", at=NOW + timedelta(minutes=2))
    return swarm, agent, sink


def test_a_later_change_of_anything_but_the_count_starts_no_window() -> None:
    swarm, _, _ = set_by_hand_then_edited()

    restarted, sink = fresh_agent(swarm, load=1500, behavior={})
    restarted.tick(NOW + timedelta(hours=1))

    assert sink.decisions[-1].reason != Reason.MANUAL_OVERRIDE
    assert swarm.scaled[-1] == ("web", 15)


def test_a_later_change_of_anything_but_the_count_does_not_end_the_window() -> None:
    """Scaled by hand, then a new image or a label: the count is still a person's, and the
    update is the latest it can have been set at (a restarted agent knows no earlier)."""
    swarm, agent, sink = set_by_hand_then_edited()

    agent.tick(NOW + timedelta(minutes=3))
    assert sink.decisions[-1].reason == Reason.MANUAL_OVERRIDE
    assert swarm.scaled == [("web", 5)], "the agent fought a person within the window"

    agent.tick(NOW + timedelta(minutes=13))
    assert len(swarm.scaled) == 2, "past the window from the update, the agent acts again"


def test_a_service_made_again_under_its_name_starts_with_no_memory() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 8)
    agent, _ = fresh_agent(swarm, load=100)
    agent.tick(NOW)
    assert swarm.scaled == [("web", 7)]

    swarm.add("web", 8)  # removed and deployed again: a new ID, no labels
    service = swarm.services["web"]
    swarm.services["web"] = type(service)(**{**service.__dict__, "id": "id-web-2"})
    agent.tick(NOW + timedelta(seconds=15))

    assert swarm.scaled[-1] == ("web", 7), "the old service's rate limit does not hold the new"


@pytest.mark.parametrize("strategy", ["target", "predictive"])
@pytest.mark.parametrize(
    ("behavior", "reason"),
    [
        pytest.param({"scale_up": {"cooldown": "5m", "max_step": 10}}, Reason.COOLDOWN,
                     id="cooldown"),
        pytest.param({"scale_up": {"max_step": 2, "period": "10m"}}, Reason.SCALE_UP_LIMIT,
                     id="rate-limit"),
    ],
)
def test_a_restart_keeps_the_scale_up_limits_of_a_predictive_policy_too(
    strategy: str, behavior: dict[str, object], reason: Reason,
) -> None:
    """A predictive policy's floor is where its `target` alone run would be; that run,
    started afresh by the restart, must take the limits from the record as the service
    does, or its floor lifts the count past them (2 -> 4, then 9 a moment later)."""
    swarm = FakeSwarm()
    swarm.add("web", 2)
    load = [400.0]

    def agent() -> tuple[Engine, ListSink]:
        sink = ListSink()
        policy = build_policy(service="web", strategy=strategy, behavior=behavior,
                              metrics=[{"name": "rps", "query": "q", "target": 100}])
        metrics = FakeMetrics(lambda _: [Series({"service": "web"}, load[0])])
        return engine_of(metrics=metrics, swarm=swarm, sink=sink,
                         policies={"web.yaml": policy}), sink

    agent()[0].tick(NOW)
    assert swarm.scaled == [("web", 4)]
    load[0] = 900.0
    restarted, sink = agent()
    restarted.tick(NOW + timedelta(seconds=15))

    assert swarm.scaled == [("web", 4)], sink.decisions[-1].message
    if strategy == "target":
        assert sink.decisions[-1].reason == reason


def test_a_restart_keeps_a_cooldown_longer_than_every_window_and_period() -> None:
    """The record keeps the changes as long as the longest cooldown too: with a 30-minute
    cooldown and 1-minute windows, a restart 5 minutes after a raise still waits."""
    swarm = FakeSwarm()
    swarm.add("web", 2)
    behavior = {"scale_up": {"cooldown": "30m", "max_step": 10},
                "scale_down": {"stabilization": "1m"}}
    first, _ = fresh_agent(swarm, load=400, behavior=behavior)
    first.tick(NOW)
    assert swarm.scaled == [("web", 4)]

    restarted, sink = fresh_agent(swarm, load=900, behavior=behavior)
    restarted.tick(NOW + timedelta(minutes=5))

    assert swarm.scaled == [("web", 4)]
    assert sink.decisions[-1].reason == Reason.COOLDOWN


def test_a_reload_that_lengthens_the_scale_down_window_holds_the_count_as_a_restart_would(
) -> None:
    """The memory holds only the old window's span: after the reload (1m -> 10m) the count
    found then is held for the new window, as a restart would hold it, not stepped down."""
    def policy(window: str) -> dict[str, object]:
        return {"scale_down": {"stabilization": window, "max_step": 1, "period": "15s"}}

    swarm = FakeSwarm()
    swarm.add("web", 10)
    load = [1000.0]
    sink = ListSink()
    engine = engine_of(
        metrics=FakeMetrics(lambda _: [Series({"service": "web"}, load[0])]), swarm=swarm,
        sink=sink, policies={"web.yaml": build_policy(service="web", behavior=policy("1m"))})
    at = NOW
    for _ in range(8):
        engine.tick(at)
        at += timedelta(seconds=15)
    load[0] = 200.0
    for _ in range(6):
        engine.tick(at)
        at += timedelta(seconds=15)
    held = swarm.services["web"].replicas
    assert held < 10, "the old window let the count step down"

    engine.set_policies({"web.yaml": build_policy(service="web", behavior=policy("10m"))}, {})
    reloaded = at
    while at < reloaded + timedelta(minutes=9):
        engine.tick(at)
        at += timedelta(seconds=15)
    assert swarm.services["web"].replicas == held
    at = reloaded + timedelta(minutes=10, seconds=15)
    engine.tick(at)
    assert swarm.services["web"].replicas == held - 1
