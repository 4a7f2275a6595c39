"""Structured configs and Hydra integration.

* :func:`make_from_config` builds an env (or a vector env) from an OmegaConf node;
  :func:`make_env` is the ``_target_`` of ``conf/env/*.yaml`` for ``hydra.utils.instantiate``.
* :func:`compose_config` composes the packaged configs (``pkg://rock_env.conf``).
* :func:`validate_rollout_config` checks a composed config against :class:`RolloutConfig`.
"""

from __future__ import annotations

from rock_env.config.build import env_config, make_env, make_from_config, runtime_kwargs
from rock_env.config.compose import (
    CONFIG_MODULE,
    CONFIG_PATH,
    ROLLOUT_CONFIG,
    check_group_choices,
    compose_config,
    config_groups,
    group_options,
)
from rock_env.config.schema import (
    EnvConfig,
    LocalBackendConfig,
    OpenAIPolicyConfig,
    RandomPolicyConfig,
    RemoteBackendConfig,
    RolloutConfig,
    RuntimeConfig,
    ScriptedPolicyConfig,
    validate_env_config,
    validate_rollout_config,
)

__all__ = [
    "CONFIG_MODULE",
    "CONFIG_PATH",
    "ROLLOUT_CONFIG",
    "EnvConfig",
    "LocalBackendConfig",
    "OpenAIPolicyConfig",
    "RandomPolicyConfig",
    "RemoteBackendConfig",
    "RolloutConfig",
    "RuntimeConfig",
    "ScriptedPolicyConfig",
    "check_group_choices",
    "compose_config",
    "config_groups",
    "env_config",
    "group_options",
    "make_env",
    "make_from_config",
    "runtime_kwargs",
    "validate_env_config",
    "validate_rollout_config",
]
