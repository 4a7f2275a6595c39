"""The built-in env families: each family module lists its specs without importing its envs."""

from __future__ import annotations

import importlib
import logging

from rock_env.registry.spec import EnvSpec

logger = logging.getLogger(__name__)

#: Modules that define ``builtin_specs() -> list[EnvSpec]``.
FAMILY_MODULES: tuple[str, ...] = ("rock_env.games.specs", "rock_env.tools.specs")


def builtin_specs() -> list[EnvSpec]:
    """Collect the specs of every built-in family."""
    specs: list[EnvSpec] = []
    for name in FAMILY_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
            logger.debug("built-in family %s is not present", name)
            continue
        specs.extend(module.builtin_specs())
    return specs
