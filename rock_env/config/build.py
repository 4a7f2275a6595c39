"""Building envs from configs: ``make_env`` (the ``_target_`` of env configs) and ``make_from_config``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rock_env.config.schema import (
    EnvConfig,
    RemoteBackendConfig,
    RuntimeConfig,
    to_plain,
    validate_env_config,
    validate_rollout_config,
)
from rock_env.errors import ConfigError

logger = logging.getLogger(__name__)

#: Constructor parameters through which an env accepts its sandbox settings, in order of preference.
SANDBOX_PARAMS: tuple[str, ...] = ("sandbox_config", "sandbox", "runtime")


def runtime_kwargs(env_id: str, runtime: RuntimeConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """The constructor keywords that hand ``runtime`` to the env ``env_id`` ({} when nothing to pass).

    Games have no sandbox: a runtime is ignored for them. A sandbox env gets the runtime through
    the first of :data:`SANDBOX_PARAMS` its constructor accepts (``runtime`` gets only the name).
    """
    if runtime is None:
        return {}
    rt = runtime if isinstance(runtime, RuntimeConfig) else RuntimeConfig.model_validate(dict(runtime))
    if rt.is_default():
        return {}
    from rock_env.registry import spec as env_spec
    from rock_env.registry.factory import accepted_kwargs

    spec = env_spec(env_id)
    if not spec.needs_sandbox:
        logger.debug("env %s has no sandbox; runtime=%s is ignored", env_id, rt.name)
        return {}
    names, _ = accepted_kwargs(spec.load_entry_point())
    for param in SANDBOX_PARAMS:
        if param in names:
            return {param: rt.name if param == "runtime" else rt.sandbox_fields()}
    raise ConfigError(
        f"env {env_id!r} needs a sandbox but its constructor takes none of {', '.join(SANDBOX_PARAMS)}, "
        f"so runtime={rt.name} cannot be applied; drop the runtime override or pass the sandbox via env.kwargs."
    )


def make_env(
    id: str,
    kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    *,
    backend: str = "local",
    base_url: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
    runtime: RuntimeConfig | Mapping[str, Any] | None = None,
    num_envs: int | None = None,
    **extra: Any,
) -> Any:
    """Build an env (or a vector env when ``num_envs`` is given) from the fields of an env config.

    This is the ``_target_`` of every ``conf/env/*.yaml``, so ``hydra.utils.instantiate(cfg.env)``
    calls it with ``id``, ``kwargs`` and ``max_episode_steps``; ``backend``, ``base_url``, ``token``,
    ``timeout``, ``runtime`` and ``num_envs`` can be passed as extra ``instantiate`` arguments.
    """
    from rock_env.api import make, make_vec

    env_kwargs: dict[str, Any] = {**dict(to_plain(kwargs) or {}), **extra}
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps
    env_kwargs.update(runtime_kwargs(id, to_plain(runtime)))
    remote: dict[str, Any] = {}
    if backend == "remote":
        remote["base_url"] = base_url
        if token is not None:
            remote["token"] = token
        if timeout is not None:
            remote["timeout"] = timeout
    elif base_url is not None or token is not None or timeout is not None:
        raise ConfigError("base_url/token/timeout only apply to backend=remote; select backend=remote or drop them.")
    if num_envs is None:
        return make(id, backend=backend, **remote, **env_kwargs)
    return make_vec(id, num_envs, backend=backend, **remote, env_kwargs=env_kwargs)


def backend_args(backend: Any) -> dict[str, Any]:
    """``make_env`` keywords for a validated backend config."""
    if isinstance(backend, RemoteBackendConfig):
        args: dict[str, Any] = {"backend": "remote", "base_url": backend.base_url, "timeout": backend.timeout}
        if backend.token is not None:
            args["token"] = backend.token
        return args
    return {"backend": "local"}


def make_from_config(cfg: Any, *, num_envs: int | None = None, **env_kwargs: Any) -> Any:
    """Build an env (or a vector env) from a config node.

    ``cfg`` is either an env node (``{_target_, id, kwargs, max_episode_steps}``, e.g. ``cfg.env``)
    or a whole rollout config with ``env``, ``backend`` and ``runtime`` (``num_envs > 1`` in it
    gives a vector env). ``num_envs`` and ``env_kwargs`` override what the config says.
    An invalid config raises :class:`~rock_env.errors.ConfigError` naming the bad key.
    """
    data = to_plain(cfg)
    if isinstance(data, EnvConfig) or (isinstance(data, Mapping) and "env" not in data):
        env = validate_env_config(data)
        return make_env(env.id, env.kwargs, env.max_episode_steps, num_envs=num_envs, **env_kwargs)
    full = validate_rollout_config(data)
    if num_envs is None and full.num_envs > 1:
        num_envs = full.num_envs
    return make_env(
        full.env.id,
        full.env.kwargs,
        full.env.max_episode_steps,
        runtime=full.runtime,
        num_envs=num_envs,
        **backend_args(full.backend),
        **env_kwargs,
    )


def make_single_env(cfg: Any) -> Any:
    """One env (never a vector env) from a rollout config, honouring its backend and runtime."""
    full = validate_rollout_config(cfg)
    return make_env(
        full.env.id, full.env.kwargs, full.env.max_episode_steps, runtime=full.runtime, **backend_args(full.backend)
    )


def env_config(cfg: Any) -> EnvConfig:
    """The validated env node of ``cfg`` (a rollout config or an env node)."""
    data = to_plain(cfg)
    if isinstance(data, Mapping) and "env" in data:
        return validate_env_config(data["env"])
    return validate_env_config(data)
