"""The lease on a real Swarm: one holder at a time, handed over on release or expiry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import docker
import pytest

from autoscaler.adapters.swarm import DockerConnection
from autoscaler.adapters.swarm_lease import UNCHANGED_FOR, SwarmLease, new_holder_id
from tests.integration.conftest import running_tasks

TTL = timedelta(seconds=30)


@pytest.fixture
def leases(docker_client: docker.DockerClient) -> Iterator[tuple[SwarmLease, SwarmLease]]:
    label = f"astest.lease.{uuid.uuid4().hex[:8]}"
    first = SwarmLease(DockerConnection(), ttl=TTL, holder=new_holder_id(), label=label)
    second = SwarmLease(DockerConnection(), ttl=TTL, holder=new_holder_id(), label=label)
    yield first, second
    first.release()
    second.release()


def lease_label(client: docker.DockerClient, label: str) -> str | None:
    managers = client.api.nodes(filters={"role": "manager"})
    node = min(managers, key=lambda n: n["ID"])
    return node["Spec"].get("Labels", {}).get(label)


def test_one_holder_at_a_time_and_a_release_hands_over(
    leases: tuple[SwarmLease, SwarmLease], docker_client: docker.DockerClient
) -> None:
    first, second = leases
    now = datetime.now(UTC)

    assert first.acquire(now)
    assert not second.acquire(now)
    assert first.acquire(now + timedelta(seconds=1))
    assert (lease_label(docker_client, first.label) or "").startswith(first.holder + " ")

    first.release()

    assert lease_label(docker_client, first.label) is None
    assert second.acquire(now + timedelta(seconds=2))
    assert not first.acquire(now + timedelta(seconds=2))


def test_an_expired_lease_can_be_taken(leases: tuple[SwarmLease, SwarmLease]) -> None:
    first, second = leases
    now = datetime.now(UTC)
    assert first.acquire(now)

    assert second.acquire(now + TTL + timedelta(seconds=1))
    assert not first.acquire(now + TTL + timedelta(seconds=2))


def test_a_lease_held_far_beyond_any_time_to_live_is_taken(
        leases: tuple[SwarmLease, SwarmLease]) -> None:
    """An expiry a month ahead (a hand edit, a clock far off and its agent gone) would stop
    every agent until then: it is taken once it has stood unchanged for UNCHANGED_FOR times
    to live. A day ahead is honoured."""
    first, second = leases
    now = datetime.now(UTC)
    assert first.acquire(now + timedelta(days=1) - TTL)

    assert not second.acquire(now)
    assert first.acquire(now + timedelta(days=30))

    assert not second.acquire(now)
    assert not second.acquire(now + UNCHANGED_FOR * TTL - timedelta(seconds=1))
    assert second.acquire(now + UNCHANGED_FOR * TTL)
    assert not first.acquire(now + UNCHANGED_FOR * TTL + timedelta(seconds=1))


@pytest.mark.parametrize(("first_ttl", "first_ahead"), [
    pytest.param(TTL, timedelta(days=2), id="a-clock-two-days-ahead"),
    pytest.param(timedelta(hours=30), timedelta(0), id="an-interval-of-ten-hours"),
])
def test_a_live_holder_far_ahead_keeps_its_lease(
        leases: tuple[SwarmLease, SwarmLease], first_ttl: timedelta,
        first_ahead: timedelta) -> None:
    """A holder that writes beyond BELIEVABLE_AHEAD, its clock days ahead or its interval
    long, and renews as it ticks: taken over, it would take the lease back at its next
    tick, or have acted in this one, and two agents would act."""
    first, second = leases
    first = SwarmLease(DockerConnection(), ttl=first_ttl, holder=first.holder,
                       label=first.label)
    now = datetime.now(UTC)
    for tick in range(4):
        at = now + tick * first_ttl / 3
        assert first.acquire(at + first_ahead)
        assert not second.acquire(at)
    first.release()


def test_the_lease_restarts_no_task(
    leases: tuple[SwarmLease, SwarmLease], make_service: Callable[..., str]
) -> None:
    name = make_service("lease", replicas=2)
    before = running_tasks(name)
    first, _ = leases

    assert first.acquire(datetime.now(UTC))
    first.release()

    assert running_tasks(name) == before
