"""decide: the strategy, then every limit in order; the reason is the last limit that changed
the count."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.core.decide import decide
from autoscaler.core.memory import ServiceMemory
from autoscaler.core.model import Reason
from autoscaler.core.placement import Placement
from autoscaler.core.spec import Policy

MakePolicy = Callable[..., Policy]

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1)

RPS = {"name": "rps", "query": "q", "target": 100}
QUEUE = {"name": "queue", "query": "q", "target": 10}
THRESHOLD = {"name": "rps", "query": "q", "scale_up_above": 60, "scale_down_below": 20}
DOWN_NOW = {"scale_down": {"stabilization": "0s"}}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def old_memory(
    current: int,
    recommendations: tuple[tuple[datetime, int], ...] = (),
    changes: tuple[tuple[datetime, int], ...] = (),
) -> ServiceMemory:
    """A memory whose seed has long left every window."""
    return ServiceMemory(
        seed=(LONG_AGO, current), recommendations=recommendations, changes=changes,
        shadow=current, seen_spec=current,
    )


CASES = [
    # (policy keys, current, metrics, memory (None: fresh), last_change_at,
    #  (recommended, desired, reason))
    pytest.param({}, 3, {"rps": 330}, None, None, (3, 3, Reason.WITHIN_TOLERANCE),
                 id="target-330-on-3x100-within-tolerance"),
    pytest.param({}, 3, {"rps": 500}, None, None, (5, 5, Reason.DESIRED_WITHIN_RANGE),
                 id="target-scale-up"),
    pytest.param({"metrics": [{**RPS, "target": 0.7}]}, 1, {"rps": 2.1}, None, None,
                 (3, 3, Reason.DESIRED_WITHIN_RANGE), id="target-ceil-with-slack"),
    pytest.param({}, 2, {"rps": 1000}, None, None, (10, 6, Reason.SCALE_UP_LIMIT),
                 id="scale-up-rate-limited"),
    pytest.param({}, 5, {"rps": 100}, None, None, (1, 5, Reason.SCALE_DOWN_STABILIZED),
                 id="fresh-memory-does-not-scale-down"),
    pytest.param({"behavior": DOWN_NOW}, 5, {"rps": 100}, None, None,
                 (1, 1, Reason.DESIRED_WITHIN_RANGE), id="fresh-memory-down-stabilization-0s"),
    pytest.param({}, 5, {"rps": 100}, old_memory(5), None,
                 (1, 1, Reason.DESIRED_WITHIN_RANGE), id="seed-aged-out-scales-down"),
    pytest.param({}, 5, {"rps": 100}, old_memory(5, ((NOW - timedelta(minutes=5), 5),)), None,
                 (1, 1, Reason.DESIRED_WITHIN_RANGE), id="recommendation-window-old-outside"),
    pytest.param({}, 5, {"rps": 100}, old_memory(5, ((ago(200), 3),)), None,
                 (1, 3, Reason.SCALE_DOWN_STABILIZED), id="down-to-highest-in-window"),
    pytest.param({"behavior": {"scale_up": {"stabilization": "1m"}}}, 3, {"rps": 600},
                 old_memory(3, ((ago(30), 4),)), None, (6, 4, Reason.SCALE_UP_STABILIZED),
                 id="up-to-lowest-in-window"),
    pytest.param({"behavior": {"scale_up": {"stabilization": "1m"}}}, 3, {"rps": 600},
                 None, None, (6, 3, Reason.SCALE_UP_STABILIZED),
                 id="fresh-memory-does-not-scale-up-within-the-up-window"),
    pytest.param({}, 3, {"rps": 600}, None, None, (6, 6, Reason.DESIRED_WITHIN_RANGE),
                 id="fresh-memory-up-stabilization-0s"),
    pytest.param({"behavior": DOWN_NOW}, 3, {"rps": 0}, None, None,
                 (0, 1, Reason.TOO_FEW_REPLICAS), id="no-load-raised-to-min"),
    pytest.param({"max_replicas": 5}, 3, {"rps": 5000}, None, None,
                 (50, 5, Reason.TOO_MANY_REPLICAS), id="clamp-is-last-reason"),
    pytest.param({"max_replicas": 20}, 3, {"rps": 5000}, None, None,
                 (50, 7, Reason.SCALE_UP_LIMIT), id="rate-limit-reason-when-clamp-silent"),
    pytest.param({"min_replicas": 4}, 5, {"rps": 100}, old_memory(5), None,
                 (1, 4, Reason.TOO_FEW_REPLICAS), id="min-holds-on-scale-down"),
    # scaled to zero
    pytest.param({}, 0, {"rps": 500}, None, None, (0, 0, Reason.SCALED_TO_ZERO),
                 id="scaled-to-zero-left-alone"),
    pytest.param({"min_replicas": 3}, 0, {"rps": None}, None, None,
                 (0, 0, Reason.SCALED_TO_ZERO), id="scaled-to-zero-before-min-and-missing"),
    pytest.param({"min_replicas": 0}, 0, {"rps": 250}, None, None,
                 (3, 3, Reason.DESIRED_WITHIN_RANGE), id="min-zero-target-ceil"),
    pytest.param({"min_replicas": 0}, 0, {"rps": 1000}, None, None,
                 (10, 4, Reason.SCALE_UP_LIMIT), id="min-zero-target-rate-limited-from-zero"),
    pytest.param({"min_replicas": 0}, 0, {"rps": 0}, None, None,
                 (0, 0, Reason.DESIRED_WITHIN_RANGE), id="min-zero-no-load-stays-zero"),
    pytest.param({"min_replicas": 0, "strategy": "threshold", "step": 2,
                  "metrics": [THRESHOLD]}, 0, {"rps": 0.5}, None, None,
                 (2, 2, Reason.DESIRED_WITHIN_RANGE), id="min-zero-threshold-adds-step"),
    pytest.param({"min_replicas": 0, "strategy": "threshold", "metrics": [THRESHOLD]}, 0,
                 {"rps": 0}, None, None, (0, 0, Reason.DESIRED_WITHIN_RANGE),
                 id="min-zero-threshold-no-load"),
    pytest.param({"min_replicas": 0}, 0, {"rps": None}, None, None,
                 (0, 0, Reason.METRICS_MISSING), id="min-zero-all-missing"),
    # threshold
    pytest.param({"strategy": "threshold", "metrics": [THRESHOLD]}, 2, {"rps": 130}, None,
                 None, (3, 3, Reason.DESIRED_WITHIN_RANGE), id="threshold-up"),
    pytest.param({"strategy": "threshold", "metrics": [THRESHOLD]}, 2, {"rps": 120}, None,
                 None, (2, 2, Reason.WITHIN_TOLERANCE), id="threshold-on-bound-holds"),
    pytest.param({"strategy": "threshold", "metrics": [THRESHOLD], "behavior": DOWN_NOW}, 3,
                 {"rps": 30}, None, None, (2, 2, Reason.DESIRED_WITHIN_RANGE),
                 id="threshold-down"),
    pytest.param({"strategy": "threshold", "metrics": [THRESHOLD]}, 3, {"rps": 30}, None,
                 None, (2, 3, Reason.SCALE_DOWN_STABILIZED),
                 id="threshold-down-held-by-fresh-seed"),
    # missing metrics and several metrics
    pytest.param({}, 4, {"rps": None}, None, None, (4, 4, Reason.METRICS_MISSING),
                 id="all-missing-holds"),
    pytest.param({}, 4, {}, None, None, (4, 4, Reason.METRICS_MISSING),
                 id="absent-metric-is-missing"),
    pytest.param({"behavior": DOWN_NOW}, 10, {"rps": -50}, None, None,
                 (10, 10, Reason.METRICS_MISSING), id="negative-is-missing"),
    pytest.param({"max_replicas": 20}, 4, {"rps": 1e308}, None, None,
                 (2**53, 8, Reason.SCALE_UP_LIMIT), id="huge-value-scales-up-by-the-limits"),
    pytest.param({"max_replicas": 20}, 30, {"rps": None}, None, None,
                 (30, 20, Reason.TOO_MANY_REPLICAS), id="all-missing-max-still-holds"),
    pytest.param({"min_replicas": 2}, 1, {"rps": None}, None, None,
                 (1, 2, Reason.TOO_FEW_REPLICAS), id="all-missing-min-still-holds"),
    pytest.param({"metrics": [RPS, QUEUE]}, 4, {"rps": 500, "queue": 80}, None, None,
                 (8, 8, Reason.DESIRED_WITHIN_RANGE), id="several-largest-wins"),
    pytest.param({"metrics": [RPS, QUEUE], "behavior": DOWN_NOW}, 5,
                 {"rps": 100, "queue": None}, None, None, (5, 5, Reason.METRICS_MISSING),
                 id="missing-blocks-decrease"),
    pytest.param({"metrics": [RPS, QUEUE]}, 4, {"rps": 700, "queue": None}, None, None,
                 (7, 7, Reason.DESIRED_WITHIN_RANGE), id="missing-does-not-block-increase"),
    # rate limits from this agent's own changes
    pytest.param({"behavior": {"scale_up": {"max_step": 2}}}, 6, {"rps": 900},
                 old_memory(6, changes=((ago(5), 2),)), None, (9, 6, Reason.SCALE_UP_LIMIT),
                 id="period-already-used"),
    pytest.param({"behavior": {"scale_up": {"max_step": 2}}}, 6, {"rps": 900},
                 old_memory(6, changes=((ago(15), 2),)), None, (9, 8, Reason.SCALE_UP_LIMIT),
                 id="change-exactly-period-old-outside"),
    pytest.param({"behavior": {"scale_down": {"stabilization": "0s", "max_percent": 50}}}, 10,
                 {"rps": 100}, None, None, (1, 5, Reason.SCALE_DOWN_LIMIT),
                 id="scale-down-percent-limited"),
    # cooldown
    pytest.param({"behavior": {"scale_up": {"cooldown": "1m"}}}, 3, {"rps": 500}, None,
                 ago(30), (5, 3, Reason.COOLDOWN), id="cooldown-blocks"),
    pytest.param({"behavior": {"scale_up": {"cooldown": "1m"}}}, 3, {"rps": 500}, None,
                 ago(60), (5, 5, Reason.DESIRED_WITHIN_RANGE), id="cooldown-elapsed"),
    pytest.param({}, 3, {"rps": 500}, None, ago(-3600), (5, 5, Reason.DESIRED_WITHIN_RANGE),
                 id="no-cooldown-holds-nothing-stamped-ahead"),
    pytest.param({"behavior": {"scale_down": {"stabilization": "0s", "cooldown": "5m"}}}, 3,
                 {"rps": 500}, None, ago(30), (5, 5, Reason.DESIRED_WITHIN_RANGE),
                 id="down-cooldown-does-not-block-up"),
    pytest.param({"behavior": {"scale_down": {"stabilization": "0s", "cooldown": "5m"}}}, 5,
                 {"rps": 100}, None, ago(30), (1, 5, Reason.COOLDOWN),
                 id="down-cooldown-blocks-down"),
    pytest.param({"min_replicas": 2, "behavior": {"scale_up": {"cooldown": "1m"}}}, 1,
                 {"rps": 500}, None, ago(30), (5, 2, Reason.TOO_FEW_REPLICAS),
                 id="min-beats-cooldown"),
]


@pytest.mark.parametrize(
    ("keys", "current", "metrics", "memory", "last_change_at", "expected"), CASES
)
def test_decide(
    make_policy: MakePolicy,
    keys: dict[str, Any],
    current: int,
    metrics: dict[str, float | None],
    memory: ServiceMemory | None,
    last_change_at: datetime | None,
    expected: tuple[int, int, Reason],
) -> None:
    policy = make_policy(**keys)
    outcome = decide(
        policy, current=current, metrics=metrics,
        memory=memory or ServiceMemory.first_seen(replicas=current, now=NOW),
        last_change_at=last_change_at, now=NOW,
    )
    assert (outcome.recommended, outcome.desired, outcome.reason) == expected
    assert outcome.message


@pytest.mark.parametrize(
    ("keys", "metrics"),
    [
        pytest.param({}, {"rps": math.nan}, id="target-nan"),
        pytest.param({"strategy": "threshold", "metrics": [THRESHOLD]}, {"rps": math.inf},
                     id="threshold-inf"),
        pytest.param({"metrics": [RPS, QUEUE], "behavior": DOWN_NOW},
                     {"rps": math.inf, "queue": 10}, id="inf-blocks-decrease-of-other"),
    ],
)
def test_nan_and_inf_are_missing(
    make_policy: MakePolicy, keys: dict[str, Any], metrics: dict[str, float]
) -> None:
    """Contract, item 3: NaN and Inf count as missing data: hold, never read as a value."""
    policy = make_policy(**keys)
    outcome = decide(
        policy, current=4, metrics=metrics,
        memory=ServiceMemory.first_seen(replicas=4, now=NOW), last_change_at=None, now=NOW,
    )
    assert (outcome.desired, outcome.reason) == (4, Reason.METRICS_MISSING)


# --- properties ---------------------------------------------------------------------------

values = st.none() | st.floats(0, 1e5, allow_nan=False, allow_infinity=False)
stamps = st.lists(st.tuples(st.integers(0, 600), st.integers(-20, 60)), max_size=5)


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(0, 5))
    high = draw(st.integers(max(low, 1), 30))
    strategy = draw(st.sampled_from(["target", "threshold"]))
    down = draw(st.floats(0.1, 50))
    metrics = [
        {"name": name, "query": "q", "target": draw(st.floats(0.1, 500)),
         "scale_down_below": down, "scale_up_above": down + draw(st.floats(0.1, 50))}
        for name in ("a", "b")[: draw(st.integers(1, 2))]
    ]
    seconds = st.sampled_from(["0s", "10s", "1m", "5m"])
    behavior = {
        direction: {"stabilization": draw(seconds), "cooldown": draw(seconds),
                    "period": draw(seconds)}
        for direction in ("scale_up", "scale_down")
    }
    return {
        "keys": {"min_replicas": low, "max_replicas": high, "strategy": strategy,
                 "metrics": metrics, "behavior": behavior,
                 "step": draw(st.integers(1, 3))},
        "current": draw(st.integers(0, 40)),
        "metrics": {m["name"]: draw(values) for m in metrics},
        "recommendations": draw(stamps),
        "changes": draw(stamps),
        "seed_age": draw(st.integers(0, 900)),
        "last_change": draw(st.none() | st.integers(0, 900)),
    }


def decide_in(make_policy: MakePolicy, situation: dict[str, Any]) -> tuple[Policy, Any]:
    policy = make_policy(**situation["keys"])
    current = situation["current"]
    memory = ServiceMemory(
        seed=(ago(situation["seed_age"]), current),
        recommendations=tuple((ago(s), max(v, 0)) for s, v in situation["recommendations"]),
        changes=tuple((ago(s), v) for s, v in situation["changes"]),
    )
    last = situation["last_change"]
    outcome = decide(
        policy, current=current, metrics=situation["metrics"], memory=memory,
        last_change_at=None if last is None else ago(last), now=NOW,
    )
    return policy, outcome


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(situation=situations())
def test_desired_always_within_min_and_max(
    make_policy: MakePolicy, situation: dict[str, Any]
) -> None:
    policy, outcome = decide_in(make_policy, situation)
    if outcome.reason == Reason.SCALED_TO_ZERO:
        assert situation["current"] == 0 and policy.min_replicas > 0
        assert outcome.desired == 0
    else:
        assert policy.min_replicas <= outcome.desired <= policy.max_replicas


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(situation=situations())
def test_never_below_current_when_a_metric_is_missing(
    make_policy: MakePolicy, situation: dict[str, Any]
) -> None:
    metrics = dict(situation["metrics"])
    if None not in metrics.values():
        metrics[next(iter(metrics))] = None
    situation = {**situation, "metrics": metrics}
    policy, outcome = decide_in(make_policy, situation)
    assert outcome.desired >= min(situation["current"], policy.max_replicas)
    if all(v is None for v in situation["metrics"].values()):
        assert outcome.recommended == situation["current"] or (
            outcome.reason == Reason.SCALED_TO_ZERO
        )


# --- schedule ----------------------------------------------------------------------------

IN_FORCE = {"name": "launch", "start": "2024-05-01T11:00", "end": "2024-05-01T13:00"}
"""A window in force at NOW (a Wednesday, 12:00 UTC)."""
WEDNESDAY_NOON = {"cron": "0 12 * * wed", "duration": "1h"}
OVER = {"start": "2024-05-01T08:00", "end": "2024-05-01T12:00"}
"""A window that ended at NOW: windows are half-open."""

SCHEDULED = [
    # (policy keys, window keys, current, rps, last_change_at, (desired, reason, note))
    pytest.param({}, {**IN_FORCE, "min_replicas": 8}, 3, 300, None,
                 (8, Reason.SCHEDULED,
                  'raised to 8, the min_replicas of schedule[0] "launch" (until 2024-05-01 '
                  '13:00 UTC)'), id="raises-the-count-past-the-rate-limit"),
    pytest.param({}, {**WEDNESDAY_NOON, "min_replicas": 8}, 3, 300, None,
                 (8, Reason.SCHEDULED, "schedule[0] (until 2024-05-01 13:00 UTC)"),
                 id="a-cron-window-at-its-start"),
    pytest.param({}, {**IN_FORCE, "max_replicas": 4}, 3, 900, None,
                 (4, Reason.SCHEDULED, 'lowered to 4, the max_replicas of schedule[0] "launch"'),
                 id="caps-the-count"),
    pytest.param({"max_replicas": 5}, {**IN_FORCE, "max_replicas": 30}, 10, 2000, None,
                 (20, Reason.DESIRED_WITHIN_RANGE, ""), id="a-window-max-above-the-policys"),
    pytest.param({"max_replicas": 5}, {**IN_FORCE, "max_replicas": 15}, 10, 5000, None,
                 (15, Reason.SCHEDULED, "the max_replicas of"),
                 id="capped-at-a-window-max-above-the-policys"),
    pytest.param({"max_replicas": 5}, {**OVER, "max_replicas": 30}, 10, 2000, None,
                 (5, Reason.TOO_MANY_REPLICAS, "lowered to max_replicas 5"),
                 id="after-the-window-the-policys-max"),
    pytest.param({"behavior": {"scale_up": {"cooldown": "1m"}}}, {**IN_FORCE, "min_replicas": 8},
                 3, 500, ago(30), (8, Reason.SCHEDULED, "the min_replicas of"),
                 id="after-the-cooldown-in-the-chain"),
    pytest.param({"min_replicas": 2, "behavior": DOWN_NOW}, {**IN_FORCE, "min_replicas": 1}, 3,
                 0, None, (2, Reason.TOO_FEW_REPLICAS, "raised to min_replicas 2"),
                 id="a-window-never-lowers-the-floor"),
    pytest.param({}, {**IN_FORCE, "min_replicas": 4}, 6, 600, None,
                 (6, Reason.WITHIN_TOLERANCE, ""), id="above-the-windows-min-nothing-to-do"),
]


@pytest.mark.parametrize(("keys", "window", "current", "rps", "last_change_at", "expected"),
                         SCHEDULED)
def test_scheduled_bounds(
    make_policy: MakePolicy, keys: dict[str, Any], window: dict[str, Any], current: int,
    rps: float, last_change_at: datetime | None, expected: tuple[int, Reason, str],
) -> None:
    policy = make_policy(**keys, schedule=[window])

    outcome = decide(policy, current=current, metrics={"rps": rps},
                     memory=ServiceMemory.first_seen(replicas=current, now=NOW),
                     last_change_at=last_change_at, now=NOW)

    assert (outcome.desired, outcome.reason) == expected[:2]
    assert expected[2] in outcome.message


@pytest.mark.parametrize("situation", [
    (3, {"rps": 300}), (3, {"rps": 900}), (10, {"rps": 5000}), (5, {"rps": 0}), (4, {"rps": None}),
])
def test_outside_its_windows_a_schedule_changes_nothing(
    make_policy: MakePolicy, situation: tuple[int, dict[str, float | None]]
) -> None:
    current, metrics = situation
    keys = {"min_replicas": 2, "max_replicas": 8, "behavior": DOWN_NOW}
    plain = make_policy(**keys)
    planned = make_policy(**keys, schedule=[{**OVER, "min_replicas": 6, "max_replicas": 30},
                                            {**WEDNESDAY_NOON, "cron": "0 12 * * thu",
                                             "max_replicas": 3}])

    outcomes = [decide(policy, current=current, metrics=metrics,
                       memory=ServiceMemory.first_seen(replicas=current, now=NOW),
                       last_change_at=None, now=NOW) for policy in (plain, planned)]

    assert outcomes[0] == outcomes[1]


def test_a_raise_to_a_windows_min_still_waits_for_a_node(make_policy: MakePolicy) -> None:
    """Unschedulable comes after the scheduled bounds: more replicas would only wait too."""
    policy = make_policy(schedule=[{**IN_FORCE, "min_replicas": 8}])

    outcome = decide(policy, current=3, metrics={"rps": 300},
                     memory=ServiceMemory.first_seen(replicas=3, now=NOW), last_change_at=None,
                     now=NOW, placement=Placement(3, 1, unplaceable=2, reason="no memory"))

    assert (outcome.desired, outcome.reason) == (3, Reason.UNSCHEDULABLE)


@st.composite
def scheduled_situations(draw: st.DrawFn) -> dict[str, Any]:
    """A situation with a window always in force, whose bounds are valid for the policy."""
    situation = draw(situations())
    low, high = situation["keys"]["min_replicas"], situation["keys"]["max_replicas"]
    window_high = draw(st.none() | st.integers(low, 60))
    window_low = draw(st.none() | st.integers(0, high if window_high is None else window_high))
    if window_low is None and window_high is None:
        window_low = low
    window = {"start": "2000-01-01", "end": "9000-01-01", "min_replicas": window_low,
              "max_replicas": window_high}
    situation["keys"] = {**situation["keys"], "schedule": [
        {key: value for key, value in window.items() if value is not None}]}
    return situation


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(situation=scheduled_situations())
def test_desired_always_within_the_bounds_in_force(
    make_policy: MakePolicy, situation: dict[str, Any]
) -> None:
    policy, outcome = decide_in(make_policy, situation)
    window = policy.schedule[0]
    low = max(policy.min_replicas, window.min_replicas or 0)
    high = policy.max_replicas if window.max_replicas is None else window.max_replicas
    if outcome.reason == Reason.SCALED_TO_ZERO:
        assert outcome.desired == 0
    else:
        assert low <= outcome.desired <= high
