"""Gymnasium interop: aliases for our built-in ids that Gymnasium's id grammar can parse.

Gymnasium ids cannot contain ``:``. For each built-in id ``ns:Name-vN[-variant]`` we register
``rock_env/Name[-variant]-vN`` with Gymnasium (when ``rock_env`` is imported)::

    import gymnasium, rock_env
    env = gymnasium.make("rock_env/Sokoban-easy-v0")       # game:Sokoban-v0-easy
    env = gymnasium.make("rock_env:rock_env/Sokoban-easy-v0")  # imports rock_env itself

Gymnasium wraps the env in its usual wrappers (order enforcing, passive checker).
"""

from __future__ import annotations

import functools
from typing import Any

from rock_env.errors import InvalidEnvId
from rock_env.registry.ids import parse_id

GYM_NAMESPACE = "rock_env"


def gymnasium_id(env_id: str) -> str:
    """The Gymnasium alias of a rock_env id: ``game:Sokoban-v0-easy`` -> ``rock_env/Sokoban-easy-v0``."""
    parsed = parse_id(env_id)
    if parsed.version is None:
        raise InvalidEnvId(f"{env_id!r} has no version; Gymnasium aliases need one (e.g. 'ns:Name-v0').")
    name = f"{parsed.name}-{parsed.variant}" if parsed.variant else parsed.name
    return f"{GYM_NAMESPACE}/{name}-v{parsed.version}"


def _make_for_gymnasium(env_id: str, **kwargs: Any) -> Any:
    from rock_env.api import make

    return make(env_id, **kwargs)


def register_gymnasium_aliases() -> list[str]:
    """Register the Gymnasium aliases of all built-in ids; return the aliases."""
    from gymnasium.envs.registration import register as gym_register
    from gymnasium.envs.registration import registry as gym_registry

    from rock_env.registry.builtin import builtin_specs

    aliases = []
    for env_spec in builtin_specs():
        if env_spec.version is None:
            continue
        alias = gymnasium_id(env_spec.id)
        if alias not in gym_registry:
            gym_register(
                id=alias,
                entry_point=functools.partial(_make_for_gymnasium, env_spec.id),
                max_episode_steps=env_spec.max_episode_steps,
                disable_env_checker=False,
            )
        aliases.append(alias)
    return aliases
