"""The env base class: GEM's protocol on top of a Gymnasium env.

An env is reset with ``reset(seed=None, options=None) -> (obs, info)`` and stepped with a
text action, ``step(action) -> (obs, reward, terminated, truncated, info)``.

Subclasses implement ``_reset`` and ``_step``; the public methods here add what every env
needs: per-env seeding, ``ResetNeeded`` before the first reset, after the end of an
episode and after ``close``.

An env written the GEM or Gymnasium way works too: a subclass that overrides ``reset`` and
``step`` itself and calls ``super().reset(seed=seed)`` gets the seeding (``np_random``, ``rng``)
and an episode marked as running; the base ``reset`` then returns ``("", {})`` for the
subclass to replace (Gymnasium's returns ``None``; both are meant to be ignored).

GEM's wrappers (``gem.core.EnvWrapper`` and its subclasses) copy every public attribute that
``dir(env)`` lists when they are built, usually before the first reset. So every public
attribute of an env can be read before the first reset without an error, and attributes
whose reading starts something (a sandbox, a session) are named in ``live_attributes``:
``dir()`` leaves them out, so a wrapper does not start them (read them on ``wrapper.unwrapped``).

Seeding is per env, never global:

* ``reset(seed=n)`` reseeds ``self.np_random`` (a ``numpy.random.Generator``) and
  ``self.rng`` (a ``random.Random``) from ``n``.
* An env constructed with ``seed=n`` behaves as if its first ``reset()`` were
  ``reset(seed=n)``, so later unseeded resets give a reproducible sequence.

After an episode ended (``terminated or truncated``), ``step`` raises :class:`ResetNeeded`:
call ``reset()`` to start the next episode (vector envs do this for you). A spec's
``max_episode_steps`` truncates an episode after that many steps (``truncated=True``).
"""

from __future__ import annotations

import copy
import functools
import random
import string
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, SupportsFloat

import gymnasium
import numpy as np
from gymnasium.spaces import Text

from rock_env._gem import gem_core
from rock_env.errors import EnvClosed, InvalidArgument, ResetNeeded

if TYPE_CHECKING:
    _GemEnv = object
else:
    _GemEnv = gem_core().Env

StepResult = tuple[str, SupportsFloat, bool, bool, dict[str, Any]]


class SpecLike(Protocol):
    """What an env knows of the spec it was made from (the registry's ``EnvSpec`` is one).

    Declared here so that this layer does not import the registry, which is above it.
    """

    @property
    def id(self) -> str:
        """The registered id."""
        ...

    @property
    def max_episode_steps(self) -> int | None:
        """Steps after which an episode is truncated (``None``: the env decides)."""
        ...


#: Characters that every text space of ours accepts: printable ASCII and common symbols.
BASE_CHARSET = string.printable + "√×÷·…–—‘’“”•→←↑↓"


@functools.lru_cache(maxsize=256)
def _text_prototype(max_length: int, extra_chars: str, min_length: int) -> Text:
    """The never-sampled space that :func:`text_space` copies (building one indexes the whole charset)."""
    charset = "".join(dict.fromkeys(BASE_CHARSET + extra_chars))
    return Text(max_length=max_length, min_length=min_length, charset=charset)


def text_space(max_length: int = 1 << 20, extra_chars: str = "", min_length: int = 0) -> Text:
    """A gymnasium ``Text`` space over :data:`BASE_CHARSET` plus ``extra_chars``.

    A shallow copy of a cached prototype: it shares the read-only character tables (a ``Text``
    builds a dict over its charset, ~0.7 ms) and has its own random generator, unseeded until
    the env seeds it or first samples, so seeding stays per env.
    """
    space = copy.copy(_text_prototype(max_length, extra_chars, min_length))
    space._np_random = None  # type: ignore[assignment]  # never the prototype's (it stays unseeded anyway)
    return space


class Env(_GemEnv, gymnasium.Env[str, str]):  # type: ignore[misc]
    """Base class of every rock_env env (a ``gem.core.Env`` and a ``gymnasium.Env``).

    Subclasses set ``action_space``/``observation_space`` (see :func:`text_space`) and
    implement :meth:`_reset` and :meth:`_step`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    #: Attributes whose reading starts or builds something (e.g. a sandbox): not listed by ``dir()``,
    #: so that GEM's wrappers, which copy what ``dir()`` lists when they are built, leave them alone.
    live_attributes: ClassVar[frozenset[str]] = frozenset()

    #: The registry spec this env was made from (set by ``rock.make``), else ``None``.
    spec: SpecLike | None = None  # type: ignore[assignment]

    def __init__(self, *, seed: int | None = None) -> None:
        self.action_space: Text = text_space(max_length=4096)
        self.observation_space: Text = text_space()
        self.rng = random.Random()
        self._pending_seed = seed
        self._needs_reset = True
        self._closed = False
        self._last_obs: str | None = None
        #: Set by ``rock.make`` from the spec's ``max_episode_steps``; ``None``: the env decides.
        self.max_episode_steps: int | None = None
        self.elapsed_steps = 0
        if seed is not None:
            self._seed(seed)

    # -- seeding -------------------------------------------------------------------------

    def _seed(self, seed: int) -> None:
        """Seed ``np_random`` and ``rng`` from ``seed``."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InvalidArgument(f"seed must be an int or None, got {type(seed).__name__}: pass e.g. seed=42.")
        if seed < 0:
            raise InvalidArgument(f"seed must be a non-negative int, got {seed}: pass e.g. seed=42.")
        # the numpy Generator is built on first use (most text envs only need ``rng``): it costs
        # more than a small game's whole reset; ``_np_random`` below builds it from this seed
        self._np_random_pending = int(seed)
        self._np_random_seed = int(seed)
        self.__dict__.pop("_np_random_value", None)
        self.rng.seed(int(seed))

    @property
    def _np_random(self) -> np.random.Generator | None:
        """Gymnasium's generator slot, filled lazily from the last seed (see :meth:`_seed`)."""
        value = self.__dict__.get("_np_random_value")
        if value is None and self.__dict__.get("_np_random_pending") is not None:
            value, _ = gymnasium.utils.seeding.np_random(self.__dict__.pop("_np_random_pending"))
            self.__dict__["_np_random_value"] = value
        return value

    @_np_random.setter
    def _np_random(self, value: np.random.Generator | None) -> None:
        self.__dict__.pop("_np_random_pending", None)
        self.__dict__["_np_random_value"] = value

    # -- public protocol -----------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:  # type: ignore[override]
        """Start a new episode and return ``(observation, info)``.

        A subclass that overrides ``reset`` itself (the GEM/Gymnasium way) and calls
        ``super().reset(seed=seed)`` gets the seeding and a running episode; it returns its own
        observation (this returns ``("", {})`` for it).
        """
        if self._closed:
            raise EnvClosed(f"{type(self).__name__} was closed; make a new env instead of resetting it.")
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is not None:
            self._seed(seed)
        if type(self)._reset is Env._reset:
            if type(self).reset is Env.reset:
                raise NotImplementedError(
                    f"{type(self).__name__} implements neither _reset() nor reset(): implement _reset(seed, options) "
                    "(and _step), or override reset()/step() and call super().reset(seed=seed)."
                )
            obs: str = ""
            info: dict[str, Any] = {}
        else:
            obs, info = self._reset(seed=seed, options=dict(options or {}))
        self._needs_reset = False
        self.elapsed_steps = 0
        self._last_obs = obs
        return obs, info

    def step(self, action: str) -> StepResult:  # type: ignore[override]
        """Apply one text action; raise :class:`ResetNeeded` when no episode is running."""
        if self._closed:
            raise EnvClosed(f"{type(self).__name__} was closed; make a new env.")
        if self._needs_reset:
            raise ResetNeeded(
                f"{type(self).__name__}.step() called with no episode running: call reset() first "
                "(also after an episode ended with terminated or truncated)."
            )
        obs, reward, terminated, truncated, info = self._step(action)
        self.elapsed_steps += 1
        if self.max_episode_steps is not None and self.elapsed_steps >= self.max_episode_steps and not terminated:
            truncated = True
        if terminated or truncated:
            self._needs_reset = True
        self._last_obs = obs
        return obs, reward, bool(terminated), bool(truncated), info

    def close(self) -> None:
        """Release resources; the env cannot be used afterwards. Idempotent."""
        self._closed = True
        self._needs_reset = True

    def render(self) -> str | None:  # type: ignore[override]
        """Return the last observation as text (``ansi`` mode)."""
        return self._last_obs

    def sample_random_action(self) -> str:
        """A random valid-looking action, drawn from this env's own RNG."""
        return str(self.action_space.sample())

    @property
    def unwrapped(self) -> Env:  # type: ignore[override]
        """This env (it wraps nothing)."""
        return self

    # -- to implement --------------------------------------------------------------------

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Start an episode; the RNGs are already seeded. Return ``(obs, info)``."""
        raise NotImplementedError

    def _step(self, action: str) -> StepResult:
        """Apply ``action`` in a running episode."""
        raise NotImplementedError

    def __dir__(self) -> list[str]:
        """The attribute names, without :attr:`live_attributes` (see the module docstring)."""
        hidden = type(self).live_attributes
        return [name for name in super().__dir__() if name not in hidden]

    def __repr__(self) -> str:
        env_id = self.spec.id if self.spec is not None else None
        return f"<{type(self).__name__} id={env_id!r}>"
