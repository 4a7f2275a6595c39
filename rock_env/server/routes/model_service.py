"""Remote model services: sandboxes with one, and the trainer's side at the admin.

Public (the caller's own sandboxes only; auth as every route):

- ``POST /api/v1/model-service/sandboxes``: create a sandbox whose worker serves its model
  endpoint (``OPENAI_BASE_URL``/``OPENAI_API_KEY`` inside, network off). Every
  ``/api/v1/sandboxes/{id}/...`` route works on it; stopping it drops its unanswered requests.
- ``GET /api/v1/model-service/requests?wait=&sandbox=&limit=``: long poll for requests not
  handed out yet (an empty list when ``wait`` seconds passed).
- ``GET /api/v1/model-service/pending?sandbox=``: every unanswered request.
- ``POST /api/v1/model-service/requests/{id}/answer`` and ``.../fail``; ``POST
  /api/v1/model-service/sandboxes/{id}/episode``.

Worker-internal (``/api/v1/model-service/worker/...``, the cluster token only, on a worker): what
the admin's relay (:mod:`rock_env.server.model_relay`) sends to the worker hosting a sandbox.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from rock_env.errors import RequestInvalid
from rock_env.protocol import SandboxPlacement
from rock_env.protocol.model_service import (
    MAX_WAIT,
    ModelAnswer,
    ModelEpisode,
    ModelFail,
    ModelPendingQuery,
    ModelPoll,
    ModelRequestList,
    ModelSandboxCreateRequest,
)
from rock_env.server.model_hub import hub_of
from rock_env.server.model_relay import PREFIX, WORKER_PREFIX, model_create_op, relay_of
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
from rock_env.server.sandbox_ops import make_sandbox
from rock_env.server.service import Service

router = APIRouter(tags=["model service"])
OK = b'{"ok":true}'


def _public(request: Request) -> tuple[Service, str]:
    """The service and the caller; on a worker only the admin (cluster token) may call."""
    svc = service_of(request)
    owner = owner_of(request)
    if svc.role == "worker":
        svc.check_cluster_caller(owner)
    return svc, owner


@router.post(
    PREFIX + "/sandboxes",
    response_model=SandboxPlacement,
    responses=ERROR_RESPONSES,
    summary="Create a sandbox with a model service",
    openapi_extra=body_schema(ModelSandboxCreateRequest),
)
async def create_model_sandbox(request: Request) -> Response:
    """Start a sandbox whose harness's OpenAI calls reach the trainer through this server.

    ``config``: SandboxConfig fields as for ``POST /api/v1/sandboxes`` (same checks and policy);
    ``model_service``: ``timeout`` (seconds before an unanswered call gets HTTP 504) and ``model``.
    """
    svc, owner = _public(request)
    body = await parse_body(request, ModelSandboxCreateRequest)
    options = body.model_service
    started = time.perf_counter()
    info = await make_sandbox(
        svc,
        owner,
        forced_id(svc, request, "sbx"),
        body.config,
        op=model_create_op(options),
        record={"model_service": options.model_dump()},
    )
    svc.observe("sandbox_create", time.perf_counter() - started)
    rec = svc.records.get(info.id)
    if rec is not None and svc.role == "admin":
        relay_of(svc).track(rec)
    return model_response(info)


@router.get(
    PREFIX + "/requests", response_model=ModelRequestList, responses=ERROR_RESPONSES, summary="Get model requests"
)
async def get_requests(
    request: Request,
    wait: float = Query(0.0, ge=0, le=MAX_WAIT, description="seconds to wait for one (long poll)"),
    sandbox: str | None = Query(None, max_length=200, description="only this sandbox's"),
    limit: int = Query(1, ge=1, le=1024, description="at most this many"),
) -> Response:
    """Requests of your sandboxes not handed out yet (each is handed out once); empty after ``wait`` s."""
    svc, owner = _public(request)
    requests = await relay_of(svc).get(owner, sandbox, wait, limit)
    return model_response(ModelRequestList(requests=requests))


@router.get(
    PREFIX + "/pending", response_model=ModelRequestList, responses=ERROR_RESPONSES, summary="Unanswered requests"
)
async def pending_requests(
    request: Request, sandbox: str | None = Query(None, max_length=200, description="only this sandbox's")
) -> Response:
    """Every unanswered request of your sandboxes (handed out or not), oldest first."""
    svc, owner = _public(request)
    return model_response(ModelRequestList(requests=await relay_of(svc).pending(owner, sandbox)))


@router.post(
    PREFIX + "/requests/{request_id}/answer",
    responses=ERROR_RESPONSES,
    summary="Answer a model request",
    openapi_extra=body_schema(ModelAnswer),
)
async def answer_request(request_id: str, request: Request) -> Response:
    """Answer with assistant text, an assistant message (``content``/``tool_calls``) or a chat.completion.

    An unknown, answered or timed-out id is a 404 ``ModelRequestNotFound``.
    """
    svc, owner = _public(request)
    await relay_of(svc).answer(owner, request_id, await parse_body(request, ModelAnswer))
    return raw_json(OK)


@router.post(
    PREFIX + "/requests/{request_id}/fail",
    responses=ERROR_RESPONSES,
    summary="Fail a model request",
    openapi_extra=body_schema(ModelFail),
)
async def fail_request(request_id: str, request: Request) -> Response:
    """The harness's call gets HTTP ``status`` with ``message``."""
    svc, owner = _public(request)
    await relay_of(svc).fail(owner, request_id, await parse_body(request, ModelFail))
    return raw_json(OK)


@router.post(
    PREFIX + "/sandboxes/{sandbox}/episode",
    responses=ERROR_RESPONSES,
    summary="Begin an episode",
    openapi_extra=body_schema(ModelEpisode),
)
async def begin_episode(sandbox: str, request: Request) -> Response:
    """Tag the sandbox's later requests with ``episode`` (and ``env_id``); their turn restarts at 0."""
    svc, owner = _public(request)
    await relay_of(svc).begin_episode(owner, sandbox, await parse_body(request, ModelEpisode))
    return raw_json(OK)


# --- worker-internal -------------------------------------------------------------------------------


def _worker(request: Request) -> Service:
    svc = service_of(request)
    if svc.role != "worker" or svc.worker is None:
        raise RequestInvalid(f"{request.url.path} is served by workers only; use {PREFIX}/requests on the admin.")
    svc.check_cluster_caller(owner_of(request))
    return svc


@router.post(WORKER_PREFIX + "/poll", include_in_schema=False)
async def worker_poll(request: Request) -> Response:
    """New requests of the admin's sandboxes here (long poll)."""
    svc = _worker(request)
    body = await parse_body(request, ModelPoll)
    return model_response(await hub_of(svc.worker).poll(body.cursors, body.wait))


@router.post(WORKER_PREFIX + "/pending", include_in_schema=False)
async def worker_pending(request: Request) -> Response:
    """Every unanswered request of these sandboxes."""
    svc = _worker(request)
    body = await parse_body(request, ModelPendingQuery)
    return model_response(ModelRequestList(requests=hub_of(svc.worker).pending(body.sandboxes)))


@router.post(WORKER_PREFIX + "/sandboxes/{sandbox}/requests/{rid}/answer", include_in_schema=False)
async def worker_answer(sandbox: str, rid: str, request: Request) -> Response:
    """Answer one request."""
    svc = _worker(request)
    hub_of(svc.worker).answer(sandbox, rid, (await parse_body(request, ModelAnswer)).reply)
    return raw_json(OK)


@router.post(WORKER_PREFIX + "/sandboxes/{sandbox}/requests/{rid}/fail", include_in_schema=False)
async def worker_fail(sandbox: str, rid: str, request: Request) -> Response:
    """Fail one request."""
    svc = _worker(request)
    body = await parse_body(request, ModelFail)
    hub_of(svc.worker).fail(sandbox, rid, body.status, body.message)
    return raw_json(OK)


@router.post(WORKER_PREFIX + "/sandboxes/{sandbox}/episode", include_in_schema=False)
async def worker_episode(sandbox: str, request: Request) -> Response:
    """Tag a sandbox's later requests."""
    svc = _worker(request)
    body = await parse_body(request, ModelEpisode)
    hub_of(svc.worker).begin_episode(sandbox, body.episode, body.env_id)
    return raw_json(OK)
