"""Where a service's tasks are and whether the scheduler can place more: read from one task
listing and one node listing a tick. Pure: the listings' fields in, a summary out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

UNPLACEABLE_STATES = frozenset({"pending"})
"""A task the scheduler has not placed: with an error, it waits for lack of a node. A task
that is assigned, preparing or starting has a node and is not unplaceable."""


@dataclass(frozen=True)
class Placement:
    """A service's tasks as one listing saw them: how many run and on how many nodes, how
    many wait because no node can take them and the scheduler's reason, and whether more
    nodes could take its tasks than it runs on."""

    running: int
    nodes: int
    unplaceable: int = 0
    reason: str | None = None
    more_nodes_could_run_it: bool = False

    @property
    def on_one_node(self) -> bool:
        """Every replica on one node while others could take some: one node's loss takes
        the whole service down."""
        return self.running >= 2 and self.nodes == 1 and self.more_nodes_could_run_it


@dataclass(frozen=True)
class Task:
    service_id: str
    node_id: str | None
    state: str
    error: str | None


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    role: str
    labels: Mapping[str, str]
    engine_labels: Mapping[str, str]
    ready: bool
    active: bool


_CONSTRAINT = re.compile(r"\s*([\w.\-]+)\s*(==|!=)(.*)", re.DOTALL)
"""A constraint's key, operator and value, whose spaces around are stripped apart: a lazy
value before trailing spaces made the match quadratic in a run of spaces inside the value,
which Docker accepts (300,000 of them took 8 minutes, every listing)."""


def may_run_on(node: Node, constraints: Sequence[str]) -> bool | None:
    """Whether the placement constraints let a task run on the node; None when one of them
    is of a form this does not read (then the answer is unknown). As Swarm reads them: the
    value and the key's known part in any case (`node.hostname==VM` runs on `vm`), the
    name of a label as written."""
    for constraint in constraints:
        match = _CONSTRAINT.fullmatch(constraint)
        if match is None:
            return None
        key, operator, expected = match.groups()
        known = key.lower()
        value: str | None
        if known in ("node.id", "node.hostname", "node.role"):
            value = {"node.id": node.id, "node.hostname": node.hostname,
                     "node.role": node.role}[known]
        elif known.startswith("node.labels."):
            value = node.labels.get(key[len("node.labels."):])
        elif known.startswith("engine.labels."):
            value = node.engine_labels.get(key[len("engine.labels."):])
        else:
            return None
        equal = value is not None and value.casefold() == expected.strip().casefold()
        if equal != (operator == "=="):
            return False
    return True


def placements(tasks: Iterable[Task], nodes: Sequence[Node],
               constraints: Mapping[str, Sequence[str]]) -> dict[str, Placement]:
    """Per service ID (those with a task or in `constraints`), where its tasks are."""
    running: dict[str, list[str]] = {}
    waiting: dict[str, list[str]] = {}
    for task in tasks:
        if task.state == "running" and task.node_id:
            running.setdefault(task.service_id, []).append(task.node_id)
        elif task.state in UNPLACEABLE_STATES and task.error:
            waiting.setdefault(task.service_id, []).append(task.error)
    usable = [node for node in nodes if node.ready and node.active]
    # Which usable nodes may run a service, per set of constraints: most services share
    # theirs (most have none).
    able_by_constraints: dict[tuple[str, ...], list[bool | None]] = {}
    found = {}
    for service in set(running) | set(waiting) | set(constraints):
        on = set(running.get(service, []))
        key = tuple(constraints.get(service, ()))
        able = able_by_constraints.get(key)
        if able is None:
            able = able_by_constraints[key] = [may_run_on(node, key) for node in usable]
        errors = waiting.get(service, [])
        found[service] = Placement(
            running=len(running.get(service, [])), nodes=len(on), unplaceable=len(errors),
            reason=max(set(errors), key=errors.count) if errors else None,
            more_nodes_could_run_it=None not in able and sum(bool(a) for a in able) > len(on),
        )
    return found
