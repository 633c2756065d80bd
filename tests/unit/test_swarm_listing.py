"""How a listed service's last update is read: a scale (the replica count, and the agent's
record label with it) or something more. Pure: the listing's JSON in, the state out."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.adapters.swarm import SwarmScaler, service_state
from autoscaler.adapters.swarm_lease import SwarmLease, parse_lease
from autoscaler.core.ports import SourceUnavailable
from autoscaler.core.record import RECORD_LABEL

UPDATED_AT = "2026-12-06T10:00:00.123456789Z"
WHEN = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)


def spec(replicas: int | None = 3, **changes: Any) -> dict[str, Any]:
    replicated = {} if replicas is None else {"Replicas": replicas}
    made: dict[str, Any] = {
        "Name": "web",
        "Labels": {"autoscaler.enable": "true", RECORD_LABEL: "1765000000:2>3"},
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox:1", "Args": ["sleep", "1d"]}},
        "Mode": {"Replicated": replicated},
    }
    made.update(changes)
    return made


def listed(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    raw = {"ID": "abc", "Version": {"Index": 12}, "UpdatedAt": UPDATED_AT, "Spec": current}
    if previous is not None:
        raw["PreviousSpec"] = previous
    return raw


def without_record(made: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(made)
    del changed["Labels"][RECORD_LABEL]
    return changed


@pytest.mark.parametrize(("previous", "current", "scaled_at", "changed_at"), [
    pytest.param(None, spec(), None, None, id="never updated"),
    pytest.param(spec(2), spec(3), WHEN, WHEN, id="replicas and the record"),
    pytest.param(without_record(spec(2)), spec(3), WHEN, WHEN, id="the record added"),
    pytest.param(spec(2, Labels=None), spec(3, Labels={}), WHEN, WHEN,
                 id="no labels either way"),
    pytest.param(spec(None), spec(3), WHEN, WHEN, id="replicas left to their default of 1"),
    pytest.param(spec(3), spec(3), None, None, id="same count"),
    pytest.param(spec(2), spec(3, Labels={"autoscaler.enable": "false"}), None, WHEN,
                 id="another label changed too"),
    pytest.param(spec(2, TaskTemplate={"ContainerSpec": {"Image": "busybox:2"}}), spec(3),
                 None, WHEN, id="the image changed too"),
    pytest.param(spec(2, EndpointSpec={"Mode": "dnsrr"}), spec(3), None, WHEN,
                 id="a key only the previous spec has"),
])
def test_a_scale_is_an_update_of_the_count_and_the_record_alone(
        previous: dict[str, Any] | None, current: dict[str, Any],
        scaled_at: datetime | None, changed_at: datetime | None) -> None:
    before = copy.deepcopy((previous, current))

    state = service_state(listed(previous, current))

    assert (state.last_scaled_at, state.replicas_changed_at) == (scaled_at, changed_at)
    assert state.updated_at == WHEN, "the last update's time, whatever it changed"
    assert (previous, current) == before, "the listing is read, never changed"


def test_a_global_service_has_no_scale() -> None:
    state = service_state(listed(spec(2), spec(Mode={"Global": {}})))

    assert (state.replicas, state.last_scaled_at) == (None, None)


@pytest.mark.parametrize(("value", "expected"), [
    ("agent/1 2026-12-06T10:00:00+00:00",
     ("agent/1", datetime(2026, 12, 6, 10, tzinfo=UTC))),
    pytest.param("agent/1 2026-12-06T10:00:00", ("agent/1", datetime(2026, 12, 6, 10, tzinfo=UTC)),
                 id="no-zone-is-utc"),
    pytest.param("agent/1 soon", (None, None), id="no-time"),
    pytest.param(["agent/1"], (None, None), id="not-text"),
    pytest.param("", (None, None), id="empty"),
])
def test_a_lease_label_is_read_or_holds_nothing(value: object, expected: tuple[object, object]
                                                ) -> None:
    """Anyone who can label the manager node writes this label: an expiry without a zone
    was compared with an aware time and failed every tick."""
    assert parse_lease(value) == expected


class _Answer:
    def __init__(self, data: object) -> None:
        self.content, self.ok, self.status_code = json.dumps(data).encode(), True, 200


class _Engine:
    """docker-py's APIClient as far as the listing uses it, answering `services`, `tasks`
    and `nodes` as given: the hostile answers a real engine does not send."""

    base_url, api_version, timeout = "http://engine", "1.44", 5

    def __init__(self, services: list[Any], tasks: list[Any], nodes: list[Any]) -> None:
        self.answers = {"/services": services, "/tasks": tasks}
        self.listed_nodes = nodes

    def get(self, url: str, **_: Any) -> _Answer:
        return _Answer(self.answers["/" + url.rsplit("/", 1)[1]])

    def nodes(self, **_: Any) -> list[Any]:
        return self.listed_nodes


class _Connection:
    def __init__(self, api: _Engine) -> None:
        self.api = api

    def forget(self) -> None:
        pass

    def describe(self, error: BaseException) -> str:
        return str(error)


def named(name: str, **changes: Any) -> dict[str, Any]:
    return {"ID": f"id-{name}", "Version": {"Index": 1}, "Spec": spec(Name=name, **changes)}


NODE = {"ID": "n1", "Spec": {"Role": "manager", "Availability": "active", "Labels": {}},
        "Status": {"State": "ready"}, "Description": {"Hostname": "h"}}


@pytest.mark.parametrize(("services", "tasks", "nodes", "listed_names"), [
    pytest.param([named("odd", Mode="replicated")], [], [NODE], ["good"], id="mode-text"),
    pytest.param([named("odd", Labels=["a=b"])], [], [NODE], ["good"], id="labels-a-list"),
    pytest.param([named("odd", TaskTemplate={"Placement": ["x"]})], [], [NODE], ["good"],
                 id="placement-a-list"),
    pytest.param([{"ID": "id-odd", "Spec": spec(Name="odd")}], [], [NODE], ["good"],
                 id="no-version"),
    pytest.param([{"ID": 7, "Version": {"Index": 1}, "Spec": spec(Name="odd")}], [], [NODE],
                 ["good"], id="id-a-number"),
    pytest.param([named("odd", Mode={"Replicated": {"Replicas": "3"}})], [], [NODE],
                 ["good", "odd"], id="replicas-text"),
    pytest.param([], [{"ServiceID": "id-good", "Status": "running"}], [NODE], ["good"],
                 id="task-status-text"),
    pytest.param([], [{"NodeID": "n1", "Status": {"State": "running"}}], [NODE], ["good"],
                 id="task-without-service"),
    pytest.param([], [], [NODE, {"Spec": {}}], ["good"], id="node-without-id"),
    pytest.param([], [], [NODE, {**NODE, "ID": "n2", "Spec": {"Labels": ["x"]}}], ["good"],
                 id="node-labels-a-list"),
    pytest.param([None], [None], [NODE], ["good"], id="null-entries"),
    pytest.param([{"ID": "id-odd", "Version": {"Index": "7"}, "Spec": spec(Name="odd")}], [],
                 [NODE], ["good"], id="version-text"),
])
def test_one_malformed_service_task_or_node_leaves_the_others_listed(
        services: list[Any], tasks: list[Any], nodes: list[Any], listed_names: list[str]
) -> None:
    scaler = SwarmScaler(_Connection(_Engine([named("good"), *services], tasks, nodes)))

    found = scaler.list_services()  # type: ignore[arg-type]

    assert sorted(found) == listed_names
    assert found["good"].replicas == 3
    assert "odd" not in found or found["odd"].replicas is None


def test_an_update_time_without_a_zone_is_read_as_utc() -> None:
    raw = listed(spec(replicas=2), spec(replicas=3))
    raw["UpdatedAt"] = "2026-12-06T10:00:00"

    assert service_state(raw).last_scaled_at == datetime(2026, 12, 6, 10, tzinfo=UTC)


def test_a_service_whose_spec_cannot_be_read_is_said_once_a_version() -> None:
    engine = _Engine([named("good"), named("odd", Mode="replicated")], [], [NODE])
    scaler = SwarmScaler(_Connection(engine))  # type: ignore[arg-type]

    with structlog.testing.capture_logs() as logged:
        scaler.list_services()
        scaler.list_services()
        engine.answers["/services"][1]["Version"]["Index"] = 2
        scaler.list_services()

    said = [(e["event"], e["service_id"], e["version"]) for e in logged]
    assert said == [("swarm_service_unreadable", "id-odd", 1),
                    ("swarm_service_unreadable", "id-odd", 2)]


class _FilteringEngine(_Engine):
    """An engine that answers the task listing's `desired-state` filter as Docker does."""

    def get(self, url: str, **params: Any) -> _Answer:
        answer = super().get(url)
        if url.endswith("/tasks"):
            wanted = json.loads(params["params"]["filters"])["desired-state"]
            answer.content = json.dumps([t for t in self.answers["/tasks"]
                                         if t["DesiredState"] in wanted]).encode()
        return answer


NO_NODE = "no suitable node (insufficient resources on 1 node)"


@pytest.mark.parametrize(("desired", "state", "error", "expected"), [
    pytest.param("running", "pending", NO_NODE, (1, 0), id="a-new-task-waits-for-a-node"),
    pytest.param("ready", "pending", NO_NODE, (1, 0),
                 id="a-restarted-task-waits-for-a-node-within-its-restart-delay"),
    pytest.param("ready", "ready", None, (0, 0), id="a-restarted-task-placed-waits-to-start"),
    pytest.param("shutdown", "running", None, (0, 0), id="a-task-being-stopped"),
    pytest.param("running", "running", None, (0, 1), id="a-running-task"),
])
def test_the_tasks_listed_are_those_meant_to_run_or_restarting(
        desired: str, state: str, error: str | None, expected: tuple[int, int]) -> None:
    """Docker marks a task that replaces a restarted one `ready` until its restart delay
    has passed (5 s by default; as long as the service's restart policy says)."""
    task = {"ServiceID": "id-good", "NodeID": None if state == "pending" else "n1",
            "DesiredState": desired, "Status": {"State": state, "Err": error}}
    scaler = SwarmScaler(_Connection(_FilteringEngine([named("good")], [task], [NODE])))

    placement = scaler.list_services()["good"].placement  # type: ignore[arg-type]

    assert placement is not None
    assert (placement.unplaceable, placement.running) == expected



class _UndecodableEngine(_Engine):
    """An engine whose services listing is `services` as sent, and whose nodes listing
    fails to decode as docker-py's does on such an answer (`nodes`: what it raises)."""

    def __init__(self, services: bytes, nodes: Exception | None) -> None:
        super().__init__([], [], [NODE])
        self.services, self.nodes_error = services, nodes

    def get(self, url: str, **_: Any) -> _Answer:
        answer = super().get(url)
        if url.endswith("/services"):
            answer.content = self.services
        return answer

    def nodes(self, **_: Any) -> list[Any]:
        if self.nodes_error is not None:
            raise self.nodes_error
        return super().nodes()


NODES_UNDECODABLE = [
    pytest.param(RecursionError("maximum recursion depth exceeded while decoding a JSON array "
                                "from a unicode string"), id="nodes-nested-too-deep"),
    pytest.param(ValueError("Exceeds the limit (4300 digits) for integer string conversion: "
                            "value has 5000 digits"), id="nodes-with-an-integer-of-5000-digits"),
]


@pytest.mark.parametrize(("services", "nodes"), [
    pytest.param(b'[{"Spec": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]", None,
                 id="services-nested-too-deep"),
    *(pytest.param(b"[]", *p.values, id=p.id) for p in NODES_UNDECODABLE),
])
def test_a_listing_that_cannot_be_decoded_is_unavailable(services: bytes,
                                                         nodes: Exception | None) -> None:
    """Not an exception that fails every tick, and every service with it."""
    scaler = SwarmScaler(_Connection(_UndecodableEngine(services, nodes)))  # type: ignore[arg-type]

    with pytest.raises(SourceUnavailable, match="cannot list Swarm services"):
        scaler.list_services()


@pytest.mark.parametrize("nodes", NODES_UNDECODABLE)
def test_a_manager_listing_that_cannot_be_decoded_is_an_unreadable_lease(
        nodes: Exception) -> None:
    lease = SwarmLease(_Connection(_UndecodableEngine(b"[]", nodes)),  # type: ignore[arg-type]
                       ttl=timedelta(seconds=45), holder="me")

    with pytest.raises(SourceUnavailable, match="cannot read the lease"):
        lease.acquire(datetime.now(UTC))


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.sampled_from(["running", "pending", "ready", "active", "web"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=6) | st.sampled_from(["Replicated", "Replicas", "Index", "State"]),
        children, max_size=3),
    max_leaves=10,
)
"""Any value JSON carries (integers within Go's), as the engine's answer might hold at
any place."""
SERVICE_PATHS = [("ID",), ("Version",), ("Version", "Index"), ("Spec",), ("Spec", "Name"),
                 ("Spec", "Labels"), ("Spec", "Mode"), ("Spec", "Mode", "Replicated"),
                 ("Spec", "Mode", "Replicated", "Replicas"), ("Spec", "TaskTemplate"),
                 ("Spec", "TaskTemplate", "Placement"),
                 ("Spec", "TaskTemplate", "Placement", "Constraints"), ("PreviousSpec",),
                 ("PreviousSpec", "Mode"), ("UpdatedAt",)]
TASK = {"ServiceID": "id-good", "NodeID": "n1", "Status": {"State": "running"}}
TASK_PATHS = [("ServiceID",), ("NodeID",), ("Status",), ("Status", "State"), ("Status", "Err")]
NODE_PATHS = [("ID",), ("Spec",), ("Spec", "Role"), ("Spec", "Labels"), ("Spec", "Availability"),
              ("Status",), ("Status", "State"), ("Description",), ("Description", "Hostname"),
              ("Description", "Engine")]


def changed(listed: dict[str, Any], changes: list[tuple[tuple[str, ...], Any]]
            ) -> dict[str, Any]:
    """A copy of `listed` with each value set at its path, where the path still leads
    through mappings."""
    made = copy.deepcopy(listed)
    for path, value in changes:
        container = made
        for key in path[:-1]:
            container = container.get(key) if isinstance(container, dict) else None
        if isinstance(container, dict):
            container[path[-1]] = value
    return made


def changes(paths: list[tuple[str, ...]]) -> st.SearchStrategy[list[tuple[tuple[str, ...], Any]]]:
    return st.lists(st.tuples(st.sampled_from(paths), VALUES), max_size=3)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(changes(SERVICE_PATHS), changes(TASK_PATHS), changes(NODE_PATHS))
@example([(("Spec", "Name"), [])], [], [])
@example([(("Spec", "Name"), None)], [], [])
def test_a_service_task_or_node_of_any_shape_leaves_the_others_listed(
        service: list[tuple[tuple[str, ...], Any]], task: list[tuple[tuple[str, ...], Any]],
        node: list[tuple[tuple[str, ...], Any]]) -> None:
    odd = {**named("odd"), "PreviousSpec": spec(2, Name="odd"), "UpdatedAt": UPDATED_AT}
    engine = _Engine([named("good"), changed(odd, service)], [TASK, changed(TASK, task)],
                     [NODE, changed(NODE, node)])

    with structlog.testing.capture_logs():
        found = SwarmScaler(_Connection(engine)).list_services()  # type: ignore[arg-type]

    assert found["good"].replicas == 3
    assert all(isinstance(name, str) and state.name == name for name, state in found.items())


class _Manager(_Engine):
    """A manager listed as given, whose writes are recorded and accepted."""

    def __init__(self, node: Any) -> None:
        super().__init__([], [], [node])
        self.writes: list[tuple[str, int, dict[str, Any]]] = []

    def update_node(self, node_id: str, version: int, spec: dict[str, Any]) -> None:
        self.writes.append((node_id, version, spec))


LEASE_NODE = {"ID": "m1", "Version": {"Index": 5},
              "Spec": {"Role": "manager", "Labels": {"autoscaler.lease": "other 2000-01-01"}}}
LEASE_PATHS = [("ID",), ("Version",), ("Version", "Index"), ("Spec",), ("Spec", "Labels"),
               ("Spec", "Labels", "autoscaler.lease"), ("Spec", "Labels", "autoscaler.pause")]


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(changes(LEASE_PATHS))
@example([(("Version",), {})])
@example([(("Version", "Index"), "5")])
def test_a_manager_node_of_any_shape_is_a_lease_or_unavailable(
        node: list[tuple[tuple[str, ...], Any]]) -> None:
    engine = _Manager(changed(LEASE_NODE, node))
    lease = SwarmLease(_Connection(engine), ttl=timedelta(seconds=45),  # type: ignore[arg-type]
                       holder="me")

    try:
        lease.acquire(datetime.now(UTC))
    except SourceUnavailable as error:
        assert "cannot read the lease" in str(error)
    assert all(isinstance(version, int) for _, version, _ in engine.writes)
