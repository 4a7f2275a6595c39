"""The built-in env families: each family module lists its specs without importing its envs.

The games family is in the registry's own layer and listed here. A family of a higher layer
(the tool envs) is added by that layer's owner with :func:`register_family` (``rock_env.api``
does it when ``rock_env`` is imported), so the registry never names a module above it.
"""

from __future__ import annotations

import importlib

from rock_env.registry.spec import EnvSpec

#: Modules that define ``builtin_specs() -> list[EnvSpec]``.
FAMILY_MODULES: list[str] = ["rock_env.games.specs"]


def register_family(module: str) -> None:
    """Add ``module`` (it defines ``builtin_specs() -> list[EnvSpec]``) to the built-in families.

    Call it before the default registry's first lookup; adding a module twice adds it once.
    """
    if module not in FAMILY_MODULES:
        FAMILY_MODULES.append(module)


def builtin_specs() -> list[EnvSpec]:
    """Collect the specs of every built-in family."""
    specs: list[EnvSpec] = []
    for name in FAMILY_MODULES:
        specs.extend(importlib.import_module(name).builtin_specs())
    return specs
