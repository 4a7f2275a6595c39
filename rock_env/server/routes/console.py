"""The web console: static pages at ``/`` and ``/console/...``, its JSON API and the live attach socket.

- ``GET /`` and ``GET /console/<asset>``: the single-page app (shipped in ``rock_env/server/console``;
  no build step). The assets hold no data, so the gateway serves them without a token.
- ``GET /api/v1/console/overview|objects|sandboxes/{id}|envs/{id}``: what the pages show. A caller
  sees its own objects; the admin token (the first configured one), or anyone on a server without
  tokens, sees every owner's.
- ``POST /api/v1/console/sandboxes/{id}/stop``, ``GET .../dir`` and ``GET .../file``: stop, browse, download.
- ``WS /api/v1/console/sandboxes/{id}/attach?session=NAME``: live attach (see
  :mod:`rock_env.protocol.console`). Browsers cannot set headers on a WebSocket, so the token
  travels as the subprotocol ``bearer.<base64url(token)>`` next to ``rock-env`` (the gateway reads it).

Without tokens the console (pages, API and socket) answers loopback clients only (403 otherwise).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from rock_env.errors import (
    EnvInstanceNotFound,
    Forbidden,
    InvalidArgument,
    RequestInvalid,
    RockEnvError,
    SandboxClosed,
    SandboxNotFound,
    SessionNotFound,
)
from rock_env.protocol import error_body
from rock_env.protocol.console import (
    AttachEvent,
    AttachHello,
    AttachMessage,
    ConsoleCounts,
    ConsoleEnv,
    ConsoleObject,
    ConsoleObjects,
    ConsoleOverview,
    ConsoleSandbox,
    ConsoleSession,
    EnvHistoryView,
    SessionCommand,
)
from rock_env.server.console_relay import SUBPROTOCOL, relay
from rock_env.server.console_stats import MetricsSampler
from rock_env.server.hosts import EmbeddedHost, HostOp
from rock_env.server.routes._common import ERROR_RESPONSES, model_response, owner_of, raw_json, service_of
from rock_env.server.routes.stream_ws import deny
from rock_env.server.sandbox_ops import BYTE_OPS, JSON_OPS, SANDBOX_STOP
from rock_env.server.service import Service
from rock_env.server.store import ObjectRecord

logger = logging.getLogger(__name__)

#: Where the console's files are (shipped as package data).
ASSETS = Path(__file__).resolve().parent.parent / "console"
#: Seconds between checks that an attached sandbox still exists.
SANDBOX_CHECK_EVERY = 1.0
#: Seconds a command typed in the console may run (Ctrl-C stops it earlier).
CONSOLE_COMMAND_TIMEOUT = 600.0
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

#: The worker-side op that answers an env's history (so that envs on remote workers can be followed too).
ENV_HISTORY = HostOp(
    "console_history",
    "env",
    "GET",
    "/api/v1/console/envs/{id}/history",
    lambda w, i, b, a: w.history.get(i) or {},
    lambda w, i, b: False,
)


#: The worker-side op that answers the history of one sub-env of a vector env.
VEC_HISTORY = HostOp(
    "console_vec_history",
    "vec",
    "GET",
    "/api/v1/console/vecs/{id}/history",
    lambda w, i, b, a: w.vec_history.get(i, int(a["index"])) or {},
    lambda w, i, b: False,
    query=("index",),
)


def _sessions_of(worker: Any, obj_id: str) -> list[ConsoleSession]:
    sessions = getattr(worker.sandbox(obj_id), "_sessions", {})
    return [_session_view(name, bash) for name, bash in sorted(list(sessions.items()))]


#: The worker-side op that lists a sandbox's sessions and their recent commands.
SANDBOX_SESSIONS = HostOp(
    "console_sessions",
    "sandbox",
    "GET",
    "/api/v1/console/sandboxes/{id}/sessions",
    lambda w, i, b, a: _sessions_of(w, i),
    lambda w, i, b: False,
)


def is_loopback(host: str | None) -> bool:
    """Whether a client address is a loopback address (``None``: unknown, treated as not loopback)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def check_client(svc: Service, client: tuple[str, int] | None) -> None:
    """Without tokens the console answers loopback clients only (Forbidden otherwise)."""
    if not svc.auth_enabled and not is_loopback(client[0] if client else None):
        raise Forbidden(
            "this server has no API token, so its console answers only on loopback (127.0.0.1): open it from "
            "the server's host (e.g. an SSH tunnel), or start the server with a token (server.token=...)."
        )


def sees_all(svc: Service, owner: str) -> bool:
    """The admin token (the first configured one), and anyone without tokens, see every owner's objects."""
    tokens = svc.settings.all_tokens()
    return not tokens or owner == tokens[0].name


def _find(svc: Service, obj_id: str, kinds: tuple[str, ...], owner: str) -> ObjectRecord:
    """The live record of ``obj_id`` for this viewer (without touching its idle time)."""
    rec = svc.records.get(obj_id)
    if rec is None or rec.kind not in kinds or not (sees_all(svc, owner) or rec.owner == owner):
        if kinds == ("sandbox",):
            raise SandboxNotFound(
                f"no sandbox with id {obj_id!r} on this server: it was stopped, reaped or never made."
            )
        raise EnvInstanceNotFound(f"no env with id {obj_id!r} on this server: it was closed, reaped or never made.")
    if rec.status != "live":
        raise SandboxNotFound(f"{rec.kind} {obj_id!r} is gone: {rec.reason or 'its worker was lost'}.")
    return rec


def _row(rec: ObjectRecord) -> ConsoleObject:
    info = rec.info
    config = info.get("config") or {}
    what = info.get("env_id") or config.get("image") or ("(default image)" if rec.kind == "sandbox" else "")
    runtime = info.get("runtime") or config.get("runtime")
    return ConsoleObject(
        id=rec.id,
        kind=rec.kind,  # type: ignore[arg-type]
        what=str(what),
        runtime=None if runtime is None else str(runtime),
        worker_id=rec.worker_id,
        owner=rec.owner,
        size=rec.size,
        created=rec.created,
        last_used=max(rec.last_used, float(info.get("last_used") or 0)),
        status=rec.status,
    )


def _command(data: dict[str, Any] | None) -> SessionCommand | None:
    return None if data is None else SessionCommand.model_validate(data)


def _bash(sandbox: Any, name: str) -> Any:
    """The :class:`~rock_env.sandbox.session.BashSession` ``name`` of a hosted sandbox (the default one is made)."""
    sessions = getattr(sandbox, "_sessions", None)
    if sessions is None:
        raise InvalidArgument(f"sandbox {sandbox!r} has no bash sessions to attach to.")
    if name not in sessions:
        if name != "default":
            raise SessionNotFound(f"no session {name!r} in this sandbox; open ones: {sorted(sessions)}.")
        sandbox.create_session(name)
    return sessions[name]


def _session_view(name: str, bash: Any) -> ConsoleSession:
    return ConsoleSession(
        name=name,
        alive=bool(bash.alive),
        commands=int(bash.info().commands),
        current=_command(bash.current),
        recent=[SessionCommand.model_validate(c) for c in list(bash.recent)],
    )


def router_for(service: Service) -> APIRouter:
    """The console's routes; starts the sampler of the overview's rates with the service."""
    sampler = MetricsSampler(service.metrics)
    service.background.append(sampler.run)
    router = APIRouter(tags=["console"])

    def guard(request: Request) -> Service:
        svc = service_of(request)
        check_client(svc, request.client and (request.client.host, request.client.port))
        return svc

    # --- pages ---------------------------------------------------------------------------

    @router.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        guard(request)
        return FileResponse(ASSETS / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})

    @router.get("/console/{asset:path}", include_in_schema=False)
    async def asset(asset: str, request: Request) -> Response:
        guard(request)
        path = (ASSETS / asset).resolve()
        if not path.is_relative_to(ASSETS) or not path.is_file() or path.suffix not in _TYPES:
            raise StarletteHTTPException(404, f"no console asset {asset!r}: open the console at /.")
        return FileResponse(path, media_type=_TYPES[path.suffix])

    # --- data ----------------------------------------------------------------------------

    @router.get(
        "/api/v1/console/overview",
        response_model=ConsoleOverview,
        responses=ERROR_RESPONSES,
        summary="Console overview",
    )
    async def overview(request: Request) -> Response:
        """Workers, live objects, steps/s and latency over the last minutes, errors by type."""
        from rock_env.version import __version__

        svc = guard(request)
        owner = owner_of(request)
        live = [r for r in svc.records.values() if r.status == "live"]
        totals = sampler.last if sampler.last is not None else sampler.sample()
        return model_response(
            ConsoleOverview(
                role=svc.role,
                version=__version__,
                viewer=owner,
                sees_all=sees_all(svc, owner),
                workers=svc.worker_infos(),
                counts=ConsoleCounts(
                    envs=sum(1 for r in live if r.kind == "env"),
                    vecs=sum(1 for r in live if r.kind == "vec"),
                    vec_sub_envs=sum(r.size for r in live if r.kind == "vec"),
                    sandboxes=sum(1 for r in live if r.kind == "sandbox"),
                ),
                series=list(sampler.points),
                errors=totals.errors,
            )
        )

    @router.get(
        "/api/v1/console/objects", response_model=ConsoleObjects, responses=ERROR_RESPONSES, summary="Console lists"
    )
    async def objects(request: Request) -> Response:
        """Envs, vector envs and sandboxes this caller may see."""
        svc = guard(request)
        owner = owner_of(request)
        every = sees_all(svc, owner)
        rows = [_row(r) for r in svc.records.values() if every or r.owner == owner]
        rows.sort(key=lambda r: -r.created)
        return model_response(
            ConsoleObjects(
                envs=[r for r in rows if r.kind == "env"],
                vecs=[r for r in rows if r.kind == "vec"],
                sandboxes=[r for r in rows if r.kind == "sandbox"],
            )
        )

    @router.get(
        "/api/v1/console/sandboxes/{sandbox}",
        response_model=ConsoleSandbox,
        responses=ERROR_RESPONSES,
        summary="Console sandbox",
    )
    async def sandbox_page(sandbox: str, request: Request) -> Response:
        """A sandbox with its sessions and their recent commands."""
        svc = guard(request)
        rec = _find(svc, sandbox, ("sandbox",), owner_of(request))
        host = svc.host_of(rec)
        raw = await host.call(SANDBOX_SESSIONS, rec.id)
        sessions = TypeAdapter(list[ConsoleSession]).validate_json(raw)
        return model_response(
            ConsoleSandbox(
                sandbox=_row(rec),
                config=dict(rec.info.get("config") or {}),
                sessions=sessions,
                attachable=True,
            )
        )

    @router.get("/api/v1/console/sandboxes/{sandbox}/sessions", include_in_schema=False)
    async def sessions_of(sandbox: str, request: Request) -> Response:
        """A worker's answer to :data:`SANDBOX_SESSIONS` (the admin asks its remote workers this)."""
        svc = guard(request)
        rec = _find(svc, sandbox, ("sandbox",), owner_of(request))
        return raw_json(await svc.host_of(rec).call(SANDBOX_SESSIONS, rec.id))

    @router.post(
        "/api/v1/console/sandboxes/{sandbox}/stop", responses=ERROR_RESPONSES, summary="Console: stop a sandbox"
    )
    async def stop(sandbox: str, request: Request) -> Response:
        """Stop the sandbox (its owner's or, for the admin token, anyone's)."""
        svc = guard(request)
        rec = _find(svc, sandbox, ("sandbox",), owner_of(request))
        await svc.close("sandbox", rec.id, rec.owner, SANDBOX_STOP)
        return raw_json(b'{"ok":true}')

    @router.get(
        "/api/v1/console/sandboxes/{sandbox}/dir", responses=ERROR_RESPONSES, summary="Console: list a directory"
    )
    async def list_dir(
        sandbox: str, request: Request, path: str = Query(".", min_length=1, max_length=4096)
    ) -> Response:
        """The entries of a directory in the sandbox."""
        svc = guard(request)
        rec = _find(svc, sandbox, ("sandbox",), owner_of(request))
        return raw_json(await svc.host_of(rec).call(JSON_OPS["list_dir"], rec.id, None, {"path": path}))

    @router.get(
        "/api/v1/console/sandboxes/{sandbox}/file", responses=ERROR_RESPONSES, summary="Console: download a file"
    )
    async def read_file(sandbox: str, request: Request, path: str = Query(min_length=1, max_length=4096)) -> Response:
        """A file's bytes (sent as a download)."""
        svc = guard(request)
        rec = _find(svc, sandbox, ("sandbox",), owner_of(request))
        out = await svc.host_of(rec).open_bytes(BYTE_OPS["read_file"], rec.id, {"path": path})
        name = path.rstrip("/").rsplit("/", 1)[-1] or "file"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        return StreamingResponse(
            out.chunks,
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="{safe}"'},
            background=BackgroundTask(out.close),
        )

    @router.get(
        "/api/v1/console/envs/{env}", response_model=ConsoleEnv, responses=ERROR_RESPONSES, summary="Console env"
    )
    async def env_page(env: str, request: Request) -> Response:
        """The current observation and the last actions and rewards of a live env."""
        svc = guard(request)
        rec = _find(svc, env, ("env",), owner_of(request))
        raw = await svc.host_of(rec).call(ENV_HISTORY, rec.id)
        history = EnvHistoryView.model_validate_json(raw)
        return model_response(ConsoleEnv(env=_row(rec), history=history))

    @router.get("/api/v1/console/envs/{env}/history", include_in_schema=False)
    async def env_history(env: str, request: Request) -> Response:
        """A worker's answer to :data:`ENV_HISTORY` (the admin asks its remote workers this)."""
        svc = guard(request)
        if svc.worker is None:
            raise EnvInstanceNotFound(f"no env with id {env!r} on this server (it hosts no envs).")
        return raw_json(json.dumps(svc.worker.history.get(env) or {}).encode())

    @router.get(
        "/api/v1/console/vecs/{vec}", response_model=ConsoleEnv, responses=ERROR_RESPONSES, summary="Console vector env"
    )
    async def vec_page(vec: str, request: Request, index: int = Query(0, ge=0)) -> Response:
        """The current observation and the last actions and rewards of one sub-env of a vector env."""
        svc = guard(request)
        rec = _find(svc, vec, ("vec",), owner_of(request))
        if index >= rec.size:
            raise InvalidArgument(f"vector env {vec!r} has {rec.size} sub-envs: index must be 0..{rec.size - 1}.")
        raw = await svc.host_of(rec).call(VEC_HISTORY, rec.id, None, {"index": str(index)})
        return model_response(ConsoleEnv(env=_row(rec), history=EnvHistoryView.model_validate_json(raw), index=index))

    @router.get("/api/v1/console/vecs/{vec}/history", include_in_schema=False)
    async def vec_history(vec: str, request: Request, index: int = Query(0, ge=0)) -> Response:
        """A worker's answer to :data:`VEC_HISTORY`."""
        svc = guard(request)
        if svc.worker is None:
            raise EnvInstanceNotFound(f"no vector env with id {vec!r} on this server (it hosts no envs).")
        return raw_json(json.dumps(svc.worker.vec_history.get(vec, index) or {}).encode())

    @router.websocket("/api/v1/console/sandboxes/{sandbox}/attach")
    async def attach(websocket: WebSocket, sandbox: str, session: str = "default") -> None:
        """Live attach to a session of a sandbox (see :mod:`rock_env.protocol.console`)."""
        svc: Service = websocket.app.state.service
        owner = str(websocket.scope.get("state", {}).get("owner", "anonymous"))
        try:
            check_client(svc, websocket.client and (websocket.client.host, websocket.client.port))
            rec = _find(svc, sandbox, ("sandbox",), owner)
            host = svc.host_of(rec)
            if not isinstance(host, EmbeddedHost):  # on a remote worker: relay to the worker's own attach socket
                path, query = websocket.url.path, websocket.url.query
                refused = await relay(websocket, svc.workers[rec.worker_id].url, path, query, svc.cluster_token)
                if refused is not None:
                    raise refused
                return
            obj = host.worker.sandbox(rec.id)
            bash = await svc.blocking(_bash, obj, session)
        except RockEnvError as exc:
            svc.count_error(exc)
            await deny(websocket, exc)
            return
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        await Attachment(websocket, svc, obj, bash, rec.id, session).serve()

    return router


class Attachment:
    """One browser attached to one session: forwards the session's events, runs what the user types."""

    def __init__(self, websocket: WebSocket, svc: Service, sandbox: Any, bash: Any, obj_id: str, session: str) -> None:
        self.websocket = websocket
        self.svc = svc
        self.sandbox = sandbox
        self.bash = bash
        self.obj_id = obj_id
        self.session = session
        self.taken = False
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=4096)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.mine: list[str] = []  # commands this console sent and that did not start yet
        self.tasks: set[asyncio.Task[None]] = set()

    def _on_event(self, loop: asyncio.AbstractEventLoop, kind: str, payload: dict[str, Any]) -> None:
        """A session event, on the command's thread: hand it to the loop."""
        if kind == "output":
            event: dict[str, Any] = {"event": "output", "text": self.decoder.decode(payload["data"])}
        elif kind == "command":
            event = {"event": "command", "cmd": payload["cmd"]}
            self.decoder.reset()
        else:
            event = {"event": "exit", **{k: payload.get(k) for k in ("exit_code", "timed_out", "duration")}}
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: dict[str, Any]) -> None:
        if event["event"] == "command" and event["cmd"] in self.mine:
            self.mine.remove(event["cmd"])
            event["by"] = "console"
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:  # a watcher that cannot keep up loses output, never blocks the command
            logger.debug("console attach of %s dropped an event", self.obj_id)

    async def serve(self) -> None:
        """Run until the browser goes away or the session ends."""
        loop = asyncio.get_running_loop()
        unsubscribe = self.bash.watch(lambda kind, payload: self._on_event(loop, kind, payload))
        sender = asyncio.ensure_future(self._send_loop())
        watchdog = asyncio.ensure_future(self._watch_sandbox())
        try:
            hello = AttachHello(
                sandbox=self.obj_id,
                session=self.session,
                sessions=sorted(getattr(self.sandbox, "_sessions", {})),
                current=_command(self.bash.current),
                recent=[SessionCommand.model_validate(c) for c in list(self.bash.recent)[-20:]],
            )
            await self.websocket.send_text(hello.model_dump_json())
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(message.get("text") or message.get("bytes") or b"")
        except WebSocketDisconnect:
            pass
        finally:
            unsubscribe()
            for task in (sender, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in list(self.tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.websocket.close()

    async def _watch_sandbox(self) -> None:
        """Close the socket once the sandbox is stopped (by anyone) or its session closed."""
        while True:
            await asyncio.sleep(SANDBOX_CHECK_EVERY)
            rec = self.svc.records.get(self.obj_id)
            closed = getattr(self.sandbox, "_sessions", {}).get(self.session) is not self.bash
            if rec is None or rec.status != "live" or closed:
                with contextlib.suppress(Exception):
                    gone = SandboxClosed(
                        f"sandbox {self.obj_id!r} was stopped (or its session {self.session!r} closed)."
                    )
                    await self.websocket.send_text(json.dumps({"event": "error", **error_body(gone).model_dump()}))
                    await self.websocket.close(code=1000, reason="sandbox stopped")
                return

    async def _send_loop(self) -> None:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            await self.websocket.send_text(AttachEvent.model_validate(event).model_dump_json(exclude_none=True))

    async def _error(self, exc: RockEnvError) -> None:
        self.svc.count_error(exc)
        await self.websocket.send_text(json.dumps({"event": "error", **error_body(exc).model_dump()}))

    async def _handle(self, raw: str | bytes) -> None:
        try:
            message = AttachMessage.model_validate_json(raw)
        except ValidationError as exc:
            await self._error(
                RequestInvalid(f'bad attach message: {exc.errors()[0]["msg"]}; send e.g. {{"type": "takeover"}}.')
            )
            return
        if message.type in ("takeover", "release"):
            self.taken = message.type == "takeover"
            self.queue.put_nowait({"event": message.type})
            return
        if not self.taken:
            await self._error(
                Forbidden('this console only watches the session: take over first (send {"type": "takeover"}).')
            )
            return
        if message.type == "interrupt":
            await self.svc.blocking(self.sandbox.interrupt, self.session)
            return
        line = (message.line or "").strip()
        if not line:
            return
        self.mine.append(line)
        task = asyncio.ensure_future(self._run(line))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, line: str) -> None:
        try:
            await self.svc.blocking(self.sandbox.run, line, self.session, CONSOLE_COMMAND_TIMEOUT)
        except RockEnvError as exc:
            with contextlib.suppress(Exception):
                await self._error(exc)
