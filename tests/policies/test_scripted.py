"""Scripted policies by import path, and make_policy."""

from __future__ import annotations

from typing import Any

import pytest

from rock_env.errors import ConfigError
from rock_env.policies import FunctionPolicy, RandomPolicy, load_target, make_policy, scripted_policy
from rock_env.policies.openai_chat import OpenAIChatPolicy
from tests.rollout.helpers import FailAfter, LineEnv, walk_to_target


def test_load_target_forms() -> None:
    assert load_target("tests.rollout.helpers:walk_to_target") is walk_to_target
    assert load_target("tests.rollout.helpers.walk_to_target") is walk_to_target


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nodots", "must look like 'package.module:function'"),
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        ("tests.rollout.helpers:walk_to_targte", "its callables: .*walk_to_target"),
        ("tests.rollout.helpers:LINE_ID", "is not callable"),
        ("tests.rollout.helpers:LineEnv", "not a rock_env.policies.Policy subclass"),
    ],
)
def test_bad_targets(target: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scripted_policy(target)


def test_policy_class_target_gets_kwargs() -> None:
    policy = scripted_policy("tests.rollout.helpers:FailAfter", {"calls": 3})
    assert isinstance(policy, FailAfter) and policy.calls == 3
    with pytest.raises(ConfigError, match=r"rejected policy\.kwargs"):
        scripted_policy("tests.rollout.helpers:FailAfter", {"nope": 1})


def test_function_policy_passes_env_and_info_and_plays_plans() -> None:
    seen: list[tuple[str, Any, Any]] = []

    def plan(observation: str, env: Any, info: dict[str, Any], length: int = 2) -> list[str]:
        seen.append((observation, env, info))
        return [f"a{i}" for i in range(length)]

    policy = FunctionPolicy(plan, {"length": 3})
    env = object()
    assert [policy.act(env, f"o{i}", {"i": i}) for i in range(4)] == ["a0", "a1", "a2", "a0"]
    assert seen == [("o0", env, {"i": 0}), ("o3", env, {"i": 3})]  # asked again when the plan ran out
    policy.act(env, "o4", {})
    policy.reset(env, "fresh", {})
    assert policy.act(env, "o5", {}) == "a0" and seen[-1][0] == "o5"  # reset drops the rest of the plan

    plain = FunctionPolicy(lambda observation: observation.upper())
    assert plain.act(env, "up", {}) == "UP"


def test_make_policy_from_config_nodes() -> None:
    assert isinstance(make_policy({"name": "random"}), RandomPolicy)
    scripted = make_policy({"name": "scripted", "target": "tests.rollout.helpers:walk_to_target"})
    assert isinstance(scripted, FunctionPolicy)
    chat = make_policy({"name": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "temperature": 0.3})
    try:
        assert isinstance(chat, OpenAIChatPolicy) and chat.temperature == 0.3
    finally:
        chat.close()
    with pytest.raises(ConfigError, match=r"unknown key 'policy\.temprature'"):
        make_policy({"name": "openai", "model": "m", "temprature": 1})
    with pytest.raises(ConfigError, match="name must be one of openai, random, scripted"):
        make_policy({"name": "smart"})


def test_random_policy_uses_the_envs_rng() -> None:
    env = LineEnv()
    try:
        policy = RandomPolicy()
        env.reset(seed=5)
        first = [policy.act(env, "", {}) for _ in range(10)]
        env.reset(seed=5)
        assert [policy.act(env, "", {}) for _ in range(10)] == first
        assert set(first) <= {"\\boxed{left}", "\\boxed{right}"}
    finally:
        env.close()
