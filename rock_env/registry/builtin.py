"""The built-in env families: each family module lists its specs without importing its envs."""

from __future__ import annotations

import importlib

from rock_env.registry.spec import EnvSpec

#: Modules that define ``builtin_specs() -> list[EnvSpec]``.
FAMILY_MODULES: tuple[str, ...] = ("rock_env.games.specs", "rock_env.tools.specs")


def builtin_specs() -> list[EnvSpec]:
    """Collect the specs of every built-in family."""
    specs: list[EnvSpec] = []
    for name in FAMILY_MODULES:
        specs.extend(importlib.import_module(name).builtin_specs())
    return specs
