"""The ModelService: an OpenAI-compatible endpoint inside sandboxes, answered by the trainer.

A harness inside a sandbox calls ``$OPENAI_BASE_URL/chat/completions`` as it would call OpenAI.
The call reaches this process through the sandbox's bridge (a unix socket bound into the sandbox
and a forwarder on its loopback; on the local runtime a host loopback port) and becomes a
:class:`~rock_env.protocol.model_service.ModelRequest`. The trainer takes requests with
:meth:`ModelService.get` (or looks at all with :meth:`ModelService.pending`) and answers each with
:meth:`ModelService.answer`, in any order, from any thread; the harness gets a ``chat.completion``
(or, for ``stream: true``, its chunks as server-sent events). Instead of the trainer, an upstream
OpenAI-compatible server (``upstream=``) or a recording (``replay=``) can answer; ``record=`` writes
every exchange to JSONL.

>>> with ModelService() as svc, Sandbox(runtime="namespace", model_service=svc) as sb:  # doctest: +SKIP
...     proc = sb.spawn("python3 agent.py")
...     req = svc.get(timeout=30)
...     svc.answer(req.id, "hello")

All I/O runs on one event loop in a background thread; the trainer's calls wake it with
``call_soon_threadsafe`` and it wakes them with events: nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rock_env.agents.model_completion import (
    completion_chunks,
    completion_from_reply,
    openai_error,
    sse_event,
)
from rock_env.agents.model_http import HttpReply, serve_connection
from rock_env.agents.recording import Recorder, Replay
from rock_env.errors import InvalidArgument, ModelRequestNotFound, ModelServiceError
from rock_env.protocol.model_service import ModelExchange, ModelRequest
from rock_env.sandbox.bridge import BRIDGE_DIR, BRIDGE_DIR_PREFIX, BridgeMount, BridgePlan, bridge_root

if TYPE_CHECKING:
    from rock_env.agents.model_remote import AsyncRemoteModelService, RemoteModelService

logger = logging.getLogger(__name__)

#: the port the forwarder listens on inside namespace and docker sandboxes (their own loopback)
SANDBOX_PORT = 18473
SOCKET_NAME = "model.sock"
#: open connections one sandbox may hold to its model endpoint (more are refused with 429)
MAX_CONNECTIONS = 32
FORWARDER_NAME = "forwarder.py"
_FORWARDER_SOURCE = Path(__file__).with_name("bridge_forwarder.py")

#: an exchange hook: sees the request and the upstream's completion, returns a replacement or None
ExchangeHook = Callable[[ModelRequest, dict[str, Any]], "dict[str, Any] | None"]


def _json(status: int, data: dict[str, Any]) -> HttpReply:
    return HttpReply(status, json.dumps(data, separators=(",", ":")).encode())


def _error(status: int, message: str, kind: str = "invalid_request_error") -> HttpReply:
    return _json(status, openai_error(message, kind=kind))


@dataclass
class _Pending:
    request: ModelRequest
    future: asyncio.Future[tuple[int, dict[str, Any]]]
    handed: bool = False


@dataclass
class _Tags:
    episode: int = 0
    env_id: str | None = None
    turn: int = 0


class _Waiter:
    """A ``get`` waiting for a request (of one sandbox, or of any)."""

    def __init__(self, sandbox_id: str | None) -> None:
        self.sandbox_id = sandbox_id
        self.result: ModelRequest | None = None

    def matches(self, request: ModelRequest) -> bool:
        return self.sandbox_id is None or self.sandbox_id == request.sandbox_id

    def deliver(self, request: ModelRequest) -> None:  # called with the service's lock held
        self.result = request


class _SyncWaiter(_Waiter):
    def __init__(self, sandbox_id: str | None) -> None:
        super().__init__(sandbox_id)
        self.event = threading.Event()

    def deliver(self, request: ModelRequest) -> None:
        self.result = request
        self.event.set()


class _AsyncWaiter(_Waiter):
    def __init__(self, sandbox_id: str | None, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(sandbox_id)
        self.loop = loop
        self.future: asyncio.Future[ModelRequest] = loop.create_future()

    def deliver(self, request: ModelRequest) -> None:
        self.result = request
        self.loop.call_soon_threadsafe(self._set, request)

    def _set(self, request: ModelRequest) -> None:
        if not self.future.done():
            self.future.set_result(request)


@dataclass
class _Bridge:
    sandbox_id: str
    server: asyncio.base_events.Server
    directory: Path | None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class ModelService:
    """The trainer side of the model service (sync); see the module docstring.

    ``upstream``: base URL of an OpenAI-compatible server (``http://host:port/v1``) that answers
    instead of the trainer; ``on_exchange(request, completion)`` sees each of its answers and may
    return a replacement. ``replay``: a recording that answers instead. ``record``: JSONL file every
    exchange is appended to. ``timeout``: seconds a harness's call waits for an answer before it
    gets HTTP 504. ``model``: the model name reported by ``GET /v1/models`` and in completions.
    """

    def __init__(
        self,
        *,
        upstream: str | None = None,
        upstream_api_key: str | None = None,
        on_exchange: ExchangeHook | None = None,
        record: str | os.PathLike[str] | None = None,
        replay: str | os.PathLike[str] | None = None,
        timeout: float = 300.0,
        model: str = "rock-env",
    ) -> None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise InvalidArgument(f"timeout={timeout!r} must be a positive number of seconds")
        if upstream is not None and replay is not None:
            raise InvalidArgument("give upstream= or replay=, not both: each answers every request")
        if upstream is not None and not str(upstream).startswith(("http://", "https://")):
            raise InvalidArgument(f"upstream={upstream!r} must be an http(s) URL such as 'http://127.0.0.1:8000/v1'")
        self.upstream = None if upstream is None else str(upstream).rstrip("/")
        self.upstream_api_key = upstream_api_key
        self.on_exchange = on_exchange
        self.timeout = float(timeout)
        self.model = model
        self._replay = None if replay is None else Replay(Path(replay))
        self._recorder = None if record is None else Recorder(Path(record))
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._queue: deque[str] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._tags: dict[str, _Tags] = {}
        self._bridges: dict[str, _Bridge] = {}
        self._closed = False
        # the owner's pid in the name: `rock-env sandbox gc` removes the dirs of dead processes
        self._base = Path(tempfile.mkdtemp(prefix=f"{BRIDGE_DIR_PREFIX}{os.getpid()}-", dir=bridge_root()))
        self._base.chmod(0o711)  # a sandbox's uid must traverse it to reach its own socket dir
        self._http: Any = None  # httpx.AsyncClient for the upstream, made on the loop
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="rock-env-model-service", daemon=True)
        self._thread.start()

    @staticmethod
    def connect(base_url: str | None = None, token: str | None = None, **kwargs: Any) -> RemoteModelService:
        """The trainer side of remote sandboxes' model services, through the admin at ``base_url``.

        See :class:`~rock_env.agents.model_remote.RemoteModelService` (same get/pending/answer/fail/begin_episode).
        """
        from rock_env.agents.model_remote import RemoteModelService

        return RemoteModelService(base_url, token, **kwargs)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Any, timeout: float | None = 30.0) -> Any:
        """Run a coroutine on the service's loop and wait for its result."""
        if self._closed:
            coro.close()
            raise ModelServiceError("the model service is closed; create a new ModelService")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- the bridge (rock_env.sandbox.bridge.SandboxBridge) ----------------------------------

    def open_bridge(self, sandbox_id: str, *, loopback: bool) -> BridgePlan:
        """Listen for one sandbox: a unix socket (bound into it, with a forwarder) or a loopback port."""
        if sandbox_id in self._bridges:
            raise InvalidArgument(f"sandbox {sandbox_id} is attached to this model service already")
        with self._lock:
            self._tags.setdefault(sandbox_id, _Tags())
        key = f"rock-env-{sandbox_id}"
        if loopback:
            port = self._call(self._listen_tcp(sandbox_id))
            return BridgePlan(env={"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": key})
        directory = self._base / sandbox_id
        directory.mkdir(mode=0o711)
        directory.chmod(0o711)
        shutil.copyfile(_FORWARDER_SOURCE, directory / FORWARDER_NAME)
        (directory / FORWARDER_NAME).chmod(0o644)
        self._call(self._listen_unix(sandbox_id, directory))
        return BridgePlan(
            env={"OPENAI_BASE_URL": f"http://127.0.0.1:{SANDBOX_PORT}/v1", "OPENAI_API_KEY": key},
            mount=BridgeMount(directory, BRIDGE_DIR),
            forwarder=[
                "python3",
                "-I",
                f"{BRIDGE_DIR}/{FORWARDER_NAME}",
                f"{BRIDGE_DIR}/{SOCKET_NAME}",
                str(SANDBOX_PORT),
            ],
        )

    def close_bridge(self, sandbox_id: str) -> None:
        """Stop listening for a sandbox, close its connections, drop its unanswered requests."""
        bridge = self._bridges.pop(sandbox_id, None)
        if bridge is not None and not self._closed:
            with contextlib.suppress(Exception):
                self._call(self._close_server(bridge))
        if bridge is not None and bridge.directory is not None:
            shutil.rmtree(bridge.directory, ignore_errors=True)
        self._drop(lambda p: p.request.sandbox_id == sandbox_id, 503, f"sandbox {sandbox_id} stopped")
        with self._lock:
            self._tags.pop(sandbox_id, None)

    async def _listen_tcp(self, sandbox_id: str) -> int:
        server = await asyncio.start_server(self._handler(sandbox_id), "127.0.0.1", 0)
        self._bridges[sandbox_id] = _Bridge(sandbox_id, server, None)
        return int(server.sockets[0].getsockname()[1])

    async def _listen_unix(self, sandbox_id: str, directory: Path) -> None:
        path = directory / SOCKET_NAME
        server = await asyncio.start_unix_server(self._handler(sandbox_id), str(path))
        path.chmod(0o666)  # the sandbox's user (a uid of its own) must be able to connect
        self._bridges[sandbox_id] = _Bridge(sandbox_id, server, directory)

    async def _close_server(self, bridge: _Bridge) -> None:
        bridge.server.close()
        for writer in list(bridge.writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bridge.server.wait_closed(), 2.0)

    def _handler(self, sandbox_id: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            bridge = self._bridges.get(sandbox_id)
            if bridge is not None and len(bridge.writers) >= MAX_CONNECTIONS:
                # a sandbox may not hold the host's memory or file descriptors with open connections
                error = openai_error(f"at most {MAX_CONNECTIONS} open connections per sandbox", kind="rate_limit_error")
                body = json.dumps(error).encode()
                head = (
                    f"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
                )
                with contextlib.suppress(Exception):
                    writer.write(head.encode() + b"\r\nconnection: close\r\n\r\n" + body)
                    await writer.drain()
                writer.close()
                return
            if bridge is not None:
                bridge.writers.add(writer)
            try:
                await serve_connection(reader, writer, lambda m, p, b: self._dispatch(sandbox_id, m, p, b))
            finally:
                if bridge is not None:
                    bridge.writers.discard(writer)

        return handle

    # --- HTTP dispatch (on the loop) ---------------------------------------------------------

    async def _dispatch(self, sandbox_id: str, method: str, path: str, body: bytes) -> HttpReply:
        path = path.rstrip("/")
        if path in ("/v1/models", "/models") and method == "GET":
            return _json(
                200,
                {
                    "object": "list",
                    "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "rock-env"}],
                },
            )
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                return _error(405, f"{method} {path}: use POST")
            return await self._chat(sandbox_id, body)
        return _error(404, f"{method} {path} is not served here; use POST /v1/chat/completions or GET /v1/models")

    async def _chat(self, sandbox_id: str, raw: bytes) -> HttpReply:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _error(400, f"the request body is not JSON: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "a chat-completions request needs a JSON object with a non-empty 'messages' list")
        with self._lock:
            tags = self._tags.setdefault(sandbox_id, _Tags())
            turn = tags.turn
            tags.turn += 1
            request = ModelRequest(
                id="mr-" + secrets.token_hex(8),
                sandbox_id=sandbox_id,
                env_id=tags.env_id,
                episode=tags.episode,
                turn=turn,
                body=body,
            )
        started = time.monotonic()
        status, payload, source = await self._answer_of(request)
        latency = time.monotonic() - started
        if self._recorder is not None:
            self._recorder.write(
                ModelExchange(
                    request_id=request.id,
                    sandbox_id=sandbox_id,
                    env_id=request.env_id,
                    episode=request.episode,
                    turn=request.turn,
                    request=body,
                    response=payload if status == 200 else None,
                    error=None if status == 200 else str(payload.get("error", {}).get("message", payload)),
                    status=status,
                    source=source,  # type: ignore[arg-type]
                    received_at=request.received_at,
                    answered_at=time.time(),
                    latency=latency,
                )
            )
        if status != 200 or not request.stream:
            return _json(status, payload)
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events = [sse_event(chunk) for chunk in completion_chunks(payload, include_usage=usage)]
        events.append(sse_event("[DONE]"))
        return HttpReply(200, content_type="text/event-stream", events=events)

    async def _answer_of(self, request: ModelRequest) -> tuple[int, dict[str, Any], str]:
        """(status, completion or error body, who answered) for one request."""
        if self._replay is not None:
            answer = self._replay.answer(request.body)
            if answer is None:
                message = f"no exchange in the recording {self._replay.path} matches this request (turn {request.turn})"
                return 404, openai_error(message, kind="not_found_error"), "replay"
            return 200, answer, "replay"
        if self.upstream is not None:
            status, payload = await self._from_upstream(request)
            return status, payload, "upstream"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, dict[str, Any]]] = loop.create_future()
        self._submit(_Pending(request, future))
        try:
            status, payload = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            with self._lock:
                self._forget(request.id)
            message = f"the trainer did not answer within {self.timeout:g}s (ModelService timeout)"
            return 504, openai_error(message, kind="timeout"), "trainer"
        return status, payload, "trainer"

    async def _from_upstream(self, request: ModelRequest) -> tuple[int, dict[str, Any]]:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout)
        headers = {"authorization": f"Bearer {self.upstream_api_key or 'none'}"}
        body = {**request.body, "stream": False}
        body.pop("stream_options", None)
        url = f"{self.upstream}/chat/completions"
        try:
            response = await self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            message = f"the upstream model server {self.upstream} is unreachable: {type(exc).__name__}: {exc}"
            logger.warning("model service: %s", message)
            return 502, openai_error(message, kind="upstream_error")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200 or not isinstance(payload, dict):
            text = response.text[:500]
            message = f"the upstream model server {self.upstream} answered HTTP {response.status_code}: {text}"
            return (response.status_code if response.status_code >= 400 else 502), openai_error(
                message, kind="upstream_error"
            )
        if self.on_exchange is not None:
            try:
                changed = await asyncio.get_running_loop().run_in_executor(None, self.on_exchange, request, payload)
                if changed is not None:
                    payload = completion_from_reply(changed, model=self.model)
            except Exception as exc:  # the hook is the trainer's code: its failure is the harness's 500
                logger.exception("model service: on_exchange failed")
                return 500, openai_error(f"the trainer's on_exchange hook failed: {exc}", kind="server_error")
        return 200, payload

    # --- pending requests --------------------------------------------------------------------

    def _submit(self, pending: _Pending) -> None:
        with self._lock:
            self._pending[pending.request.id] = pending
            for waiter in self._waiters:
                if waiter.matches(pending.request):
                    self._waiters.remove(waiter)
                    pending.handed = True
                    waiter.deliver(pending.request)
                    return
            self._queue.append(pending.request.id)

    def _forget(self, request_id: str) -> _Pending | None:
        """Remove a request (lock held)."""
        pending = self._pending.pop(request_id, None)
        if pending is not None and not pending.handed:
            with contextlib.suppress(ValueError):
                self._queue.remove(request_id)
        return pending

    def _take(self, sandbox_id: str | None) -> ModelRequest | None:
        """The first queued request (of ``sandbox_id``), marked handed out (lock held)."""
        for request_id in self._queue:
            pending = self._pending[request_id]
            if sandbox_id is None or pending.request.sandbox_id == sandbox_id:
                self._queue.remove(request_id)
                pending.handed = True
                return pending.request
        return None

    def _requeue(self, request: ModelRequest) -> None:
        """Give back a request a cancelled ``get`` had taken (lock held)."""
        pending = self._pending.get(request.id)
        if pending is not None:
            pending.handed = False
            self._queue.appendleft(request.id)

    def _drop(self, which: Callable[[_Pending], bool], status: int, message: str) -> None:
        with self._lock:
            dropped = [self._forget(rid) for rid, p in list(self._pending.items()) if which(p)]
        for pending in dropped:
            if pending is not None:
                self._resolve(pending, status, openai_error(message, kind="server_error"))

    def _resolve(self, pending: _Pending, status: int, payload: dict[str, Any]) -> None:
        def settle() -> None:
            if not pending.future.done():
                pending.future.set_result((status, payload))

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(settle)

    # --- the trainer's API -------------------------------------------------------------------

    def get(self, timeout: float | None = None, *, sandbox_id: str | None = None) -> ModelRequest:
        """The next request not handed out yet (of ``sandbox_id`` if given); ``TimeoutError`` after ``timeout`` s."""
        with self._lock:
            if self._closed:
                raise ModelServiceError("the model service is closed")
            request = self._take(sandbox_id)
            if request is not None:
                return request
            waiter = _SyncWaiter(sandbox_id)
            self._waiters.append(waiter)
        if not waiter.event.wait(timeout):
            with self._lock:
                if waiter.result is None:
                    self._waiters.remove(waiter)
                    raise TimeoutError(f"no model request within {timeout}s")
        assert waiter.result is not None
        return waiter.result

    def _async_waiter(self, sandbox_id: str | None, loop: asyncio.AbstractEventLoop) -> _AsyncWaiter:
        waiter = _AsyncWaiter(sandbox_id, loop)
        with self._lock:
            if self._closed:
                raise ModelServiceError("the model service is closed")
            request = self._take(sandbox_id)
            if request is not None:
                waiter.result = request
                waiter.future.set_result(request)
            else:
                self._waiters.append(waiter)
        return waiter

    def _cancel_waiter(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.result is None:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            else:
                self._requeue(waiter.result)

    def pending(self, sandbox_id: str | None = None) -> list[ModelRequest]:
        """Every unanswered request (of ``sandbox_id`` if given), oldest first; does not hand them out."""
        with self._lock:
            return [
                p.request for p in self._pending.values() if sandbox_id is None or p.request.sandbox_id == sandbox_id
            ]

    def answer(self, request_id: str, reply: str | dict[str, Any]) -> None:
        """Answer a request: assistant text, an assistant message (``content``/``tool_calls``) or a chat.completion."""
        completion = completion_from_reply(reply, model=self.model)  # a bad reply raises; the request stays pending
        with self._lock:
            pending = self._forget(request_id)
        if pending is None:
            raise ModelRequestNotFound(
                f"no pending model request {request_id!r}: answered already, timed out after {self.timeout:g}s, "
                "or its sandbox stopped"
            )
        self._resolve(pending, 200, completion)

    def fail(self, request_id: str, status: int = 500, message: str = "the trainer failed this request") -> None:
        """Answer a request with an HTTP error (``status`` 400..599) and ``message``."""
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidArgument(f"status={status!r} must be an HTTP error status (400..599)")
        with self._lock:
            pending = self._forget(request_id)
        if pending is None:
            raise ModelRequestNotFound(f"no pending model request {request_id!r}")
        self._resolve(pending, status, openai_error(str(message), kind="server_error"))

    def begin_episode(self, sandbox_id: str, episode: int, env_id: str | None = None) -> None:
        """Tag the sandbox's later requests with ``episode`` (and ``env_id``); their turn restarts at 0."""
        with self._lock:
            self._tags[sandbox_id] = _Tags(episode=int(episode), env_id=env_id)

    def record_reward(
        self,
        sandbox_id: str,
        episode: int,
        reward: float,
        info: dict[str, Any] | None = None,
        env_id: str | None = None,
    ) -> None:
        """Write the episode's reward into the recording (a ``kind="reward"`` line; nothing without ``record=``)."""
        if self._recorder is not None:
            self._recorder.write_reward(sandbox_id, episode, reward, info, env_id)

    @property
    def sandboxes(self) -> list[str]:
        """Ids of the sandboxes attached now."""
        return list(self._bridges)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every bridge, fail every unanswered request (503), stop the loop, remove the socket dirs."""
        if self._closed:
            return
        for sandbox_id in list(self._bridges):
            self.close_bridge(sandbox_id)
        self._drop(lambda p: True, 503, "the model service closed")
        self._closed = True

        async def shutdown() -> None:
            if self._http is not None:
                await self._http.aclose()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._loop.close()
        with self._lock:
            for waiter in self._waiters:
                if isinstance(waiter, _SyncWaiter):
                    waiter.event.set()
            self._waiters.clear()
        if self._recorder is not None:
            self._recorder.close()
        shutil.rmtree(self._base, ignore_errors=True)

    def __enter__(self) -> ModelService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._closed:
                self.close()


class AsyncModelService:
    """The async twin of :class:`ModelService` (same constructor); ``await svc.get()``, ``await svc.answer()``.

    Pass it (or its :attr:`sync`) to ``Sandbox``/``AsyncSandbox`` as ``model_service``.
    """

    def __init__(self, *, service: ModelService | None = None, **kwargs: Any) -> None:
        self.sync = service if service is not None else ModelService(**kwargs)

    @staticmethod
    def connect(base_url: str | None = None, token: str | None = None, **kwargs: Any) -> AsyncRemoteModelService:
        """The async trainer side of remote sandboxes' model services (see :meth:`ModelService.connect`)."""
        from rock_env.agents.model_remote import AsyncRemoteModelService

        return AsyncRemoteModelService(base_url, token, **kwargs)

    def open_bridge(self, sandbox_id: str, *, loopback: bool) -> BridgePlan:
        """See :meth:`ModelService.open_bridge`."""
        return self.sync.open_bridge(sandbox_id, loopback=loopback)

    def close_bridge(self, sandbox_id: str) -> None:
        """See :meth:`ModelService.close_bridge`."""
        self.sync.close_bridge(sandbox_id)

    async def get(self, timeout: float | None = None, *, sandbox_id: str | None = None) -> ModelRequest:
        """The next request not handed out yet; ``TimeoutError`` after ``timeout`` seconds."""
        waiter = self.sync._async_waiter(sandbox_id, asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except BaseException:
            self.sync._cancel_waiter(waiter)
            raise

    async def pending(self, sandbox_id: str | None = None) -> list[ModelRequest]:
        """Every unanswered request."""
        return self.sync.pending(sandbox_id)

    async def answer(self, request_id: str, reply: str | dict[str, Any]) -> None:
        """Answer a request (see :meth:`ModelService.answer`)."""
        self.sync.answer(request_id, reply)

    async def fail(self, request_id: str, status: int = 500, message: str = "the trainer failed this request") -> None:
        """Answer a request with an HTTP error."""
        self.sync.fail(request_id, status, message)

    def begin_episode(self, sandbox_id: str, episode: int, env_id: str | None = None) -> None:
        """See :meth:`ModelService.begin_episode`."""
        self.sync.begin_episode(sandbox_id, episode, env_id)

    def record_reward(
        self,
        sandbox_id: str,
        episode: int,
        reward: float,
        info: dict[str, Any] | None = None,
        env_id: str | None = None,
    ) -> None:
        """See :meth:`ModelService.record_reward`."""
        self.sync.record_reward(sandbox_id, episode, reward, info, env_id)

    async def aclose(self) -> None:
        """Close the service (in a thread: it joins the I/O thread)."""
        await asyncio.get_running_loop().run_in_executor(None, self.sync.close)

    def close(self) -> None:
        """Close the service."""
        self.sync.close()

    async def __aenter__(self) -> AsyncModelService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["SANDBOX_PORT", "AsyncModelService", "ExchangeHook", "ModelService"]
