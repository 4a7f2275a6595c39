"""Autoreset modes and the one function that steps a sub-env under a mode.

The modes are Gymnasium's :class:`gymnasium.vector.AutoresetMode`:

* ``NEXT_STEP`` (default): the step *after* a sub-env's episode ended resets that sub-env
  (its action is ignored) and returns the reset observation with reward ``0.0`` and
  ``terminated = truncated = False``.
* ``SAME_STEP``: a sub-env whose episode ends is reset within the same step; the returned
  observation is the reset observation and the final observation and info are kept in
  ``info["final_obs"]`` and ``info["final_info"]``.
* ``DISABLED``: nothing is reset automatically; reset ended sub-envs yourself with
  ``reset(options={"reset_mask": mask})``. Stepping an ended sub-env raises ``ResetNeeded``.

Both :class:`~rock_env.vector.SyncVectorEnv` and the env processes of
:class:`~rock_env.vector.AsyncVectorEnv` use :func:`step_sub_env`, so the two modes give
identical transcripts.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple, Protocol

from gymnasium.vector import AutoresetMode

from rock_env.errors import InvalidArgument

__all__ = [
    "AutoresetMode",
    "SubEnv",
    "SubStep",
    "check_sub_env",
    "close_sub_env",
    "parse_autoreset_mode",
    "reset_sub_env",
    "step_sub_env",
]

_ALIASES: dict[str, AutoresetMode] = {
    "next_step": AutoresetMode.NEXT_STEP,
    "nextstep": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "samestep": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


class SubEnv(Protocol):
    """What a vector env needs from a sub-env (GEM's protocol)."""

    def reset(self, seed: int | None = ..., options: dict[str, Any] | None = ...) -> tuple[str, dict[str, Any]]:
        """Start an episode."""

    def step(self, action: str) -> tuple[str, Any, bool, bool, dict[str, Any]]:
        """Apply one text action."""

    def close(self) -> None:
        """Release resources."""


class SubStep(NamedTuple):
    """What one sub-env produced in one vector step."""

    obs: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    #: ``SAME_STEP`` only: ``(final_obs, final_info)`` of the episode that ended in this step.
    final: tuple[str, dict[str, Any]] | None = None


def parse_autoreset_mode(mode: object) -> AutoresetMode:
    """Return the :class:`AutoresetMode` for ``mode``.

    Accepts the enum itself, its value (``"NextStep"``), a snake-case name (``"next_step"``,
    ``"same_step"``, ``"disabled"``) in any case, or another enum with such values (GEM's).
    """
    if isinstance(mode, AutoresetMode):
        return mode
    if isinstance(mode, Enum):  # e.g. GEM's own AutoresetMode: same values
        mode = mode.value
    if isinstance(mode, str):
        key = mode.strip().lower().replace("-", "_")
        if key in _ALIASES:
            return _ALIASES[key]
    raise InvalidArgument(
        f"unknown autoreset_mode {mode!r}: use 'next_step' (default), 'same_step' or 'disabled' "
        "(or a gymnasium.vector.AutoresetMode)."
    )


def check_sub_env(env: object) -> SubEnv:
    """Return ``env`` if it has callable ``reset`` and ``step``, else raise :class:`InvalidArgument`."""
    missing = [name for name in ("reset", "step") if not callable(getattr(env, name, None))]
    if missing:
        raise InvalidArgument(
            f"a factory returned {type(env).__name__}, which has no {' or '.join(missing)}() method: "
            "a sub-env must follow the env protocol (reset(seed, options) -> (obs, info), step(str) -> 5-tuple)."
        )
    return env  # type: ignore[return-value]


def reset_sub_env(env: SubEnv, seed: int | None, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Reset one sub-env; ``options`` is only passed when given (GEM envs take no options)."""
    if options:
        return env.reset(seed=seed, options=options)
    return env.reset(seed=seed)


def close_sub_env(env: SubEnv) -> None:
    """Close one sub-env (plain GEM envs have no ``close``: nothing to do for them)."""
    close = getattr(env, "close", None)
    if callable(close):
        close()


def step_sub_env(env: SubEnv, action: str | None, mode: AutoresetMode, needs_reset: bool) -> SubStep:
    """Step (or autoreset) one sub-env under ``mode``.

    ``needs_reset`` says that the sub-env's previous step ended its episode (the caller tracks it).
    """
    if needs_reset and mode is AutoresetMode.NEXT_STEP:
        obs, info = reset_sub_env(env, None, None)
        return SubStep(obs, 0.0, False, False, info)
    # None is passed through as GEM does (its envs answer it with a format error)
    obs, reward, terminated, truncated, info = env.step(action)  # type: ignore[arg-type]
    terminated, truncated = bool(terminated), bool(truncated)
    if mode is AutoresetMode.SAME_STEP and (terminated or truncated):
        new_obs, new_info = reset_sub_env(env, None, None)
        return SubStep(new_obs, float(reward), terminated, truncated, new_info, (obs, info))
    return SubStep(obs, float(reward), terminated, truncated, info)
