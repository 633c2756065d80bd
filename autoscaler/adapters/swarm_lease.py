"""Leadership through a lease kept in the Swarm itself, so that at most one agent acts.

The lease is the label `autoscaler.lease` on the Swarm's first manager node (lowest node
ID): `<holder> <expiry>`. An agent takes it when it is absent, expired or its own, writing
the node spec with the version it read, so two agents racing for it cannot both win (the
loser's write is refused as out of sequence). The holder renews it as it ticks and removes
it when it stops; an agent that dies loses it when it expires. An expiry further ahead than
any agent writes is taken over once it has stood unchanged a while (`BELIEVABLE_AHEAD`,
`UNCHANGED_FOR`). Node labels change no task.
"""

from __future__ import annotations

import copy
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from docker.errors import APIError, DockerException

from autoscaler.adapters.swarm import UNREADABLE_JSON, DockerConnection, is_conflict
from autoscaler.core.operator import is_paused
from autoscaler.core.ports import SourceUnavailable

LEASE_LABEL = "autoscaler.lease"
BELIEVABLE_AHEAD = timedelta(days=1)
"""A lease expiring further ahead than this (or ten of this agent's time to live, if more)
is no agent's: agents renew theirs a few ticks ahead, so it is a hand edit or a clock far
off, and honouring it would stop every agent until that date."""
UNCHANGED_FOR = 10
"""How many of its times to live an agent sees a lease beyond `BELIEVABLE_AHEAD` unchanged
before it takes it over: a live holder rewrites its lease every interval, even with a clock
days ahead of this agent's (which would then take it back at once, and both would act), or
at an interval far longer than this agent's; a hand edit, or a holder gone, leaves it
as it is."""


def new_holder_id() -> str:
    """Unique per process: the host name is the container's ID inside a Swarm task."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class SwarmLease:
    def __init__(self, connection: DockerConnection, *, ttl: timedelta, holder: str,
                 label: str = LEASE_LABEL) -> None:
        self._connection = connection
        self.label = label
        self._ttl = ttl
        self.holder = holder
        self._expiry: datetime | None = None
        self._paused = False
        self._far_ahead: tuple[str, datetime] | None = None
        """Another's lease beyond `BELIEVABLE_AHEAD`, and when it was first seen as it is."""

    def paused_all(self) -> bool:
        return self._paused

    def acquire(self, now: datetime) -> bool:
        node = self._lease_node()
        labels = _labels(node)
        self._paused = is_paused(labels)
        value = labels.get(self.label)
        holder, expiry = parse_lease(value)
        if holder is not None and holder != self.holder and expiry is not None \
                and now < expiry and not self._abandoned(str(value), expiry, now):
            self._expiry = None
            return False
        if holder == self.holder and expiry is not None and expiry - now > self._ttl * 2 / 3:
            return True
        new_expiry = now + self._ttl
        if not self._write(node, f"{self.holder} {new_expiry.isoformat()}"):
            self._expiry = None
            return False
        self._expiry = new_expiry
        return True

    def _abandoned(self, value: str, expiry: datetime, now: datetime) -> bool:
        """Whether another's lease, `value`, is no agent's: it expires further ahead than any
        agent writes, and has stood as it is for `UNCHANGED_FOR` times to live."""
        if expiry <= now + max(BELIEVABLE_AHEAD, 10 * self._ttl):
            self._far_ahead = None
            return False
        if self._far_ahead is None or self._far_ahead[0] != value:
            self._far_ahead = (value, now)
        return now - self._far_ahead[1] >= UNCHANGED_FOR * self._ttl

    def release(self) -> None:
        if self._expiry is None:
            return
        try:
            node = self._lease_node()
            holder, _ = parse_lease(_labels(node).get(self.label))
            if holder == self.holder:
                self._write(node, None)
        except SourceUnavailable:
            pass
        self._expiry = None

    def _lease_node(self) -> dict[str, Any]:
        try:
            managers = self._connection.api.nodes(filters={"role": "manager"})
        except (DockerException, requests.RequestException, *UNREADABLE_JSON) as error:
            self._connection.forget()
            raise SourceUnavailable(
                f"cannot read the lease: {self._connection.describe(error)}") from error
        listed = [node for node in managers if isinstance(node, dict)
                  and isinstance(node.get("ID"), str) and isinstance(node.get("Spec"), dict)
                  and _version(node) is not None]
        if not listed:
            raise SourceUnavailable("cannot read the lease: no manager node is listed with an "
                                    "ID, a spec and a version")
        return dict(min(listed, key=lambda node: node["ID"]))

    def _write(self, node: dict[str, Any], value: str | None) -> bool:
        """Write the lease label (None removes it); False when another write came first."""
        spec = copy.deepcopy(node["Spec"])
        labels = _labels(node)
        if value is None:
            labels.pop(self.label, None)
        else:
            labels[self.label] = value
        spec["Labels"] = labels
        try:
            self._connection.api.update_node(node["ID"], node["Version"]["Index"], spec)
        except APIError as error:
            if is_conflict(error.status_code, str(error.explanation or error)):
                return False
            raise SourceUnavailable(f"cannot write the lease: {error}") from error
        except (DockerException, requests.RequestException) as error:
            raise SourceUnavailable(
                f"cannot write the lease: {self._connection.describe(error)}") from error
        return True


def _version(node: dict[str, Any]) -> int | None:
    """The version a write of the node must name; None where the listing gives none."""
    version = node.get("Version")
    index = version.get("Index") if isinstance(version, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _labels(node: dict[str, Any]) -> dict[str, Any]:
    """The node's labels; none where the spec holds something else."""
    labels = node["Spec"].get("Labels")
    return dict(labels) if isinstance(labels, dict) else {}


def parse_lease(value: object) -> tuple[str | None, datetime | None]:
    """(holder, expiry) of a lease label; a label that does not parse holds nothing. An
    expiry without a zone is read as UTC, as the agent writes it."""
    if not isinstance(value, str) or not value:
        return None, None
    holder, _, expiry = value.rpartition(" ")
    try:
        moment = datetime.fromisoformat(expiry)
    except ValueError:
        return None, None
    return holder or None, moment if moment.tzinfo else moment.replace(tzinfo=UTC)
