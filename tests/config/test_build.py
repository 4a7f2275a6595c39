"""Building envs from configs: make_from_config, hydra.utils.instantiate, runtimes."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest

import rock_env as rock
from rock_env.config import compose_config, env_config, make_from_config, runtime_kwargs
from rock_env.config.schema import RuntimeConfig
from rock_env.errors import ConfigError
from tests.rollout.helpers import LINE_ID, LineEnv, register_line_env


@pytest.fixture(scope="module", autouse=True)
def line_env() -> str:
    return register_line_env()


def test_instantiate_an_env_config() -> None:
    cfg = compose_config(["env=sokoban_easy"])
    env = hydra.utils.instantiate(cfg.env)
    try:
        assert env.spec.id == "game:Sokoban-v0-easy"
        obs, _ = env.reset(seed=1)
        again = rock.make("game:Sokoban-v0-easy")
        try:
            assert again.reset(seed=1)[0] == obs  # the same env as rock.make builds
        finally:
            again.close()
        env.step("\\boxed{up}")
    finally:
        env.close()


def test_instantiate_passes_kwargs_and_extra_arguments() -> None:
    cfg = compose_config([f"env.id={LINE_ID}", "+env.kwargs.length=4", "env.max_episode_steps=2"])
    env = hydra.utils.instantiate(cfg.env)
    try:
        assert isinstance(env, LineEnv) and env.length == 4 and env.max_episode_steps == 2
    finally:
        env.close()
    vec = hydra.utils.instantiate(cfg.env, num_envs=3)
    try:
        assert vec.num_envs == 3
    finally:
        vec.close()


def test_make_from_config_env_node_and_full_config() -> None:
    env = rock.make_from_config(compose_config([f"env.id={LINE_ID}"]).env)
    try:
        assert isinstance(env, LineEnv)
    finally:
        env.close()
    env = make_from_config({"id": LINE_ID, "kwargs": {"length": 5}}, max_turns=3)
    try:
        assert (env.length, env.max_turns) == (5, 3)
    finally:
        env.close()


def test_make_from_config_num_envs_gives_a_vector_env() -> None:
    vec = make_from_config(compose_config([f"env.id={LINE_ID}", "num_envs=3"]))
    try:
        obs, _ = vec.reset(seed=0)
        assert len(obs) == 3
        _, rewards, *_ = vec.step(["\\boxed{left}"] * 3)
        assert len(rewards) == 3
    finally:
        vec.close()
    single = make_from_config(compose_config([f"env.id={LINE_ID}", "num_envs=3"]), num_envs=None)
    try:
        assert hasattr(single, "num_envs")  # the config's num_envs wins when none is passed
    finally:
        single.close()


def test_invalid_configs_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'env\.idd'; valid keys here: _target_, id, kwargs"):
        make_from_config({"idd": LINE_ID})
    with pytest.raises(ConfigError, match=r"missing required key 'env\.id'"):
        env_config({"kwargs": {}})
    with pytest.raises(ConfigError, match="only apply to backend=remote"):
        make_from_config({"id": LINE_ID}, base_url="http://127.0.0.1:1")


def test_runtime_is_ignored_for_games_and_passed_to_sandbox_envs() -> None:
    rt = RuntimeConfig(name="namespace", memory="256m", pids=64)
    assert runtime_kwargs("game:Sokoban-v0-easy", rt) == {}
    assert runtime_kwargs("tool:Bash-v0", RuntimeConfig()) == {}  # auto with nothing set: the env's defaults
    assert runtime_kwargs("tool:Bash-v0", rt) == {"sandbox": {"runtime": "namespace", "memory": "256m", "pids": 64}}


def test_bash_env_from_config_gets_its_runtime(sandbox_state: Path) -> None:
    env = make_from_config(compose_config(["env=bash", "runtime=local", "runtime.pids=128"]))
    try:
        assert env.sandbox_config.runtime == "local" and env.sandbox_config.pids == 128
        obs, info = env.reset(seed=0)
        assert info["tools"] == ["bash", "submit"]
        obs, *_ = env.step('<tool_call>{"name": "bash", "arguments": {"command": "echo hydra-$((6*7))"}}</tool_call>')
        assert "hydra-42" in obs
    finally:
        env.close()
