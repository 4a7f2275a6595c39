"""Health, metrics and worker routes (registration and heartbeats of remote workers)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from rock_env.errors import RequestInvalid
from rock_env.protocol import (
    Health,
    WorkerHeartbeatRequest,
    WorkerHeartbeatResponse,
    WorkerList,
    WorkerRegisterRequest,
)
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    body_schema,
    model_response,
    owner_of,
    parse_body,
    service_of,
)

router = APIRouter(prefix="/api/v1", tags=["system"])


@router.get("/health", response_model=Health, summary="Health")
async def health(request: Request) -> Response:
    """Liveness and a summary; served without a token."""
    from rock_env.version import __version__

    svc = service_of(request)
    live = [r for r in svc.records.values() if r.status == "live"]
    return model_response(
        Health(
            version=__version__,
            role=svc.role,
            workers=sum(1 for w in svc.workers.values() if w.status == "alive"),
            envs=sum(r.size for r in live if r.kind in ("env", "vec")),
            sandboxes=sum(1 for r in live if r.kind == "sandbox"),
        )
    )


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics_v1(request: Request) -> Response:
    """Live objects, steps, latency histograms and errors by type (Prometheus text format)."""
    return PlainTextResponse(service_of(request).metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/workers", response_model=WorkerList, responses=ERROR_RESPONSES, summary="List workers", tags=["workers"])
async def list_workers(request: Request) -> Response:
    """Workers with capacity, used slots and status."""
    return model_response(WorkerList(workers=service_of(request).worker_infos()))


@router.post(
    "/workers",
    response_model=WorkerHeartbeatResponse,
    responses=ERROR_RESPONSES,
    summary="Register a worker",
    tags=["workers"],
    openapi_extra=body_schema(WorkerRegisterRequest),
)
async def register_worker(request: Request) -> Response:
    """A worker joins; the answer lists orphans it must close."""
    body = await parse_body(request, WorkerRegisterRequest)
    svc = service_of(request)
    if svc.role != "admin":
        raise RequestInvalid("this is a worker, not an admin: register workers with the admin's URL.")
    svc.check_cluster_caller(owner_of(request))
    if not body.url.startswith(("http://", "https://")):
        raise RequestInvalid(f"worker url must start with http:// or https://, got {body.url!r}.")
    try:
        host = httpx.URL(body.url).host
    except httpx.InvalidURL as exc:
        raise RequestInvalid(f"worker url {body.url!r} is not a valid URL: {exc}.") from None
    if not host:
        raise RequestInvalid(f"worker url {body.url!r} has no host.")
    return model_response(svc.register_worker(body))


@router.post(
    "/workers/{worker_id}/heartbeat",
    response_model=WorkerHeartbeatResponse,
    responses=ERROR_RESPONSES,
    summary="Worker heartbeat",
    tags=["workers"],
    openapi_extra=body_schema(WorkerHeartbeatRequest),
)
async def heartbeat(worker_id: str, request: Request) -> Response:
    """A worker is alive; reports what it hosts."""
    body = await parse_body(request, WorkerHeartbeatRequest)
    svc = service_of(request)
    if svc.role != "admin":
        raise RequestInvalid("this is a worker, not an admin.")
    svc.check_cluster_caller(owner_of(request))
    return model_response(svc.heartbeat(worker_id, body))


metrics_router = APIRouter(tags=["system"])


@metrics_router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """The same as ``/api/v1/metrics`` at the conventional path."""
    return PlainTextResponse(service_of(request).metrics.render(), media_type="text/plain; version=0.0.4")
