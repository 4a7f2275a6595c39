"""Sandbox routes, derived from the ops table (:data:`rock_env.sandbox.contract.OPS`).

Creating, listing and stopping a sandbox are the admin's own (placement and records) and the
command output stream (server-sent events) is written out; every other op of the table gets
its route from :func:`register`: one per op, each finding the sandbox's host and running the
op there (:mod:`rock_env.server.sandbox_ops`), with the op's models in /openapi.json.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from rock_env.protocol import Ok, SandboxCreateRequest, SandboxList, SandboxPlacement, StreamRequest
from rock_env.sandbox.contract import MAX_QUERY_LENGTH, OPS, ProcessAPI, SandboxAPI, SandboxOp, Wire
from rock_env.server.hosts import Host
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    body_schema,
    model_response,
    owner_of,
    parse_body,
    raw_json,
    service_of,
)
from rock_env.server.routes.envs import forced_id
from rock_env.server.sandbox_ops import BYTE_OPS, JSON_OPS, SANDBOX_STOP, make_sandbox
from rock_env.server.store import ObjectRecord

router = APIRouter(prefix="/api/v1/sandboxes", tags=["sandboxes"])

#: Route names (hence operation ids in /openapi.json) that differ from the op's name.
ROUTE_NAMES = {
    "status": "sandbox_status",
    "exec": "exec_",
    "sessions": "list_sessions",
    "process": "process_status",
    "snapshots": "list_snapshots",
}
_BINARY_BODY = {
    "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
}
_BYTES_ANSWERS: dict[Wire, dict[int | str, dict[str, Any]]] = {
    Wire.BYTES_OUT: {200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}},
    Wire.TAR_OUT: {200: {"content": {"application/x-tar": {}}, "description": "tar stream"}},
}


def _placement(rec: ObjectRecord) -> SandboxPlacement:
    status = "running" if rec.status == "live" else rec.status
    return SandboxPlacement.model_validate(rec.info | {"last_used": rec.last_used, "status": status})


async def _host(request: Request, sandbox: str) -> Host:
    svc = service_of(request)
    return svc.host_of(svc.lookup(sandbox, ("sandbox",), owner_of(request)))


# --- lifecycle -------------------------------------------------------------------------------


@router.post(
    "",
    response_model=SandboxPlacement,
    responses=ERROR_RESPONSES,
    summary="Create a sandbox",
    openapi_extra=body_schema(SandboxCreateRequest),
)
async def create_sandbox(request: Request) -> Response:
    """Start a sandbox on a worker that has the requested runtime.

    Before anything is placed the config is validated (422, as the local SDK) and the server's
    policy applied (403): ``runtime="local"`` only if the server allows it (``worker.allow_local_runtime``),
    an image that is a host path only under ``worker.data_dirs``; ``runtime="auto"`` is resolved
    here, never to ``local`` unless allowed. Then the token's quota (429).
    """
    svc = service_of(request)
    body = await parse_body(request, SandboxCreateRequest)
    started = time.perf_counter()
    info = await make_sandbox(svc, owner_of(request), forced_id(svc, request, "sbx"), body.config)
    svc.observe("sandbox_create", time.perf_counter() - started)
    return model_response(info)


@router.get("", response_model=SandboxList, responses=ERROR_RESPONSES, summary="List sandboxes")
async def list_sandboxes(request: Request) -> Response:
    """The caller's sandboxes (live and lost)."""
    svc = service_of(request)
    return model_response(SandboxList(sandboxes=[_placement(r) for r in svc.records_of(owner_of(request), "sandbox")]))


@router.delete("/{sandbox}", response_model=Ok, responses=ERROR_RESPONSES, summary="Stop a sandbox")
async def stop_sandbox(sandbox: str, request: Request) -> Response:
    """Stop the sandbox and free its slot (a lost sandbox is just forgotten)."""
    await service_of(request).close("sandbox", sandbox, owner_of(request), SANDBOX_STOP)
    return model_response(Ok())


@router.post(
    "/{sandbox}/stream",
    responses=ERROR_RESPONSES | {200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    summary="Stream a command's output",
    openapi_extra=body_schema(StreamRequest),
)
async def stream(sandbox: str, request: Request) -> Response:
    """Run a command and stream its output as server-sent events.

    Events: ``output`` (``{"text": ...}``) as output comes, then one ``exit``
    (``{"exit_code": ..., "timed_out": ...}``), or ``error`` (an ErrorBody).
    """
    host = await _host(request, sandbox)
    source = host.events(sandbox, await parse_body(request, StreamRequest))
    await anext(source)  # ("started", {}): a command that cannot start is an HTTP error, not an event

    async def events() -> AsyncIterator[bytes]:
        try:
            async for kind, payload in source:
                yield f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()
        finally:
            await source.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


# --- every other op: one route each, from the table ------------------------------------------------


def _json_handler(sop: SandboxOp) -> Callable[..., Awaitable[Response]]:
    hop = JSON_OPS[sop.name]

    async def handler(request: Request, **params: str) -> Response:
        svc = service_of(request)
        host = await _host(request, params["sandbox"])
        body = await parse_body(request, sop.request) if sop.request is not None else None
        started = time.perf_counter()
        answer = await host.call(hop, params["sandbox"], body, params)
        svc.observe(f"sandbox_{sop.name}", time.perf_counter() - started)
        return raw_json(answer)

    return handler


def _bytes_handler(sop: SandboxOp) -> Callable[..., Awaitable[Response]]:
    bop = BYTE_OPS[sop.name]

    async def handler(request: Request, **params: str) -> Response:
        host = await _host(request, params["sandbox"])
        query = {k: params[k] for k in sop.query}
        if bop.receive is not None:
            return raw_json(await host.send_bytes(bop, params["sandbox"], query, request.stream()))
        out = await host.open_bytes(bop, params["sandbox"], query)
        return StreamingResponse(out.chunks, media_type=out.media_type, background=BackgroundTask(out.close))

    return handler


def _signature(sop: SandboxOp) -> inspect.Signature:
    """``(request, <path params>: str, <query params>: str = Query(...))``: what FastAPI documents."""
    kind = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("request", kind, annotation=Request)]
    params += [inspect.Parameter(name, kind, annotation=str) for name in sop.path_params]
    defaults = dict(sop.query_defaults)
    for name in sop.query:
        query = Query(defaults.get(name, ...), min_length=1, max_length=MAX_QUERY_LENGTH)
        params.append(inspect.Parameter(name, kind, annotation=str, default=query))
    return inspect.Signature(params)


def _description(sop: SandboxOp) -> str:
    """The docstring of the op's method in the contract (the summary if it has none)."""
    api = ProcessAPI if sop.target == "process" else SandboxAPI
    method = getattr(api, sop.attr or "", None)
    return inspect.getdoc(method) or f"{sop.summary}." if method is not None else f"{sop.summary}."


def register(target: APIRouter, sop: SandboxOp) -> None:
    """Add the route of one op of the table (JSON or byte stream) to ``target``."""
    byte_stream = sop.name in BYTE_OPS
    handler = _bytes_handler(sop) if byte_stream else _json_handler(sop)
    handler.__signature__ = _signature(sop)  # type: ignore[attr-defined]
    handler.__doc__ = _description(sop)
    extra = body_schema(sop.request) if sop.request is not None else None
    if sop.wire in (Wire.BYTES_IN, Wire.TAR_IN):
        extra = _BINARY_BODY
    answers = _BYTES_ANSWERS.get(sop.wire)
    target.add_api_route(
        sop.path,
        handler,
        methods=[sop.http_method],
        name=ROUTE_NAMES.get(sop.name, sop.name),
        summary=sop.summary,
        response_model=None if answers else sop.response,
        responses=ERROR_RESPONSES | answers if answers else ERROR_RESPONSES,
        openapi_extra=extra,
    )


for _sop in OPS:
    if _sop.name in JSON_OPS or _sop.name in BYTE_OPS:
        register(router, _sop)
