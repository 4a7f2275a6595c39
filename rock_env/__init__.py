"""rock-env: environments and sandboxes for agentic reinforcement learning.

    import rock_env as rock
    env = rock.make("game:Sokoban-v0-easy")
    obs, info = env.reset(seed=42)
    obs, reward, terminated, truncated, info = env.step("\\\\boxed{up}")
    env.close()

Heavy parts (the env base class, sandboxes, Hydra configs, GEM itself) are imported on
first use, so ``import rock_env`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rock_env import errors
from rock_env.api import make, make_vec
from rock_env.errors import (
    EnvNotFound,
    InvalidEnvId,
    InvalidEnvKwargs,
    ResetNeeded,
    RockEnvError,
)
from rock_env.registry import (
    EnvSpec,
    list_envs,
    pprint_registry,
    register,
    registry,
    spec,
)
from rock_env.version import __version__ as __version__

#: Public names imported on first access: name -> "module:attr".
_LAZY: dict[str, str] = {
    "Env": "rock_env.core:Env",
    "amake": "rock_env.api:amake",
    "tune_gc": "rock_env.remote.gc_tuning:tune_gc",
    "restore_gc": "rock_env.remote.gc_tuning:restore_gc",
    "text_space": "rock_env.core:text_space",
    "Sandbox": "rock_env.api:Sandbox",
    "AsyncSandbox": "rock_env.api:AsyncSandbox",
    "SandboxConfig": "rock_env.sandbox:SandboxConfig",
    "CommandResult": "rock_env.sandbox:CommandResult",
    "make_from_config": "rock_env.config:make_from_config",
    "gymnasium_id": "rock_env.gym_compat:gymnasium_id",
    "ModelService": "rock_env.agents.model_service:ModelService",
    "AsyncModelService": "rock_env.agents.model_service:AsyncModelService",
}

if TYPE_CHECKING:
    from rock_env.agents.model_service import AsyncModelService, ModelService
    from rock_env.api import AsyncSandbox, Sandbox, amake
    from rock_env.config import make_from_config
    from rock_env.core import Env, text_space
    from rock_env.gym_compat import gymnasium_id
    from rock_env.remote.gc_tuning import restore_gc, tune_gc
    from rock_env.sandbox import CommandResult, SandboxConfig


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'rock_env' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


from rock_env.gym_compat import register_gymnasium_aliases  # noqa: E402

register_gymnasium_aliases()

from rock_env.registry.gem_bridge import install_gem_bridge  # noqa: E402

install_gem_bridge(make)  # gem.make / gem.make_vec (and so ROLL) resolve our ids with rock_env.make

__all__ = [
    "AsyncModelService",
    "AsyncSandbox",
    "CommandResult",
    "Env",
    "EnvNotFound",
    "EnvSpec",
    "InvalidEnvId",
    "InvalidEnvKwargs",
    "ModelService",
    "ResetNeeded",
    "RockEnvError",
    "Sandbox",
    "SandboxConfig",
    "amake",
    "errors",
    "gymnasium_id",
    "list_envs",
    "make",
    "make_from_config",
    "make_vec",
    "pprint_registry",
    "register",
    "registry",
    "restore_gc",
    "spec",
    "text_space",
    "tune_gc",
]
