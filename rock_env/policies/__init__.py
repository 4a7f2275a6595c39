"""Rollout policies: ``random``, ``scripted`` (by import path) and ``openai`` (chat model).

:func:`make_policy` builds one from a ``policy`` config node (``conf/policy/*.yaml``).
"""

from __future__ import annotations

from typing import Any

from rock_env.policies.base import Policy
from rock_env.policies.random import RandomPolicy
from rock_env.policies.scripted import FunctionPolicy, load_target, scripted_policy

POLICY_NAMES: tuple[str, ...] = ("random", "scripted", "openai")


def make_policy(cfg: Any) -> Policy:
    """Build a policy from a config node, dict or validated model (``name`` picks the kind)."""
    from pydantic import TypeAdapter, ValidationError

    from rock_env.config.schema import (
        OpenAIPolicyConfig,
        PolicyConfig,
        RandomPolicyConfig,
        ScriptedPolicyConfig,
        config_error_from_validation,
        to_plain,
    )

    data = to_plain(cfg)
    if not isinstance(data, RandomPolicyConfig | ScriptedPolicyConfig | OpenAIPolicyConfig):
        try:
            data = TypeAdapter(PolicyConfig).validate_python(data)
        except ValidationError as exc:
            raise config_error_from_validation(exc, "policy config", ("policy",)) from None
    if isinstance(data, RandomPolicyConfig):
        return RandomPolicy()
    if isinstance(data, ScriptedPolicyConfig):
        return scripted_policy(data.target, data.kwargs)
    from rock_env.policies.openai_chat import OpenAIChatPolicy

    fields = data.model_dump(exclude={"name"})
    return OpenAIChatPolicy(**fields)


__all__ = [
    "POLICY_NAMES",
    "FunctionPolicy",
    "Policy",
    "RandomPolicy",
    "load_target",
    "make_policy",
    "scripted_policy",
]
