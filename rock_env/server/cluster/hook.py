"""Wiring the Ray placement loop into the admin's :class:`~rock_env.server.service.Service`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rock_env.server.cluster.placement import PlacementLoop, WorkerGone, WorkerStarted
from rock_env.server.cluster.ray_backend import RayBackend
from rock_env.server.cluster.settings import RayClusterSettings
from rock_env.server.service import Service

logger = logging.getLogger(__name__)


def mark_worker_lost(service: Service, worker_id: str, reason: str) -> int:
    """Mark a Ray worker lost for good (its actor is gone) and its objects with it; how many were live."""
    return service.mark_worker_lost(worker_id, reason, retire=True)


def sandbox_ids_on(service: Service, worker_id: str) -> list[str]:
    """Local sandbox ids (state dir names) of the live sandboxes placed on a worker."""
    out = []
    for rec in service.records.values():
        if rec.worker_id == worker_id and rec.kind == "sandbox" and rec.status == "live":
            sandbox_id = str((rec.info.get("config") or {}).get("sandbox_id") or "")
            if sandbox_id:
                out.append(sandbox_id)
    return out


def forget_previous_actors(service: Service, prefix: str) -> list[str]:
    """Mark lost the Ray workers an earlier admin run recorded: their actors ended with that driver."""
    stale = [w.id for w in service.workers.values() if not w.embedded and w.id.startswith(f"{prefix}-")]
    for worker_id in stale:
        mark_worker_lost(service, worker_id, "its Ray actor ended with the previous admin process")
    return stale


async def run_placement(service: Service, loop: PlacementLoop, backend: Any, interval: float) -> None:
    """Tick the placement loop every ``interval`` seconds; stop the actors when cancelled."""
    try:
        forget_previous_actors(service, loop.prefix)
        while True:
            registered = [w.id for w in service.workers.values() if w.status == "alive" and not w.embedded]
            try:
                events = await service.blocking(loop.tick, registered)
            except Exception:
                logger.exception("Ray placement pass failed")
                events = []
            for event in events:
                if isinstance(event, WorkerStarted):
                    service.metrics.inc("ray_actors_started_total", "Ray worker actors started (one per node).")
                if isinstance(event, WorkerGone):
                    service.metrics.inc("ray_workers_lost_total", "Ray workers lost (node or actor died).")
                    sandboxes = sandbox_ids_on(service, event.worker_id)
                    mark_worker_lost(service, event.worker_id, event.reason)
                    successor = loop.actors.get(event.node_id)
                    if sandboxes and successor is not None:  # same node, new actor: it cleans up
                        await service.blocking(backend.reap_sandboxes, successor.handle, sandboxes)
            await asyncio.sleep(interval)
    finally:
        backend.shutdown(loop.handles())


def attach_cluster(service: Service, cluster: RayClusterSettings, host: str, port: int) -> RayBackend:
    """Connect to Ray now and run the placement loop with the admin (listening on ``host:port``)."""
    settings = service.settings
    tokens = settings.all_tokens()
    worker = {
        "slots": cluster.slots or settings.slots,
        "heartbeat_interval": settings.heartbeat_interval,
        "runtime": dict(settings.runtime),
        "allow_local_runtime": settings.allow_local_runtime,
        "data_dirs": list(settings.data_dirs),
        "log_level": settings.log_level,
        "log_format": settings.log_format,
    }
    backend = RayBackend(cluster, tokens[0].token if tokens else None, worker, data_dir=settings.data_path())
    backend.connect()
    if cluster.admin_url:
        backend.admin_url = cluster.admin_url.rstrip("/")
    else:
        reach = backend.node_ip() if host in ("0.0.0.0", "::", "") else host
        backend.admin_url = f"http://{reach if ':' not in reach else f'[{reach}]'}:{port}"
    loop = PlacementLoop(backend, start_timeout=cluster.start_timeout, restart_backoff=cluster.restart_backoff)
    service.background.append(lambda: run_placement(service, loop, backend, cluster.poll_interval))
    logger.info("Ray placement: one worker actor per node, registering with %s", backend.admin_url)
    return backend
