"""How a listed service's last update is read: a scale (the replica count, and the agent's
record label with it) or something more. Pure: the listing's JSON in, the state out."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from autoscaler.adapters.swarm import service_state
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
    assert (previous, current) == before, "the listing is read, never changed"


def test_a_global_service_has_no_scale() -> None:
    state = service_state(listed(spec(2), spec(Mode={"Global": {}})))

    assert (state.replicas, state.last_scaled_at) == (None, None)
