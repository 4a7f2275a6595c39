"""GEM pass-through: gem's own registry, seen as rock_env specs with source ``gem``."""

from __future__ import annotations

from typing import Any

from rock_env._gem import gem_registry
from rock_env.registry.spec import EnvSpec


def gem_specs() -> list[EnvSpec]:
    """One :class:`EnvSpec` per id in ``gem.envs.registration.ENV_REGISTRY``."""
    specs = []
    for env_id, gem_spec in gem_registry().items():
        specs.append(
            EnvSpec(
                id=env_id,
                entry_point=gem_spec.entry_point,
                kwargs=dict(gem_spec.kwargs),
                source="gem",
                description=f"GEM env ({gem_spec.entry_point if isinstance(gem_spec.entry_point, str) else 'callable'})",
            )
        )
    return specs


def adapt_gem_env(env: Any, spec: EnvSpec) -> Any:
    """Give a GEM env object what rock_env promises of every env, without changing its class.

    GEM's ``Env`` has no ``close()``; we add a no-op one on the instance. ``spec``, ``env_id``
    and ``entry_point`` are set as GEM's own ``make`` does.
    """
    env.spec = spec
    env.env_id = spec.id
    env.entry_point = spec.entry_point
    if not callable(getattr(env, "close", None)):
        env.close = lambda: None
    return env
