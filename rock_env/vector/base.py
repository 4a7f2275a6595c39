"""What sync and async vector envs share: argument checks, autoreset bookkeeping, batching.

Conventions (Gymnasium 1.x, for text envs):

* ``reset(seed=None, options=None) -> (observations, infos)``; ``seed`` is ``None``, an int
  (sub-env ``i`` gets ``seed + i``) or a list of ``num_envs`` ints/``None``.
  ``options={"reset_mask": mask}`` resets only the sub-envs where the boolean ``mask`` is true
  (the rest keep their observation); other options are passed to every reset sub-env.
* ``step(actions) -> (observations, rewards, terminations, truncations, infos)`` with
  ``actions`` a sequence of ``num_envs`` strings.
* ``observations`` is a tuple of ``num_envs`` strings; ``rewards`` a ``float64`` array;
  ``terminations``/``truncations`` ``bool`` arrays; ``infos`` one dict of arrays with ``_key``
  masks (see :mod:`rock_env.vector.infos`).
* Autoreset modes: see :mod:`rock_env.vector.autoreset`.

Errors: a malformed batch of actions (wrong count, an action that is neither a string nor
``None``) raises
:class:`~rock_env.errors.InvalidAction` before any sub-env is touched, and so does stepping an
ended sub-env with ``autoreset_mode="disabled"`` (:class:`~rock_env.errors.ResetNeeded`); the
vector env stays usable. An exception raised *inside* a sub-env (or an env process's death, or
``KeyboardInterrupt`` during a call) closes the vector env and is re-raised as the same
rock_env error class with the sub-env index in the message, or as
:class:`~rock_env.errors.SubEnvError` for other exceptions; ``env_index`` on the error names
the sub-env. When several sub-envs fail in one call, the lowest index is reported (both modes).
A failing ``call``/``get_attr``/``set_attr`` raises the same way but leaves the vector env open.
Vector envs are not thread-safe: use one from one thread at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space

from rock_env.errors import (
    EnvClosed,
    InvalidAction,
    InvalidArgument,
    ResetNeeded,
    RockEnvError,
    SubEnvError,
    error_class,
)
from rock_env.vector.autoreset import AutoresetMode, SubStep, parse_autoreset_mode
from rock_env.vector.infos import batch_infos

logger = logging.getLogger(__name__)

__all__ = ["Seeds", "VectorEnv", "sub_env_error"]

Seeds = int | Sequence[int | None] | None

_MAX_LISTED = 5


def sub_env_error(
    env_index: int | None,
    type_name: str,
    message: str,
    traceback_text: str | None,
    is_rock_error: bool,
    label: str = "",
) -> RockEnvError:
    """The error to raise for an exception of a sub-env (same class if it is a rock_env error)."""
    where = f"sub-env {env_index}" if env_index is not None else "a sub-env"
    if label:
        where += f" ({label})"
    if is_rock_error:
        cls = error_class(type_name)
        if cls.__name__ == type_name:
            try:
                error = cls(f"{where}: {message}")
            except Exception:  # a class whose constructor needs more than a message
                error = None
            if error is not None:
                error.env_index = env_index  # type: ignore[attr-defined]
                error.remote_traceback = traceback_text  # type: ignore[attr-defined]
                return error
    text = f"{where} raised {type_name}: {message}"
    if traceback_text:
        text += f"\n--- traceback in the sub-env ---\n{traceback_text.rstrip()}"
    return SubEnvError(text, env_index=env_index, error_type=type_name, remote_traceback=traceback_text)


def _check_space(space: object, fallback: gymnasium.Space[Any]) -> gymnasium.Space[Any]:
    return space if isinstance(space, gymnasium.Space) else fallback


def check_action_batch(actions: object, num_envs: int) -> list[str | None]:
    """A batch of ``num_envs`` actions as a list, or :class:`InvalidAction` naming what is wrong.

    Each action is a string or ``None`` (passed to the sub-env: GEM's envs treat it as a format error).
    """
    if isinstance(actions, (str, bytes, dict)) or not isinstance(actions, Sequence | np.ndarray):
        raise InvalidAction(
            f"actions must be a list of {num_envs} strings (one per sub-env), got {type(actions).__name__}."
        )
    batch = list(actions)
    if len(batch) != num_envs:
        raise InvalidAction(f"got {len(batch)} actions for {num_envs} sub-envs: pass exactly one string per sub-env.")
    bad = [i for i, action in enumerate(batch) if action is not None and not isinstance(action, str)]
    if bad:
        listed = ", ".join(f"{i} ({type(batch[i]).__name__})" for i in bad[:_MAX_LISTED])
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise InvalidAction(f"actions must be strings (or None); not a string at index {listed}{more}.")
    return [None if action is None else str(action) for action in batch]


class VectorEnv(gymnasium.vector.VectorEnv[tuple[str, ...], Sequence[str], np.ndarray]):
    """Base class of :class:`SyncVectorEnv` and :class:`AsyncVectorEnv`.

    Subclasses implement :meth:`_reset_envs`, :meth:`_step_envs`, :meth:`call`,
    :meth:`set_attr` and :meth:`close_extras`, and call :meth:`_init_vector` from ``__init__``.
    """

    def _init_vector(
        self,
        num_envs: int,
        autoreset_mode: object,
        seed: Seeds,
        single_observation_space: object,
        single_action_space: object,
        env_id: str | None = None,
    ) -> None:
        from rock_env.core import text_space

        self.num_envs = num_envs
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": ["ansi"]}
        self.render_mode = None
        self.env_id = env_id
        self.single_observation_space = _check_space(single_observation_space, text_space())
        self.single_action_space = _check_space(single_action_space, text_space(max_length=4096))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._pending_seeds: list[int | None] | None = None if seed is None else self._seed_list(seed)
        self._obs: list[str] = [""] * num_envs
        self._autoreset_envs = np.zeros(num_envs, dtype=np.bool_)
        self._has_reset = False

    # -- argument checks -----------------------------------------------------------------

    def _seed_list(self, seed: Seeds) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            return [int(seed) + i for i in range(self.num_envs)]
        if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence | np.ndarray):
            raise InvalidArgument(
                f"seed must be None, an int (sub-env i gets seed + i) or a list of {self.num_envs} ints, "
                f"got {type(seed).__name__}."
            )
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise InvalidArgument(
                f"got {len(seeds)} seeds for {self.num_envs} sub-envs: pass exactly one seed (or None) per sub-env, "
                "or a single int."
            )
        for i, value in enumerate(seeds):
            if value is not None and (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))):
                raise InvalidArgument(f"seed[{i}] must be an int or None, got {type(value).__name__}: {value!r}.")
        return [None if value is None else int(value) for value in seeds]

    def _reset_mask(self, mask: object) -> np.ndarray:
        array = np.asarray(mask)
        if array.dtype != np.bool_:
            raise InvalidArgument(
                f"options['reset_mask'] must be a boolean array of shape ({self.num_envs},), got dtype {array.dtype}."
            )
        if array.shape != (self.num_envs,):
            raise InvalidArgument(
                f"options['reset_mask'] must have shape ({self.num_envs},), got {array.shape}: one flag per sub-env."
            )
        if not array.any():
            raise InvalidArgument("options['reset_mask'] has no True entry: mark at least one sub-env to reset.")
        return array

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise EnvClosed(
                f"{type(self).__name__}.{what}() on a closed vector env: make a new one with rock.make_vec."
            )

    # -- public API ----------------------------------------------------------------------

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``); return ``(observations, infos)``."""
        self._check_open("reset")
        seeds = self._seed_list(seed)
        if seed is None and self._pending_seeds is not None:
            seeds = self._pending_seeds
        options = dict(options) if options else {}
        if "reset_mask" in options:
            mask = self._reset_mask(options.pop("reset_mask"))
        else:
            mask = np.ones(self.num_envs, dtype=np.bool_)
        indices = [int(i) for i in np.flatnonzero(mask)]
        if not self._has_reset and len(indices) != self.num_envs:
            raise ResetNeeded("the first reset of a vector env must reset every sub-env: drop options['reset_mask'].")
        results = self._guarded(self._reset_envs, indices, [seeds[i] for i in indices], options or None)
        self._pending_seeds = None
        self._has_reset = True
        infos: list[dict[str, Any] | None] = [None] * self.num_envs
        for i, (obs, info) in zip(indices, results, strict=True):
            self._obs[i] = obs
            infos[i] = info
        self._autoreset_envs[mask] = False
        return tuple(self._obs), batch_infos(infos, self.num_envs)

    def step(
        self, actions: Sequence[str]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with its action (autoresetting per :attr:`autoreset_mode`)."""
        self._check_open("step")
        if not self._has_reset:
            raise ResetNeeded(f"{type(self).__name__}.step() before reset(): call reset() first.")
        batch = check_action_batch(actions, self.num_envs)
        if self.autoreset_mode is AutoresetMode.DISABLED and self._autoreset_envs.any():
            ended = [int(i) for i in np.flatnonzero(self._autoreset_envs)]
            raise ResetNeeded(
                f"sub-envs {ended[:_MAX_LISTED]} ended their episode and autoreset_mode is 'disabled': "
                "reset them with reset(options={'reset_mask': mask}) before stepping."
            )
        results: list[SubStep] = self._guarded(self._step_envs, batch, self._autoreset_envs.tolist())
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: list[dict[str, Any] | None] = []
        for i, result in enumerate(results):
            self._obs[i] = result.obs
            rewards[i] = result.reward
            terminations[i] = result.terminated
            truncations[i] = result.truncated
            info = result.info
            if result.final is not None:
                info = {**info, "final_obs": result.final[0], "final_info": result.final[1]}
            infos.append(info)
        self._autoreset_envs = terminations | truncations
        return tuple(self._obs), rewards, terminations, truncations, batch_infos(infos, self.num_envs)

    def _guarded(self, method: Any, *args: Any) -> Any:
        """Run a sub-env operation; any failure closes the vector env before it propagates.

        The close is graceful: sub-envs that can still be reached are closed (releasing e.g.
        their sandboxes); async env processes that are dead or do not answer are killed.
        """
        try:
            return method(*args)
        except BaseException:
            self.close()
            raise

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """The attribute ``name`` of every sub-env (a method is called with no arguments)."""
        return self.call(name)

    def render(self) -> tuple[str | None, ...]:  # type: ignore[override]
        """Each sub-env's ``render()`` (the last observation for rock_env envs)."""
        return tuple(self.call("render"))

    def __repr__(self) -> str:
        env_id = f"{self.env_id}, " if self.env_id else ""
        return f"{type(self).__name__}({env_id}num_envs={self.num_envs}, autoreset_mode={self.autoreset_mode.name})"

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(terminate=exc_info[0] is not None)

    # -- to implement --------------------------------------------------------------------

    def _reset_envs(
        self, indices: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Reset the sub-envs ``indices`` with ``seeds``; return their ``(obs, info)``."""
        raise NotImplementedError

    def _step_envs(self, actions: list[str | None], needs_reset: list[bool]) -> list[SubStep]:
        """Step every sub-env (``needs_reset[i]``: sub-env ``i``'s episode ended on the last step)."""
        raise NotImplementedError

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` on every sub-env (or read the attribute if it is not callable)."""
        raise NotImplementedError

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | object) -> None:
        """Set attribute ``name`` on every sub-env: one value each, or one value for all."""
        raise NotImplementedError

    def close(self, *, terminate: bool = False) -> None:  # type: ignore[override]
        """Close every sub-env (and env process). Idempotent; ``terminate`` skips graceful shutdown."""
        if self.closed:
            return
        self.closed = True
        self.close_extras(terminate=terminate)

    def close_extras(self, terminate: bool = False) -> None:  # type: ignore[override]
        """Release the sub-envs; called once by :meth:`close`."""

    def __del__(self) -> None:
        if not getattr(self, "closed", True) and hasattr(self, "num_envs"):
            try:
                self.close(terminate=True)
            except Exception:
                logger.debug("error while closing %r on garbage collection", self, exc_info=True)
