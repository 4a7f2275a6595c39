"""The Env base class: protocol, per-env seeding, ResetNeeded, spaces, checkers."""

from __future__ import annotations

import random

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rock_env as rock
from rock_env._gem import gem_core
from rock_env.errors import EnvClosed, InvalidArgument, ResetNeeded
from tests.envs_for_tests import GuessEnv


def test_env_is_a_gem_env_and_a_gymnasium_env() -> None:
    env = GuessEnv()
    assert isinstance(env, gem_core().Env)
    assert isinstance(env, gymnasium.Env)
    assert env.unwrapped is env


def test_step_before_reset_raises_reset_needed() -> None:
    env = GuessEnv()
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step("3")


def test_step_after_episode_end_raises_reset_needed_until_reset() -> None:
    env = GuessEnv(high=1)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step("1")
    assert (reward, terminated, truncated) == (1.0, True, False)
    with pytest.raises(ResetNeeded):
        env.step("1")
    env.reset()
    assert env.step("1")[2] is True


def test_closed_env_refuses_reset_and_step() -> None:
    env = GuessEnv()
    env.reset(seed=1)
    env.close()
    env.close()  # idempotent
    with pytest.raises(EnvClosed):
        env.reset()
    with pytest.raises(ResetNeeded):
        env.step("1")


def test_seeding_is_per_env_and_leaves_global_rng_alone() -> None:
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    a, b = GuessEnv(high=1000), GuessEnv(high=1000)
    a.reset(seed=7)
    b.reset(seed=7)
    assert a._answer == b._answer
    assert (random.random(), np.random.random()) == before


def test_constructor_seed_makes_unseeded_resets_reproducible() -> None:
    def answers(env: GuessEnv) -> list[int]:
        out = []
        for _ in range(5):
            env.reset()
            out.append(env._answer)
        return out

    assert answers(GuessEnv(high=10**6, seed=5)) == answers(GuessEnv(high=10**6, seed=5))
    assert answers(GuessEnv(high=10**6, seed=5)) != answers(GuessEnv(high=10**6, seed=6))


@pytest.mark.parametrize("bad_seed", ["1", 1.5, True, [1], -1])
def test_bad_seed_is_a_typed_error(bad_seed: object) -> None:
    with pytest.raises(InvalidArgument, match="seed must be a"):
        GuessEnv().reset(seed=bad_seed)  # type: ignore[arg-type]


def test_max_episode_steps_truncates() -> None:
    env = GuessEnv(high=10**6, max_turns=100)
    env.max_episode_steps = 2
    env.reset(seed=3)
    assert env.step("0")[3] is False
    assert env.step("0")[3] is True


def test_gymnasium_env_checker_passes() -> None:
    check_env(GuessEnv(), skip_render_check=True)


def test_text_space_covers_extra_characters() -> None:
    space = rock.text_space(max_length=10, extra_chars="√")
    assert space.contains("√ab")
    assert not space.contains("x" * 11)


def test_numpy_generator_is_built_lazily_but_seeded_like_gymnasium() -> None:
    env = GuessEnv()
    env.reset(seed=5)
    assert env.np_random_seed == 5
    assert env._np_random is not None  # gymnasium's checker reads the slot directly
    reference, _ = gymnasium.utils.seeding.np_random(5)
    assert env.np_random.integers(0, 1000, 5).tolist() == reference.integers(0, 1000, 5).tolist()
