"""Env and vector-env routes: make, reset, step (single and batched), close, list."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rock_env.protocol import (
    OBJECT_ID_HEADER,
    BatchMakeRequest,
    BatchMakeResponse,
    BatchResetRequest,
    BatchResetResponse,
    BatchStepRequest,
    BatchStepResponse,
    EnvInfo,
    EnvList,
    EnvMakeRequest,
    EnvResetRequest,
    EnvResetResponse,
    EnvStepRequest,
    EnvStepResponse,
    Ok,
    RenderResponse,
    SampleActionRequest,
    SampleActionResponse,
    ToolCallRequest,
    ToolCallResponse,
    VecInfo,
    VecMakeRequest,
    VecRenderResponse,
    VecResetRequest,
    VecResetResponse,
    VecSampleResponse,
    VecStepRequest,
    VecStepResponse,
)
from rock_env.registry.spec import EnvSpec
from rock_env.server import batch_ops, env_ops
from rock_env.server.env_ops import (
    ENV_CLOSE,
    ENV_RENDER,
    ENV_RESET,
    ENV_SAMPLE_ACTION,
    ENV_STEP,
    ENV_TOOL_CALL,
    VEC_CLOSE,
    VEC_RENDER,
    VEC_RESET,
    VEC_SAMPLE_ACTIONS,
    VEC_STEP,
)
from rock_env.server.hosts import HostOp
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    body_schema,
    model_response,
    owner_of,
    parse_body,
    raw_json,
    service_of,
)
from rock_env.server.service import Service, new_id

router = APIRouter(prefix="/api/v1", tags=["envs"])
STEPS_HELP = "Env steps served (vector sub-env steps included)."


async def hosted_call(
    request: Request, kind: Literal["env", "vec"], obj_id: str, op: HostOp, body: Any = None
) -> Response:
    """Run ``op`` where the object lives; its JSON answer."""
    svc = service_of(request)
    return raw_json(await svc.call(kind, obj_id, owner_of(request), op, body))


def forced_id(svc: Service, request: Request, kind: str) -> str:
    """The id to create an object under: the admin's choice on a worker, else a fresh one."""
    forced = request.headers.get(OBJECT_ID_HEADER) if svc.role == "worker" else None
    return forced or new_id(kind)


# --- operations shared with the ROCK-compatible routes and the fast path ----------------------


async def make_env_op(svc: Service, request: Request, body: EnvMakeRequest, spec: EnvSpec | None = None) -> EnvInfo:
    """Place and build one env; returns its info. ``spec``: already resolved (a worker gets it from the admin)."""
    started = time.perf_counter()
    info = await env_ops.make_env(svc, owner_of(request), forced_id(svc, request, "env"), body, spec)
    svc.observe("env_make", time.perf_counter() - started)
    return info


async def reset_env_op(svc: Service, owner: str, env: str, body: EnvResetRequest) -> bytes:
    """Reset one env; the JSON of an EnvResetResponse."""
    started = time.perf_counter()
    content = await svc.call("env", env, owner, ENV_RESET, body)
    svc.observe("env_reset", time.perf_counter() - started)
    return content


async def step_env_op(svc: Service, owner: str, env: str, body: EnvStepRequest) -> bytes:
    """Step one env; the JSON of an EnvStepResponse."""
    started = time.perf_counter()
    content = await svc.call("env", env, owner, ENV_STEP, body)
    svc.observe("env_step", time.perf_counter() - started)
    svc.metrics.inc("env_steps_total", STEPS_HELP)
    return content


async def step_vec_op(svc: Service, owner: str, vec: str, body: VecStepRequest) -> bytes:
    """Step a vector env; the JSON of a VecStepResponse."""
    started = time.perf_counter()
    content = await svc.call("vec", vec, owner, VEC_STEP, body)
    svc.observe("vec_step", time.perf_counter() - started)
    svc.metrics.inc("env_steps_total", STEPS_HELP, amount=len(body.actions))
    return content


async def close_env_op(svc: Service, request: Request, env: str) -> None:
    """Close one env (a lost env is just forgotten)."""
    await svc.close("env", env, owner_of(request), ENV_CLOSE)


# --- single envs ----------------------------------------------------------------------------


@router.post(
    "/envs",
    response_model=EnvInfo,
    responses=ERROR_RESPONSES,
    summary="Make an env",
    openapi_extra=body_schema(EnvMakeRequest),
)
async def make_env(request: Request) -> Response:
    """Build a registered env on a worker; later requests use the returned ``id``."""
    body = await parse_body(request, EnvMakeRequest)
    return model_response(await make_env_op(service_of(request), request, body))


@router.get("/envs", response_model=EnvList, responses=ERROR_RESPONSES, summary="List envs")
async def list_envs(request: Request) -> Response:
    """The caller's envs (live and lost)."""
    svc = service_of(request)
    infos = [
        EnvInfo.model_validate(r.info | {"status": r.status, "last_used": r.last_used})
        for r in svc.records_of(owner_of(request), "env")
    ]
    return model_response(EnvList(envs=infos))


@router.get("/envs/{env}", response_model=EnvInfo, responses=ERROR_RESPONSES, summary="Describe an env")
async def get_env(env: str, request: Request) -> Response:
    """One env's info."""
    rec = service_of(request).lookup(env, ("env",), owner_of(request))
    return model_response(EnvInfo.model_validate(rec.info | {"status": rec.status, "last_used": rec.last_used}))


@router.post(
    "/envs/{env}/reset",
    response_model=EnvResetResponse,
    responses=ERROR_RESPONSES,
    summary="Reset an env",
    openapi_extra=body_schema(EnvResetRequest),
)
async def reset_env(env: str, request: Request) -> Response:
    """Start a new episode: ``(observation, info)``."""
    body = await parse_body(request, EnvResetRequest)
    return raw_json(await reset_env_op(service_of(request), owner_of(request), env, body))


@router.post(
    "/envs/{env}/step",
    response_model=EnvStepResponse,
    responses=ERROR_RESPONSES,
    summary="Step an env",
    openapi_extra=body_schema(EnvStepRequest),
)
async def step_env(env: str, request: Request) -> Response:
    """Apply one action: ``(observation, reward, terminated, truncated, info)``."""
    body = await parse_body(request, EnvStepRequest)
    return raw_json(await step_env_op(service_of(request), owner_of(request), env, body))


@router.post(
    "/envs/{env}/sample_action",
    response_model=SampleActionResponse,
    responses=ERROR_RESPONSES,
    summary="Sample a random action",
    openapi_extra=body_schema(SampleActionRequest),
)
async def sample_action(env: str, request: Request) -> Response:
    """``env.sample_random_action()`` on the hosted env: drawn from its own RNG, as a local env would."""
    return await hosted_call(request, "env", env, ENV_SAMPLE_ACTION, await parse_body(request, SampleActionRequest))


@router.post(
    "/envs/{env}/tool_call_to_action",
    response_model=ToolCallResponse,
    responses=ERROR_RESPONSES,
    summary="Turn a tool call into an action",
    openapi_extra=body_schema(ToolCallRequest),
)
async def tool_call_to_action(env: str, request: Request) -> Response:
    """``env.tool_call_to_action(name, arguments)`` on the hosted env (envs that define it)."""
    return await hosted_call(request, "env", env, ENV_TOOL_CALL, await parse_body(request, ToolCallRequest))


@router.get("/envs/{env}/render", response_model=RenderResponse, responses=ERROR_RESPONSES, summary="Render an env")
async def render_env(env: str, request: Request) -> Response:
    """``env.render()`` on the hosted env (text, or null)."""
    return await hosted_call(request, "env", env, ENV_RENDER)


@router.delete("/envs/{env}", response_model=Ok, responses=ERROR_RESPONSES, summary="Close an env")
async def close_env(env: str, request: Request) -> Response:
    """Close the env and free its slot."""
    await close_env_op(service_of(request), request, env)
    return model_response(Ok())


async def batch_op(
    svc: Service, owner: str, name: str, body: BatchStepRequest | BatchResetRequest | BatchMakeRequest
) -> bytes:
    """Run the batched ``name`` (``step``, ``reset`` or ``make``, see :data:`BATCH_OPS`); the JSON of its
    Batch*Response."""
    started = time.perf_counter()
    content = await BATCH_OPS[name][1](svc, owner, body)
    svc.observe(f"batch_{name}", time.perf_counter() - started)
    if isinstance(body, BatchStepRequest):
        svc.metrics.inc("env_steps_total", STEPS_HELP, amount=len(body.steps))
    return content


#: The batched routes: ``/api/v1/batch/<name>`` -> (request model, its op in
#: :mod:`~rock_env.server.batch_ops`). The gateway serves them on its fast path.
BATCH_OPS: dict[str, tuple[type[Any], Any]] = {
    "step": (BatchStepRequest, batch_ops.batch_step),
    "reset": (BatchResetRequest, batch_ops.batch_reset),
    "make": (BatchMakeRequest, batch_ops.batch_make),
}


@router.post(
    "/batch/step",
    response_model=BatchStepResponse,
    responses=ERROR_RESPONSES,
    summary="Step many envs",
    openapi_extra=body_schema(BatchStepRequest),
)
async def batch_step(request: Request) -> Response:
    """Step many envs in one request; a failing env reports its error, the others still step.

    The envs are grouped by the worker that hosts them, and each group is one batch step there.
    """
    body = await parse_body(request, BatchStepRequest)
    return raw_json(await batch_op(service_of(request), owner_of(request), "step", body))


@router.post(
    "/batch/reset",
    response_model=BatchResetResponse,
    responses=ERROR_RESPONSES,
    summary="Reset many envs",
    openapi_extra=body_schema(BatchResetRequest),
)
async def batch_reset(request: Request) -> Response:
    """Reset many envs in one request; a failing env reports its error, the others still reset."""
    body = await parse_body(request, BatchResetRequest)
    return raw_json(await batch_op(service_of(request), owner_of(request), "reset", body))


@router.post(
    "/batch/make",
    response_model=BatchMakeResponse,
    responses=ERROR_RESPONSES,
    summary="Make many envs",
    openapi_extra=body_schema(BatchMakeRequest),
)
async def batch_make(request: Request) -> Response:
    """Make many envs in one request, each placed like a single make (quota, placement, record);
    a make that fails reports its error, the others are still made."""
    body = await parse_body(request, BatchMakeRequest)
    return raw_json(await batch_op(service_of(request), owner_of(request), "make", body))


# --- vector envs ----------------------------------------------------------------------------


async def make_vec_op(svc: Service, request: Request, body: VecMakeRequest, spec: EnvSpec | None = None) -> VecInfo:
    """Place and build a vector env; returns its info. ``spec``: already resolved (from the admin)."""
    return await env_ops.make_vec(svc, owner_of(request), forced_id(svc, request, "vec"), body, spec)


@router.post(
    "/vecs",
    response_model=VecInfo,
    responses=ERROR_RESPONSES,
    summary="Make a vector env",
    tags=["vecs"],
    openapi_extra=body_schema(VecMakeRequest),
)
async def make_vec(request: Request) -> Response:
    """Build ``num_envs`` copies of an env on one worker, stepped together in one request."""
    body = await parse_body(request, VecMakeRequest)
    return model_response(await make_vec_op(service_of(request), request, body))


@router.get(
    "/vecs/{vec}", response_model=VecInfo, responses=ERROR_RESPONSES, summary="Describe a vector env", tags=["vecs"]
)
async def get_vec(vec: str, request: Request) -> Response:
    """One vector env's info."""
    rec = service_of(request).lookup(vec, ("vec",), owner_of(request))
    return model_response(VecInfo.model_validate(rec.info | {"status": rec.status, "last_used": rec.last_used}))


@router.post(
    "/vecs/{vec}/reset",
    response_model=VecResetResponse,
    responses=ERROR_RESPONSES,
    summary="Reset a vector env",
    tags=["vecs"],
    openapi_extra=body_schema(VecResetRequest),
)
async def reset_vec(vec: str, request: Request) -> Response:
    """Reset all sub-envs."""
    return await hosted_call(request, "vec", vec, VEC_RESET, await parse_body(request, VecResetRequest))


@router.post(
    "/vecs/{vec}/step",
    response_model=VecStepResponse,
    responses=ERROR_RESPONSES,
    summary="Step a vector env",
    tags=["vecs"],
    openapi_extra=body_schema(VecStepRequest),
)
async def step_vec(vec: str, request: Request) -> Response:
    """One action per sub-env; autoreset as configured at make time."""
    body = await parse_body(request, VecStepRequest)
    return raw_json(await step_vec_op(service_of(request), owner_of(request), vec, body))


@router.post(
    "/vecs/{vec}/sample_actions",
    response_model=VecSampleResponse,
    responses=ERROR_RESPONSES,
    summary="Sample random actions",
    tags=["vecs"],
)
async def sample_vec_actions(vec: str, request: Request) -> Response:
    """One ``sample_random_action()`` per sub-env, each from that sub-env's own RNG."""
    return await hosted_call(request, "vec", vec, VEC_SAMPLE_ACTIONS)


@router.get(
    "/vecs/{vec}/render",
    response_model=VecRenderResponse,
    responses=ERROR_RESPONSES,
    summary="Render a vector env",
    tags=["vecs"],
)
async def render_vec(vec: str, request: Request) -> Response:
    """Each sub-env's ``render()``."""
    return await hosted_call(request, "vec", vec, VEC_RENDER)


@router.delete("/vecs/{vec}", response_model=Ok, responses=ERROR_RESPONSES, summary="Close a vector env", tags=["vecs"])
async def close_vec(vec: str, request: Request) -> Response:
    """Close all sub-envs."""
    await service_of(request).close("vec", vec, owner_of(request), VEC_CLOSE)
    return model_response(Ok())
