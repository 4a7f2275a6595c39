"""The admin's creations on one remote worker, sent together (``POST /api/v1/hosted/envs/batch``).

Every env is placed on its own (:meth:`~rock_env.server.placement.Placement.create`: quota,
worker, record), but the makes that reach one worker in one turn of the admin's event loop (a
client's batched make, or many clients at once) travel as one request, and each creation gets
its own answer or error back. A creation that fails to reach the worker fails like a single
one would (the placement then tries another worker when the worker could not be connected to).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_core import from_json, to_json

from rock_env.protocol import exception_from_body
from rock_env.protocol.control import HOSTED_ENVS_BATCH_PATH
from rock_env.server.peer import WorkerPeer

#: The most creations one request to a worker carries.
PEER_BATCH = 512


class PeerMakeBatcher:
    """Collects ``(id, item)`` creations for one worker and sends them per loop turn (see the module docstring)."""

    def __init__(self, peer: WorkerPeer) -> None:
        self._peer = peer
        self._pending: list[tuple[dict[str, Any], asyncio.Future[bytes]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: dict[str, Any]) -> asyncio.Future[bytes]:
        """Queue one creation (``{"id", "request", "spec"}``); the future gets its JSON answer or its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), PEER_BATCH):
            task = asyncio.ensure_future(self._send(pending[start : start + PEER_BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, calls: list[tuple[dict[str, Any], asyncio.Future[bytes]]]) -> None:
        content = to_json({"items": [item for item, _ in calls]})
        try:
            resp = await self._peer.request(
                "POST",
                HOSTED_ENVS_BATCH_PATH,
                content=content,
                headers={"content-type": "application/json"},
                what=f"making {len(calls)} envs",
            )
            if resp.status_code >= 400:
                data: Any = resp.json()
                raise exception_from_body(data if isinstance(data, dict) else {"message": str(data)})
            results = from_json(resp.content)["results"]
        except Exception as exc:
            for _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(calls, results, strict=True):
            if future.done():
                continue
            if result.get("error") is not None:
                future.set_exception(exception_from_body(result["error"]))
            else:
                future.set_result(to_json(result["result"]))


__all__ = ["PEER_BATCH", "PeerMakeBatcher"]
