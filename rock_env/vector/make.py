"""``make_vec``: build a sync or async vector env from an id, a list of ids or factories."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rock_env.errors import InvalidArgument
from rock_env.registry import registry as default_registry
from rock_env.registry.factory import make_from_spec
from rock_env.registry.spec import EnvSpec
from rock_env.vector.async_env import AsyncVectorEnv
from rock_env.vector.autoreset import SubEnv
from rock_env.vector.base import Seeds, VectorEnv
from rock_env.vector.sync import SyncVectorEnv

__all__ = ["EnvFactory", "make_vec"]

MODES = ("sync", "async")


class EnvFactory:
    """A picklable zero-argument factory: the env of ``spec`` with ``kwargs`` (``rock.make``'s local path).

    The spec is resolved in the parent and travels with the factory, so ids registered at run
    time with ``rock.register`` also work in the env processes of an async vector env.
    """

    def __init__(self, spec: EnvSpec, kwargs: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self.kwargs = dict(kwargs or {})

    def __call__(self) -> SubEnv:
        """Build one sub-env."""
        return make_from_spec(self.spec, **self.kwargs)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"EnvFactory({self.spec.id!r}, {self.kwargs!r})"


def _check_num_envs(num_envs: object) -> int:
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise InvalidArgument(f"num_envs must be a positive int, got {num_envs!r}.")
    return num_envs


def _per_env_kwargs(env_kwargs: object, num_envs: int) -> list[dict[str, Any]]:
    if env_kwargs is None:
        return [{} for _ in range(num_envs)]
    if isinstance(env_kwargs, Mapping):
        return [dict(env_kwargs) for _ in range(num_envs)]
    if isinstance(env_kwargs, Sequence) and not isinstance(env_kwargs, (str, bytes)):
        if len(env_kwargs) != num_envs or not all(isinstance(k, Mapping) for k in env_kwargs):
            raise InvalidArgument(
                f"env_kwargs as a list needs one dict per sub-env ({num_envs}), got {len(env_kwargs)} items."
            )
        return [dict(k) for k in env_kwargs]
    raise InvalidArgument(f"env_kwargs must be a dict or a list of dicts, got {type(env_kwargs).__name__}.")


def make_vec(
    env_id: str | Callable[[], SubEnv] | Sequence[str | Callable[[], SubEnv]],
    num_envs: int | None = None,
    *,
    mode: str = "sync",
    autoreset_mode: object = "next_step",
    seed: Seeds = None,
    env_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    num_workers: int | None = None,
    timeout: float | None = None,
    close_timeout: float = 10.0,
    **kwargs: Any,
) -> VectorEnv:
    """A vector env of ``num_envs`` sub-envs (Gymnasium 1.x semantics for text envs).

    Args:
        env_id: a registered id (each sub-env is ``rock.make(env_id, **kwargs)``), a zero-argument
            factory, or a list of ids/factories (one per sub-env).
        num_envs: the number of sub-envs (default 1, or the length of the list).
        mode: ``"sync"`` (in this process) or ``"async"`` (env processes, in parallel).
        autoreset_mode: ``"next_step"`` (default), ``"same_step"``, ``"disabled"`` or a
            :class:`gymnasium.vector.AutoresetMode`.
        seed: seeds of the first ``reset()`` if it gets none: an int (sub-env ``i`` gets
            ``seed + i``) or one seed per sub-env.
        env_kwargs: keyword arguments of every sub-env (a dict) or of each (a list of dicts);
            extra ``**kwargs`` are added to every sub-env's.
        num_workers: async only: env processes (default: available CPUs, at most ``num_envs``).
        timeout: async only: seconds an env process may take for one call before it is killed.
        close_timeout: async only: seconds ``close()`` waits for env processes before killing them.
    """
    if mode not in MODES:
        raise InvalidArgument(f"mode must be 'sync' or 'async', got {mode!r}.")
    if mode == "sync" and (num_workers is not None or timeout is not None):
        raise InvalidArgument("num_workers and timeout only apply to mode='async'.")
    if isinstance(env_id, str) or callable(env_id):
        count = 1 if num_envs is None else _check_num_envs(num_envs)
        entries: list[str | Callable[[], SubEnv]] = [env_id] * count
    elif isinstance(env_id, Sequence):
        entries = list(env_id)
        if not entries:
            raise InvalidArgument("the list of env ids/factories is empty: give at least one.")
        if num_envs is not None and _check_num_envs(num_envs) != len(entries):
            raise InvalidArgument(f"num_envs={num_envs} but {len(entries)} env ids/factories were given.")
    else:
        raise InvalidArgument(
            f"env_id must be an id, a factory or a list of them, got {type(env_id).__name__}: {env_id!r}."
        )
    per_env = _per_env_kwargs(env_kwargs, len(entries))
    ids = [entry for entry in entries if isinstance(entry, str)]
    # unknown ids fail here, with suggestions, before any env or env process starts
    specs = {unique: default_registry.spec(unique) for unique in dict.fromkeys(ids)}
    factories: list[Callable[[], SubEnv]] = []
    for entry, extra in zip(entries, per_env, strict=True):
        if isinstance(entry, str):
            factories.append(EnvFactory(specs[entry], {**extra, **kwargs}))
        elif callable(entry):
            if extra or kwargs:
                raise InvalidArgument("env kwargs cannot be passed to a factory; bind them in the factory instead.")
            factories.append(entry)
        else:
            raise InvalidArgument(f"not an env id or factory: {entry!r}.")
    label = ids[0] if ids and len(set(ids)) == 1 and len(ids) == len(entries) else None
    if mode == "sync":
        return SyncVectorEnv(factories, autoreset_mode=autoreset_mode, seed=seed, env_id=label)
    return AsyncVectorEnv(
        factories,
        autoreset_mode=autoreset_mode,
        seed=seed,
        num_workers=num_workers,
        timeout=timeout,
        close_timeout=close_timeout,
        env_id=label,
    )
