"""Gymnasium aliases: gymnasium.make builds our envs from ids Gymnasium can parse."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import pytest

import rock_env as rock
from rock_env.errors import InvalidEnvId
from rock_env.gym_compat import gymnasium_id, register_gymnasium_aliases


@pytest.mark.parametrize(
    ("env_id", "alias"),
    [
        ("game:Sokoban-v0-easy", "rock_env/Sokoban-easy-v0"),
        ("code:Python-v0-strict", "rock_env/Python-strict-v0"),
        ("tool:Bash-v0", "rock_env/Bash-v0"),
    ],
)
def test_alias_grammar(env_id: str, alias: str) -> None:
    assert gymnasium_id(env_id) == alias


def test_alias_needs_a_version() -> None:
    with pytest.raises(InvalidEnvId, match="no version"):
        gymnasium_id("math:GSM8K")


def test_every_builtin_id_has_an_alias() -> None:
    aliases = register_gymnasium_aliases()
    builtin = [s.id for s in rock.list_envs(source="builtin")]
    assert "rock_env/Sokoban-easy-v0" in aliases
    assert len(aliases) == len(builtin)
    assert all(a in gymnasium.registry for a in aliases)


def test_gymnasium_make_builds_our_env_with_the_same_transcript() -> None:
    gym_env = gymnasium.make("rock_env/Sokoban-easy-v0")
    ours = rock.make("game:Sokoban-v0-easy")
    assert isinstance(gym_env.unwrapped, rock.Env)
    assert gym_env.reset(seed=5) == ours.reset(seed=5)
    for action in ["\\boxed{up}", "\\boxed{left}", "nonsense"]:
        assert gym_env.step(action) == ours.step(action)


def test_gymnasium_module_prefix_imports_rock_env() -> None:
    code = (
        "import gymnasium; e = gymnasium.make('rock_env:rock_env/Sokoban-easy-v0'); print(type(e.unwrapped).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "SokobanEnv"
