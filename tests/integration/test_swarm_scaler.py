"""SwarmScaler against a real Docker engine in Swarm mode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.adapters.swarm import DockerConnection, SwarmScaler
from autoscaler.core.ports import ScaleConflict, ScaleFailed
from autoscaler.core.record import RECORD_LABEL
from tests.integration.conftest import docker_cli, service_version, wait_for, wait_running


@pytest.mark.parametrize("made_by", ["service-create", "stack-deploy"])
def test_scaling_up_keeps_the_running_tasks(
    made_by: str, make_service: Callable[..., str], make_stack: Callable[..., str]
) -> None:
    name = make_service("keep", replicas=2) if made_by == "service-create" else make_stack(
        replicas=2
    )
    before = wait_running(name, 2)
    scaler = SwarmScaler(DockerConnection())

    scaler.scale(scaler.list_services()[name], 4, labels={RECORD_LABEL: "1765000000:2>4"})

    after = wait_running(name, 4)
    assert before <= after, f"tasks {before - after} were replaced by the scale-up"
    listed = scaler.list_services()[name]
    assert listed.replicas == 4
    assert listed.labels[RECORD_LABEL] == "1765000000:2>4"


def test_listing_reads_replicas_mode_and_the_last_scale(make_service: Callable[..., str]) -> None:
    replicated = make_service("rep", replicas=1)
    global_mode = make_service("glob", mode="global")
    scaler = SwarmScaler(DockerConnection())
    listed = scaler.list_services()
    assert listed[replicated].replicas == 1
    assert listed[replicated].last_scaled_at is None
    assert listed[global_mode].replicas is None

    scaler.scale(listed[replicated], 2, labels={RECORD_LABEL: "1765000000:1>2"})

    scaled = scaler.list_services()[replicated]
    assert scaled.replicas == 2
    assert scaled.last_scaled_at is not None, "the record label in the same update is no change"
    assert abs(datetime.now(UTC) - scaled.last_scaled_at) < timedelta(seconds=30)


def test_each_listing_reads_what_changed_since_the_last(
        make_service: Callable[..., str]) -> None:
    name = make_service("relist", replicas=1)
    scaler = SwarmScaler(DockerConnection())
    first = scaler.list_services()[name]
    assert scaler.list_services()[name] == first

    docker_cli("service", "update", "--detach", "--label-add", "team=payments", name)
    changed = scaler.list_services()[name]
    docker_cli("service", "scale", "--detach", f"{name}=2")
    scaled = scaler.list_services()[name]

    assert changed.version > first.version
    assert (changed.labels.get("team"), changed.replicas) == ("payments", 1)
    assert (scaled.labels.get("team"), scaled.replicas) == ("payments", 2)
    assert scaled.version > changed.version
    assert scaled.last_scaled_at is not None and changed.last_scaled_at is None


def test_an_update_of_more_than_replicas_is_not_a_scale(make_service: Callable[..., str]) -> None:
    name = make_service("env", replicas=1)
    docker_cli("service", "update", "--detach", "--replicas", "2", "--env-add", "X=1", name)

    assert SwarmScaler(DockerConnection()).list_services()[name].last_scaled_at is None


def test_a_stale_version_is_a_conflict_and_changes_nothing(
    make_service: Callable[..., str],
) -> None:
    name = make_service("stale", replicas=1)
    scaler = SwarmScaler(DockerConnection())
    stale = scaler.list_services()[name]
    docker_cli("service", "update", "--detach", "--label-add", "touched=1", name)
    version = service_version(name)

    with pytest.raises(ScaleConflict, match="out of sequence"):
        scaler.scale(stale, 3, labels={})

    assert service_version(name) == version
    assert scaler.list_services()[name].replicas == 1


def test_a_service_gone_since_the_listing_fails_to_scale(make_service: Callable[..., str]) -> None:
    name = make_service("gone", replicas=1)
    scaler = SwarmScaler(DockerConnection())
    state = scaler.list_services()[name]
    docker_cli("service", "rm", name)

    with pytest.raises(ScaleFailed, match="gone"):
        scaler.scale(state, 2, labels={})


def test_the_listing_says_where_tasks_run_and_which_wait_for_a_node(
    make_service: Callable[..., str],
) -> None:
    placed = make_service("placed", replicas=2)
    waiting = make_service("waiting", replicas=0, extra=("--reserve-memory", "100g"))
    docker_cli("service", "update", "--detach", "--replicas", "1", waiting)
    wait_running(placed, 2)
    scaler = SwarmScaler(DockerConnection())

    def unplaceable() -> bool:
        placement = scaler.list_services()[waiting].placement
        return placement is not None and placement.unplaceable == 1

    wait_for("the scheduler to give up on the task", unplaceable, 30)
    listed = scaler.list_services()
    assert listed[placed].placement is not None
    assert (listed[placed].placement.running, listed[placed].placement.nodes) == (2, 1)
    assert not listed[placed].placement.on_one_node, "one node is all this Swarm has"
    reason = listed[waiting].placement.reason  # type: ignore[union-attr]
    assert reason is not None and "no suitable node" in reason
