"""Checking an env hub spec before the admin stores it (nothing is instantiated).

:func:`validate_spec` turns the pushed mapping into a :class:`~rock_env.protocol.hub.HubSpec`
and the :class:`~rock_env.protocol.hub.HubResolved` the server will build, or raises a typed
error that says what is wrong and how to fix it:

* keys: unknown keys are refused by name (:class:`~rock_env.errors.HubSpecInvalid`, 422);
* target: ``env`` must be an id this server's registry knows (not another hub id);
  ``entry_point`` must name a class of a package installed on the server (an installed
  distribution provides its top-level module) that subclasses ``rock_env.Env`` or GEM's ``Env``;
* kwargs: the names the env accepts (the registry's own check,
  :func:`~rock_env.registry.factory.check_kwargs`), simple types from the constructor's
  annotations, the sandbox config's fields (``SandboxConfig``), and the server's
  :class:`~rock_env.server.policy.ServerPolicy` as for any client's kwargs (no ``local``
  runtime, no host paths, no code names, no other servers).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from rock_env.errors import (
    EntryPointError,
    EnvNotFound,
    HubSpecInvalid,
    InvalidEnvKwargs,
    RockEnvError,
)
from rock_env.protocol.errors import describe_errors
from rock_env.protocol.hub import HUB_NAMESPACE, HUB_SPEC_KEYS, HubResolved, HubSpec
from rock_env.registry.factory import accepted_kwargs, check_kwargs
from rock_env.registry.hub_source import split_hub_id
from rock_env.registry.ids import parse_id
from rock_env.registry.resolver import Registry
from rock_env.registry.spec import EnvSpec, dependency_missing
from rock_env.server.policy import ServerPolicy

_ENTRY_POINT = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
#: Spec keys that become env kwargs of the same name.
_KWARG_KEYS = ("tasks", "dataset", "harness")
#: Annotations simple enough to check a value against without building anything.
_SIMPLE_TYPES: tuple[type, ...] = (int, float, bool, str, type(None))


@dataclass(frozen=True)
class Validated:
    """A spec that passed every check, and what the server builds for it."""

    spec: HubSpec
    resolved: HubResolved


def parse_spec(raw: object) -> HubSpec:
    """The :class:`HubSpec` of a pushed mapping; unknown keys and bad values are named."""
    if not isinstance(raw, Mapping):
        raise HubSpecInvalid(
            f"a hub spec is a mapping of {', '.join(HUB_SPEC_KEYS)}; got {type(raw).__name__}. "
            "See rock-env hub push --help for an example."
        )
    unknown = [k for k in raw if k not in HUB_SPEC_KEYS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), HUB_SPEC_KEYS, n=1)
            if close:
                hints.append(f"{key!r} -> {close[0]!r}?")
        hint = f" Did you mean {', '.join(hints)}" if hints else ""
        raise HubSpecInvalid(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} in the hub spec; "
            f"allowed keys: {', '.join(HUB_SPEC_KEYS)} (env constructor arguments go under 'kwargs').{hint}"
        )
    try:
        return HubSpec.model_validate(dict(raw), strict=True)
    except ValidationError as exc:
        raise HubSpecInvalid(f"invalid hub spec: {describe_errors(exc.errors())}.") from None


def validate_spec(raw: object, policy: ServerPolicy, registry: Registry) -> Validated:
    """Check a pushed spec against this server (registry, installed packages, policy); see the module doc."""
    spec = parse_spec(raw)
    where = f"hub spec {spec.name!r} v{spec.version}"
    if split_hub_id(spec.env_id) != (spec.name, spec.version):
        raise HubSpecInvalid(f"{where}: name {spec.name!r} does not give the id {spec.env_id!r} back; rename it.")
    factory: Callable[..., Any]
    if spec.entry_point is not None:
        factory, gem_style = load_env_class(spec.entry_point, where)
        base = None
        probe = EnvSpec(id=spec.env_id, entry_point=spec.entry_point, source="gem" if gem_style else "user")
    else:
        assert spec.env is not None
        base = base_spec(spec.env, registry, where)
        factory = _load(base, where)
        probe = base
    kwargs = effective_kwargs(spec, factory, where)
    try:
        policy.check_env_kwargs(kwargs)
        check_kwargs(probe, factory, kwargs)
    except RockEnvError as exc:
        raise type(exc)(f"{where}: {exc.message or exc}") from None
    check_kwarg_types(factory, kwargs, where)
    check_sandbox_config(kwargs, where)
    if base is not None:
        entry_point = str(base.to_dict()["entry_point"])
        merged = {**base.kwargs, **kwargs}
        requirements = list(base.requirements)
        max_steps = spec.max_episode_steps or base.max_episode_steps
        source = base.source
    else:
        entry_point = str(spec.entry_point)
        merged = kwargs
        names, _ = accepted_kwargs(factory)
        requirements = ["sandbox"] if names & {"sandbox", "runtime", "image"} else []
        max_steps = spec.max_episode_steps
        source = probe.source
    try:
        json.dumps(merged)
    except (TypeError, ValueError) as exc:
        raise HubSpecInvalid(f"{where}: the env's default kwargs cannot be sent as JSON ({exc}).") from None
    names, var_keyword = accepted_kwargs(factory)
    arguments = None if var_keyword and source != "gem" else sorted(names | set(merged))
    resolved = HubResolved(
        arguments=arguments,
        entry_point=entry_point,
        kwargs=merged,
        requirements=requirements,
        max_episode_steps=max_steps,
        source=source,
        base_env=spec.env,
    )
    return Validated(spec, resolved)


def base_spec(env_id: str, registry: Registry, where: str) -> EnvSpec:
    """The registry spec of the ``env`` a hub spec builds on (not another hub id)."""
    try:
        namespace = parse_id(env_id).namespace
    except RockEnvError as exc:
        raise HubSpecInvalid(f"{where}: env {env_id!r} is not an env id: {exc}") from None
    if namespace == HUB_NAMESPACE:
        raise HubSpecInvalid(
            f"{where}: env {env_id!r} is a hub id; a hub spec builds on a registered env (ours, GEM's or a plugin's). "
            "Copy that spec's env and kwargs instead."
        )
    try:
        return registry.spec(env_id)
    except EnvNotFound as exc:
        raise HubSpecInvalid(f"{where}: unknown env: {exc}") from None


def _load(spec: EnvSpec, where: str) -> Callable[..., Any]:
    try:
        return spec.load_entry_point()
    except EntryPointError as exc:
        raise HubSpecInvalid(f"{where}: {exc}") from None


def load_env_class(entry_point: str, where: str) -> tuple[type, bool]:
    """The env class ``entry_point`` names, and whether it is GEM-style (not a ``rock_env.Env``).

    The module must belong to a package installed on this server (an installed distribution
    provides its top-level module): a file that merely lies on the server's path is refused.
    """
    if not _ENTRY_POINT.match(entry_point):
        raise HubSpecInvalid(
            f"{where}: entry_point {entry_point!r} must look like 'package.module:ClassName' (Python names only)."
        )
    module_name, _, attr = entry_point.partition(":")
    top = module_name.split(".", 1)[0]
    dists = importlib.metadata.packages_distributions().get(top)
    if not dists:
        raise HubSpecInvalid(
            f"{where}: unknown entry point {entry_point!r}: no package installed on the server provides the module "
            f"{top!r}. Install the package that defines the env on the server (pip install ...), then push again."
        )
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise HubSpecInvalid(
            f"{where}: unknown entry point {entry_point!r}: the installed package {dists[0]!r} has no module "
            f"{module_name!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if isinstance(exc, RockEnvError):
            raise
        raise dependency_missing(entry_point, exc) from exc
    except Exception as exc:
        raise HubSpecInvalid(
            f"{where}: importing {module_name!r} failed on the server ({type(exc).__name__}: {exc})."
        ) from None
    target: Any = module
    try:
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise HubSpecInvalid(
            f"{where}: unknown entry point {entry_point!r}: {module_name!r} has no {attr!r}."
        ) from None
    if not inspect.isclass(target):
        raise HubSpecInvalid(
            f"{where}: entry_point {entry_point!r} is a {type(target).__name__}, not a class; name an env class "
            "(a subclass of rock_env.Env or gem.core.Env)."
        )
    from rock_env._gem import gem_core
    from rock_env.core import Env

    if issubclass(target, Env):
        return target, False
    if issubclass(target, gem_core().Env):
        return target, True
    raise HubSpecInvalid(
        f"{where}: entry_point {entry_point!r} is the class {target.__qualname__!r}, which is not an env class: "
        "it must subclass rock_env.Env (or GEM's gem.core.Env)."
    )


def effective_kwargs(spec: HubSpec, factory: Callable[..., Any], where: str) -> dict[str, Any]:
    """The spec's ``kwargs`` with its sandbox keys (image, limits, tasks, dataset, harness) folded in."""
    kwargs = dict(spec.kwargs)
    names, _ = accepted_kwargs(factory)
    for key in _KWARG_KEYS:
        value = getattr(spec, key)
        if value is None:
            continue
        if key in kwargs:
            raise HubSpecInvalid(f"{where}: {key!r} is given twice (as a spec key and in kwargs); keep one.")
        if key not in names:
            raise HubSpecInvalid(f"{where}: the env takes no {key!r} argument; drop {key!r} from the spec.")
        kwargs[key] = value
    limits = spec.limits.model_dump(exclude_none=True) if spec.limits is not None else {}
    if spec.image is None and not limits:
        return kwargs
    if "image" in names and not limits:
        if "image" in kwargs:
            raise HubSpecInvalid(f"{where}: 'image' is given twice (as a spec key and in kwargs); keep one.")
        kwargs["image"] = spec.image
        return kwargs
    if "sandbox" not in names:
        raise HubSpecInvalid(
            f"{where}: 'image' and 'limits' are for sandbox envs, and this env takes no sandbox config "
            "(no 'sandbox' argument); drop them."
        )
    sandbox = kwargs.get("sandbox") or {}
    if not isinstance(sandbox, Mapping):
        raise HubSpecInvalid(f"{where}: kwargs.sandbox must be a mapping of SandboxConfig fields.")
    sandbox = dict(sandbox)
    extra = {**limits, **({"image": spec.image} if spec.image is not None else {})}
    twice = sorted(k for k in extra if k in sandbox)
    if twice:
        raise HubSpecInvalid(f"{where}: {twice} given twice (spec keys and kwargs.sandbox); keep one.")
    sandbox.update(extra)
    kwargs["sandbox"] = sandbox
    return kwargs


def check_kwarg_types(factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    """Check values whose constructor annotation is simple (int, float, bool, str, None, Literal, unions)."""
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    for key, value in kwargs.items():
        param = params.get(key)
        hint = _annotation(target, param.annotation) if param is not None else None
        if hint is None or not _simple(hint):
            continue
        try:
            TypeAdapter(hint).validate_python(value)
        except ValidationError:
            raise InvalidEnvKwargs(
                f"{where}: kwargs.{key}={value!r} does not match the env's annotation {_describe(hint)}."
            ) from None


def _annotation(target: Any, annotation: Any) -> Any:
    """The annotation as a type (a string one evaluated in the function's module); None if it does not resolve."""
    if annotation is inspect.Parameter.empty:
        return None
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(getattr(target, "__globals__", {})), {})
    except Exception:  # a name imported only for type checkers: not checkable here
        return None


def _simple(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_simple(arg) for arg in typing.get_args(hint))
    return hint in _SIMPLE_TYPES


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_sandbox_config(kwargs: Mapping[str, Any], where: str) -> None:
    """A ``sandbox`` mapping in the kwargs must be a valid ``SandboxConfig`` (a model, no sandbox is started)."""
    sandbox = kwargs.get("sandbox")
    if not isinstance(sandbox, Mapping):
        return
    from rock_env.server.policy import sandbox_config_of

    try:
        sandbox_config_of(sandbox)
    except RockEnvError as exc:
        raise HubSpecInvalid(f"{where}: kwargs.sandbox: {exc.message or exc}") from None


__all__ = [
    "Validated",
    "base_spec",
    "check_kwarg_types",
    "check_sandbox_config",
    "effective_kwargs",
    "load_env_class",
    "parse_spec",
    "validate_spec",
]
