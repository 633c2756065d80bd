"""Issue 19's needless raises: a raise to more than 1.5 x what the largest load of the
following horizon needs at the target, and above the `target` run's own count."""

from __future__ import annotations

import pytest

from autoscaler.offline.scoring import needless_raises, needless_raises_per_day

LOAD = [100.0] * 6  # needs 1 replica of target 100 at every step


@pytest.mark.parametrize(
    ("billed", "load", "reference", "expected"),
    [
        pytest.param([1, 2, 2, 2, 2, 2], LOAD, None, [1], id="a-raise-to-2-where-1-does"),
        pytest.param([1, 1, 1, 1, 1, 1], LOAD, None, [], id="no-raise"),
        pytest.param([2, 2, 2, 2, 2, 2], LOAD, None, [], id="held-not-raised"),
        pytest.param([3, 4, 5, 4, 5, 6], [100, 100, 400, 400, 400, 400], None, [],
                     id="raises-the-following-load-needs-up-to-1.5x"),
        pytest.param([3, 4, 5, 7, 7, 7], [100, 400, 400, 400, 100, 100], None, [3],
                     id="raise-above-1.5x-what-the-horizon-needs"),
        pytest.param([1, 2, 3, 3, 3, 3], LOAD, [1, 2, 2, 2, 2, 2], [2],
                     id="at-the-target-runs-count-not-counted"),
        pytest.param([1, 2, 2, 2, 2, 2], [100, 100, 100, 100, 100, 150], None, [1],
                     id="the-horizon-ends-before-the-load-rises"),
        pytest.param([1, 2, 2, 2, 2, 2], [100, 100, 150, 100, 100, 100], None, [],
                     id="a-rise-within-the-horizon-needs-it"),
    ],
)
def test_needless_raises(billed: list[int], load: list[float], reference: list[int] | None,
                         expected: list[int]) -> None:
    assert needless_raises(billed, load, target=100, horizon=1, reference=reference) \
        == expected


def test_needless_raises_are_counted_a_simulated_day() -> None:
    billed = [1, 2] * 720  # a day of minutes, a needless raise every other one
    load = [100.0] * len(billed)

    assert needless_raises_per_day(billed, load, target=100, horizon=0,
                                   step_hours=1 / 60) == pytest.approx(720)
    assert needless_raises_per_day(billed + [1] * 1440, load * 2, target=100, horizon=0,
                                   step_hours=1 / 60) == pytest.approx(360)
    assert needless_raises_per_day([], [], target=100, horizon=0, step_hours=1 / 60) == 0
