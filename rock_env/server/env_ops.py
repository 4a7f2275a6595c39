"""The host operations of envs and vector envs (see :class:`~rock_env.server.hosts.HostOp`).

Each op names the worker route it is sent to and the :class:`~rock_env.server.worker.Worker`
method that runs it in-process. Creations carry the :class:`Placed` request: the client's
request made concrete for the chosen worker, and the spec the admin resolved; a remote worker
receives them as :mod:`~rock_env.protocol.control` (it does not look the id up again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from rock_env.protocol import EnvInfo, EnvMakeRequest, VecInfo, VecMakeRequest
from rock_env.protocol.control import HOSTED_ENVS_PATH, HOSTED_VECS_PATH, HostedEnvMake, HostedVecMake
from rock_env.registry.spec import EnvSpec
from rock_env.server.hosts import HostOp, Run, creation_headers, if_env_blocks
from rock_env.server.objects import Kind, WorkerEntry
from rock_env.server.placement import Creation, Placement
from rock_env.server.worker import Worker

M = TypeVar("M", bound=BaseModel)

#: Vector steps with more actions than this run in the thread pool even for envs that do not block.
INLINE_VEC_STEP = 1024


R = TypeVar("R", EnvMakeRequest, VecMakeRequest)


@dataclass(frozen=True)
class Placed(Generic[R]):
    """A creation request for one worker: the client's request (kwargs made concrete) and the resolved spec."""

    request: R
    spec: EnvSpec


def _env_wire(placed: Placed[EnvMakeRequest]) -> bytes:
    return HostedEnvMake(request=placed.request, spec=placed.spec.to_dict()).model_dump_json().encode()


def _vec_wire(placed: Placed[VecMakeRequest]) -> bytes:
    return HostedVecMake(request=placed.request, spec=placed.spec.to_dict()).model_dump_json().encode()


def _env_batch_item(obj_id: str, placed: Placed[EnvMakeRequest]) -> dict[str, Any]:
    return {"id": obj_id, "request": placed.request.model_dump(mode="json"), "spec": placed.spec.to_dict()}


def _make_env(worker: Worker, obj_id: str, placed: Placed[EnvMakeRequest], args: Mapping[str, str]) -> Any:
    return worker.make_env(obj_id, placed.request, placed.spec)


def _make_vec(worker: Worker, obj_id: str, placed: Placed[VecMakeRequest], args: Mapping[str, str]) -> Any:
    return worker.make_vec(obj_id, placed.request, placed.spec)


def _vec_step_blocks(worker: Worker, obj_id: str, body: Any) -> bool:
    return worker.is_blocking_env(obj_id) or len(body.actions) > INLINE_VEC_STEP


#: Namespaces whose envs build in about a millisecond of CPU with no I/O (no dataset, no sandbox).
LIGHT_NAMESPACES = frozenset({"game"})


def is_light(spec: EnvSpec) -> bool:
    """Whether making an env of ``spec`` is cheap enough to run on the event loop (no thread hop)."""
    return spec.namespace in LIGHT_NAMESPACES and not spec.needs_sandbox


def _make_blocks(worker: Worker, obj_id: str, placed: Placed[EnvMakeRequest]) -> bool:
    return not is_light(placed.spec)


ENV_MAKE = HostOp(
    "make_env",
    "env",
    "POST",
    HOSTED_ENVS_PATH,
    _make_env,
    _make_blocks,
    wire=_env_wire,
    creates=True,
    headers=creation_headers,
    batch_item=_env_batch_item,
)


def _env_op(name: str, method: str, run: Run) -> HostOp:
    """An op on one env at ``/api/v1/envs/{id}/<name>``, inline unless the env owns a sandbox."""
    return HostOp(name, "env", method, f"/api/v1/envs/{{id}}/{name}", run, if_env_blocks)


ENV_RESET = _env_op("reset", "POST", lambda w, i, b, a: w.env_reset(i, b))
ENV_STEP = _env_op("step", "POST", lambda w, i, b, a: w.env_step(i, b.action))
ENV_SAMPLE_ACTION = _env_op("sample_action", "POST", lambda w, i, b, a: w.env_sample_action(i, b))
ENV_TOOL_CALL = _env_op("tool_call_to_action", "POST", lambda w, i, b, a: w.env_tool_call_to_action(i, b))
ENV_RENDER = _env_op("render", "GET", lambda w, i, b, a: w.env_render(i))
ENV_CLOSE = HostOp("close", "env", "DELETE", "/api/v1/envs/{id}", lambda w, i, b, a: w.close_env(i))


def _batch_op(name: str, run: Run, items: Callable[[Any], list[Any]]) -> HostOp:
    """Calls on several envs of one worker at ``/api/v1/batch/<name>`` (``obj_id`` unused): the worker
    answers each item on its own; in the thread pool when one of the envs owns a sandbox."""
    return HostOp(
        f"batch_{name}",
        "env",
        "POST",
        f"/api/v1/batch/{name}",
        run,
        lambda w, i, b: any(w.is_blocking_env(item.env) for item in items(b)),
    )


BATCH_STEP = _batch_op("step", lambda w, i, b, a: w.batch_step(b), lambda b: b.steps)
BATCH_RESET = _batch_op("reset", lambda w, i, b, a: w.batch_reset(b), lambda b: b.resets)

VEC_MAKE = HostOp(
    "make_vec", "vec", "POST", HOSTED_VECS_PATH, _make_vec, wire=_vec_wire, creates=True, headers=creation_headers
)
VEC_RESET = HostOp("reset", "vec", "POST", "/api/v1/vecs/{id}/reset", lambda w, i, b, a: w.vec_reset(i, b))
VEC_STEP = HostOp(
    "step", "vec", "POST", "/api/v1/vecs/{id}/step", lambda w, i, b, a: w.vec_step(i, b.actions), _vec_step_blocks
)
VEC_SAMPLE_ACTIONS = HostOp(
    "sample_actions", "vec", "POST", "/api/v1/vecs/{id}/sample_actions", lambda w, i, b, a: w.vec_sample_actions(i)
)
VEC_RENDER = HostOp("render", "vec", "GET", "/api/v1/vecs/{id}/render", lambda w, i, b, a: w.vec_render(i))
VEC_CLOSE = HostOp("close", "vec", "DELETE", "/api/v1/vecs/{id}", lambda w, i, b, a: w.close_vec(i))


# --- creating envs and vector envs (the admin resolves the id once) ---------------------------


def requested_runtime(spec: EnvSpec, kwargs: Mapping[str, Any]) -> str | None:
    """The sandbox runtime an env's kwargs (and spec defaults) ask for; None: ``auto``."""
    merged = {**spec.kwargs, **kwargs}
    runtime = merged.get("runtime")
    sandbox = merged.get("sandbox")
    if runtime is None and isinstance(sandbox, dict):
        runtime = sandbox.get("runtime")
    return runtime if isinstance(runtime, str) else None


def _creation(
    svc: Placement,
    op: HostOp,
    response: type[M],
    body: EnvMakeRequest | VecMakeRequest,
    spec: EnvSpec,
    what: str,
    size: int = 1,
    processes: int = 0,
) -> Creation[M]:
    """The creation of an env or vector env of ``spec``: its kwargs are made concrete for the chosen worker."""
    kwargs_of = svc.policy.env_kwargs if isinstance(body, EnvMakeRequest) else svc.policy.vec_kwargs

    async def prepare(entry: WorkerEntry, runtime: str | None) -> tuple[Placed[Any], dict[str, Any]]:
        if is_light(spec):  # a dict copy and a check: no thread hop
            kwargs = kwargs_of(spec, body.kwargs, entry.capacity.runtimes)
        else:
            kwargs = await svc.blocking(kwargs_of, spec, body.kwargs, entry.capacity.runtimes)
        placed = body.model_copy(update={"kwargs": kwargs})
        return Placed(placed, spec), placed.model_dump()

    kind: Kind = "env" if isinstance(body, EnvMakeRequest) else "vec"
    return Creation(
        kind,
        what,
        op,
        response,
        prepare,
        size=size,
        processes=processes,
        sandbox=spec.needs_sandbox,
        runtime=requested_runtime(spec, body.kwargs),
        idle_ttl=body.idle_ttl,
    )


async def resolve_spec(svc: Placement, env_id: str) -> EnvSpec:
    """The spec of a registered id (in the thread pool: resolving may import a plugin)."""
    from rock_env.registry import registry

    return await svc.blocking(registry.spec, env_id)


async def _resolve(svc: Placement, body: EnvMakeRequest | VecMakeRequest, spec: EnvSpec | None) -> EnvSpec:
    """Check the client's kwargs (before anything is looked up, imported or placed), then resolve its id."""
    svc.policy.check_env_kwargs(body.kwargs)
    return spec if spec is not None else await resolve_spec(svc, body.env_id)


async def make_env(
    svc: Placement, owner: str, obj_id: str, body: EnvMakeRequest, spec: EnvSpec | None = None
) -> EnvInfo:
    """Place and build one env under ``obj_id`` (``spec``: the id already resolved, by the admin)."""
    spec = await _resolve(svc, body, spec)
    return await svc.create(owner, obj_id, _creation(svc, ENV_MAKE, EnvInfo, body, spec, f"env {spec.id!r}"))


async def make_vec(
    svc: Placement, owner: str, obj_id: str, body: VecMakeRequest, spec: EnvSpec | None = None
) -> VecInfo:
    """Place and build a vector env under ``obj_id`` (``spec``: the id already resolved, by the admin)."""
    from rock_env.vector.async_env import default_num_workers

    spec = await _resolve(svc, body, spec)
    if body.mode == "async" and body.num_workers is None:
        body = body.model_copy(update={"num_workers": default_num_workers(body.num_envs)})
    processes = (body.num_workers or 0) if body.mode == "async" else 0
    what = f"vector env of {body.num_envs} x {spec.id!r}"
    creation = _creation(svc, VEC_MAKE, VecInfo, body, spec, what, size=body.num_envs, processes=processes)
    return await svc.create(owner, obj_id, creation)
