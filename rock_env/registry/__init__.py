"""The env registry: ``register``, ``spec``, ``list_envs``, ``pprint_registry``.

The module-level functions use one default :class:`Registry` (built-in families, plugins
from the ``rock_env.envs`` entry-point group, and GEM's registry). Tests and embedders can
build their own ``Registry`` instances. Building an env (``make``, ``make_vec``: local or
remote) is :mod:`rock_env.api`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rock_env.registry import hub_source
from rock_env.registry.builtin import builtin_specs
from rock_env.registry.ids import ParsedId, format_id, parse_id
from rock_env.registry.resolver import Registry, spec_from_fields
from rock_env.registry.spec import EnvSpec

#: The process-wide default registry.
registry = Registry(builtin_specs)
registry.add_source(hub_source.HUB_NAMESPACE, hub_source.resolve)  # hub:NAME-vN ids (the env hub)


def register(
    id: str,
    entry_point: str | Callable[..., Any],
    *,
    override: bool = False,
    **spec_fields: Any,
) -> EnvSpec:
    """Register an env.

    ``spec_fields`` are :class:`EnvSpec` fields: ``kwargs``, ``max_episode_steps``,
    ``requirements``, ``description``, ``nondeterministic``. An existing id raises
    :class:`~rock_env.errors.AlreadyRegistered` unless ``override=True``.
    """
    spec = spec_from_fields(id, entry_point, **spec_fields)
    return registry.register(spec, override=override)


def spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` registered under ``env_id``."""
    return registry.spec(env_id)


def list_envs(namespace: str | None = None, source: str | None = None) -> list[EnvSpec]:
    """All registered specs (ours, plugins', GEM's), optionally of one namespace or source."""
    return registry.list(namespace=namespace, source=source)  # type: ignore[arg-type]


def pprint_registry(namespace: str | None = None, *, print_output: bool = True, columns: int = 3) -> str | None:
    """Print (or return) the registered ids grouped by namespace, like Gymnasium's."""
    groups: dict[str, list[str]] = {}
    for env_spec in list_envs(namespace):
        groups.setdefault(env_spec.namespace or "(no namespace)", []).append(env_spec.id)
    blocks = []
    for ns in sorted(groups):
        ids = groups[ns]
        width = max(len(i) for i in ids) + 2
        rows = [" ".join(i.ljust(width) for i in ids[k : k + columns]).rstrip() for k in range(0, len(ids), columns)]
        blocks.append(f"===== {ns} =====\n" + "\n".join(rows))
    text = "\n\n".join(blocks)
    if print_output:
        print(text)
        return None
    return text


__all__ = [
    "EnvSpec",
    "ParsedId",
    "Registry",
    "format_id",
    "list_envs",
    "parse_id",
    "pprint_registry",
    "register",
    "registry",
    "spec",
]
