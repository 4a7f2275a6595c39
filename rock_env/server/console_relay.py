"""Live attach to a sandbox on a remote worker: the admin relays the browser's socket to the worker's.

A worker serves the same console attach socket for the sandboxes it hosts; the admin opens it
with the cluster token (the browser never talks to workers) and copies messages both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from rock_env.errors import RockEnvError, WorkerLost
from rock_env.protocol import exception_from_body
from rock_env.server.console_auth import token_subprotocol

logger = logging.getLogger(__name__)

#: The WebSocket subprotocol of the console's attach socket.
SUBPROTOCOL = "rock-env"


async def relay(websocket: WebSocket, worker_url: str, path: str, query: str, token: str | None) -> RockEnvError | None:
    """Connect to ``path`` on the worker, then accept ``websocket`` and relay until one side ends.

    Returns the error to refuse the browser with if the worker refused or could not be reached
    (``websocket`` is not accepted then), else None.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    url = worker_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + path
    if query:
        url += "?" + query
    protocols = [SUBPROTOCOL, *([token_subprotocol(token)] if token else [])]
    try:
        upstream = await connect(url, subprotocols=protocols, open_timeout=10)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        try:
            body = json.loads(exc.response.body or b"{}")
        except ValueError:
            body = {"error": "WorkerLost", "message": f"the worker refused the attach: HTTP {exc.response.status_code}"}
        return exception_from_body(body if isinstance(body, dict) else {"message": str(body)})
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        return WorkerLost(f"cannot reach the sandbox's worker at {worker_url} to attach ({type(exc).__name__}: {exc}).")
    async with upstream:
        await websocket.accept(
            subprotocol=SUBPROTOCOL if SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None
        )

        async def down() -> None:
            async for message in upstream:
                await websocket.send_text(message if isinstance(message, str) else message.decode())

        async def up() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await upstream.send(message.get("text") or (message.get("bytes") or b"").decode())

        tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, Exception):
                    await task
            with contextlib.suppress(Exception):
                await websocket.close()
    return None
