"""The games family's built-in specs, and that ``rock.make`` builds the native envs from them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rock_env as rock
from rock_env.games.sokoban import SokobanEnv
from rock_env.games.specs import builtin_specs

IDS = ["game:Sokoban-v0-easy", "game:Sokoban-v0-hard", "game:Sokoban-v0-random"]


def test_builtin_specs_list_the_sokoban_variants() -> None:
    specs = {s.id: s for s in builtin_specs()}
    assert sorted(specs) == sorted(IDS)
    for spec in specs.values():
        assert spec.source == "builtin" and isinstance(spec.entry_point, str)
        assert spec.load_entry_point() is SokobanEnv


@pytest.mark.parametrize("env_id", IDS)
def test_make_builds_the_native_env(env_id: str) -> None:
    env = rock.make(env_id)
    assert isinstance(env, SokobanEnv) and env.spec is not None and env.spec.source == "builtin"
    obs, info = env.reset(seed=1)
    assert "Sokoban" in obs and "board layout" in info["suffix"]
    env.close()


def test_specs_module_does_not_import_the_envs() -> None:
    code = (
        "import sys; from rock_env.games.specs import builtin_specs; builtin_specs(); "
        "print('rock_env.games.sokoban.env' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
