"""A worker hosts envs, vector envs and sandboxes in its own process.

The admin's embedded worker and every ``rock-env worker start`` process use this class.
Its methods are synchronous and take wire models; the server calls the cheap env ones
inline on its event loop and the ones that may block (sandboxes, sandbox-backed envs) in
a thread. Each hosted object has its own lock, so two requests never drive one object at
the same time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic_core import to_json

from rock_env.errors import (
    EnvInstanceNotFound,
    InvalidAction,
    InvalidArgument,
    RockEnvError,
    SandboxNotFound,
)
from rock_env.protocol import (
    BatchResetRequest,
    BatchStepRequest,
    EnvInfo,
    EnvMakeRequest,
    EnvResetRequest,
    RenderResponse,
    SampleActionRequest,
    SampleActionResponse,
    SandboxPlacement,
    ToolCallRequest,
    ToolCallResponse,
    VecInfo,
    VecMakeRequest,
    VecRenderResponse,
    VecResetRequest,
    VecResetResponse,
    VecSampleResponse,
    VecStepResponse,
    WorkerCapacity,
    error_body,
    jsonable,
    pack_tree,
    unpack_tree,
)

if TYPE_CHECKING:
    from rock_env.registry.spec import EnvSpec

from rock_env.server.capacity import MemoryMeter, default_capacity
from rock_env.server.console_history import EnvHistories, VecHistories
from rock_env.server.env_answers import (
    INPUT_ERRORS,
    HasTools,
    close_quietly,
    sample_action,
    sub_env_kwargs,
    text_space_info,
    tool_schemas_of,
    wrap_env_error,
)

logger = logging.getLogger(__name__)


@dataclass
class _Slot:
    obj: Any
    info: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


def _batch_json(calls: list[Callable[[], dict[str, Any]]]) -> bytes:
    """``{"results": [{"result": ..., "error": ...}, ...]}`` of running each call on its own: a call
    that raises a RockEnvError reports it as its ``error``, and the others still run."""
    results: list[dict[str, Any]] = []
    for call in calls:
        try:
            results.append({"result": call(), "error": None})
        except RockEnvError as exc:
            results.append({"result": None, "error": error_body(exc).model_dump(mode="json")})
    return to_json({"results": results})


class Worker:
    """Hosts objects by id. Not a server: :mod:`rock_env.server.hosts` puts it behind the host interface."""

    def __init__(self, worker_id: str, capacity: WorkerCapacity | None = None) -> None:
        self.id = worker_id
        self.capacity = capacity or default_capacity()
        #: measures what a light env costs here (capacity by memory)
        self.meter = MemoryMeter(self.capacity.memory)
        self._measured_at = 0.0
        self._envs: dict[str, _Slot] = {}
        self._vecs: dict[str, _Slot] = {}
        self._sandboxes: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        #: the current observation and last steps of each env, for the web console
        self.history = EnvHistories()
        self.vec_history = VecHistories()
        #: the model services of sandboxes made with one (rock_env.server.model_hub; made on first use)
        self.model_hub: Any = None

    # -- bookkeeping ---------------------------------------------------------------------

    @property
    def used_slots(self) -> int:
        """Slots used now: sandboxes and envs that own one (light envs cost memory, not slots)."""
        return len(self._sandboxes) + sum(1 for s in list(self._envs.values()) if "sandbox" in s.info.requirements)

    @property
    def light_envs(self) -> int:
        """Envs without a sandbox plus vector sub-envs hosted now."""
        envs = list(self._envs.values())
        light = sum(1 for s in envs if "sandbox" not in s.info.requirements)
        return light + sum(s.info.num_envs for s in list(self._vecs.values()))

    def measure(self, max_age: float = 1.0) -> WorkerCapacity:
        """:attr:`capacity` with the memory per light env and ``max_envs`` measured now (at most every
        ``max_age`` seconds)."""
        now = time.monotonic()
        if now - self._measured_at > max_age:
            self._measured_at = now
            self.meter.update(self.capacity, self.light_envs)
        return self.capacity

    def object_ids(self) -> list[str]:
        """Ids of every hosted object."""
        with self._lock:
            return [*self._envs, *self._vecs, *self._sandboxes]

    def counts(self) -> tuple[int, int]:
        """(envs including vector sub-envs, sandboxes)."""
        return len(self._envs) + sum(s.info.num_envs for s in self._vecs.values()), len(self._sandboxes)

    def is_blocking_env(self, obj_id: str) -> bool:
        """Whether stepping this env may block (it owns a sandbox): run it off the event loop."""
        slot = self._envs.get(obj_id) or self._vecs.get(obj_id)
        return bool(slot is not None and "sandbox" in getattr(slot.info, "requirements", ()))

    def _env(self, obj_id: str) -> _Slot:
        slot = self._envs.get(obj_id)
        if slot is None:
            raise EnvInstanceNotFound(
                f"no env with id {obj_id!r} on worker {self.id!r}: it was closed or reaped; make a new one."
            )
        return slot

    def _vec(self, obj_id: str) -> _Slot:
        slot = self._vecs.get(obj_id)
        if slot is None:
            raise EnvInstanceNotFound(
                f"no vector env with id {obj_id!r} on worker {self.id!r}: it was closed or reaped; make a new one."
            )
        return slot

    def _sandbox(self, obj_id: str) -> _Slot:
        slot = self._sandboxes.get(obj_id)
        if slot is None:
            raise SandboxNotFound(f"no sandbox with id {obj_id!r} on worker {self.id!r}: it was stopped or reaped.")
        return slot

    # -- envs ----------------------------------------------------------------------------

    def make_env(self, obj_id: str, req: EnvMakeRequest, spec: EnvSpec) -> EnvInfo:
        """Build the env of ``spec`` (the admin resolved ``req.env_id`` to it) and host it as ``obj_id``."""
        from rock_env.registry.factory import make_from_spec

        kwargs = dict(req.kwargs)
        if req.seed is not None:
            kwargs["seed"] = req.seed
        if req.max_episode_steps is not None:
            kwargs["max_episode_steps"] = req.max_episode_steps
        try:
            env = make_from_spec(spec, **kwargs)
        except RockEnvError:
            raise
        except INPUT_ERRORS as exc:
            raise InvalidArgument(
                f"cannot build {spec.id!r} with kwargs {sorted(kwargs)}: {type(exc).__name__}: {exc}"
            ) from exc
        now = time.time()
        info = EnvInfo(
            id=obj_id,
            env_id=spec.id,
            worker_id=self.id,
            created=now,
            last_used=now,
            idle_ttl=req.idle_ttl,
            requirements=list(spec.requirements),
            tools=tool_schemas_of(env),
            tool_call_hook=callable(getattr(env, "tool_call_to_action", None)),
            action_space=text_space_info(getattr(env, "action_space", None)),
            observation_space=text_space_info(getattr(env, "observation_space", None)),
        )
        with self._lock:
            self._envs[obj_id] = _Slot(env, info)
        logger.debug("made env %s (%s)", obj_id, spec.id)
        return info

    def reset_answer(self, obj_id: str, seed: int | None, options: dict[str, Any] | None) -> dict[str, Any]:
        """Reset the env: the fields of an :class:`~rock_env.protocol.EnvResetResponse` as plain JSON values."""
        slot = self._env(obj_id)
        with slot.lock:
            try:
                if options is None:
                    obs, info = slot.obj.reset(seed=seed)
                else:
                    obs, info = slot.obj.reset(seed=seed, options=options)
            except Exception as exc:
                raise wrap_env_error(exc, f"reset of env {obj_id!r}") from exc
        observation = jsonable(obs)
        self.history.reset(obj_id, observation)
        return {"observation": observation, "info": jsonable(info)}

    def env_reset(self, obj_id: str, req: EnvResetRequest) -> bytes:
        """Reset the env: the JSON of an :class:`~rock_env.protocol.EnvResetResponse`."""
        return to_json(self.reset_answer(obj_id, req.seed, req.options))

    def step_answer(self, obj_id: str, action: str | None) -> dict[str, Any]:
        """Step the env: the fields of an :class:`~rock_env.protocol.EnvStepResponse` as plain JSON values
        (built without models: a batched step answers thousands of these)."""
        slot = self._env(obj_id)
        with slot.lock:
            try:
                obs, reward, terminated, truncated, info = slot.obj.step(action)
            except Exception as exc:
                raise wrap_env_error(exc, f"step of env {obj_id!r}") from exc
        observation, reward, terminated, truncated = jsonable(obs), float(reward), bool(terminated), bool(truncated)
        self.history.stepped(obj_id, action, observation, reward, terminated, truncated)
        return {
            "observation": observation,
            "reward": reward if math.isfinite(reward) else None,
            "terminated": terminated,
            "truncated": truncated,
            "info": jsonable(info),
        }

    def env_step(self, obj_id: str, action: str | None) -> bytes:
        """Step the env with ``action``: the JSON of an :class:`~rock_env.protocol.EnvStepResponse`."""
        return to_json(self.step_answer(obj_id, action))

    def env_sample_action(self, obj_id: str, req: SampleActionRequest) -> SampleActionResponse:
        """``sample_random_action()`` of the env, after seeding its action space if asked to."""
        slot = self._env(obj_id)
        with slot.lock:
            try:
                if req.seed_action_space or req.action_space_seed is not None:
                    slot.obj.action_space.seed(req.action_space_seed)
                action = sample_action(slot.obj)
            except Exception as exc:
                raise wrap_env_error(exc, f"sample_random_action of env {obj_id!r}") from exc
        return SampleActionResponse(action=action)

    def env_tool_call_to_action(self, obj_id: str, req: ToolCallRequest) -> ToolCallResponse:
        """``env.tool_call_to_action(name, arguments)`` (the env's text action for a tool call)."""
        slot = self._env(obj_id)
        convert = getattr(slot.obj, "tool_call_to_action", None)
        if not callable(convert):
            raise InvalidArgument(
                f"env {obj_id!r} ({slot.info.env_id}) has no tool_call_to_action(); send the tool call as "
                "the action text instead."
            )
        with slot.lock:
            try:
                action = convert(req.name, req.arguments)
            except Exception as exc:
                raise wrap_env_error(exc, f"tool_call_to_action of env {obj_id!r}") from exc
        return ToolCallResponse(action=action if isinstance(action, str) else str(action))

    def env_render(self, obj_id: str) -> RenderResponse:
        """``render()`` of the env (non-text renders are sent as their text form)."""
        slot = self._env(obj_id)
        with slot.lock:
            try:
                out = slot.obj.render()
            except Exception as exc:
                raise wrap_env_error(exc, f"render of env {obj_id!r}") from exc
        return RenderResponse(render=None if out is None else out if isinstance(out, str) else repr(out))

    def close_env(self, obj_id: str) -> None:
        """Close and forget the env."""
        with self._lock:
            slot = self._envs.pop(obj_id, None)
        if slot is None:
            raise EnvInstanceNotFound(f"no env with id {obj_id!r} on worker {self.id!r} (closed already?).")
        self.history.forget(obj_id)
        with slot.lock:
            close_quietly(slot.obj, obj_id)

    # -- vector envs ---------------------------------------------------------------------

    def make_vec(self, obj_id: str, req: VecMakeRequest, spec: EnvSpec) -> VecInfo:
        """Build a local vector env (``rock_env.vector``) of ``req.num_envs`` copies of ``spec``'s env."""
        from rock_env.vector import AsyncVectorEnv, EnvFactory, SyncVectorEnv

        kwargs = dict(req.kwargs)
        options = {k: kwargs.pop(k) for k in ("timeout", "close_timeout") if k in kwargs}
        try:
            factories = [EnvFactory(spec, k) for k in sub_env_kwargs(kwargs, req.num_envs)]
            if req.mode == "async":
                vec: Any = AsyncVectorEnv(
                    factories,
                    autoreset_mode=req.autoreset_mode,
                    seed=req.seed,
                    num_workers=req.num_workers,
                    env_id=spec.id,
                    **options,
                )
            else:
                if options.get("timeout") is not None:
                    raise InvalidArgument("num_workers and timeout only apply to mode='async'.")
                vec = SyncVectorEnv(factories, autoreset_mode=req.autoreset_mode, seed=req.seed, env_id=spec.id)
        except RockEnvError:
            raise
        except INPUT_ERRORS as exc:
            raise InvalidArgument(
                f"cannot build a vector env of {spec.id!r} with kwargs {sorted(req.kwargs)}: {type(exc).__name__}: {exc}"
            ) from exc
        now = time.time()
        info = VecInfo(
            id=obj_id,
            env_id=spec.id,
            num_envs=req.num_envs,
            autoreset_mode=req.autoreset_mode,
            worker_id=self.id,
            created=now,
            last_used=now,
            idle_ttl=req.idle_ttl,
            tools=self._vec_tools(vec),
        )
        with self._lock:
            self._vecs[obj_id] = _Slot(vec, info)
        return info

    def vec_reset(self, obj_id: str, req: VecResetRequest) -> VecResetResponse:
        """Reset every sub-env."""
        slot = self._vec(obj_id)
        with slot.lock:
            try:
                options = dict(req.options) if req.options else None
                if options and "reset_mask" in options:
                    options["reset_mask"] = unpack_tree(options["reset_mask"])
                    if isinstance(options["reset_mask"], list):
                        options["reset_mask"] = np.asarray(options["reset_mask"])
                obs, infos = slot.obj.reset(seed=req.seed, options=options)
            except Exception as exc:
                raise wrap_env_error(exc, f"reset of vector env {obj_id!r}") from exc
        observations = jsonable(list(obs))
        self.vec_history.reset(obj_id, observations)
        return VecResetResponse.model_construct(observations=observations, infos=pack_tree(infos))

    def vec_step(self, obj_id: str, actions: list[str | None]) -> VecStepResponse:
        """Step every sub-env with its action."""
        slot = self._vec(obj_id)
        if len(actions) != slot.info.num_envs:
            raise InvalidAction(
                f"vector env {obj_id!r} has {slot.info.num_envs} sub-envs but got {len(actions)} actions."
            )
        with slot.lock:
            try:
                obs, rewards, terminations, truncations, infos = slot.obj.step(actions)
            except Exception as exc:
                raise wrap_env_error(exc, f"step of vector env {obj_id!r}") from exc
        observations, floats = jsonable(list(obs)), [float(r) for r in rewards]
        terms, truncs = [bool(t) for t in terminations], [bool(t) for t in truncations]
        self.vec_history.stepped(obj_id, actions, observations, floats, terms, truncs)
        return VecStepResponse.model_construct(
            observations=observations, rewards=floats, terminations=terms, truncations=truncs, infos=pack_tree(infos)
        )

    def batch_step(self, req: BatchStepRequest) -> bytes:
        """Step several hosted envs; an env that fails reports its error, the others still step.
        The JSON of a :class:`~rock_env.protocol.BatchStepResponse`."""
        return _batch_json([partial(self.step_answer, item.env, item.action) for item in req.steps])

    def batch_reset(self, req: BatchResetRequest) -> bytes:
        """Reset several hosted envs, each on its own (the JSON of a :class:`~rock_env.protocol.BatchResetResponse`)."""
        return _batch_json([partial(self.reset_answer, item.env, item.seed, item.options) for item in req.resets])

    @staticmethod
    def _vec_tools(vec: Any) -> list[dict[str, Any]] | None:
        """The first sub-env's tools (all sub-envs are copies of one env)."""
        envs = getattr(vec, "envs", None)
        if envs:
            return tool_schemas_of(envs[0])
        try:
            first = vec.get_attr("tools")[0]
        except Exception:
            return None
        return tool_schemas_of(HasTools(first))

    def vec_sample_actions(self, obj_id: str) -> VecSampleResponse:
        """``sample_random_action()`` of every sub-env (each from its own RNG)."""
        slot = self._vec(obj_id)
        with slot.lock:
            try:
                envs = getattr(slot.obj, "envs", None)
                if envs is not None:
                    actions = [sample_action(env) for env in envs]
                else:
                    actions = [str(a) for a in slot.obj.call("sample_random_action")]
            except Exception as exc:
                raise wrap_env_error(exc, f"sample_random_action of vector env {obj_id!r}") from exc
        return VecSampleResponse(actions=actions)

    def vec_render(self, obj_id: str) -> VecRenderResponse:
        """``render()`` of every sub-env."""
        slot = self._vec(obj_id)
        with slot.lock:
            try:
                renders = slot.obj.render()
            except Exception as exc:
                raise wrap_env_error(exc, f"render of vector env {obj_id!r}") from exc
        return VecRenderResponse(renders=[None if r is None else r if isinstance(r, str) else repr(r) for r in renders])

    def close_vec(self, obj_id: str) -> None:
        """Close and forget the vector env."""
        with self._lock:
            slot = self._vecs.pop(obj_id, None)
        if slot is None:
            raise EnvInstanceNotFound(f"no vector env with id {obj_id!r} on worker {self.id!r} (closed already?).")
        self.vec_history.forget(obj_id)
        with slot.lock:
            close_quietly(slot.obj, obj_id)

    # -- sandboxes -----------------------------------------------------------------------

    def create_sandbox(self, obj_id: str, config: dict[str, Any], model_service: Any = None) -> SandboxPlacement:
        """Start a local sandbox (the SDK's ``Sandbox``) and host it as ``obj_id`` (with a model-service bridge)."""
        from rock_env.sandbox import Sandbox
        from rock_env.server.policy import sandbox_config_of

        cfg = sandbox_config_of(config)
        sandbox = Sandbox(cfg, model_service=model_service)
        sandbox.start()
        now = time.time()
        info = SandboxPlacement(
            id=obj_id,
            worker_id=self.id,
            created=now,
            last_used=now,
            status="running",
            runtime=sandbox.runtime,
            config=cfg.model_dump(mode="json") | {"sandbox_id": sandbox.id},
        )
        with self._lock:
            self._sandboxes[obj_id] = _Slot(sandbox, info)
        return info

    def sandbox(self, obj_id: str) -> Any:
        """The hosted sandbox object."""
        return self._sandbox(obj_id).obj

    def stop_sandbox(self, obj_id: str) -> None:
        """Stop and forget the sandbox."""
        with self._lock:
            slot = self._sandboxes.pop(obj_id, None)
        if slot is None:
            raise SandboxNotFound(f"no sandbox with id {obj_id!r} on worker {self.id!r} (stopped already?).")
        try:
            slot.obj.stop()
        except Exception:
            logger.exception("stopping sandbox %s failed", obj_id)

    # -- everything ----------------------------------------------------------------------

    def close(self, obj_id: str) -> bool:
        """Close whatever ``obj_id`` is; ``False`` if this worker does not host it."""
        try:
            if obj_id in self._envs:
                self.close_env(obj_id)
            elif obj_id in self._vecs:
                self.close_vec(obj_id)
            elif obj_id in self._sandboxes:
                self.stop_sandbox(obj_id)
            else:
                return False
        except RockEnvError:
            return False
        return True

    def close_all(self, teardown_timeout: float = 20.0) -> None:
        """Close every hosted object (worker shutdown), then wait for their sandboxes' background teardown.

        A sandbox's ``stop()`` leaves reaping its processes, removing its cgroups and giving back its
        host uid to a thread pool; the process is about to exit, so that work is waited for here
        (at most ``teardown_timeout`` seconds; ``rock-env sandbox gc`` cleans up what is left).
        """
        from rock_env.sandbox import teardown

        for obj_id in self.object_ids():
            self.close(obj_id)
        if self.model_hub is not None:
            self.model_hub.close()
        if not teardown.wait_all(teardown_timeout):
            logger.warning(
                "sandbox teardown still running after %.0fs; 'rock-env sandbox gc' will clean up", teardown_timeout
            )
