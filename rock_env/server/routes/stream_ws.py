"""A sandbox command's output over a WebSocket: ``/api/v1/sandboxes/{id}/stream/ws``.

The protocol (the twin of the server-sent-events route ``POST .../stream``):

1. The client opens the socket (same token headers as HTTP). An unknown sandbox or a bad
   token is refused at the handshake with the usual JSON error answer (HTTP 4xx).
2. The client sends one text message: a :class:`~rock_env.protocol.StreamRequest` as JSON.
3. The server answers with text messages ``{"event": "output", "text": ...}`` as output
   comes, then one ``{"event": "exit", "exit_code": ..., "timed_out": ...}`` and closes
   with code 1000; or one ``{"event": "error", "error": ..., "message": ..., "status": ...}``
   (an ErrorBody) and closes with code ``4000 + status`` (e.g. 4422 for a malformed request)
   and the error class as the reason.
4. Any message from the client after the request, or the client going away, stops the
   command (it is killed) and ends the stream.

The sandbox's host runs the command (:meth:`~rock_env.server.hosts.Host.events`): in this process, or
on another worker whose server-sent events the admin relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from rock_env.errors import RequestInvalid, RockEnvError
from rock_env.protocol import StreamRequest, describe_errors, error_body, invalid_request
from rock_env.server.service import Service
from rock_env.server.store import ObjectRecord

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/sandboxes", tags=["sandboxes"])

#: Close code of a normal end, and the base of the error close codes (``4000 + http status``).
CLOSE_NORMAL = 1000
CLOSE_ERROR_BASE = 4000


def close_code_of(status: int) -> int:
    """The close code that carries an error of HTTP status ``status``."""
    return CLOSE_ERROR_BASE + status if 400 <= status <= 999 else 1011


def _reason(text: str) -> str:
    """A close reason (at most 123 bytes of UTF-8)."""
    return text.encode()[:123].decode(errors="ignore")


async def deny(websocket: WebSocket, exc: RockEnvError) -> None:
    """Refuse the handshake with the JSON error answer (or close with the error code if the server cannot)."""
    body = error_body(exc).model_dump_json()
    try:
        await websocket.send_denial_response(Response(body, status_code=exc.http_status, media_type="application/json"))
    except RuntimeError:  # the ASGI server lacks the denial-response extension
        await websocket.close(code=close_code_of(exc.http_status), reason=_reason(type(exc).__name__))


@router.websocket("/{sandbox}/stream/ws")
async def stream_ws(websocket: WebSocket, sandbox: str) -> None:
    """Run a command in the sandbox and stream its output over this WebSocket (see the module doc)."""
    svc: Service = websocket.app.state.service
    owner = str(websocket.scope.get("state", {}).get("owner", "anonymous"))
    try:
        rec = svc.lookup(sandbox, ("sandbox",), owner)
    except RockEnvError as exc:
        svc.count_error(exc)
        await deny(websocket, exc)
        return
    await websocket.accept()
    try:
        await _serve(websocket, svc, rec)
    except RockEnvError as exc:
        svc.count_error(exc)
        await _finish_with_error(websocket, exc)
    except WebSocketDisconnect:
        logger.debug("stream client of sandbox %s went away", sandbox)
    except Exception as exc:  # a bug: tell the client, log it, never leave the socket open
        logger.exception("streaming over a WebSocket in sandbox %s failed", sandbox)
        await _finish_with_error(websocket, RockEnvError(f"internal error: {type(exc).__name__}: {exc}"))


async def _serve(websocket: WebSocket, svc: Service, rec: ObjectRecord) -> None:
    path = websocket.url.path
    try:
        async with asyncio.timeout(svc.settings.body_timeout):
            message = await websocket.receive()
    except TimeoutError:
        raise RequestInvalid(
            f"no request on {path} for {svc.settings.body_timeout:.0f}s: send the StreamRequest JSON right away."
        ) from None
    if message["type"] == "websocket.disconnect":
        return
    raw = message.get("text") if message.get("text") is not None else message.get("bytes")
    try:
        body = StreamRequest.model_validate_json(raw or b"", strict=True)
    except ValidationError as exc:
        error = invalid_request(exc, f"{path} (first message)")
        if isinstance(error, RequestInvalid):
            raise RequestInvalid(
                f"invalid first message on {path}: {describe_errors(exc.errors())}; send a StreamRequest as JSON, "
                'e.g. {"cmd": "ls -l"}.'
            ) from None
        raise error from None
    source = svc.host_of(rec).events(rec.id, body)
    try:
        await anext(source)  # ("started", {}); errors starting the command are raised here
        sender = asyncio.ensure_future(_send_events(websocket, source))
        listener = asyncio.ensure_future(websocket.receive())
        try:
            done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, listener):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if sender in done:
            kind, payload = sender.result()
            if kind == "exit":
                await websocket.close(code=CLOSE_NORMAL)
            else:
                status = int(payload.get("status", 500))
                await websocket.close(code=close_code_of(status), reason=_reason(str(payload.get("error", ""))))
        else:
            message = listener.result()
            if message["type"] != "websocket.disconnect":  # the client asked to stop the command
                await websocket.close(code=CLOSE_NORMAL, reason="stopped by the client")
    finally:
        await source.aclose()


async def _send_events(websocket: WebSocket, source: AsyncIterator[tuple[str, Any]]) -> tuple[str, Any]:
    """Send every event; return the last one (``exit`` or ``error``)."""
    async for kind, payload in source:
        await websocket.send_text(json.dumps({"event": kind, **payload}))
        if kind != "output":
            return kind, payload
    return "error", {"error": "SandboxError", "message": "the output stream ended without an exit", "status": 502}


async def _finish_with_error(websocket: WebSocket, exc: RockEnvError) -> None:
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"event": "error", **error_body(exc).model_dump()}))
        await websocket.close(code=close_code_of(exc.http_status), reason=_reason(type(exc).__name__))
