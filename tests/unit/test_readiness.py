"""/readyz and `autoscaler_dependency_up` from the last tick: what it could not use."""

from __future__ import annotations

import pytest

from autoscaler.engine import TickReport
from autoscaler.runtime.agent import readiness

DOWN = {"prometheus": "connection refused", "docker": None}
UP = {"prometheus": None, "docker": None}


@pytest.mark.parametrize(
    ("report", "before", "expected"),
    [
        pytest.param(TickReport(queries=2), DOWN, UP, id="queries-answered"),
        pytest.param(TickReport(queries=2, query_errors={"a": "timeout", "b": "timeout"}),
                     UP, {"prometheus": "timeout", "docker": None}, id="every-query-failed"),
        pytest.param(TickReport(queries=2, query_errors={"a": "timeout"}), DOWN, UP,
                     id="one-query-answered"),
        pytest.param(TickReport(listing_error="docker gone"), DOWN,
                     {"prometheus": "connection refused", "docker": "docker gone"},
                     id="listing-failed-prometheus-not-asked-stays-down"),
        pytest.param(TickReport(listing_error="docker gone"),
                     {"prometheus": "no tick yet", "docker": "no tick yet"},
                     {"prometheus": "no tick yet", "docker": "docker gone"},
                     id="first-tick-listing-failed-prometheus-unknown"),
        pytest.param(TickReport(queries=0), DOWN, UP, id="nothing-to-ask"),
    ],
)
def test_readiness_says_what_the_tick_could_not_use(
    report: TickReport, before: dict[str, str | None], expected: dict[str, str | None],
) -> None:
    assert readiness(report, before) == expected
