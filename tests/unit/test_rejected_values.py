"""A value that makes no sense as load (negative, NaN, an infinity) is a missing metric,
through a whole tick: the same reason, hold and memory as an empty answer, and a message
that says which value was rejected and why."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import pytest

from autoscaler.core.model import Reason, Series
from tests.unit.conftest import build_policy
from tests.unit.fakes import FakeMetrics, FakeSwarm, ListSink
from tests.unit.test_engine import ALL, NOW, engine_for, engine_of

EMPTY: list[Series] = []
QUEUE = 'sum by (service) (q{service=~"{{services}}"})'


def run(answers: list[dict[str, float | None]], **policy: Any) -> list[dict[str, Any]]:
    """The decisions for `web` (3 replicas) over one tick per entry of `answers` (metric ->
    value; None: no series), as dicts."""
    swarm = FakeSwarm()
    swarm.add("web", 3)
    tick = {"at": 0}

    def answer(query: str) -> list[Series]:
        value = answers[tick["at"]]["queue" if query.startswith("sum by (service) (q") else "rps"]
        return EMPTY if value is None else [Series({"service": "web"}, value)]

    sink = ListSink()
    engine = engine_of(metrics=FakeMetrics(answer), swarm=swarm, sink=sink, dry_run=False,
                       policies={"web.yaml": build_policy(**{**ONE_METRIC, **policy})})
    for at in range(len(answers)):
        tick["at"] = at
        engine.tick(NOW + timedelta(seconds=15 * at))
    return [asdict(d) | {"applied_at": d.applied_at is not None} for d in sink.decisions]


BAD = [
    pytest.param(-50.0, "rps: -50 is negative: treated as missing", id="negative"),
    pytest.param(-1e-9, "rps: -1e-09 is negative: treated as missing", id="barely-negative"),
    pytest.param(math.nan, "rps: NaN is not a number: treated as missing", id="nan"),
    pytest.param(math.inf, "rps: inf is not finite: treated as missing", id="infinity"),
    pytest.param(-math.inf, "rps: -inf is not finite: treated as missing", id="minus-infinity"),
]
ONE_METRIC = {"service": "web", "metrics": [{"name": "rps", "query": ALL, "target": 100}]}
TWO_METRICS = {"metrics": [{"name": "rps", "query": ALL, "target": 100},
                           {"name": "queue", "query": QUEUE, "target": 10}]}


@pytest.mark.parametrize(("bad", "note"), BAD)
@pytest.mark.parametrize(
    ("policy", "script"),
    [
        pytest.param({}, [{"rps": 300}, {"rps": "bad"}, {"rps": "bad"}, {"rps": 100}],
                     id="one-metric-holds"),
        pytest.param({"behavior": {"scale_down": {"stabilization": "0s"}}},
                     [{"rps": "bad"}, {"rps": 50}], id="first-tick-then-down"),
        pytest.param({"behavior": {"scale_up": {"stabilization": "1m"}}},
                     [{"rps": 1000}, {"rps": "bad"}, {"rps": 1000}],
                     id="a-hold-is-not-remembered"),
        pytest.param({**TWO_METRICS, "behavior": {"scale_down": {"stabilization": "0s"}}},
                     [{"rps": "bad", "queue": 10}], id="blocks-a-decrease"),
        pytest.param(TWO_METRICS, [{"rps": "bad", "queue": 70}], id="an-increase-goes-on"),
        pytest.param({"min_replicas": 5}, [{"rps": "bad"}], id="min-still-raises"),
        pytest.param({"strategy": "predictive"}, [{"rps": 300}, {"rps": "bad"}, {"rps": 300}],
                     id="predictive"),
    ],
)
def test_a_rejected_value_decides_exactly_as_a_missing_one(
    policy: dict[str, Any], script: list[dict[str, Any]], bad: float, note: str
) -> None:
    rejected = run([{m: bad if v == "bad" else v for m, v in tick.items()} for tick in script],
                   **policy)
    missing = run([{m: None if v == "bad" else v for m, v in tick.items()} for tick in script],
                  **policy)

    for was_bad, was_missing, tick in zip(rejected, missing, script, strict=True):
        if "bad" in tick.values():
            assert was_bad["metrics"]["rps"] is None
            assert note in was_bad["message"]
            assert was_bad["message"] == was_missing["message"].replace(
                "rps is missing (the answer has no series)", note)
        assert {**was_bad, "message": ""} == {**was_missing, "message": ""}


def test_minus_fifty_requests_hold_the_count() -> None:
    """The issue's case: -50 used to be load (recommended -1, raised to min, applied)."""
    (decision,) = run([{"rps": -50.0}])

    assert (decision["reason"], decision["recommended_replicas"],
            decision["desired_replicas"], decision["applied"]) == (
        Reason.METRICS_MISSING, 3, 3, False)
    assert decision["message"] == "rps: -50 is negative: treated as missing: hold at 3"
    assert decision["metrics"] == {"rps": None}


def test_a_rejected_value_is_one_service_s_alone() -> None:
    swarm = FakeSwarm()
    swarm.add("web", 3)
    swarm.add("api", 1)
    metrics = FakeMetrics(lambda _: [Series({"service": "web"}, -50.0),
                                     Series({"service": "api"}, 500.0)])
    engine, sink = engine_for(metrics, swarm, dry_run=False, web={}, api={})

    engine.tick(NOW)

    assert {d.service: (d.reason, d.desired_replicas) for d in sink.decisions} == {
        "web": (Reason.METRICS_MISSING, 3), "api": (Reason.DESIRED_WITHIN_RANGE, 5)}
    assert swarm.scaled == [("api", 5)]
