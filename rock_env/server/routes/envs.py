"""Env and vector-env routes: make, reset, step (single and batched), close, list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rock_env.errors import RockEnvError
from rock_env.protocol import (
    OBJECT_ID_HEADER,
    BatchStepRequest,
    BatchStepResponse,
    BatchStepResult,
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
    error_body,
)
from rock_env.registry.spec import EnvSpec
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    JSON,
    body_schema,
    check_peer_response,
    forward,
    model_response,
    owner_of,
    parse_body,
    parse_peer,
    raw_json,
    service_of,
)
from rock_env.server.service import Service, WorkerEntry, new_id
from rock_env.server.worker import Worker

T = TypeVar("T")

router = APIRouter(prefix="/api/v1", tags=["envs"])


async def call_local_env(svc: Service, env: str, method: Callable[..., T], *args: Any) -> T:
    """``method(worker, env, *args)`` on this process's worker; in a thread when the env blocks (sandbox envs)."""
    worker = svc.worker
    assert worker is not None
    if worker.is_blocking_env(env):
        return await svc.blocking(method, worker, env, *args)
    return method(worker, env, *args)


async def hosted_call(
    request: Request,
    kind: Literal["env", "vec"],
    obj_id: str,
    http_method: str,
    suffix: str,
    method: Callable[..., Any],
    *args: Any,
    payload: bytes | None = None,
) -> Response:
    """One call on a hosted env or vector env: forwarded to the worker that hosts it, or run here.

    Here, ``method(worker, obj_id, *args)`` runs inline for envs that do not block and in a
    thread otherwise; vector env calls (many sub-envs at once) always run in a thread.
    """
    svc = service_of(request)
    rec = svc.lookup(obj_id, (kind,), owner_of(request))
    if not svc.is_local(rec):
        return raw_json(await forward(svc, rec, http_method, f"/api/v1/{kind}s/{obj_id}/{suffix}", payload))
    if kind == "vec":
        return model_response(await svc.blocking(method, svc.worker, obj_id, *args))
    return model_response(await call_local_env(svc, obj_id, method, *args))


def _forced_id(svc: Service, request: Request, kind: str) -> str:
    forced = request.headers.get(OBJECT_ID_HEADER) if svc.role == "worker" else None
    return forced or new_id(kind)


# --- operations shared with the ROCK-compatible routes ----------------------------------------


def _requested_runtime(spec: EnvSpec, kwargs: dict[str, Any]) -> str | None:
    """The sandbox runtime an env's kwargs (and spec defaults) ask for; None for envs without a sandbox."""
    if not spec.needs_sandbox:
        return None
    merged = {**spec.kwargs, **kwargs}
    runtime = merged.get("runtime")
    sandbox = merged.get("sandbox")
    if runtime is None and isinstance(sandbox, dict):
        runtime = sandbox.get("runtime")
    return runtime if isinstance(runtime, str) else None


def place_env(svc: Service, spec: EnvSpec, kwargs: dict[str, Any], size: int, what: str) -> WorkerEntry:
    """A worker for ``size`` copies of ``spec``.

    Envs that own a sandbox go to a worker with the runtime they ask for (``auto``: an isolating
    one, see :meth:`Service.place_sandbox`); the policy then makes their runtime concrete from
    the runtimes that worker offers, so that no env falls back to ``local``.
    """
    if spec.needs_sandbox:
        return svc.place_sandbox(size, _requested_runtime(spec, kwargs), what)[0]
    return svc.place(size, what=what)


async def make_env_op(svc: Service, request: Request, body: EnvMakeRequest) -> EnvInfo:
    """Place and build one env; returns its info."""
    from rock_env.registry import registry

    owner = owner_of(request)
    svc.policy.check_env_kwargs(body.kwargs)  # refused before anything is looked up, imported or placed
    spec = await svc.blocking(registry.spec, body.env_id)
    obj_id = _forced_id(svc, request, "env")
    started = time.perf_counter()

    async def create(entry: WorkerEntry) -> tuple[EnvMakeRequest, EnvInfo]:
        kwargs = await svc.blocking(svc.policy.env_kwargs, spec, body.kwargs, entry.capacity.runtimes)
        placed = body.model_copy(update={"kwargs": kwargs})
        if entry.embedded:
            assert svc.worker is not None
            return placed, await svc.blocking(svc.worker.make_env, obj_id, placed)
        assert entry.peer is not None
        resp = await entry.peer.request(
            "POST",
            "/api/v1/envs",
            content=placed.model_dump_json().encode(),
            headers=svc.object_headers(obj_id),
            what=f"making env {spec.id!r}",
        )
        return placed, parse_peer(svc, None, resp, EnvInfo)

    with svc.hold_quota(owner, "env", 1):
        svc.reserve(obj_id)
        try:
            what = f"env {spec.id!r}"
            entry, (placed, info) = await svc.create_placed(
                lambda: place_env(svc, spec, body.kwargs, 1, what), create, f"making {what}"
            )
            svc.add_record(obj_id, "env", entry, owner, 1, placed.model_dump(), info.model_dump(), body.idle_ttl)
        finally:
            svc.release(obj_id)
    svc.observe("env_make", time.perf_counter() - started)
    return info


async def reset_env_op(svc: Service, owner: str, env: str, body: EnvResetRequest) -> bytes:
    """Reset one env; the JSON of an EnvResetResponse."""
    rec = svc.lookup(env, ("env",), owner)
    started = time.perf_counter()
    if svc.is_local(rec):
        content = (await call_local_env(svc, env, Worker.env_reset, body)).model_dump_json().encode()
    else:
        content = await forward(svc, rec, "POST", f"/api/v1/envs/{env}/reset", body.model_dump_json().encode())
    svc.observe("env_reset", time.perf_counter() - started)
    return content


async def step_env_op(svc: Service, owner: str, env: str, action: str | None) -> bytes:
    """Step one env; the JSON of an EnvStepResponse."""
    rec = svc.lookup(env, ("env",), owner)
    started = time.perf_counter()
    if svc.is_local(rec):
        content = (await call_local_env(svc, env, Worker.env_step, action)).model_dump_json().encode()
    else:
        payload = EnvStepRequest(action=action).model_dump_json().encode()
        content = await forward(svc, rec, "POST", f"/api/v1/envs/{env}/step", payload)
    svc.observe("env_step", time.perf_counter() - started)
    svc.metrics.inc("env_steps_total", "Env steps served (vector sub-env steps included).")
    return content


async def close_env_op(svc: Service, request: Request, env: str) -> None:
    """Close one env (a lost env is just forgotten)."""
    if svc.forget_lost(env, "env", owner_of(request)):
        return
    rec = svc.lookup(env, ("env",), owner_of(request))
    if svc.is_local(rec):
        svc.drop_record(env)
        assert svc.worker is not None
        await svc.blocking(svc.worker.close_env, env)
    else:
        svc.drop_record(env)
        await forward(svc, rec, "DELETE", f"/api/v1/envs/{env}", None)


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
    svc = service_of(request)
    rec = svc.lookup(env, ("env",), owner_of(request))
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
    return raw_json(await step_env_op(service_of(request), owner_of(request), env, body.action))


@router.post(
    "/envs/{env}/sample_action",
    response_model=SampleActionResponse,
    responses=ERROR_RESPONSES,
    summary="Sample a random action",
    openapi_extra=body_schema(SampleActionRequest),
)
async def sample_action(env: str, request: Request) -> Response:
    """``env.sample_random_action()`` on the hosted env: drawn from its own RNG, as a local env would."""
    body = await parse_body(request, SampleActionRequest)
    payload = body.model_dump_json().encode()
    return await hosted_call(
        request, "env", env, "POST", "sample_action", Worker.env_sample_action, body, payload=payload
    )


@router.post(
    "/envs/{env}/tool_call_to_action",
    response_model=ToolCallResponse,
    responses=ERROR_RESPONSES,
    summary="Turn a tool call into an action",
    openapi_extra=body_schema(ToolCallRequest),
)
async def tool_call_to_action(env: str, request: Request) -> Response:
    """``env.tool_call_to_action(name, arguments)`` on the hosted env (envs that define it)."""
    body = await parse_body(request, ToolCallRequest)
    payload = body.model_dump_json().encode()
    return await hosted_call(
        request, "env", env, "POST", "tool_call_to_action", Worker.env_tool_call_to_action, body, payload=payload
    )


@router.get("/envs/{env}/render", response_model=RenderResponse, responses=ERROR_RESPONSES, summary="Render an env")
async def render_env(env: str, request: Request) -> Response:
    """``env.render()`` on the hosted env (text, or null)."""
    return await hosted_call(request, "env", env, "GET", "render", Worker.env_render)


@router.delete("/envs/{env}", response_model=Ok, responses=ERROR_RESPONSES, summary="Close an env")
async def close_env(env: str, request: Request) -> Response:
    """Close the env and free its slot."""
    await close_env_op(service_of(request), request, env)
    return model_response(Ok())


@router.post(
    "/batch/step",
    response_model=BatchStepResponse,
    responses=ERROR_RESPONSES,
    summary="Step many envs",
    openapi_extra=body_schema(BatchStepRequest),
)
async def batch_step(request: Request) -> Response:
    """Step many envs in one request; a failing env reports its error, the others still step."""
    body = await parse_body(request, BatchStepRequest)
    svc = service_of(request)
    owner = owner_of(request)
    started = time.perf_counter()
    results: list[BatchStepResult | None] = [None] * len(body.steps)
    local: list[tuple[int, str, str]] = []
    remote: dict[str, list[tuple[int, str, str]]] = {}
    for i, item in enumerate(body.steps):
        try:
            rec = svc.lookup(item.env, ("env",), owner)
            if svc.is_local(rec):
                local.append((i, item.env, item.action))
            else:
                svc.entry_of(rec)
                remote.setdefault(rec.worker_id, []).append((i, item.env, item.action))
        except RockEnvError as exc:
            results[i] = BatchStepResult(error=error_body(exc))

    def step_local() -> None:
        worker = svc.worker
        assert worker is not None
        for i, env, action in local:
            try:
                results[i] = BatchStepResult.model_construct(result=worker.env_step(env, action), error=None)
            except RockEnvError as exc:
                results[i] = BatchStepResult(error=error_body(exc))

    async def step_remote(worker_id: str, items: list[tuple[int, str, str]]) -> None:
        entry = svc.workers[worker_id]
        sub = BatchStepRequest.model_validate({"steps": [{"env": env, "action": action} for _, env, action in items]})
        try:
            assert entry.peer is not None
            resp = await entry.peer.request(
                "POST", "/api/v1/batch/step", content=sub.model_dump_json().encode(), headers={"content-type": JSON}
            )
            answer = BatchStepResponse.model_validate_json(check_peer_response(svc, None, resp))
            for (i, _, _), res in zip(items, answer.results, strict=True):
                results[i] = res
        except RockEnvError as exc:
            for i, _, _ in items:
                results[i] = BatchStepResult(error=error_body(exc))

    tasks = [asyncio.create_task(step_remote(w, items)) for w, items in remote.items()]
    if local:
        worker = svc.worker
        assert worker is not None
        if any(worker.is_blocking_env(env) for _, env, _ in local):
            await svc.blocking(step_local)
        else:
            step_local()
    if tasks:
        await asyncio.gather(*tasks)
    svc.observe("batch_step", time.perf_counter() - started)
    svc.metrics.inc("env_steps_total", "Env steps served (vector sub-env steps included).", amount=len(body.steps))
    return model_response(BatchStepResponse.model_construct(results=results))


# --- vector envs ----------------------------------------------------------------------------


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
    from rock_env.registry import registry
    from rock_env.vector.async_env import default_num_workers

    body = await parse_body(request, VecMakeRequest)
    svc = service_of(request)
    owner = owner_of(request)
    svc.policy.check_env_kwargs(body.kwargs)
    spec = await svc.blocking(registry.spec, body.env_id)
    if body.mode == "async" and body.num_workers is None:
        body = body.model_copy(update={"num_workers": default_num_workers(body.num_envs)})
    workers = (body.num_workers or 0) if body.mode == "async" else 0
    obj_id = _forced_id(svc, request, "vec")
    what = f"vector env of {body.num_envs} x {spec.id!r}"

    async def create(entry: WorkerEntry) -> tuple[VecMakeRequest, VecInfo]:
        kwargs = await svc.blocking(svc.policy.vec_kwargs, spec, body.kwargs, entry.capacity.runtimes)
        placed = body.model_copy(update={"kwargs": kwargs})
        if entry.embedded:
            assert svc.worker is not None
            return placed, await svc.blocking(svc.worker.make_vec, obj_id, placed)
        assert entry.peer is not None
        resp = await entry.peer.request(
            "POST",
            "/api/v1/vecs",
            content=placed.model_dump_json().encode(),
            headers=svc.object_headers(obj_id),
            what=f"making a vector env of {spec.id!r}",
        )
        return placed, parse_peer(svc, None, resp, VecInfo)

    with svc.hold_quota(owner, "vec", body.num_envs, workers):
        svc.reserve(obj_id)
        try:
            entry, (placed, info) = await svc.create_placed(
                lambda: place_env(svc, spec, body.kwargs, body.num_envs, what), create, f"making a {what}"
            )
            svc.add_record(
                obj_id, "vec", entry, owner, body.num_envs, placed.model_dump(), info.model_dump(), body.idle_ttl
            )
        finally:
            svc.release(obj_id)
    return model_response(info)


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
    body = await parse_body(request, VecResetRequest)
    payload = body.model_dump_json().encode()
    return await hosted_call(request, "vec", vec, "POST", "reset", Worker.vec_reset, body, payload=payload)


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
    return raw_json(await step_vec_op(service_of(request), owner_of(request), vec, body.actions))


async def step_vec_op(svc: Service, owner: str, vec: str, actions: list[str | None]) -> bytes:
    """Step a vector env; the JSON of a VecStepResponse."""
    rec = svc.lookup(vec, ("vec",), owner)
    started = time.perf_counter()
    if svc.is_local(rec):
        worker = svc.worker
        assert worker is not None
        if len(actions) <= 1024:
            result = worker.vec_step(vec, actions)
        else:
            result = await svc.blocking(worker.vec_step, vec, actions)
        content = result.model_dump_json().encode()
    else:
        payload = VecStepRequest.model_construct(actions=actions).model_dump_json().encode()
        content = await forward(svc, rec, "POST", f"/api/v1/vecs/{vec}/step", payload)
    svc.observe("vec_step", time.perf_counter() - started)
    svc.metrics.inc("env_steps_total", "Env steps served (vector sub-env steps included).", amount=len(actions))
    return content


@router.post(
    "/vecs/{vec}/sample_actions",
    response_model=VecSampleResponse,
    responses=ERROR_RESPONSES,
    summary="Sample random actions",
    tags=["vecs"],
)
async def sample_vec_actions(vec: str, request: Request) -> Response:
    """One ``sample_random_action()`` per sub-env, each from that sub-env's own RNG."""
    return await hosted_call(request, "vec", vec, "POST", "sample_actions", Worker.vec_sample_actions, payload=b"{}")


@router.get(
    "/vecs/{vec}/render",
    response_model=VecRenderResponse,
    responses=ERROR_RESPONSES,
    summary="Render a vector env",
    tags=["vecs"],
)
async def render_vec(vec: str, request: Request) -> Response:
    """Each sub-env's ``render()``."""
    return await hosted_call(request, "vec", vec, "GET", "render", Worker.vec_render)


@router.delete("/vecs/{vec}", response_model=Ok, responses=ERROR_RESPONSES, summary="Close a vector env", tags=["vecs"])
async def close_vec(vec: str, request: Request) -> Response:
    """Close all sub-envs."""
    svc = service_of(request)
    owner = owner_of(request)
    if svc.forget_lost(vec, "vec", owner):
        return model_response(Ok())
    rec = svc.lookup(vec, ("vec",), owner)
    svc.drop_record(vec)
    if svc.is_local(rec):
        assert svc.worker is not None
        await svc.blocking(svc.worker.close_vec, vec)
    else:
        await forward(svc, rec, "DELETE", f"/api/v1/vecs/{vec}", None)
    return model_response(Ok())
