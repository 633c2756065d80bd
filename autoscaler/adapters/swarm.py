"""Docker Swarm as the service scaler, through docker-py's low-level API.

Scaling posts the listed spec back with only `Mode.Replicated.Replicas` and the agent's own
labels in `Spec.Labels` changed (never the task template), with the listed version, in one
call: docker-py's `Service.scale()` rebuilds the spec and restarted every running task in
our trials, and the version makes a concurrent change fail instead of being overwritten.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import msgspec
import requests
import structlog
from docker.errors import DockerException, NotFound
from docker.transport.unixconn import (
    UnixHTTPAdapter,
    UnixHTTPConnection,
    UnixHTTPConnectionPool,
)
from requests.adapters import BaseAdapter
from urllib3.connection import HTTPConnection

from autoscaler.adapters.http_client import (
    DeadlineConnection,
    DeadlineSession,
    deadline_passed,
    within,
)
from autoscaler.core.model import ServiceState
from autoscaler.core.placement import Node, Placement, Task, placements
from autoscaler.core.ports import ScaleConflict, ScaleFailed, SourceUnavailable
from autoscaler.core.record import RECORD_LABEL

log = structlog.get_logger("autoscaler.adapters.swarm")

_OUT_OF_SEQUENCE = "update out of sequence"
UNREADABLE_JSON = (ValueError, RecursionError)
"""What decoding an answer's JSON raises besides the decoders' own errors: an integer of
over 4,300 digits (docker-py's `json`), nesting deeper than Python's stack (both)."""
_NANOSECONDS = re.compile(r"(\.\d{6})\d+")
TASKS_MEANT_TO_RUN = '{"desired-state": ["running", "ready"]}'
"""The task listing's filter. A task that replaces one Swarm restarts (its container ended,
its node lost or drained) has the desired state `ready` until the restart delay is over and
the old task stopped, and may wait for a node meanwhile ("no suitable node"): listing
`running` alone hid it for that time, and a raise went through while it waited. No task
meant to be `ready` runs, so the running ones are the same."""


class DockerConnection:
    """The engine named by DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH).

    Each call to the engine - the API version asked on connecting included - ends within
    `timeout` seconds, the whole exchange: connecting, sending, and every read of the answer
    to its end are given the time left (autoscaler.adapters.http_client), over a unix socket
    (unix://) and plain or TLS TCP (tcp://, a socket proxy); one given up leaves no thread
    and no socket behind. (ssh:// keeps docker-py's per-read timeout.)

    The client is made on first use and again after a failure, so that an engine that is
    down when the agent starts is picked up once it is back.
    """

    def __init__(self, *, timeout: float = 30.0, pool: int = 10) -> None:
        """`pool`: connections kept to the engine, at least the applies made side by side."""
        self._timeout = timeout
        self._pool = pool
        self._client: docker.APIClient | None = None

    @property
    def api(self) -> docker.APIClient:
        if self._client is None:
            try:
                # The deadline of the version asked while the client is made.
                with within(self._timeout):
                    client = _DeadlineDockerClient.from_env(
                        timeout=max(1, math.ceil(self._timeout)), max_pool_size=self._pool).api
            except DockerException as error:
                raise SourceUnavailable(
                    f"cannot reach the Docker engine: {self.describe(error)} "
                    f"(at {engine_address()})") from error
            assert isinstance(client, _DeadlineAPIClient)
            client.deadline = self._timeout
            self._client = client
        return self._client

    def forget(self) -> None:
        """Drop the client, closing the connections it keeps."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def describe(self, error: BaseException) -> str:
        """What a failed call says to the operator."""
        if deadline_passed(error):
            return f"Docker did not answer within {self._timeout:g} s"
        return str(error)


def engine_address() -> str:
    """Where the engine is looked for, as an operator would check it."""
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={host}" if host else "the local socket; DOCKER_HOST is not set"


class _UnixConnection(DeadlineConnection, UnixHTTPConnection):
    """docker-py's connection to a unix socket, each exchange bounded by its deadline."""


class _UnixPool(UnixHTTPConnectionPool):
    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self.base_url, self.socket_path, self.timeout)  # type: ignore[arg-type]


class _UnixAdapter(UnixHTTPAdapter):
    def get_connection(self, url: bytes | str, proxies: Any = None) -> UnixHTTPConnectionPool:
        """One pool for the socket: docker-py's keeps one for each URL (path and query)
        asked, each with its own connection, up to 25."""
        with self.pools.lock:
            known: UnixHTTPConnectionPool | None = self.pools.get(self.socket_path)
            if known:
                return known
            pool = _UnixPool(str(url), self.socket_path, self.timeout, maxsize=self.max_pool_size)
            self.pools[self.socket_path] = pool
        return pool


class _DeadlineAPIClient(DeadlineSession, docker.APIClient):
    """docker-py's low-level client with a deadline for each exchange; docker-py mounts
    its transports while it is made, and they are turned into deadline-aware ones."""

    def __init__(self, *, max_pool_size: int = 10, **kwargs: Any) -> None:
        self.pool_size = max_pool_size  # for tcp:// too, which docker-py leaves at 10
        super().__init__(max_pool_size=max_pool_size, **kwargs)

    def deadline_adapter(self, adapter: BaseAdapter) -> BaseAdapter:
        if isinstance(adapter, UnixHTTPAdapter) and not isinstance(adapter, _UnixAdapter):
            return _UnixAdapter(f"http+unix://{adapter.socket_path}", adapter.timeout,
                                max_pool_size=adapter.max_pool_size)
        return super().deadline_adapter(adapter)


class _DeadlineDockerClient(docker.DockerClient):
    """`from_env` (DOCKER_HOST, TLS variables, the CLI context) making a _DeadlineAPIClient."""

    def __init__(self, **kwargs: Any) -> None:
        self.api = _DeadlineAPIClient(**kwargs)


class SwarmScaler:
    def __init__(self, connection: DockerConnection) -> None:
        self._connection = connection
        self._specs: dict[str, tuple[int, msgspec.Raw]] = {}
        """Each service's `Spec` in the last listing, as listed (JSON), with its version, by
        service ID: replaced wholesale by each listing, decoded by the applies. Each is a
        view of the listing's answer, which they keep whole until the next listing."""
        self._read: dict[tuple[str, int], tuple[ServiceState, list[str]]] = {}
        """Each service of the last listing as read, with its placement constraints, by ID
        and version: Swarm gives a service a new version at every change to it, so a
        service at the same version reads the same, and a fleet's listing is read again
        only where something changed (at 10,000 services, reading them all is about a
        tenth of a tick's CPU)."""
        self._unreadable: set[tuple[str, int]] = set()
        """The (ID, version) of the services whose spec could not be read: each is said once
        a version, not every tick."""

    @property
    def _api(self) -> docker.APIClient:
        return self._connection.api

    def list_services(self) -> dict[str, ServiceState]:
        """The services, each with where its tasks are: one listing each of services, tasks
        (those meant to run, `TASKS_MEANT_TO_RUN`) and nodes a tick, whatever the number of
        services."""
        self._specs = {}  # never two listings held at once
        try:
            listed = self._listing("/services", {}, _SERVICES)
            tasks = self._listing("/tasks", {"filters": TASKS_MEANT_TO_RUN}, _TASKS)
            nodes = self._api.nodes()
        except (DockerException, requests.RequestException, *UNREADABLE_JSON) as error:
            self._connection.forget()
            raise SourceUnavailable(
                f"cannot list Swarm services: {self._connection.describe(error)}") from error
        except SourceUnavailable:
            # A refusal or an answer not understood (here or below): the next tick asks a
            # new client, which settles the API version again (an engine downgraded, say).
            self._connection.forget()
            raise
        read = {}
        specs = {}
        unreadable = set()
        for service in listed:
            version = _version(service)
            if service is None or not isinstance(service.ID, str) or version is None:
                continue  # not a service the agent can name or update
            key = (service.ID, version)
            try:
                read[key] = self._read.get(key) or _read_service(service, *key)
            except (KeyError, TypeError, AttributeError, ValueError, msgspec.DecodeError) as error:
                # That service alone is left out, and said so once a version.
                if key not in self._unreadable:
                    log.warning("swarm_service_unreadable", service_id=service.ID,
                                version=version, error=f"{type(error).__name__}: {error}")
                unreadable.add(key)
                continue
            specs[service.ID] = (version, service.Spec)
        self._unreadable = unreadable
        try:
            found = placements(
                [task for task in map(_task, tasks) if task is not None],
                [node for node in map(_node, nodes if isinstance(nodes, list) else [])
                 if node is not None],
                {state.id: constraints for state, constraints in read.values()})
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            self._read = {}
            self._connection.forget()
            raise SourceUnavailable(f"unexpected service listing from Docker: {error!r}") from error
        self._read = {key: (placed(state, found.get(state.id)), constraints)
                      for key, (state, constraints) in read.items()}
        states = [state for state, _ in self._read.values()]
        self._specs = specs
        return {state.name: state for state in states}

    def _listing(self, path: str, params: dict[str, str],
                 decoder: msgspec.json.Decoder[list[_Listed]]) -> list[_Listed]:
        """A listing of the engine, decoded to only what the agent reads of it."""
        api = self._api
        response = api.get(f"{api.base_url}/v{api.api_version}{path}", params=params,
                           timeout=api.timeout)
        if not response.ok:
            raise SourceUnavailable(f"cannot list Swarm {path[1:]}: Docker answered "
                                    f"HTTP {response.status_code}: {_error_message(response)}")
        try:
            return decoder.decode(response.content)
        except msgspec.DecodeError as error:
            raise SourceUnavailable(
                f"unexpected listing of {path} from Docker: {error}") from error

    def scale(self, service: ServiceState, replicas: int, *, labels: Mapping[str, str]
              ) -> None:
        """Post the listed spec with the listed version, one call: if the service changed
        since the listing, the engine refuses the update ("update out of sequence") and the
        decision is made again next tick on fresh data. A state that is not at its version
        in the last listing (not from it) has its spec inspected first, and still posted
        with the state's version."""
        listed = self._specs.get(service.id)
        try:
            current = msgspec.json.decode(listed[1]) \
                if listed is not None and listed[0] == service.version else self._inspect(service)
            spec = with_replicas(current, replicas, labels)
        except msgspec.DecodeError as error:
            raise ScaleFailed(f"unexpected spec of {service.name} from Docker: {error}") from error
        except (KeyError, TypeError) as error:
            raise ScaleFailed(f"service {service.name} is no longer replicated") from error
        try:
            api = self._api
            response = api.post(
                f"{api.base_url}/v{api.api_version}/services/{service.id}/update",
                json=spec,
                params={"version": service.version},
                timeout=api.timeout,
            )
        except SourceUnavailable as error:
            raise ScaleFailed(str(error)) from error
        except (DockerException, requests.RequestException) as error:
            raise ScaleFailed(
                f"cannot scale {service.name}: {self._connection.describe(error)}") from error
        if response.ok:
            return
        message = _error_message(response)
        if is_conflict(response.status_code, message):
            raise ScaleConflict(f"service {service.name} changed meanwhile: {message}")
        if response.status_code == 404:
            raise ScaleFailed(f"service {service.name} is gone: {message}")
        raise ScaleFailed(
            f"Swarm refused to scale {service.name} (HTTP {response.status_code}): {message}"
        )

    def _inspect(self, service: ServiceState) -> Any:
        """The service's spec as the engine has it now (a second call, for a state not
        from the last listing)."""
        try:
            return self._api.inspect_service(service.id)["Spec"]
        except SourceUnavailable as error:
            raise ScaleFailed(str(error)) from error
        except NotFound as error:
            raise ScaleFailed(f"service {service.name} is gone") from error
        except (DockerException, requests.RequestException) as error:
            raise ScaleFailed(f"cannot inspect service {service.name}: "
                              f"{self._connection.describe(error)}") from error
        except (KeyError, TypeError) as error:
            raise ScaleFailed(f"unexpected inspect of {service.name} from Docker: "
                              f"{error!r}") from error


def is_conflict(status: int | None, message: str) -> bool:
    """This engine answers a stale version with HTTP 500 "update out of sequence"."""
    return status == 409 or _OUT_OF_SEQUENCE in message


def _error_message(response: requests.Response) -> str:
    try:
        answer = response.json()
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        return response.text
    return str(answer.get("message", response.text)) if isinstance(answer, dict) \
        else response.text


def with_replicas(spec: dict[str, Any], replicas: int,
                  labels: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """A copy of a service spec with only its replica count changed, and these labels of
    the service's own set (None: removed)."""
    changed = copy.deepcopy(spec)
    changed["Mode"]["Replicated"]["Replicas"] = replicas
    if labels:
        own = dict(changed.get("Labels") or {})
        for key, value in labels.items():
            if value is None:
                own.pop(key, None)
            else:
                own[key] = value
        changed["Labels"] = own
    return changed


def service_state(raw: dict[str, Any], *, placement: Placement | None = None
                  ) -> ServiceState:
    """A listed service as the core sees it, with where its tasks are (None: not known).
    TypeError where its name is not text: no policy can name it, and the listing keys by it."""
    spec = raw.get("Spec", {})
    replicas = _replicas(spec)
    name = spec.get("Name", raw.get("ID", ""))
    if not isinstance(name, str):
        raise TypeError(f"the service's name is a {type(name).__name__}, not text")
    return ServiceState(
        name=name,
        id=raw["ID"],
        version=raw["Version"]["Index"],
        replicas=replicas,
        last_scaled_at=_last_scaled_at(raw),
        labels={str(k): str(v) for k, v in (spec.get("Labels") or {}).items()},
        replicas_changed_at=_replicas_changed_at(raw),
        placement=placement,
        updated_at=parse_docker_time(raw.get("UpdatedAt")),
    )


def placed(state: ServiceState, placement: Placement | None) -> ServiceState:
    """The state with this placement (the same state where it already has it)."""
    return state if state.placement == placement else replace(state, placement=placement)


_NULL = msgspec.Raw(b"null")


class _ListedService(msgspec.Struct):
    """A service of the listing, its specs left as listed: a fleet's listing is mostly
    specs (17.5 MB at 10,000 services), and only a new or changed service's are read. Its
    fields are checked one service at a time: one malformed service is left out alone."""

    ID: Any = None
    Version: Any = None
    Spec: msgspec.Raw = msgspec.Raw(b"{}")
    PreviousSpec: msgspec.Raw = _NULL
    UpdatedAt: Any = None


class _ListedTask(msgspec.Struct):
    """A task of the listing, as far as the agent reads it (a task listed by the engine
    carries its whole spec besides); a task of no known shape is left out alone."""

    ServiceID: Any = None
    NodeID: Any = None
    Status: Any = None


_Listed = TypeVar("_Listed", _ListedService | None, _ListedTask | None)
_SERVICES = msgspec.json.Decoder(list[_ListedService | None])
_TASKS = msgspec.json.Decoder(list[_ListedTask | None])


def _version(listed: _ListedService | None) -> int | None:
    """The version a service's update must name; None where the listing gives none."""
    version = listed.Version if listed is not None else None
    index = version.get("Index") if isinstance(version, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _read_service(listed: _ListedService, service_id: str, version: int
                  ) -> tuple[ServiceState, list[str]]:
    """A new or changed service of the listing, read, with its placement constraints."""
    raw = {"ID": service_id, "Version": {"Index": version},
           "Spec": msgspec.json.decode(listed.Spec),
           "PreviousSpec": msgspec.json.decode(listed.PreviousSpec),
           "UpdatedAt": listed.UpdatedAt}
    return service_state(raw), _constraints(raw)


def _task(listed: _ListedTask | None) -> Task | None:
    """The task, or None where it names no service."""
    if listed is None or not isinstance(listed.ServiceID, str):
        return None
    status = _mapping(listed.Status)
    return Task(service_id=listed.ServiceID, node_id=str(listed.NodeID or "") or None,
                state=str(status.get("State") or ""), error=str(status.get("Err") or "") or None)


def _node(raw: object) -> Node | None:
    """The node, or None where it has no ID."""
    if not isinstance(raw, dict) or not isinstance(raw.get("ID"), str):
        return None
    spec, status = _mapping(raw.get("Spec")), _mapping(raw.get("Status"))
    description = _mapping(raw.get("Description"))
    return Node(id=raw["ID"], hostname=str(description.get("Hostname", "")),
                role=str(spec.get("Role", "")), labels=_labels(spec.get("Labels")),
                engine_labels=_labels(_mapping(description.get("Engine")).get("Labels")),
                ready=status.get("State") == "ready", active=spec.get("Availability") == "active")


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _labels(value: object) -> dict[str, str]:
    """Labels as text; a set that is not a mapping is none."""
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _constraints(raw: dict[str, Any]) -> list[str]:
    placement = ((raw.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    return [str(c) for c in placement.get("Constraints") or []]


def _replicas_changed_at(raw: dict[str, Any]) -> datetime | None:
    """`UpdatedAt` when the last update changed the replica count, whatever else it did."""
    previous, current = raw.get("PreviousSpec"), raw.get("Spec")
    if not isinstance(previous, dict) or not isinstance(current, dict):
        return None
    if _replicas(previous) == _replicas(current):
        return None
    return parse_docker_time(raw.get("UpdatedAt"))


def _last_scaled_at(raw: dict[str, Any]) -> datetime | None:
    """`UpdatedAt` when the last update changed the replica count and nothing else but the
    agent's record of its changes."""
    previous, current = raw.get("PreviousSpec"), raw.get("Spec")
    if not isinstance(previous, dict) or not isinstance(current, dict):
        return None
    before = _replicas(previous)
    after = _replicas(current)
    if before is None or after is None or before == after:
        return None
    if _unscaled(previous) != _unscaled(current):
        return None
    return parse_docker_time(raw.get("UpdatedAt"))


def _unscaled(spec: dict[str, Any]) -> dict[str, Any]:
    """A replicated service's spec to compare, with its replica count and the agent's record
    label left out: a shallow copy, as it is only compared (`with_replicas`, which copies
    the whole spec for a post, made it about 20 times slower at every service listed)."""
    mode = spec["Mode"]
    labels = dict(spec.get("Labels") or {})
    labels.pop(RECORD_LABEL, None)
    return {**spec, "Mode": {**mode, "Replicated": {**mode["Replicated"], "Replicas": 0}},
            "Labels": labels}


def _replicas(spec: dict[str, Any]) -> int | None:
    """A replicated service's count; None for a global service, or a count that is no
    whole number of replicas."""
    replicated = spec.get("Mode", {}).get("Replicated")
    if not isinstance(replicated, dict):
        return None
    count = replicated.get("Replicas", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 \
        else None


def parse_docker_time(text: object) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which `fromisoformat` cannot take."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(_NANOSECONDS.sub(r"\1", text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
