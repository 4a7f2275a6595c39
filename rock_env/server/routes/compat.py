"""ROCK's GEM env routes (``/apis/v1/envs/gem/...``) so that ROCK's ``rock.make`` client works.

ROCK's client posts ``{"env_id": ...}`` to ``make`` and gets ``{"sandbox_id": ...}``; then
posts ``{"sandbox_id", "seed"}`` to ``reset``, ``{"sandbox_id", "action"}`` to ``step`` and
``{"sandbox_id"}`` to ``close``. Reset and step answers have ROCK's field names
(``observation``, ``reward``, ``terminated``, ``truncated``, ``info``), which are ours too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rock_env.protocol import (
    EnvMakeRequest,
    EnvResetRequest,
    EnvResetResponse,
    EnvStepRequest,
    EnvStepResponse,
    RockCloseRequest,
    RockCloseResponse,
    RockListResponse,
    RockMakeRequest,
    RockMakeResponse,
    RockResetRequest,
    RockStepRequest,
)
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    body_schema,
    model_response,
    owner_of,
    parse_body,
    raw_json,
    service_of,
)
from rock_env.server.routes.envs import close_env_op, make_env_op, reset_env_op, step_env_op

router = APIRouter(prefix="/apis/v1/envs/gem", tags=["rock-compat"])


@router.post(
    "/make",
    response_model=RockMakeResponse,
    responses=ERROR_RESPONSES,
    summary="ROCK: make",
    openapi_extra=body_schema(RockMakeRequest),
)
async def rock_make(request: Request) -> Response:
    """Make an env; ROCK calls the instance id ``sandbox_id``."""
    body = await parse_body(request, RockMakeRequest)
    info = await make_env_op(service_of(request), request, EnvMakeRequest(env_id=body.env_id))
    return model_response(RockMakeResponse(sandbox_id=info.id))


@router.post(
    "/reset",
    response_model=EnvResetResponse,
    responses=ERROR_RESPONSES,
    summary="ROCK: reset",
    openapi_extra=body_schema(RockResetRequest),
)
async def rock_reset(request: Request) -> Response:
    """Reset: ``{"observation", "info"}``."""
    body = await parse_body(request, RockResetRequest)
    return raw_json(
        await reset_env_op(service_of(request), owner_of(request), body.sandbox_id, EnvResetRequest(seed=body.seed))
    )


@router.post(
    "/step",
    response_model=EnvStepResponse,
    responses=ERROR_RESPONSES,
    summary="ROCK: step",
    openapi_extra=body_schema(RockStepRequest),
)
async def rock_step(request: Request) -> Response:
    """Step: ``{"observation", "reward", "terminated", "truncated", "info"}``."""
    body = await parse_body(request, RockStepRequest)
    step = EnvStepRequest.model_construct(action=body.action)
    return raw_json(await step_env_op(service_of(request), owner_of(request), body.sandbox_id, step))


@router.post(
    "/close",
    response_model=RockCloseResponse,
    responses=ERROR_RESPONSES,
    summary="ROCK: close",
    openapi_extra=body_schema(RockCloseRequest),
)
async def rock_close(request: Request) -> Response:
    """Close: ``{"sandbox_id"}``."""
    body = await parse_body(request, RockCloseRequest)
    await close_env_op(service_of(request), request, body.sandbox_id)
    return model_response(RockCloseResponse(sandbox_id=body.sandbox_id))


@router.post("/list", response_model=RockListResponse, responses=ERROR_RESPONSES, summary="ROCK: list")
async def rock_list(request: Request) -> Response:
    """The env ids this server can make."""
    from rock_env.api import list_envs  # the registry with every family registered (tool envs too)

    svc = service_of(request)
    specs = await svc.blocking(list_envs)
    return model_response(RockListResponse(env_id=[s.id for s in specs]))
