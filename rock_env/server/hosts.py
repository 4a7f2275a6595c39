"""Where hosted objects live: one interface for the admin's embedded worker and a remote worker.

Every operation on a hosted env, vector env or sandbox is a :class:`HostOp` (its name, HTTP
verb and path on a worker, and the :class:`~rock_env.server.worker.Worker` method that runs
it in-process). A :class:`Host` runs an op on the object it hosts:

- :class:`EmbeddedHost`: this process's worker; the op's method runs inline, or in the thread
  pool when it may block (sandboxes, envs that own one, large vector steps).
- :class:`PeerHost`: a remote worker; the op is sent as HTTP to the same path on it and its
  JSON answer (or its error, as the same exception class) comes back.

Both answer with the JSON bytes of the op's response model, so that a route passes them on
without parsing. Byte streams (file and archive transfers) and a command's output events have
their own methods (:meth:`Host.send_bytes`, :meth:`Host.open_bytes`, :meth:`Host.events`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from rock_env.errors import EnvInstanceNotFound, InvalidArgument, SandboxNotFound, WorkerLost
from rock_env.protocol import OBJECT_ID_HEADER, StreamRequest, exception_from_body
from rock_env.server.peer import WorkerPeer
from rock_env.server.peer_batch import PeerMakeBatcher
from rock_env.server.worker import Worker

JSON = "application/json"
OK_JSON = b'{"ok":true}'

#: ``run(worker, obj_id, body, args)``: the op in this process (``args``: the other path parameters).
Run = Callable[[Worker, str, Any, Mapping[str, str]], Any]
#: Whether a call must run in the thread pool rather than inline on the event loop.
Offload = Callable[[Worker, str, Any], bool]
#: Runs a blocking call in the server's thread pool.
Blocking = Callable[..., Awaitable[Any]]


def always(worker: Worker, obj_id: str, body: Any) -> bool:
    """Offload every call (sandboxes, vector envs, creations)."""
    return True


def if_env_blocks(worker: Worker, obj_id: str, body: Any) -> bool:
    """Offload calls on envs that own a sandbox; run the others inline."""
    return worker.is_blocking_env(obj_id)


def wire_json(body: Any) -> bytes | None:
    """A request body as a worker receives it: the model's JSON (``None``: no body)."""
    if body is None:
        return None
    if isinstance(body, BaseModel):
        return body.model_dump_json().encode()
    return json.dumps(body).encode()


def encode_result(result: Any) -> bytes:
    """The JSON of what an op's method returned (a model, a list of models, or ``None`` for ``Ok``)."""
    if isinstance(result, BaseModel):
        return result.model_dump_json().encode()
    if result is None:
        return OK_JSON
    if isinstance(result, bytes):
        return result
    if isinstance(result, list):
        return json.dumps([r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in result]).encode()
    return json.dumps(result).encode()


@dataclass(frozen=True)
class HostOp:
    """One operation on a hosted object (see the module docstring)."""

    name: str
    #: ``"env"``, ``"vec"`` or ``"sandbox"``: what the op acts on (names the object in errors).
    kind: str
    method: str
    #: The worker's path; ``{id}`` is the object id, other ``{name}`` fields come from ``args``.
    path: str
    run: Run
    offload: Offload = always
    #: How a remote worker receives the body.
    wire: Callable[[Any], bytes | None] = wire_json
    #: Whether the op creates its object (an unknown id then is not a restarted worker).
    creates: bool = False
    #: Extra request headers for a remote worker (creations name the id the admin chose).
    headers: Callable[[str], dict[str, str]] = field(default=lambda obj_id: {"content-type": JSON})
    #: The path parameter that holds the object id.
    id_param: str = "id"
    #: Names in ``args`` that travel as query parameters (the others fill the path).
    query: tuple[str, ...] = ()
    #: For env makes: the item that stands for this call in a batched creation on a remote worker
    #: (``batch_item(obj_id, body)``; see :mod:`rock_env.server.peer_batch`). ``None``: sent alone.
    batch_item: Callable[[str, Any], dict[str, Any]] | None = None

    def url(self, obj_id: str, args: Mapping[str, str] | None = None) -> str:
        """The worker path of this op on ``obj_id``."""
        return self.path.format(**{**(args or {}), self.id_param: obj_id})


def creation_headers(obj_id: str) -> dict[str, str]:
    """Headers that ask a worker to create an object under ``obj_id`` (the id the admin chose)."""
    return {OBJECT_ID_HEADER: obj_id, "content-type": JSON}


@dataclass
class ByteStream:
    """An open byte stream from a host: chunks to send on, and how to release it afterwards."""

    media_type: str
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


#: The in-process side of a byte upload: ``(worker, obj_id, params, chunks) -> result``, awaited.
Receive = Callable[[Worker, str, Mapping[str, str], AsyncIterator[bytes], Blocking], Awaitable[Any]]
#: The in-process side of a byte download: ``(worker, obj_id, params) -> ByteStream``, awaited.
Produce = Callable[[Worker, str, Mapping[str, str], Blocking], Awaitable[ByteStream]]
#: The in-process events of a command: an async generator of ``(kind, payload)``.
Events = Callable[[Worker, str, StreamRequest, Blocking], AsyncGenerator[tuple[str, Any]]]


@dataclass(frozen=True)
class ByteOp:
    """A sandbox operation whose request or answer is a byte stream (files, archives)."""

    name: str
    method: str
    path: str
    receive: Receive | None = None
    produce: Produce | None = None

    def url(self, obj_id: str) -> str:
        """The worker path of this op on the sandbox ``obj_id``."""
        return self.path.format(sandbox=obj_id)


class Host(Protocol):
    """Runs operations on the objects of one worker (embedded or remote)."""

    worker_id: str

    async def call(self, op: HostOp, obj_id: str, body: Any = None, args: Mapping[str, str] | None = None) -> bytes:
        """Run ``op`` on ``obj_id``; the JSON of its answer (errors raised as their RockEnvError)."""
        ...

    async def send_bytes(
        self, op: ByteOp, obj_id: str, params: Mapping[str, str], chunks: AsyncIterator[bytes]
    ) -> bytes:
        """Stream ``chunks`` into ``op`` on ``obj_id``; the JSON of its answer."""
        ...

    async def open_bytes(self, op: ByteOp, obj_id: str, params: Mapping[str, str]) -> ByteStream:
        """Start ``op`` on ``obj_id`` and return its answer as a stream (errors raised before any byte)."""
        ...

    def events(self, obj_id: str, body: StreamRequest) -> AsyncGenerator[tuple[str, Any]]:
        """A command's output events: ``("started", {})`` once it runs, ``("output", {"text"})`` items,
        then one ``("exit", {...})`` or ``("error", ErrorBody dict)``. Closing early kills it."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class EmbeddedHost:
    """The worker in this process."""

    def __init__(self, worker: Worker, blocking: Blocking, events: Events) -> None:
        self.worker = worker
        self.worker_id = worker.id
        self._blocking = blocking
        self._events = events

    async def call(self, op: HostOp, obj_id: str, body: Any = None, args: Mapping[str, str] | None = None) -> bytes:
        """Run the op's method here: inline, or in the thread pool when it may block."""
        if op.offload(self.worker, obj_id, body):
            result = await self._blocking(op.run, self.worker, obj_id, body, args or {})
        else:
            result = op.run(self.worker, obj_id, body, args or {})
        return encode_result(result)

    async def send_bytes(
        self, op: ByteOp, obj_id: str, params: Mapping[str, str], chunks: AsyncIterator[bytes]
    ) -> bytes:
        """Hand the stream to the op's receiving side."""
        if op.receive is None:
            raise InvalidArgument(f"{op.name} takes no byte stream.")
        return encode_result(await op.receive(self.worker, obj_id, params, chunks, self._blocking))

    async def open_bytes(self, op: ByteOp, obj_id: str, params: Mapping[str, str]) -> ByteStream:
        """The op's producing side."""
        if op.produce is None:
            raise InvalidArgument(f"{op.name} sends no byte stream.")
        return await op.produce(self.worker, obj_id, params, self._blocking)

    def events(self, obj_id: str, body: StreamRequest) -> AsyncGenerator[tuple[str, Any]]:
        """The command runs in the hosted sandbox."""
        return self._events(self.worker, obj_id, body, self._blocking)

    async def aclose(self) -> None:
        """Nothing to release (the service closes the worker's objects)."""


class PeerHost:
    """A remote worker, reached over HTTP.

    ``on_gone(obj_id)`` is called when the worker no longer has an object the admin placed
    there (it restarted); the caller then gets :class:`~rock_env.errors.WorkerLost`.
    """

    def __init__(self, peer: WorkerPeer, on_gone: Callable[[str], None]) -> None:
        self.peer = peer
        self.worker_id = peer.worker_id
        self._on_gone = on_gone
        self._makes = PeerMakeBatcher(peer)

    def _check(self, resp: httpx.Response, kind: str, obj_id: str, creates: bool) -> bytes:
        """The body of a worker's answer, or raise the error it carries (the same class)."""
        if resp.status_code < 400:
            return resp.content
        try:
            data: Any = resp.json()
        except ValueError:
            data = {"error": "RemoteError", "message": resp.text[:500]}
        exc = exception_from_body(data if isinstance(data, dict) else {"message": str(data)})
        if not creates and isinstance(exc, (EnvInstanceNotFound, SandboxNotFound)):
            self._on_gone(obj_id)
            raise WorkerLost(f"{kind} {obj_id!r} is gone: its worker {self.worker_id!r} restarted. Make a new one.")
        raise exc

    async def call(self, op: HostOp, obj_id: str, body: Any = None, args: Mapping[str, str] | None = None) -> bytes:
        """Send the op to the same path on the worker (env makes: together with the others of this moment)."""
        if op.batch_item is not None:
            return await self._makes.submit(op.batch_item(obj_id, body))
        path = op.url(obj_id, args)
        what = f"{op.name} of {obj_id}" if op.creates else f"forwarding {op.method} {path}"
        params = {k: args[k] for k in op.query if k in args} if args else None
        resp = await self.peer.request(
            op.method, path, content=op.wire(body), params=params, headers=op.headers(obj_id), what=what
        )
        return self._check(resp, op.kind, obj_id, op.creates)

    async def send_bytes(
        self, op: ByteOp, obj_id: str, params: Mapping[str, str], chunks: AsyncIterator[bytes]
    ) -> bytes:
        """Stream the body on to the worker."""
        resp = await self.peer.send(op.method, op.url(obj_id), dict(params), chunks)
        await resp.aread()
        await resp.aclose()
        return self._check(resp, "sandbox", obj_id, False)

    async def open_bytes(self, op: ByteOp, obj_id: str, params: Mapping[str, str]) -> ByteStream:
        """The worker's answer, streamed."""
        resp = await self.peer.send(op.method, op.url(obj_id), dict(params), None)
        if resp.status_code >= 400:
            await resp.aread()
            await resp.aclose()
            self._check(resp, "sandbox", obj_id, False)
        return ByteStream(resp.headers.get("content-type", "application/octet-stream"), resp.aiter_raw(), resp.aclose)

    async def events(self, obj_id: str, body: StreamRequest) -> AsyncGenerator[tuple[str, Any]]:
        """The events of the worker's server-sent-events stream (the same items as in-process)."""
        path = f"/api/v1/sandboxes/{obj_id}/stream"
        content = body.model_dump_json().encode()
        headers = {"content-type": JSON}
        async with self.peer.stream("POST", path, content=content, headers=headers, what=f"streaming {path}") as resp:
            if resp.status_code >= 400:
                await resp.aread()
                self._check(resp, "sandbox", obj_id, False)
            yield "started", {}
            event, data = "message", list[str]()
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    yield event, json.loads("\n".join(data))
                    if event != "output":
                        return
                    event, data = "message", []

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.peer.aclose()


__all__ = [
    "ByteOp",
    "ByteStream",
    "EmbeddedHost",
    "Host",
    "HostOp",
    "PeerHost",
    "always",
    "creation_headers",
    "encode_result",
    "if_env_blocks",
    "wire_json",
]
