"""Coalescing single-env calls into batched requests (``POST /api/v1/batch/{make,reset,step}``).

Many single envs driven at once (an asyncio trainer with thousands of agent loops, or a pool of
threads) each send one small request per call, and a server then spends its time on requests,
not on envs. With ``coalesce=True`` (``rock.amake``, ``rock.make(..., backend="remote")``) the calls
that envs make at the same time travel together: one request carries many envs' makes, resets
or steps, and every env still gets its own answer or its own error.

- :class:`Coalescer` (asyncio): the calls of one turn of the event loop form a batch, and at most
  :data:`IN_FLIGHT` batches per server are on their way (the calls made meanwhile wait and leave
  together).
- :class:`ThreadCoalescer` (threads): the calls made while the previous batch is on its way form
  the next one; :data:`SENDERS` sender threads per client and kind carry them.

Calls go straight to the worker that hosts their env (under auth each item carries its env's
grant, and one of them is the request's bearer); calls of envs without a worker URL go to the
admin, which splits a batch by worker. A batch carries at most
:data:`BATCH_CHUNK` calls. A batch sent straight to a worker that fails is sent to the admin
instead when that is safe (it never left, or it is a reset), else each env gets its own error
(:class:`~rock_env.errors.WorkerLost` naming it when the worker fails its health check too); the
calls a worker answers with "no such env" (it restarted) are asked of the admin, which knows
whether the env is lost, as single calls are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from typing import Any

from pydantic_core import from_json, to_json

from rock_env.errors import EnvInstanceNotFound, RockEnvError, ServerUnavailable
from rock_env.protocol import exception_from_body
from rock_env.remote.client import ApiClient, AsyncApiClient
from rock_env.remote.pool import Route

logger = logging.getLogger(__name__)

#: The most calls one batched request carries (smaller batches overlap the client's and the server's work).
BATCH_CHUNK = 512
#: Batches on their way to one server at a time (per :class:`Coalescer`): the calls made meanwhile
#: queue up and leave together when one returns, so batches stay large however the answers of
#: several servers interleave, and the next batch is already on its way while one is answered.
IN_FLIGHT = 3
#: Sender threads per :class:`ThreadCoalescer`: one batch is answered while the next is on its way.
SENDERS = 2
#: Seconds a sender thread waits for a call before it ends.
SENDER_IDLE = 10.0
#: The list each batched request carries its calls in, by kind.
BATCH_KEYS = {"make": "makes", "reset": "resets", "step": "steps"}
#: One call's answer: the fields of the single call's answer model, as a dict.
Result = dict[str, Any]


def _origin(route: Route | None) -> str | None:
    """Where a call goes: the worker that hosts its env, else the admin (``None``)."""
    return route.origin if route is not None else None


def _bearer(origin: str | None, batch: _Batch) -> str | None:
    """A direct batch's bearer under auth: one of its envs' grants (each item carries its own)."""
    if origin is None:
        return None
    return next((route.grant for route in batch.routes if route is not None and route.grant), None)


def _outcomes(answer: bytes) -> list[tuple[Result | None, RockEnvError | None]]:
    """Each item of a batched answer as ``(result, None)`` or ``(None, its error)``."""
    out: list[tuple[Result | None, RockEnvError | None]] = []
    for item in from_json(answer)["results"]:
        error = item.get("error")
        out.append((None, exception_from_body(error)) if error is not None else (item["result"], None))
    return out


class _Batch:
    """The calls of one origin waiting to be sent: their JSON items, routes and how to answer each."""

    __slots__ = ("answer", "items", "routes")

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.routes: list[Route | None] = []
        #: where call ``i``'s outcome goes: its asyncio future, or the waiting thread's :class:`_Waiter`
        self.answer: list[asyncio.Future[Result] | _Waiter] = []

    def take(self, count: int) -> _Batch:
        """Remove the first ``count`` calls (all, if fewer) and return them as a batch of their own."""
        part = _Batch()
        if len(self.items) <= count:
            part.items, part.routes, part.answer = self.items, self.routes, self.answer
            self.items, self.routes, self.answer = [], [], []
        else:
            part.items, self.items = self.items[:count], self.items[count:]
            part.routes, self.routes = self.routes[:count], self.routes[count:]
            part.answer, self.answer = self.answer[:count], self.answer[count:]
        return part

    def fail(self, exc: BaseException) -> None:
        for answer in self.answer:
            _settle(answer, None, exc)

    def deliver(self, content: bytes, direct: bool) -> _Batch | None:
        """Give each call its outcome. ``direct`` (the batch went straight to a worker): calls the worker
        does not know (it restarted, or dropped the env) are not answered but returned, to ask the admin
        (which knows whether the env is lost), as a single call would."""
        outcomes = _outcomes(content)
        if len(outcomes) != len(self.answer):
            self.fail(ServerUnavailable(f"a batched answer has {len(outcomes)} results for {len(self.answer)} calls."))
            return None
        unknown = _Batch()
        for i, (sink, (result, error)) in enumerate(zip(self.answer, outcomes, strict=True)):
            if direct and isinstance(error, EnvInstanceNotFound) and self.routes[i] is not None:
                unknown.items.append(self.items[i])
                unknown.routes.append(self.routes[i])
                unknown.answer.append(sink)
            else:
                _settle(sink, result, error)
        if not unknown.items:
            return None
        unknown.to_admin()
        return unknown

    def lost(self, exc: RockEnvError, origin: str, alive: bool) -> None:
        """Each call's own error after its worker dropped a batch that may have been applied."""
        for route, answer in zip(self.routes, self.answer, strict=True):
            if route is not None:
                if not alive:
                    route.origin = None
                _settle(answer, None, route.lost_error(exc, origin, alive))
            else:
                _settle(answer, None, exc)

    def to_admin(self) -> None:
        for route in self.routes:
            if route is not None:
                route.origin = None


def _queue(
    pending: dict[str | None, _Batch], item: dict[str, Any], route: Route | None, sink: asyncio.Future[Result] | _Waiter
) -> None:
    """Add one call to the batch of the server it goes to (``item`` gets its env's grant, if any:
    the worker checks each item's own)."""
    if route is not None and route.grant is not None:
        item["grant"] = route.grant
    origin = _origin(route)
    batch = pending.get(origin)
    if batch is None:
        batch = pending[origin] = _Batch()
    batch.items.append(item)
    batch.routes.append(route)
    batch.answer.append(sink)


class _Kind:
    """What every coalescer of one kind of call shares: the path, the body's key, the retry rule."""

    def __init__(self, kind: str) -> None:
        self.path = f"/api/v1/batch/{kind}"
        self.key = BATCH_KEYS[kind]
        self.idempotent = kind == "reset"

    def body(self, batch: _Batch) -> bytes:
        return to_json({self.key: batch.items})

    def must_raise(self, batch: _Batch, exc: RockEnvError) -> bool:
        route = batch.routes[0]
        return route is not None and route.must_raise(exc, self.idempotent)


class Coalescer:
    """Batches the ``kind`` calls of one turn of the event loop (see the module docstring)."""

    def __init__(self, client: AsyncApiClient, kind: str) -> None:
        self._client = client
        self._kind = _Kind(kind)
        self._pending: dict[str | None, _Batch] = {}
        self._in_flight: dict[str | None, int] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: dict[str, Any], route: Route | None = None) -> asyncio.Future[Result]:
        """Queue one call (``item``: its JSON, which this may add the env's grant to; ``route``: where the env
        lives, ``None`` for a make, which goes to the admin);
        the future gets its result or its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        _queue(self._pending, item, route, future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        for origin in list(self._pending):
            batch = self._pending[origin]
            while batch.items and self._in_flight.get(origin, 0) < IN_FLIGHT:
                self._in_flight[origin] = self._in_flight.get(origin, 0) + 1
                task = asyncio.ensure_future(self._carry(origin, batch.take(BATCH_CHUNK)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not batch.items:
                del self._pending[origin]

    async def _carry(self, origin: str | None, batch: _Batch) -> None:
        """Send one batch; then what queued up for its server meanwhile may go."""
        try:
            await self._send(origin, batch)
        finally:
            self._in_flight[origin] -= 1
            if origin in self._pending and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, origin: str | None, batch: _Batch) -> None:
        kind = self._kind
        try:
            answer = await self._client.post_json(
                kind.path, kind.body(batch), idempotent=kind.idempotent, origin=origin, bearer=_bearer(origin, batch)
            )
        except (ServerUnavailable, EnvInstanceNotFound) as exc:
            if origin is None:
                batch.fail(exc)
            elif kind.must_raise(batch, exc):
                batch.lost(exc, origin, await self._client.alive(origin))
            else:
                logger.info(
                    "worker %s did not serve %d batched calls (%s); asking the admin", origin, len(batch.items), exc
                )
                batch.to_admin()
                await self._send(None, batch)
            return
        except Exception as exc:
            batch.fail(exc)
            return
        unknown = batch.deliver(answer, direct=origin is not None)
        if unknown is not None:
            await self._send(None, unknown)


def _settle(answer: asyncio.Future[Result] | _Waiter, result: Result | None, error: BaseException | None) -> None:
    """Deliver one call's outcome to its future or its waiting thread."""
    if isinstance(answer, _Waiter):
        answer.settle(result, error)
    elif not answer.done():
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)  # type: ignore[arg-type]


class _Waiter:
    """One thread's call in a :class:`ThreadCoalescer`: it blocks on ``lock`` until the sender answers."""

    __slots__ = ("error", "lock", "result")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.result: Result | None = None
        self.error: BaseException | None = None

    def settle(self, result: Result | None, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self.lock.release()


class ThreadCoalescer:
    """Batches the ``kind`` calls that threads make while the previous batch is on its way (see the
    module docstring). :data:`SENDERS` daemon sender threads, started on first use, carry the
    batches; they end after :data:`SENDER_IDLE` seconds without a call (the next call starts them again)."""

    def __init__(self, client: ApiClient, kind: str) -> None:
        self._client = client
        self._kind = _Kind(kind)
        self._after_fork()
        _all_thread_coalescers.add(self)

    def _after_fork(self) -> None:
        """A fresh state: at start, and in a forked child (the parent's sender threads do not exist there)."""
        self._cond = threading.Condition()
        self._pending: dict[str | None, _Batch] = {}
        self._senders: list[threading.Thread] = []

    def call(self, item: dict[str, Any], route: Route | None = None) -> Result:
        """Send one call with the others of this moment; its result (or raise its error)."""
        waiter = _Waiter()
        with self._cond:
            _queue(self._pending, item, route, waiter)
            while len(self._senders) < SENDERS:
                sender = threading.Thread(target=self._run, name=f"rock-env-batch-{self._kind.key}", daemon=True)
                self._senders.append(sender)
                sender.start()
            self._cond.notify()
        waiter.lock.acquire()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if not self._cond.wait(SENDER_IDLE) and not self._pending:
                        self._senders.remove(threading.current_thread())
                        return
                pending, self._pending = self._pending, {}
            for origin, batch in pending.items():
                while batch.items:
                    self._send(origin, batch.take(BATCH_CHUNK))

    def _send(self, origin: str | None, batch: _Batch) -> None:
        kind = self._kind
        try:
            answer = self._client.post_json(
                kind.path, kind.body(batch), idempotent=kind.idempotent, origin=origin, bearer=_bearer(origin, batch)
            )
        except (ServerUnavailable, EnvInstanceNotFound) as exc:
            if origin is None:
                batch.fail(exc)
            elif kind.must_raise(batch, exc):
                batch.lost(exc, origin, self._client.alive(origin))
            else:
                logger.info(
                    "worker %s did not serve %d batched calls (%s); asking the admin", origin, len(batch.items), exc
                )
                batch.to_admin()
                self._send(None, batch)
            return
        except BaseException as exc:  # every waiting thread gets it; the sender goes on
            batch.fail(exc)
            return
        unknown = batch.deliver(answer, direct=origin is not None)
        if unknown is not None:
            self._send(None, unknown)


_threads_lock = threading.Lock()
_all_thread_coalescers: weakref.WeakSet[ThreadCoalescer] = weakref.WeakSet()


def _reset_after_fork() -> None:
    global _threads_lock
    _threads_lock = threading.Lock()
    for found in list(_all_thread_coalescers):
        found._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def coalescer(client: AsyncApiClient, kind: str) -> Coalescer:
    """The :class:`Coalescer` of ``kind`` calls for ``client`` (one per client and kind; it goes with the client)."""
    found = client.coalescers.get(kind)
    if not isinstance(found, Coalescer):
        found = client.coalescers[kind] = Coalescer(client, kind)
    return found


def thread_coalescer(client: ApiClient, kind: str) -> ThreadCoalescer:
    """The :class:`ThreadCoalescer` of ``kind`` calls for ``client`` (one per client and kind; it goes with the client)."""
    with _threads_lock:
        found = client.coalescers.get(kind)
        if not isinstance(found, ThreadCoalescer):
            found = client.coalescers[kind] = ThreadCoalescer(client, kind)
        return found


__all__ = ["BATCH_CHUNK", "Coalescer", "ThreadCoalescer", "coalescer", "thread_coalescer"]
