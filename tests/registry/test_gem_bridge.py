"""``gem.make``/``gem.make_vec`` give our envs for our ids after ``import rock_env`` (ROLL's path)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import gem
import pytest
from gem.envs import registration as gem_registration

import rock_env as rock
from rock_env.errors import InvalidEnvKwargs
from rock_env.registry.gem_bridge import (
    BridgedRegistry,
    RockEnvEntryPoint,
    bridge_registration_module,
    install_gem_bridge,
    is_rock_env_id,
)
from tests.envs_for_tests import GuessEnv


def builtin_ids() -> list[str]:
    return sorted(s.id for s in rock.list_envs(source="builtin"))


@pytest.mark.parametrize("env_id", builtin_ids())
def test_gem_make_returns_our_env_for_every_builtin_id(env_id: str) -> None:
    env = gem.make(env_id)
    try:
        assert isinstance(env, rock.Env) and type(env).__module__.startswith("rock_env.")
        assert env.env_id == env_id and isinstance(env.entry_point, RockEnvEntryPoint)
        assert env.spec is not None and env.spec.id == env_id
    finally:
        env.close()


def test_gem_ids_we_do_not_shadow_stay_gems() -> None:
    env = gem.make("game:Sudoku-v0-easy")
    assert type(env).__module__.startswith("gem.envs.")
    assert not is_rock_env_id("game:Sudoku-v0-easy")


def test_registry_is_bridged_and_lists_gem_entries_only() -> None:
    table = gem_registration.ENV_REGISTRY
    assert isinstance(table, BridgedRegistry)
    assert "tool:Bash-v0" in table and table.get("tool:Bash-v0") is not None
    assert "tool:Bash-v0" not in list(table) and "game:Sudoku-v0-easy" in list(table)
    assert "game:Nope-v0" not in table and table.get("game:Nope-v0", "absent") == "absent"
    assert 12345 not in table  # not an id at all: not ours, and GEM's dict says no
    assert is_rock_env_id("hub:Anything-v3")  # resolved by the hub when made


def test_roll_env_manager_calling_convention() -> None:
    """As ROLL's env managers make and drive an env (``gem.make(env_id=..., **env_config["config"])``)."""
    env_config: dict[str, Any] = {
        "env_type": "game:Sokoban-v0-easy",
        "group_seed": 42,
        "config": {"dim_room": [6, 6], "num_boxes": 1, "max_turns": 10, "seed": 0},
    }
    if "seed" in env_config["config"]:
        env_config["config"]["seed"] = env_config["group_seed"]
    env = gem.make(env_id=env_config["env_type"], **env_config["config"])
    reference = rock.make("game:Sokoban-v0-easy", dim_room=(6, 6), num_boxes=1, max_turns=10)
    seed = env_config["group_seed"] + 3
    observation, info = env.reset(seed=seed)
    assert (observation, info) == reference.reset(seed=seed)
    for move in ("up", "right", "down"):
        assert env.step(action=f"<answer>\\boxed{{{move}}}</answer>") == reference.step(f"\\boxed{{{move}}}")
    env.close()
    reference.close()


def test_gem_make_vec_builds_our_envs_with_seed_plus_index() -> None:
    vec = gem.make_vec(["game:Sokoban-v0-random"] * 3, seed=20)
    assert [type(e).__name__ for e in vec.envs] == ["SokobanEnv"] * 3
    observations, _ = vec.reset()
    for idx, obs in enumerate(observations):
        assert obs == rock.make("game:Sokoban-v0-random", seed=20 + idx).reset()[0]
    observations, rewards, _, _, _ = vec.step(["\\boxed{up}"] * 3)
    assert len(observations) == 3 and rewards.shape == (3,)


def test_bad_kwargs_and_unknown_ids_fail_as_each_registry_says() -> None:
    with pytest.raises(InvalidEnvKwargs, match="does not accept 'dim_rooms'"):
        gem.make("game:Sokoban-v0-easy", dim_rooms=(6, 6))
    with pytest.raises(ValueError, match="not found in registry"):
        gem.make("tool:Bsh-v0")


def test_user_registered_ids_and_gem_register_work() -> None:
    rock.register("test:BridgeGuess-v0", GuessEnv, kwargs={"high": 3}, override=True)
    try:
        env = gem.make("test:BridgeGuess-v0", max_turns=2)
        assert isinstance(env, GuessEnv) and env.high == 3 and env.max_turns == 2
        with pytest.raises(ValueError, match="already registered"):
            gem.register("test:BridgeGuess-v0", entry_point=GuessEnv)  # the id is taken (by rock_env)
    finally:
        rock.registry.unregister("test:BridgeGuess-v0")
    gem.register("test-only-gem-id", entry_point=GuessEnv)
    try:
        assert isinstance(gem.make("test-only-gem-id", high=2), GuessEnv)
    finally:
        del gem_registration.ENV_REGISTRY["test-only-gem-id"]


PROBE = """
import json, sys
import rock_env
out = {"gem_loaded_by_rock_env": any(m == "gem" or m.startswith("gem.") for m in sys.modules)}
import gem
env = gem.make(env_id="tool:Bash-v0", max_turns=3)
out["tool"] = type(env).__module__
env.close()
out["sokoban"] = type(gem.make("game:Sokoban-v0-easy")).__module__
out["sudoku"] = type(gem.make("game:Sudoku-v0-easy")).__module__
print(json.dumps(out))
"""


def test_bridge_goes_in_at_once_when_gem_was_imported_first() -> None:
    """``import gem`` before ``import rock_env``: installing finds ``gem.envs`` loaded and bridges it now."""
    bridged = gem_registration.ENV_REGISTRY
    gem_registration.ENV_REGISTRY = dict(bridged)  # GEM's plain dict, as before rock_env was imported
    try:
        install_gem_bridge(rock.make)
        assert isinstance(gem_registration.ENV_REGISTRY, BridgedRegistry)
        assert type(gem.make("game:Sokoban-v0-easy")).__module__ == "rock_env.games.sokoban.env"
        assert not bridge_registration_module(gem_registration)  # idempotent
    finally:
        gem_registration.ENV_REGISTRY = bridged


def test_import_rock_env_does_not_import_gem_and_gem_make_then_finds_our_ids() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "gem_loaded_by_rock_env": False,
        "tool": "rock_env.tools.bash_env",
        "sokoban": "rock_env.games.sokoban.env",
        "sudoku": "gem.envs.game_env.sudoku",
    }
