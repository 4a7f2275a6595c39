"""A bounded keep-alive connection pool that many threads share safely.

Why not httpcore's ``ConnectionPool``: its housekeeping pass (run by every thread that sends a
request) checks and closes connections that other threads are using at that moment. An idle
check of a connection whose request has just been answered sees ``IDLE`` and then a readable
socket (the answer), judges it "disconnected by the server" and closes it under the thread that
is reading it: ``ReadError: [Errno 9] Bad file descriptor`` (encode/httpcore#1110 is the same
family). With 64 threads stepping envs on one pool that happened within seconds.

Here a connection belongs to exactly one request from checkout until its answer is closed; only
its owner checks it (expired keep-alive, closed by the server) or closes it. Idle connections sit
in a per-origin stack that only the pool touches, under its lock. At most ``max_connections``
connections exist (a thread beyond that waits, up to the request's pool timeout).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpcore
import httpx

SocketOption = tuple[int, int, int]


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return (origin.scheme, origin.host, origin.port)


class _Body:
    """An answer's body; closing it hands the connection back to the pool."""

    def __init__(
        self, stream: Iterable[bytes], pool: ConnectionPool, conn: httpcore.HTTPConnection, origin: httpcore.Origin
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._origin = origin
        self._generation = pool._generation
        self._conn: httpcore.HTTPConnection | None = conn

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._pool._release(conn, self._origin, self._generation)


_all_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for pool in list(_all_pools):
        pool._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections, at most ``max_connections``, each used by one request at a time.

    ``request()`` (read the whole answer) and ``handle_request()`` (stream it; closing the answer
    returns the connection) mirror httpcore's pool, so both the hot path and an httpx transport use it.
    """

    def __init__(
        self,
        max_connections: int,
        *,
        keepalive_expiry: float = 60.0,
        socket_options: Sequence[SocketOption] | None = None,
    ) -> None:
        self.max_connections = max(1, max_connections)
        self._keepalive_expiry = keepalive_expiry
        self._socket_options = list(socket_options or [])
        self._cond = threading.Condition(threading.Lock())
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.HTTPConnection]] = {}
        self._count = 0  # connections that exist (idle + in use + being opened)
        self._generation = 0  # bumped by close(): connections of an older one are not reused
        _all_pools.add(self)

    def _after_fork(self) -> None:
        """In a forked child: never reuse the parent's connections (their sockets are the parent's too).

        The child's copies of their file descriptors are closed (the parent's stay open); requests in
        flight in the parent's threads do not exist here.
        """
        self._cond = threading.Condition(threading.Lock())
        self._generation += 1
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle = {}
        self._count = 0
        for conn in conns:
            conn.close()  # closes this process's descriptor only (no shutdown): the parent keeps its socket

    @property
    def connections(self) -> int:
        """How many connections exist now (idle and in use)."""
        return self._count

    def _checkout(self, origin: httpcore.Origin, timeout: float | None) -> httpcore.HTTPConnection:
        """A connection to ``origin`` that only the caller uses until it is released."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stale: httpcore.HTTPConnection | None = None
            conn: httpcore.HTTPConnection | None
            with self._cond:
                while True:
                    idle = self._idle.get(_key(origin))
                    if idle:
                        conn = idle.pop()
                        break
                    if self._count < self.max_connections:
                        self._count += 1
                        conn = None
                        break
                    other = next((conns for conns in self._idle.values() if conns), None)
                    if other is not None:  # make room: drop an idle connection to another server
                        stale, conn = other.pop(0), None
                        break
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise httpcore.PoolTimeout(f"no free connection in {timeout:.1f}s")
                    self._cond.wait(left)
            if stale is not None:
                stale.close()  # the pool owned it (it was idle): nobody else is using it
            if conn is None:
                return httpcore.HTTPConnection(
                    origin, keepalive_expiry=self._keepalive_expiry, socket_options=self._socket_options
                )
            if conn.is_closed() or conn.has_expired():  # checked by its owner only: no race
                conn.close()
                self._forget()
                continue
            return conn

    def _forget(self) -> None:
        """One connection is gone: let a waiting request open another."""
        with self._cond:
            self._count -= 1
            self._cond.notify()

    def _release(self, conn: httpcore.HTTPConnection, origin: httpcore.Origin, generation: int) -> None:
        """Its owner is done with ``conn``: keep it for reuse, or drop it if it cannot serve again."""
        if generation != self._generation or conn.is_closed() or not conn.is_idle():
            conn.close()
            self._forget()
            return
        with self._cond:
            self._idle.setdefault(_key(origin), []).append(conn)
            self._cond.notify()

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on a connection of its own; the answer's body returns it when closed."""
        timeouts = request.extensions.get("timeout", {})
        origin = request.url.origin
        while True:
            conn = self._checkout(origin, timeouts.get("pool"))
            try:
                response = conn.handle_request(request)
            except httpcore.ConnectionNotAvailable:  # it went away before our request started: another
                conn.close()
                self._forget()
                continue
            except BaseException:
                conn.close()
                self._forget()
                raise
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_Body(response.stream, self, conn, origin),  # type: ignore[arg-type]
                extensions=response.extensions,
            )

    def request(
        self,
        method: bytes,
        url: bytes,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        content: bytes | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpcore.Response:
        """Send a request and read its whole answer (the connection is back in the pool on return)."""
        request = httpcore.Request(method, url, headers=headers, content=content, extensions=extensions)
        if not any(name.lower() == b"host" for name, _ in request.headers):
            host, port = request.url.host, request.url.port
            request.headers.insert(0, (b"Host", host if port is None else host + b":%d" % port))
        response = self.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        """Close the idle connections now; the ones in use close when their answers are done.

        Like httpcore's pool, it stays usable: a later request opens a new connection.
        """
        with self._cond:
            self._generation += 1
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle = {}
            self._count -= len(conns)
            self._cond.notify_all()
        for conn in conns:
            conn.close()


class _HttpxBody(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except httpcore.TimeoutException as exc:
            raise _to_httpx(exc) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _to_httpx(exc) from exc

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _to_httpx(exc: Exception) -> httpx.TransportError:
    """The httpx error of the same name as httpcore's ``exc`` (httpx's transports do the same)."""
    kind = getattr(httpx, type(exc).__name__, None)
    if not (isinstance(kind, type) and issubclass(kind, httpx.TransportError)):
        kind = httpx.TransportError
    return kind(str(exc))  # type: ignore[no-any-return]


class PoolTransport(httpx.BaseTransport):
    """An httpx transport over :class:`ConnectionPool` (httpx's own uses httpcore's racy pool)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send an httpx request through the pool."""
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        try:
            answer = self.pool.handle_request(core)
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _to_httpx(exc) from exc
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_HttpxBody(answer.stream),  # type: ignore[arg-type]
            extensions=answer.extensions,
        )

    def close(self) -> None:
        """Close the pool's connections."""
        self.pool.close()


__all__ = ["ConnectionPool", "PoolTransport"]
