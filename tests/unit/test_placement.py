"""Where a service's tasks are, from one task and one node listing; a raise is held while
tasks wait for a node; a scale-down never is."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from autoscaler.core.decide import decide
from autoscaler.core.memory import ServiceMemory
from autoscaler.core.model import Reason
from autoscaler.core.placement import Node, Placement, Task, may_run_on, placements
from tests.unit.conftest import build_policy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def node(name: str, *, role: str = "worker", ready: bool = True, active: bool = True,
         **labels: str) -> Node:
    return Node(id=f"id-{name}", hostname=name, role=role, labels=labels, engine_labels={},
                ready=ready, active=active)


NODES = [node("m1", role="manager"), node("w1", zone="a"), node("w2", zone="b"),
         node("w3", active=False), node("w4", ready=False)]
NO_NODE = "no suitable node (insufficient resources on 3 nodes)"


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [
        pytest.param([], [True, True, True], id="none"),
        pytest.param(["node.role==manager"], [True, False, False], id="role"),
        pytest.param(["node.role != manager"], [False, True, True], id="not-role-spaces"),
        pytest.param(["node.labels.zone==a"], [False, True, False], id="label"),
        pytest.param(["node.hostname!=w2", "node.role==worker"], [False, True, False],
                     id="two"),
        pytest.param(["node.platform.os==linux"], [None, None, None], id="unread-form"),
        pytest.param([" node.labels.zone ==\ta \n"], [False, True, False],
                     id="spaces-around-the-value"),
        pytest.param(["node.labels.zone==a\nb"], [False, False, False],
                     id="a-line-break-inside-the-value"),
        pytest.param(["node.hostname==W1"], [False, True, False], id="value-in-any-case"),
        pytest.param(["Node.Labels.zone!=A"], [True, False, True], id="key-in-any-case"),
        pytest.param(["node.labels.Zone==a"], [False, False, False],
                     id="a-label-name-as-written"),
    ],
)
def test_placement_constraints(constraints: list[str], expected: list[bool | None]) -> None:
    assert [may_run_on(n, constraints) for n in NODES[:3]] == expected


def test_a_run_of_spaces_inside_a_constraint_is_read_in_linear_time() -> None:
    """Docker accepts spaces inside a constraint's value: 50,000 of them took 10 s a listing
    (and 300,000 about 8 min) to read, for the whole fleet, every tick."""
    started = time.perf_counter()

    assert may_run_on(NODES[1], ["node.labels.zone==a" + " " * 50_000 + "b"]) is False
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize(
    ("tasks", "constraints", "expected"),
    [
        pytest.param([Task("s", "id-w1", "running", None), Task("s", "id-w2", "running", None)],
                     [], Placement(2, 2, more_nodes_could_run_it=True), id="spread"),
        pytest.param([Task("s", "id-w1", "running", None), Task("s", "id-w1", "running", None)],
                     [], Placement(2, 1, more_nodes_could_run_it=True), id="on-one-node"),
        pytest.param([Task("s", "id-w1", "running", None), Task("s", "id-w1", "running", None)],
                     ["node.labels.zone==a"], Placement(2, 1), id="one-node-is-all-it-may-use"),
        pytest.param([Task("s", "id-w1", "running", None), Task("s", None, "pending", NO_NODE),
                      Task("s", None, "pending", NO_NODE)], [],
                     Placement(1, 1, 2, NO_NODE, True), id="unplaceable"),
        pytest.param([Task("s", "id-w1", "starting", None), Task("s", None, "pending", None)],
                     [], Placement(0, 0, more_nodes_could_run_it=True),
                     id="starting-and-pending-without-error-are-not-unplaceable"),
    ],
)
def test_placements(tasks: list[Task], constraints: list[str], expected: Placement) -> None:
    assert placements(tasks, NODES, {"s": constraints})["s"] == expected


@pytest.mark.parametrize(
    ("load", "placement", "expected"),
    [
        pytest.param(900, Placement(3, 1, 1, NO_NODE), (3, Reason.UNSCHEDULABLE),
                     id="raise-held"),
        pytest.param(900, Placement(3, 1), (7, Reason.SCALE_UP_LIMIT), id="nothing-waits"),
        pytest.param(100, Placement(3, 1, 1, NO_NODE), (1, Reason.DESIRED_WITHIN_RANGE),
                     id="down-never-held"),
        pytest.param(900, None, (7, Reason.SCALE_UP_LIMIT), id="placement-unknown"),
    ],
)
def test_a_raise_waits_for_the_tasks_that_wait_for_a_node(
    load: float, placement: Placement | None, expected: tuple[int, Reason],
) -> None:
    policy = build_policy(behavior={"scale_down": {"stabilization": "0s"}})
    outcome = decide(policy, current=3, metrics={"rps": load},
                     memory=ServiceMemory.first_seen(replicas=3, now=NOW, seeded=False),
                     last_change_at=None, now=NOW, placement=placement)
    assert (outcome.desired, outcome.reason) == expected
    if expected[1] == Reason.UNSCHEDULABLE:
        assert "1 task(s) wait for a node (no suitable node" in outcome.message
