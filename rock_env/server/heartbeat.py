"""A standalone worker's heartbeat link to its admin: register, heartbeat, close orphans."""

from __future__ import annotations

import asyncio
import logging

import httpx

from rock_env.errors import ConfigError
from rock_env.protocol import WorkerHeartbeatRequest, WorkerHeartbeatResponse, WorkerRegisterRequest
from rock_env.server.peer import nodelay_async_transport
from rock_env.server.service import Service

logger = logging.getLogger(__name__)


async def run_heartbeat(service: Service, admin_url: str, advertise_url: str, token: str | None) -> None:
    """Register with the admin and heartbeat every ``heartbeat_interval`` seconds until cancelled."""
    worker = service.worker
    if worker is None:
        raise ConfigError("a heartbeat link needs a worker to report: start it in a worker process (role='worker').")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    interval = service.settings.heartbeat_interval
    registered = False
    warned = False
    async with httpx.AsyncClient(
        base_url=admin_url.rstrip("/"), headers=headers, timeout=10.0, transport=nodelay_async_transport()
    ) as client:
        while True:
            try:
                if not registered:
                    body = WorkerRegisterRequest(
                        worker_id=worker.id, url=advertise_url, capacity=worker.measure(), objects=worker.object_ids()
                    )
                    resp = await client.post("/api/v1/workers", content=body.model_dump_json(), headers=_JSON)
                else:
                    used, service._dirty = service._dirty, {}
                    beat = WorkerHeartbeatRequest(
                        objects=worker.object_ids(), used_slots=worker.used_slots, used=used, capacity=worker.measure()
                    )
                    resp = await client.post(
                        f"/api/v1/workers/{worker.id}/heartbeat", content=beat.model_dump_json(), headers=_JSON
                    )
                if resp.status_code >= 400:
                    logger.error("admin %s refused worker %s: %s", admin_url, worker.id, resp.text[:300])
                else:
                    answer = WorkerHeartbeatResponse.model_validate_json(resp.content)
                    if not registered:
                        logger.info("worker %s registered with %s as %s", worker.id, admin_url, advertise_url)
                    registered = answer.known
                    warned = False
                    for obj_id in answer.close:
                        logger.info("closing orphan %s (the admin does not know it)", obj_id)
                        service.drop_record(obj_id)
                        await service.blocking(worker.close, obj_id)
            except httpx.TransportError as exc:
                if not warned:
                    logger.warning("admin %s unreachable (%s); retrying every %.0fs", admin_url, exc, interval)
                    warned = True
                registered = False
            await asyncio.sleep(interval)


_JSON = {"content-type": "application/json"}
