"""The limits, one at a time (stabilization, rate limits, cooldown, min/max), and the memory
they read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.limits import (
    clamp,
    cooldown,
    rate_limit,
    scale_down_cap,
    scale_up_cap,
    stabilize,
)
from autoscaler.core.memory import (
    ServiceMemory,
    in_window,
    remember,
    synced_shadow,
)
from autoscaler.core.model import Reason
from autoscaler.core.spec import Behavior, ScaleDownRules, ScaleUpRules

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def behavior(**blocks: dict[str, Any]) -> Behavior:
    return Behavior.model_validate(blocks)


def memory(
    *,
    seed: tuple[datetime, int] = (LONG_AGO, 0),
    recommendations: tuple[tuple[datetime, int], ...] = (),
    changes: tuple[tuple[datetime, int], ...] = (),
) -> ServiceMemory:
    return ServiceMemory(seed=seed, recommendations=recommendations, changes=changes)


# --- memory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param(timedelta(0), [], id="zero-window-is-empty"),
        pytest.param(timedelta(seconds=10), [1], id="exactly-window-old-is-outside"),
        pytest.param(timedelta(seconds=10.001), [1, 2], id="just-inside"),
        pytest.param(timedelta(minutes=5), [1, 2, 3], id="wide-excludes-future"),
    ],
)
def test_in_window_is_half_open(window: timedelta, expected: list[int]) -> None:
    stamped = ((NOW, 1), (ago(10), 2), (ago(60), 3), (NOW + timedelta(seconds=1), 4))
    assert sorted(in_window(stamped, now=NOW, window=window)) == expected


def test_first_seen_seeds_only_the_seed() -> None:
    fresh = ServiceMemory.first_seen(replicas=4, now=NOW)
    assert fresh.seed == (NOW, 4)
    assert (fresh.recommendations, fresh.changes, fresh.last_change_at) == ((), (), None)
    assert (fresh.shadow, fresh.seen_spec) == (4, 4)


@pytest.mark.parametrize(
    ("change", "expected_changes", "expected_last", "expected_shadow"),
    [
        pytest.param(0, ((ago(30), 2),), ago(30), 5, id="no-change"),
        pytest.param(-2, ((ago(30), 2), (NOW, -2)), NOW, 3, id="scale-down"),
        pytest.param(3, ((ago(30), 2), (NOW, 3)), NOW, 8, id="scale-up"),
    ],
)
def test_remember(
    change: int,
    expected_changes: tuple[tuple[datetime, int], ...],
    expected_last: datetime,
    expected_shadow: int,
) -> None:
    before = ServiceMemory(
        seed=(LONG_AGO, 3),
        recommendations=((ago(600), 9), (ago(300), 7), (ago(30), 5)),
        changes=((ago(300), 1), (ago(30), 2)),
        last_change_at=ago(30),
        shadow=5,
        seen_spec=5,
    )
    after = remember(before, now=NOW, recommended=4, change=change, keep=timedelta(minutes=5))
    assert after.recommendations == ((ago(30), 5), (NOW, 4))
    assert after.changes == expected_changes
    assert after.last_change_at == expected_last
    assert after.shadow == expected_shadow
    assert after.seed == before.seed


@settings(max_examples=300)
@given(steps=st.lists(st.tuples(st.integers(1, 120), st.none() | st.integers(0, 4)),
                      min_size=1, max_size=60),
       windows=st.lists(st.integers(0, 900), min_size=1, max_size=3))
def test_remembered_recommendations_read_as_every_one_would(
    steps: list[tuple[int, int | None]], windows: list[int]
) -> None:
    """Equal recommendations in a row are kept as the latest of them: every window, read
    after every tick, finds the same counts as in the whole sequence, and a run of equal
    ones takes one place."""
    keep = timedelta(seconds=max(windows))
    kept = ServiceMemory(seed=None)
    every: tuple[tuple[datetime, int], ...] = ()
    at = NOW
    for gap, count in steps:
        at += timedelta(seconds=gap)
        kept = remember(kept, now=at, recommended=count, change=0, keep=keep)
        if count is not None:
            every += ((at, count),)
        for seconds in windows:
            window = timedelta(seconds=seconds)
            assert set(in_window(kept.recommendations, now=at, window=window)) == \
                set(in_window(every, now=at, window=window))
        assert all(a[1] != b[1] for a, b in zip(kept.recommendations,
                                                 kept.recommendations[1:], strict=False))


@pytest.mark.parametrize(
    ("spec", "expected_shadow"),
    [
        pytest.param(5, 7, id="spec-unchanged-keeps-shadow"),
        pytest.param(6, 6, id="spec-changed-resets-shadow"),
    ],
)
def test_synced_shadow(spec: int, expected_shadow: int) -> None:
    before = ServiceMemory(seed=(LONG_AGO, 5), shadow=7, seen_spec=5)
    after = synced_shadow(before, spec)
    assert (after.shadow, after.seen_spec) == (expected_shadow, spec)


# --- stabilization ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "mem", "current", "recommended", "expected"),
    [
        pytest.param({}, memory(), 3, 5, (5, None), id="up-no-window-passes"),
        pytest.param(
            {"scale_up": {"stabilization": "1m"}},
            memory(recommendations=((ago(30), 4),)), 3, 6, (4, Reason.SCALE_UP_STABILIZED),
            id="up-to-lowest-in-window",
        ),
        pytest.param(
            {"scale_up": {"stabilization": "1m"}},
            memory(recommendations=((ago(30), 2),)), 3, 6, (3, Reason.SCALE_UP_STABILIZED),
            id="up-lowest-below-current-holds-current",
        ),
        pytest.param(
            {"scale_up": {"stabilization": "1m"}},
            memory(recommendations=((ago(60), 2),)), 3, 6, (6, None),
            id="up-exactly-window-old-is-outside",
        ),
        pytest.param(
            {"scale_up": {"stabilization": "1m"}},
            memory(seed=(NOW, 3)), 3, 6, (3, Reason.SCALE_UP_STABILIZED),
            id="fresh-seed-holds-scale-up",
        ),
        pytest.param(
            {"scale_up": {"stabilization": "1m"}},
            memory(seed=(ago(60), 3)), 3, 6, (6, None),
            id="up-seed-exactly-window-old-is-outside",
        ),
        pytest.param(
            {"scale_down": {"stabilization": "5m"}},
            memory(seed=(NOW, 5)), 5, 2, (5, Reason.SCALE_DOWN_STABILIZED),
            id="fresh-seed-holds-scale-down",
        ),
        pytest.param(
            {"scale_down": {"stabilization": "5m"}},
            memory(seed=(ago(300), 5)), 5, 2, (2, None),
            id="seed-exactly-window-old-is-outside",
        ),
        pytest.param(
            {"scale_down": {"stabilization": "0s"}},
            memory(seed=(NOW, 5)), 5, 2, (2, None),
            id="zero-down-window-ignores-seed",
        ),
        pytest.param(
            {"scale_down": {"stabilization": "5m"}},
            memory(recommendations=((ago(100), 4), (ago(200), 3))), 6, 2,
            (4, Reason.SCALE_DOWN_STABILIZED), id="down-to-highest-in-window",
        ),
        pytest.param(
            {"scale_down": {"stabilization": "5m"}},
            memory(recommendations=((ago(299), 8),)), 5, 2,
            (5, Reason.SCALE_DOWN_STABILIZED), id="down-highest-above-current-holds-current",
        ),
        pytest.param(
            {"scale_down": {"stabilization": "5m"}},
            memory(recommendations=((ago(300), 8),)), 5, 2, (2, None),
            id="down-exactly-window-old-is-outside",
        ),
        pytest.param(
            {"scale_up": {"stabilization": "5m"}, "scale_down": {"stabilization": "5m"}},
            memory(recommendations=((ago(60), 9), (ago(120), 1))), 4, 4, (4, None),
            id="no-change-stays",
        ),
    ],
)
def test_stabilize(
    rules: dict[str, Any],
    mem: ServiceMemory,
    current: int,
    recommended: int,
    expected: tuple[int, Reason | None],
) -> None:
    result = stabilize(
        current=current, recommended=recommended, memory=mem, behavior=behavior(**rules), now=NOW
    )
    assert (result.replicas, result.reason) == expected
    assert bool(result.note) == (expected[1] is not None)


# --- rate limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "start", "expected"),
    [
        pytest.param({}, 2, 6, id="default-step-4-beats-100pct"),
        pytest.param({}, 10, 20, id="default-100pct-beats-step-4"),
        pytest.param({}, 0, 4, id="default-from-zero"),
        pytest.param({"max_step": 2}, 10, 12, id="only-step-ignores-default-percent"),
        pytest.param({"max_step": 1}, 0, 1, id="only-step-from-zero"),
        pytest.param({"max_percent": 50}, 10, 15, id="only-percent-ignores-default-step"),
        pytest.param({"max_percent": 50}, 3, 5, id="percent-ceils"),
        pytest.param({"max_percent": 10}, 10, 11, id="percent-exact-not-float"),
        pytest.param({"max_percent": 10}, 1, 2, id="percent-at-least-plus-one"),
        pytest.param({"max_percent": 50}, 0, 1, id="percent-from-zero-plus-one"),
        pytest.param({"max_step": 2, "max_percent": 50}, 10, 15, id="both-larger-wins-percent"),
        pytest.param({"max_step": 6, "max_percent": 50}, 10, 16, id="both-larger-wins-step"),
        pytest.param({"max_percent": 300}, 2, 8, id="percent-above-100"),
    ],
)
def test_scale_up_cap(rules: dict[str, Any], start: int, expected: int) -> None:
    assert scale_up_cap(start, ScaleUpRules.model_validate(rules)) == expected


@pytest.mark.parametrize(
    ("rules", "start", "expected"),
    [
        pytest.param({}, 10, 0, id="default-100pct"),
        pytest.param({"max_step": 2}, 10, 8, id="only-step-ignores-default-percent"),
        pytest.param({"max_percent": 50}, 10, 5, id="only-percent"),
        pytest.param({"max_percent": 50}, 5, 2, id="percent-floors"),
        pytest.param({"max_percent": 90}, 10, 1, id="percent-exact-not-float"),
        pytest.param({"max_percent": 30}, 10, 7, id="percent-30-exact"),
        pytest.param({"max_step": 2, "max_percent": 50}, 10, 5, id="both-larger-drop-wins"),
        pytest.param({"max_step": 8, "max_percent": 50}, 10, 2, id="both-larger-step-wins"),
    ],
)
def test_scale_down_cap(rules: dict[str, Any], start: int, expected: int) -> None:
    assert scale_down_cap(start, ScaleDownRules.model_validate(rules)) == expected


@pytest.mark.parametrize(
    ("rules", "changes", "current", "desired", "expected"),
    [
        pytest.param({}, (), 3, 5, (5, None), id="up-within-default-cap"),
        pytest.param({}, (), 2, 10, (6, Reason.SCALE_UP_LIMIT), id="up-default-step-4"),
        pytest.param({}, (), 10, 30, (20, Reason.SCALE_UP_LIMIT), id="up-default-100pct"),
        pytest.param({"scale_up": {"max_step": 1}}, (), 3, 9, (4, Reason.SCALE_UP_LIMIT),
                     id="up-only-step"),
        pytest.param({"scale_up": {"max_step": 2}}, ((ago(5), 2),), 6, 9,
                     (6, Reason.SCALE_UP_LIMIT), id="up-period-used-up-holds"),
        pytest.param({"scale_up": {"max_step": 2}}, ((ago(5), 1),), 5, 9,
                     (6, Reason.SCALE_UP_LIMIT), id="up-start-from-net-changes"),
        pytest.param({"scale_up": {"max_step": 2}}, ((ago(15), 2),), 6, 9,
                     (8, Reason.SCALE_UP_LIMIT), id="up-change-exactly-period-old-is-outside"),
        pytest.param({"scale_up": {"max_step": 2}}, ((ago(5), 5),), 7, 9,
                     (7, Reason.SCALE_UP_LIMIT), id="up-cap-below-current-never-reverses"),
        pytest.param({"scale_up": {"max_step": 2, "period": "1m"}}, ((ago(50), 2),), 6, 9,
                     (6, Reason.SCALE_UP_LIMIT), id="up-own-period"),
        pytest.param({"scale_up": {"max_step": 2}}, ((ago(5), 3), (ago(3), -2)), 6, 9,
                     (7, Reason.SCALE_UP_LIMIT), id="up-net-of-both-directions"),
        pytest.param({}, (), 10, 1, (1, None), id="down-default-unlimited"),
        pytest.param({"scale_down": {"max_step": 1}}, (), 5, 2, (4, Reason.SCALE_DOWN_LIMIT),
                     id="down-only-step"),
        pytest.param({"scale_down": {"max_percent": 50}}, (), 10, 2,
                     (5, Reason.SCALE_DOWN_LIMIT), id="down-only-percent"),
        pytest.param({"scale_down": {"max_step": 2}}, ((ago(5), -1),), 5, 2,
                     (4, Reason.SCALE_DOWN_LIMIT), id="down-start-from-net-changes"),
        pytest.param({"scale_down": {"max_step": 2}}, ((ago(5), -3),), 5, 2,
                     (5, Reason.SCALE_DOWN_LIMIT), id="down-cap-above-current-never-reverses"),
        pytest.param({"scale_down": {"max_step": 2}}, ((ago(15), -2),), 5, 2,
                     (3, Reason.SCALE_DOWN_LIMIT), id="down-change-exactly-period-old-outside"),
        pytest.param({"scale_down": {"max_step": 1}}, ((ago(5), 4),), 5, 3, (3, None),
                     id="down-after-recent-scale-up"),
        pytest.param({"scale_up": {"max_step": 1}, "scale_down": {"max_step": 1}}, (), 4, 4,
                     (4, None), id="no-change"),
    ],
)
def test_rate_limit(
    rules: dict[str, Any],
    changes: tuple[tuple[datetime, int], ...],
    current: int,
    desired: int,
    expected: tuple[int, Reason | None],
) -> None:
    result = rate_limit(
        current=current, desired=desired, memory=memory(changes=changes),
        behavior=behavior(**rules), now=NOW,
    )
    assert (result.replicas, result.reason) == expected


@settings(max_examples=150, deadline=None)
@given(
    current=st.integers(0, 50),
    desired=st.integers(0, 100),
    changes=st.lists(st.tuples(st.integers(0, 60), st.integers(-10, 10)), max_size=4),
    up_step=st.none() | st.integers(1, 10),
    up_percent=st.none() | st.integers(1, 300),
    down_step=st.none() | st.integers(1, 10),
    down_percent=st.none() | st.integers(1, 100),
)
def test_rate_limit_never_reverses_or_overshoots(
    current: int,
    desired: int,
    changes: list[tuple[int, int]],
    up_step: int | None,
    up_percent: int | None,
    down_step: int | None,
    down_percent: int | None,
) -> None:
    def block(step: int | None, percent: int | None) -> dict[str, int]:
        return {k: v for k, v in (("max_step", step), ("max_percent", percent)) if v is not None}

    result = rate_limit(
        current=current, desired=desired,
        memory=memory(changes=tuple((ago(s), c) for s, c in changes)),
        behavior=behavior(scale_up=block(up_step, up_percent),
                          scale_down=block(down_step, down_percent)),
        now=NOW,
    )
    low, high = sorted((current, desired))
    assert low <= result.replicas <= high
    assert (result.reason is None) == (result.replicas == desired)


# --- cooldown -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "last_change_at", "current", "desired", "expected"),
    [
        pytest.param({"scale_up": {"cooldown": "1m"}}, ago(30), 3, 5,
                     (3, Reason.COOLDOWN), id="up-blocked"),
        pytest.param({"scale_up": {"cooldown": "1m"}}, ago(60), 3, 5, (5, None),
                     id="up-exactly-cooldown-passes"),
        pytest.param({"scale_up": {"cooldown": "1m"}}, ago(59.9), 3, 5,
                     (3, Reason.COOLDOWN), id="up-just-inside-blocked"),
        pytest.param({"scale_up": {"cooldown": "1m"}}, None, 3, 5, (5, None),
                     id="never-changed-passes"),
        pytest.param({"scale_up": {"cooldown": "1m"}}, ago(30), 5, 3, (3, None),
                     id="up-cooldown-does-not-block-down"),
        pytest.param({"scale_down": {"cooldown": "5m"}}, ago(60), 5, 3,
                     (5, Reason.COOLDOWN), id="down-blocked"),
        pytest.param({"scale_down": {"cooldown": "5m"}}, ago(60), 3, 5, (5, None),
                     id="down-cooldown-does-not-block-up"),
        pytest.param({"scale_down": {"cooldown": "5m"}}, ago(301), 5, 3, (3, None),
                     id="down-elapsed-passes"),
        pytest.param({}, NOW, 3, 5, (5, None), id="default-zero-cooldown"),
        pytest.param({"scale_up": {"cooldown": "1m"}}, ago(10), 3, 3, (3, None),
                     id="no-change-not-a-cooldown"),
    ],
)
def test_cooldown(
    rules: dict[str, Any],
    last_change_at: datetime | None,
    current: int,
    desired: int,
    expected: tuple[int, Reason | None],
) -> None:
    result = cooldown(
        current=current, desired=desired, last_change_at=last_change_at,
        behavior=behavior(**rules), now=NOW,
    )
    assert (result.replicas, result.reason) == expected


# --- min and max --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "min_replicas", "max_replicas", "expected"),
    [
        pytest.param(5, 1, 10, (5, None), id="inside"),
        pytest.param(1, 1, 10, (1, None), id="on-min"),
        pytest.param(10, 1, 10, (10, None), id="on-max"),
        pytest.param(0, 1, 10, (1, Reason.TOO_FEW_REPLICAS), id="below-min"),
        pytest.param(12, 1, 10, (10, Reason.TOO_MANY_REPLICAS), id="above-max"),
        pytest.param(0, 0, 10, (0, None), id="zero-allowed-with-min-zero"),
        pytest.param(7, 3, 3, (3, Reason.TOO_MANY_REPLICAS), id="min-equals-max"),
    ],
)
def test_clamp(
    desired: int, min_replicas: int, max_replicas: int, expected: tuple[int, Reason | None]
) -> None:
    result = clamp(desired=desired, min_replicas=min_replicas, max_replicas=max_replicas)
    assert (result.replicas, result.reason) == expected
