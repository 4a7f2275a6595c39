"""The FastAPI application of the admin (and of each worker process).

``create_app(settings, role)`` wires the :class:`~rock_env.server.service.Service` to the
routes, puts a small ASGI gateway in front (token check, body size and body-timeout
limits) and maps every :class:`~rock_env.errors.RockEnvError` to its ``http_status`` with
a JSON :class:`~rock_env.protocol.ErrorBody`. Bad input is always a 4xx with a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from rock_env.errors import PayloadTooLarge, RequestInvalid, RockEnvError, Unauthorized
from rock_env.protocol import (
    EnvResetRequest,
    EnvStepRequest,
    VecStepRequest,
    error_body,
    invalid_request,
)
from rock_env.server.error_map import error_response, json_error
from rock_env.server.routes.envs import BATCH_OPS, batch_op, reset_env_op, step_env_op, step_vec_op
from rock_env.server.service import ANONYMOUS, Service
from rock_env.server.settings import ServerSettings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Paths served without a token.
PUBLIC_PATHS = frozenset({"/api/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/"})
#: Path prefixes served without a token (the web console's static assets: they hold no data).
PUBLIC_PREFIXES = ("/console/",)


class Gateway:
    """ASGI middleware: authentication, request-body size limit and slow-body timeout."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        owner = ANONYMOUS
        path = scope["path"]
        if service.auth_enabled and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            try:
                owner = service.authenticate(_token_from(scope))
            except Unauthorized as exc:
                service.count_error(exc)
                await json_error(exc)(scope, receive, send)
                return
        scope.setdefault("state", {})["owner"] = owner
        limit, knob = service.settings.max_body, "server.max_body"
        if scope["method"] == "PUT" and scope["path"].endswith("/archive"):
            limit, knob = service.settings.max_upload, "server.max_upload"  # streamed to disk, not held in memory
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await json_error(RequestInvalid(f"bad Content-Length header {value!r}."))(scope, receive, send)
                    return
                if declared > limit:
                    too_large = PayloadTooLarge(
                        f"request body of {declared} bytes is larger than this server accepts ({limit} bytes); "
                        f"split it (e.g. upload files one by one) or raise {knob}."
                    )
                    service.count_error(too_large)
                    await json_error(too_large)(scope, receive, send)
                    return
                break
        timeout = service.settings.body_timeout
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise StarletteHTTPException(
                    408, f"the client sent no request data for {timeout:.0f}s; send the whole body promptly."
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise StarletteHTTPException(
                        413, f"request body larger than this server accepts ({limit} bytes); raise {knob}."
                    )
            return message

        if scope["method"] == "POST":
            fast = _fast_route(scope["path"])
            if fast is not None:
                await self._fast(scope, guarded_receive, send, owner, *fast)
                return
        await self.app(scope, guarded_receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate a WebSocket handshake like an HTTP request (a bad token gets the JSON 401 answer)."""
        service = self.service
        owner = ANONYMOUS
        if service.auth_enabled:
            try:
                owner = service.authenticate(_token_from(scope))
            except Unauthorized as exc:
                service.count_error(exc)
                await _deny_websocket(scope, receive, send, exc)
                return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)

    async def _fast(self, scope: Scope, receive: Receive, send: Send, owner: str, kind: str, obj: str, op: str) -> None:
        """Serve env reset/step and vector step without the framework's routing (the hot path).

        The same routes exist in FastAPI (and in /openapi.json); this only skips its routing
        and dependency machinery, which costs more than the env step itself. Errors get the
        same answers as the app's (:func:`~rock_env.server.error_map.error_response`).
        """
        service = self.service
        path = scope["path"]
        try:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            raw = b"".join(chunks)
            try:
                if kind == "batch":
                    batch = BATCH_OPS[op][0].model_validate_json(raw, strict=True)
                    content = await batch_op(service, owner, op, batch)
                elif kind == "vecs":
                    body = VecStepRequest.model_validate_json(raw, strict=True)
                    content = await step_vec_op(service, owner, obj, body)
                elif op == "step":
                    step = EnvStepRequest.model_validate_json(raw, strict=True)
                    content = await step_env_op(service, owner, obj, step)
                else:
                    reset = EnvResetRequest.model_validate_json(raw, strict=True)
                    content = await reset_env_op(service, owner, obj, reset)
            except ValidationError as exc:
                raise invalid_request(exc, f"POST {path}") from None
        except Exception as exc:
            await error_response(exc, "POST", path, service.metrics)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})


async def _deny_websocket(scope: Scope, receive: Receive, send: Send, exc: RockEnvError) -> None:
    """Refuse a WebSocket handshake with ``exc`` as a JSON HTTP answer (a bare close if the server cannot)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        content = error_body(exc).model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "websocket.http.response.start", "status": exc.http_status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": content})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": type(exc).__name__})


def _fast_route(path: str) -> tuple[str, str, str] | None:
    """``("envs", id, "step"|"reset")``, ``("vecs", id, "step")`` or ``("batch", "", op)`` for the hot
    paths, else None."""
    if path.startswith("/api/v1/batch/"):
        op = path[14:]
        return ("batch", "", op) if op in BATCH_OPS else None
    if path.startswith("/api/v1/envs/"):
        kind, rest = "envs", path[13:]
    elif path.startswith("/api/v1/vecs/"):
        kind, rest = "vecs", path[13:]
    else:
        return None
    obj, sep, op = rest.partition("/")
    if not sep or not obj or (op != "step" and (kind == "vecs" or op != "reset")):
        return None
    return kind, obj, op


def _token_from(scope: Scope) -> str | None:
    if scope["type"] == "websocket":  # browsers cannot set headers on a WebSocket: the console sends a subprotocol
        from rock_env.server.console_auth import token_from_subprotocols

        offered = token_from_subprotocols(scope.get("subprotocols") or [])
        if offered is not None:
            return offered
    for key, value in scope["headers"]:
        if key == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, rest = text.partition(" ")
            return rest.strip() if scheme.lower() == "bearer" else text
        if key == b"x-api-key":
            return str(value.decode("latin-1").strip())
    return None


def install_error_handlers(app: FastAPI, service: Service) -> None:
    """Map our errors, validation errors and framework errors to JSON 4xx answers (one mapper for all)."""

    async def on_error(request: Request, exc: Exception) -> Response:
        return error_response(exc, request.method, request.url.path, service.metrics)

    for kind in (RockEnvError, RequestValidationError, StarletteHTTPException, ClientDisconnect, Exception):
        app.add_exception_handler(kind, on_error)


def create_app(settings: ServerSettings | None = None, role: Literal["admin", "worker"] = "admin") -> FastAPI:
    """Build the app; the service starts and stops with the app's lifespan."""
    from rock_env.server.routes import compat, envs, hosted, rock_sandbox, sandboxes, stream_ws, system
    from rock_env.server.routes import console as console_routes
    from rock_env.server.routes import hub as hub_routes
    from rock_env.server.routes import model_service as model_service_routes
    from rock_env.version import __version__

    settings = settings or ServerSettings()
    service = Service(settings, role=role)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()

    app = FastAPI(
        title="rock-env admin" if role == "admin" else "rock-env worker",
        version=__version__,
        description="Envs and sandboxes for agentic RL over HTTP. Errors are JSON ErrorBody objects.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app, service)
    app.include_router(system.router)
    app.include_router(envs.router)
    app.include_router(sandboxes.router)
    app.include_router(stream_ws.router)
    app.include_router(compat.router)
    app.include_router(rock_sandbox.router)
    app.include_router(hosted.router)
    app.include_router(model_service_routes.router)
    app.include_router(hub_routes.router_for(service))
    app.include_router(system.metrics_router)
    app.include_router(console_routes.router_for(service))
    app.add_middleware(Gateway, service=service)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        from rock_env.server.routes._common import BODY_COMPONENTS

        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in BODY_COMPONENTS.items():
            components.setdefault(name, definition)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
