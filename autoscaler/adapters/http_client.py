"""HTTP with a deadline for the whole exchange, not for each read.

A timeout given to requests bounds each socket operation: a server that sends its headers
at once and then one byte a second never trips it, and holds the caller as long as it
likes. A session from `deadline_session()` bounds the whole exchange of every request made
inside `within(seconds)`:

- the TCP connect, the sending of the request and the TLS handshake are bounded by the time
  left (CPython bounds a handshake, and a sendall, as a whole by the socket's timeout);
- every read of the answer - status line, headers, chunk sizes, body, TLS records - first
  sets the socket's timeout to the time left, and fails at once when none is left.

No thread watches the clock: the reading thread itself stops at the deadline, with
requests' own timeout errors, and urllib3 closes a connection whose read failed, so a call
abandoned at its deadline leaves no thread and no socket behind. Not bounded: the name
lookup (getaddrinfo blocks as long as the resolver's own timeouts say).

Other transports take the same deadline by mixing `DeadlineConnection` into their urllib3
connection class (the Docker adapter does so for docker-py's unix socket), and a session
whose every request has its own deadline is a `DeadlineSession` with `deadline` set.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import requests
import urllib3
from requests.adapters import DEFAULT_POOLSIZE, BaseAdapter, HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_DEADLINE: ContextVar[float | None] = ContextVar("autoscaler_http_deadline", default=None)


@contextmanager
def within(seconds: float) -> Iterator[float]:
    """Requests made inside (in this thread or task) end by the deadline it yields, a
    time.monotonic() value `seconds` from now, or the enclosing `within`'s if earlier."""
    deadline = time.monotonic() + seconds
    enclosing = _DEADLINE.get()
    if enclosing is not None:
        deadline = min(deadline, enclosing)
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def _time_left() -> float | None:
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class _DeadlineReader(io.RawIOBase):
    """The socket as http.client reads it, each read given only the time left."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        # A SocketIO holds the socket open until it is closed, as http.client's own file
        # does: a response read to the end outlives its connection's close().
        self._file = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        left = _time_left()
        if left is not None:
            if left <= 0:
                raise TimeoutError("the deadline of the exchange passed")
            self._sock.settimeout(left)
        return self._file.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _DeadlineSocket:
    """All that http.client's response asks of its socket: a file to read."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(_DeadlineSocket(sock), debuglevel, method, url)  # type: ignore[arg-type]


class DeadlineConnection:
    """A connection whose timeout is never more than the time left: urllib3 sets it on the
    socket to connect, to send the request and to wait for the answer, and whose answer
    is read with the time left. Mixed in ahead of a urllib3 HTTPConnection class."""

    response_class: type[http.client.HTTPResponse] = _DeadlineResponse
    _configured_timeout: Any = None

    @property
    def timeout(self) -> Any:
        left = _time_left()
        if left is None:
            return self._configured_timeout
        left = max(left, 0.001)  # none left: the next step times out at once
        configured = self._configured_timeout
        return min(configured, left) if isinstance(configured, int | float) else left

    @timeout.setter
    def timeout(self, value: Any) -> None:
        self._configured_timeout = value

    def _bounded(self, sock: socket.socket) -> socket.socket:
        """The connected socket, given the time left for the TLS handshake."""
        left = self.timeout
        if isinstance(left, int | float):
            sock.settimeout(left)
        return sock


class _Connection(DeadlineConnection, HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return self._bounded(super()._new_conn())


class _TLSConnection(DeadlineConnection, HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return self._bounded(super()._new_conn())


class DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _Connection


class DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS = {"http": DeadlineHTTPPool, "https": DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS proxy keeps urllib3's own pools
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


class DeadlinePassed(requests.Timeout):
    """A request of a `DeadlineSession` given up at its deadline."""


def deadline_passed(error: BaseException) -> bool:
    """Whether the error, or one it was raised from, is a request given up at its
    deadline (a library may wrap it in an error of its own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, DeadlinePassed):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# What a request stopped by its deadline raises, depending on the step it was at.
_STOPPED = (requests.RequestException, urllib3.exceptions.HTTPError,
            http.client.HTTPException, OSError)


class DeadlineSession(requests.Session):
    """A session whose plain HTTP(S) adapters bound each exchange by the deadline in force.

    With `deadline` set (seconds), every request is made within its own deadline (or an
    enclosing `within`'s, if earlier), the answer read to its end unless streamed, and one
    given up at the deadline raises DeadlinePassed. Adapters mounted later, by a subclass
    too, pass through `deadline_adapter`: a subclass that mounts another transport turns
    it into one that keeps the deadline there. `pool_size`: connections kept a host.
    """

    deadline: float | None = None
    pool_size: int = DEFAULT_POOLSIZE

    def deadline_adapter(self, adapter: BaseAdapter) -> BaseAdapter:
        """The adapter to mount instead of `adapter`."""
        if type(adapter) is HTTPAdapter:
            return _DeadlineAdapter(pool_maxsize=self.pool_size, max_retries=0)
        return adapter

    def mount(self, prefix: str | bytes, adapter: BaseAdapter) -> None:
        super().mount(prefix, self.deadline_adapter(adapter))

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        own: AbstractContextManager[object] = (
            nullcontext() if self.deadline is None else within(self.deadline))
        with own:
            deadline = _DEADLINE.get()
            try:
                return super().send(request, **kwargs)
            except DeadlinePassed:
                raise
            except _STOPPED as error:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlinePassed(
                        f"no answer by the deadline ({type(error).__name__}: {error})",
                        request=request) from error
                raise


def deadline_session() -> requests.Session:
    """A session whose requests, made inside `within(seconds)`, end by its deadline; it
    never retries."""
    return DeadlineSession()
