"""``SyncVectorEnv``: the sub-envs live in this process and are stepped one after the other."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rock_env.errors import RockEnvError
from rock_env.vector.autoreset import (
    SubEnv,
    SubStep,
    check_sub_env,
    close_sub_env,
    reset_sub_env,
    step_sub_env,
)
from rock_env.vector.base import Seeds, VectorEnv, sub_env_error

logger = logging.getLogger(__name__)

__all__ = ["SyncVectorEnv"]


@contextmanager
def _blame(index: int, label: str = "") -> Iterator[None]:
    """Turn an ``Exception`` of sub-env ``index`` into a typed error naming the index."""
    try:
        yield
    except Exception as exc:
        raise sub_env_error(index, type(exc).__name__, str(exc), None, isinstance(exc, RockEnvError), label) from exc


class SyncVectorEnv(VectorEnv):
    """Runs ``len(env_fns)`` sub-envs in this process, one after the other.

    Args:
        env_fns: one zero-argument factory per sub-env (e.g. ``lambda: rock.make(id)``).
        autoreset_mode: ``"next_step"`` (default), ``"same_step"``, ``"disabled"`` or a
            :class:`gymnasium.vector.AutoresetMode`.
        seed: seeds of the first ``reset()`` when it is called without one (int: sub-env ``i``
            gets ``seed + i``; or a list).
        env_id: the id shown in ``repr`` and errors.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], SubEnv]],
        *,
        autoreset_mode: object = "next_step",
        seed: Seeds = None,
        env_id: str | None = None,
    ) -> None:
        self.closed = False
        self.envs: list[SubEnv] = []
        label = env_id or ""
        try:
            for index, factory in enumerate(env_fns):
                with _blame(index, label):
                    self.envs.append(check_sub_env(factory()))
        except BaseException:
            self._close_envs()
            raise
        if not self.envs:
            from rock_env.errors import InvalidArgument

            raise InvalidArgument("a vector env needs at least one sub-env: pass num_envs >= 1.")
        first = self.envs[0]
        try:
            self._init_vector(
                len(self.envs),
                autoreset_mode,
                seed,
                getattr(first, "observation_space", None),
                getattr(first, "action_space", None),
                env_id,
            )
        except BaseException:
            self._close_envs()
            self.closed = True
            raise

    def _reset_envs(
        self, indices: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for index, seed in zip(indices, seeds, strict=True):
            with _blame(index, self.env_id or ""):
                out.append(reset_sub_env(self.envs[index], seed, options))
        return out

    def _step_envs(self, actions: list[str | None], needs_reset: list[bool]) -> list[SubStep]:
        out = []
        mode = self.autoreset_mode
        for index, env in enumerate(self.envs):
            with _blame(index, self.env_id or ""):
                out.append(step_sub_env(env, actions[index], mode, needs_reset[index]))
        return out

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` on every sub-env (or read the attribute if it is not callable)."""
        self._check_open("call")
        out = []
        for index, env in enumerate(self.envs):
            with _blame(index, self.env_id or ""):
                attr = getattr(env, name)
                out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(out)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | object) -> None:
        """Set attribute ``name`` on every sub-env: one value each (list/tuple), or one value for all."""
        self._check_open("set_attr")
        for index, (env, value) in enumerate(zip(self.envs, _per_env(values, self.num_envs), strict=True)):
            with _blame(index, self.env_id or ""):
                setattr(env, name, value)

    def close_extras(self, terminate: bool = False) -> None:
        """Close every sub-env; errors while closing are logged, not raised."""
        self._close_envs()

    def _close_envs(self) -> None:
        for index, env in enumerate(self.envs):
            try:
                close_sub_env(env)
            except Exception:
                logger.warning("sub-env %d raised while closing", index, exc_info=True)


def _per_env(values: object, num_envs: int) -> list[Any]:
    """One value per sub-env from ``values`` (a list/tuple of ``num_envs`` items, or a single value)."""
    from rock_env.errors import InvalidArgument

    if isinstance(values, (list, tuple)):
        if len(values) != num_envs:
            raise InvalidArgument(f"got {len(values)} values for {num_envs} sub-envs: pass one per sub-env.")
        return list(values)
    return [values] * num_envs
