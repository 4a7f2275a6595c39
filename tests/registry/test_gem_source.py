"""GEM pass-through: gem's own ids work through rock.make and are listed with source 'gem'."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rock_env as rock
from rock_env._gem import full_gem, gem_registry

GEM_IDS = sorted(gem_registry())
# The ids gem itself can build offline (the rest download data sets from a hub when built).
# Word games need nltk corpora from the internet; Sokoban is compared in tests/games.
_NEEDS_DOWNLOADS = ("Crosswords", "Hangman", "WordSearch", "Wordle", "FifteenPuzzle-v0-random", "Sokoban")
OFFLINE_IDS = [i for i in GEM_IDS if i.startswith("game:") and not any(w in i for w in _NEEDS_DOWNLOADS)] + [
    "rg:base_conversion",
    "rg:letter_counting",
    "rg:maze",
]


def test_every_gem_id_resolves() -> None:
    assert len(GEM_IDS) > 100
    own = {s.id for s in rock.list_envs() if s.source != "gem"}
    for env_id in GEM_IDS:
        spec = rock.spec(env_id)
        assert spec.id == env_id
        assert spec.source == ("gem" if env_id not in own else spec.source)


def test_gem_ids_are_listed_with_source_gem() -> None:
    listed = {s.id: s for s in rock.list_envs(source="gem")}
    ours = {s.id for s in rock.list_envs(source="builtin")}
    assert set(listed) == set(GEM_IDS) - ours


@pytest.mark.parametrize("env_id", OFFLINE_IDS)
def test_gem_ids_build_the_same_env_as_gem(env_id: str) -> None:
    spec = rock.spec(env_id)
    env = rock.make(env_id)
    try:
        if spec.source == "gem":
            reference = full_gem().make(env_id)
            assert type(env) is type(reference)
            assert env.spec is spec
            obs, info = env.reset(seed=3)
            ref_obs, ref_info = reference.reset(seed=3)
            assert (obs, info) == (ref_obs, ref_info)
        else:  # ours takes precedence
            assert spec.source == "builtin"
            assert isinstance(env, rock.Env)
    finally:
        env.close()


def test_import_rock_env_does_not_import_all_of_gem() -> None:
    code = "import sys, rock_env; print('reasoning_gym' in sys.modules, 'gem.envs' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_import_gem_after_rock_env_gives_full_gem() -> None:
    code = (
        "import rock_env, gem; e = gem.make('game:Mastermind-v0-easy'); print(type(e).__name__, callable(gem.make_vec))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["MastermindEnv", "True"]
