"""Composing the packaged configs, and the errors for bad overrides."""

from __future__ import annotations

import pytest

from rock_env.config import (
    CONFIG_PATH,
    RolloutConfig,
    compose_config,
    config_groups,
    group_options,
    validate_rollout_config,
)
from rock_env.config.compose import check_group_choices, first_combination, sweep_combinations
from rock_env.errors import ConfigError


def test_packaged_groups_and_options() -> None:
    assert CONFIG_PATH == "pkg://rock_env.conf"
    assert {"env", "backend", "runtime", "policy", "cluster", "server"} <= set(config_groups())
    assert {"sokoban_easy", "sokoban_hard", "sokoban_random", "bash", "code_python"} <= set(group_options("env"))
    assert group_options("backend") == ["local", "remote"]
    assert group_options("runtime") == ["auto", "docker", "local", "namespace"]
    assert group_options("policy") == ["openai", "random", "scripted"]
    assert group_options("cluster") == ["local", "ray"]
    with pytest.raises(ConfigError, match="unknown config group 'nope'"):
        group_options("nope")


def test_default_config_validates() -> None:
    cfg = validate_rollout_config(compose_config())
    assert isinstance(cfg, RolloutConfig)
    assert cfg.env.id == "game:Sokoban-v0-easy"
    assert (cfg.backend.name, cfg.runtime.name, cfg.policy.name, cfg.cluster.name) == (
        "local",
        "auto",
        "random",
        "local",
    )
    assert (cfg.episodes, cfg.seed, cfg.num_envs, cfg.threads) == (10, 0, 1, None)


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        (["env=sokoban_hard", "episodes=3"], lambda c: c.env.id == "game:Sokoban-v0-hard" and c.episodes == 3),
        (["env=bash", "runtime=namespace", "runtime.memory=256m"], lambda c: c.runtime.memory == "256m"),
        (["backend=remote", "backend.base_url=http://127.0.0.1:1"], lambda c: c.backend.base_url.endswith(":1")),
        (["policy=openai", "policy.temperature=0.7"], lambda c: c.policy.temperature == 0.7),
        (["policy=scripted"], lambda c: c.policy.target == "rock_env.policies.sokoban:solve_sokoban"),
        (["env.id=game:Wordle-v0-easy", "+env.kwargs.foo=1"], lambda c: c.env.kwargs == {"foo": 1}),
        (["threads=true", "max_steps=5"], lambda c: c.threads is True and c.max_steps == 5),
    ],
)
def test_overrides(overrides: list[str], check: object) -> None:
    cfg = validate_rollout_config(compose_config(overrides))
    assert check(cfg)  # type: ignore[operator]


def test_remote_backend_defaults_to_the_environment() -> None:
    cfg = validate_rollout_config(compose_config(["backend=remote"]))
    assert cfg.backend.base_url is None and cfg.backend.token is None  # $ROCK_ENV_URL / $ROCK_ENV_TOKEN


def test_unknown_option_lists_choices_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(["env=sokoban_eazy"])
    text = str(info.value)
    assert "unknown env 'sokoban_eazy'" in text and "Did you mean 'sokoban_easy'?" in text
    assert "bash, code_python, code_python_strict, sokoban_easy" in text
    with pytest.raises(ConfigError, match="valid choices for policy: openai, random, scripted"):
        check_group_choices(["policy=random,openia"])


def test_unknown_key_names_the_key_and_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(["policy=openai", "policy.temprature=0.5"])
    text = str(info.value)
    assert "policy.temprature" in text and "policy=openai has the keys" in text
    assert "max_tokens" in text and "Did you mean policy.temperature?" in text
    with pytest.raises(ConfigError, match=r"policy=random has the keys name\. \(policy.temperature is a key of"):
        compose_config(["policy.temperature=0.5"])
    with pytest.raises(ConfigError, match=r"Valid top-level keys: .*episodes.*Did you mean 'episodes'"):
        compose_config(["epsiodes=3"])
    with pytest.raises(ConfigError, match=r"\+env.kwargs.foo=VALUE"):
        compose_config(["env.kwargs.foo=1"])


def test_added_unknown_key_fails_validation_with_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'policy\.foo'; valid keys here: name"):
        validate_rollout_config(compose_config(["+policy.foo=1"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("episodes=abc", "episodes: Input should be a valid integer"),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        ("num_envs=0", "num_envs: Input should be greater than or equal to 1"),
        ("runtime.cpus=lots", "runtime.cpus: Input should be a valid number"),
        ("threads=maybe", "threads: Input should be a valid boolean"),
    ],
)
def test_wrong_type_names_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_rollout_config(compose_config([override]))


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match="malformed override"):
        compose_config(["env=[unclosed"])


def test_sweep_helpers() -> None:
    overrides = ["env=sokoban_easy,sokoban_hard", "seed=0,1,2", "episodes=5"]
    assert first_combination(overrides) == ["env=sokoban_easy", "seed=0", "episodes=5"]
    jobs = sweep_combinations(overrides)
    assert len(jobs) == 6 and jobs[-1] == ["env=sokoban_hard", "seed=2", "episodes=5"]
