"""Scripted policies: a function (or policy class) named by import path.

``target`` is ``"package.module:attr"`` (``"package.module.attr"`` works too). It names either

* a :class:`~rock_env.policies.base.Policy` subclass, built with ``kwargs`` and used as is, or
* a function called as ``fn(observation, **kwargs)``, plus ``env=`` and/or ``info=`` when it has
  parameters of those names. It returns an action, or a list/tuple of actions: a plan that is
  played out one action per step before the function is asked again (so a solver runs once per
  episode). Whatever else it returns goes to the env unchanged, which applies its own
  invalid-action handling.
"""

from __future__ import annotations

import importlib
import inspect
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from rock_env.errors import ConfigError
from rock_env.policies.base import Policy


def load_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``) and return the attribute."""
    if ":" in target:
        module_name, _, attr = target.partition(":")
    else:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"policy.target {target!r} must look like 'package.module:function'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"policy.target {target!r}: cannot import module {module_name!r} ({exc}).") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(
                n
                for n, v in vars(module).items()
                if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module_name
            )
            raise ConfigError(
                f"policy.target {target!r}: module {module_name!r} has no attribute {attr!r}; "
                f"its callables: {', '.join(public) or '(none)'}."
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"policy.target {target!r} is not callable.")
    return obj


class FunctionPolicy(Policy):
    """Wraps a policy function (see the module docstring for the calling convention)."""

    name = "scripted"

    def __init__(self, fn: Callable[..., Any], kwargs: Mapping[str, Any] | None = None) -> None:
        self.fn = fn
        self.kwargs = dict(kwargs or {})
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._pass_env = "env" in params or var_kw
        self._pass_info = "info" in params or var_kw
        self._plan: deque[Any] = deque()

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        """Forget the current plan."""
        self._plan.clear()

    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        """The next planned action, or the function's answer for ``observation``."""
        if not self._plan:
            extra: dict[str, Any] = {}
            if self._pass_env:
                extra["env"] = env
            if self._pass_info:
                extra["info"] = info
            result = self.fn(observation, **self.kwargs, **extra)
            if not isinstance(result, list | tuple):
                return result
            self._plan.extend(result)
            if not self._plan:
                return ""
        return self._plan.popleft()


def scripted_policy(target: str, kwargs: Mapping[str, Any] | None = None) -> Policy:
    """Build the scripted policy named by ``target``."""
    obj = load_target(target)
    if inspect.isclass(obj):
        if not issubclass(obj, Policy):
            raise ConfigError(f"policy.target {target!r} is a class but not a rock_env.policies.Policy subclass.")
        try:
            return obj(**dict(kwargs or {}))
        except TypeError as exc:
            raise ConfigError(f"policy.target {target!r} rejected policy.kwargs {dict(kwargs or {})}: {exc}") from None
    return FunctionPolicy(obj, kwargs)


def constant(observation: str, action: str = "") -> str:
    """A trivial scripted policy that always plays ``action`` (handy for smoke tests)."""
    return action
