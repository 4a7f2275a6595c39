"""Building envs from specs in this process: keyword validation, and the names of the backends."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from rock_env.errors import InvalidArgument, InvalidEnvKwargs, RockEnvError
from rock_env.registry.spec import EnvSpec, dependency_missing

BACKENDS = ("local", "remote")


def accepted_kwargs(factory: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """The keyword names ``factory`` accepts, and whether it takes ``**kwargs`` (remembered per factory:
    a server makes thousands of envs of one class)."""
    try:
        return _accepted_cached(factory)
    except TypeError:  # an unhashable callable
        return _accepted(factory)


def _accepted(factory: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return frozenset(), True
    names: set[str] = set()
    var_keyword = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
        elif param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(param.name)
    names.discard("self")
    return frozenset(names), var_keyword


_accepted_cached = functools.lru_cache(maxsize=1024)(_accepted)


def check_kwargs(spec: EnvSpec, factory: Callable[..., Any], user_kwargs: dict[str, Any]) -> None:
    """Raise :class:`InvalidEnvKwargs` for a keyword the env does not accept.

    Our envs declare their arguments. GEM's envs swallow unknown keywords (``**_``); for
    them we accept only their named arguments and the spec's own defaults, so a typo is
    an error instead of being silently ignored.
    """
    names, var_keyword = accepted_kwargs(factory)
    if var_keyword and spec.source != "gem":
        return
    allowed = names | set(spec.kwargs)
    unknown = sorted(set(user_kwargs) - allowed)
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            if close:
                hints.append(f"{key!r} -> {close[0]!r}?")
        hint = f" Did you mean {', '.join(hints)}" if hints else ""
        raise InvalidEnvKwargs(
            f"env {spec.id!r} does not accept {', '.join(repr(k) for k in unknown)}; "
            f"accepted keyword arguments: {', '.join(sorted(allowed)) or '(none)'}.{hint}"
        )


def make_from_spec(spec: EnvSpec, **kwargs: Any) -> Any:
    """Build the env described by ``spec`` in this process."""
    from rock_env.core import Env
    from rock_env.registry.gem_source import adapt_gem_env

    max_episode_steps = kwargs.pop("max_episode_steps", spec.max_episode_steps)
    render_mode = kwargs.pop("render_mode", None)
    factory = spec.load_entry_point()
    check_kwargs(spec, factory, kwargs)
    try:
        env = factory(**{**spec.kwargs, **kwargs})
    except ImportError as exc:
        if isinstance(exc, RockEnvError):
            raise
        raise dependency_missing(spec.id, exc) from exc
    if isinstance(env, Env):
        env.spec = spec
        env.max_episode_steps = max_episode_steps
    else:
        if max_episode_steps is not None and max_episode_steps != spec.max_episode_steps:
            raise InvalidArgument(f"max_episode_steps is not supported for {spec.id!r} ({type(env).__name__}).")
        env = adapt_gem_env(env, spec)
    if render_mode is not None:
        modes = getattr(env, "metadata", {}).get("render_modes", [])
        if render_mode not in modes:
            env.close()
            raise InvalidEnvKwargs(f"render_mode {render_mode!r} is not supported by {spec.id!r}; supported: {modes}.")
        env.render_mode = render_mode
    return env


def check_backend(backend: object) -> str:
    """Validate the ``backend`` argument of ``make``/``make_vec``."""
    if backend not in BACKENDS:
        raise InvalidArgument(f"backend must be one of {BACKENDS}, got {backend!r}.")
    return str(backend)
