"""SokobanEnv beyond plain parity: spaces, seeding, global RNG, bad input (checked against GEM)."""

from __future__ import annotations

import copy
import random
import string
from typing import Any

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rock_env.errors import InvalidAction, InvalidArgument, ResetNeeded
from rock_env.games.sokoban import SokobanEnv
from tests.games.sokoban.gem_reference import VARIANTS, gem_sokoban, preserved_global_rng, same_step


@pytest.mark.parametrize("variant", ["easy", "hard", "random"])
def test_gymnasium_check_env(variant: str) -> None:
    env = SokobanEnv(**VARIANTS[variant])
    check_env(env, skip_render_check=True)
    env.close()


def test_spaces_cover_every_observation() -> None:
    env = SokobanEnv(**VARIANTS["easy"])
    rnd = random.Random(0)
    seen_on_target = False
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        assert env.observation_space.contains(info["suffix"])
        done = False
        while not done:
            action = f"\\boxed{{{rnd.choice(['up', 'down', 'left', 'right'])}}}"
            obs, _reward, terminated, truncated, info = env.step(action)
            assert env.observation_space.contains(obs) and env.observation_space.contains(info["suffix"])
            seen_on_target |= "√" in info["suffix"]
            done = terminated or truncated
    assert seen_on_target
    assert env.action_space.contains(env.sample_random_action())


def test_global_random_state_is_untouched() -> None:
    py_state = random.getstate()
    np_state = np.random.get_state()
    env = SokobanEnv(**VARIANTS["easy"], seed=3)
    for _ in range(5):
        env.reset()
        env.step(env.sample_random_action())
    env.reset(seed=11)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def _episode_starts(env: SokobanEnv, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        obs, info = env.reset()
        out.append((obs, info["suffix"]))
    return out


@pytest.mark.parametrize("variant", ["easy", "random"])
def test_seeded_env_gives_reproducible_unseeded_resets(variant: str) -> None:
    first = _episode_starts(SokobanEnv(**VARIANTS[variant], seed=7), 6)
    again = _episode_starts(SokobanEnv(**VARIANTS[variant], seed=7), 6)
    other = _episode_starts(SokobanEnv(**VARIANTS[variant], seed=8), 6)
    assert first == again
    assert first != other
    assert len({suffix for _, suffix in first}) > 1  # the levels change from episode to episode


def test_constructor_seed_equals_first_reset_seed() -> None:
    a = SokobanEnv(**VARIANTS["hard"], seed=21)
    b = SokobanEnv(**VARIANTS["hard"])
    assert a.reset() == b.reset(seed=21)
    assert a.reset() == b.reset()


def test_state_views_match_gem() -> None:
    gem_env = gem_sokoban("hard")
    ours = SokobanEnv(**VARIANTS["hard"])
    with preserved_global_rng():
        gem_env.reset(seed=16)
    ours.reset(seed=16)
    assert np.array_equal(ours.room_state, gem_env.room_state)
    assert np.array_equal(ours.room_fixed, gem_env.room_fixed)
    assert np.array_equal(ours.player_position, gem_env.player_position)


def test_step_protocol_errors() -> None:
    env = SokobanEnv(**VARIANTS["easy"])
    with pytest.raises(ResetNeeded):
        env.step("\\boxed{up}")
    env.reset(seed=0)
    env.step("")  # a format error ends the episode
    with pytest.raises(ResetNeeded):
        env.step("\\boxed{up}")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim_room": (2, 6)},
        {"dim_room": "big"},
        {"num_boxes": 0},
        {"max_turns": -1},
        {"num_boxes": True},
        {"dim_room": (4, 4), "num_boxes": 3},
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        SokobanEnv(**{**VARIANTS["easy"], **kwargs})


def _bad_inputs() -> list[Any]:
    rnd = random.Random(1234)
    unicode_soup = ["".join(chr(rnd.randrange(0x20, 0x2FFFF)) for _ in range(rnd.randrange(1, 200))) for _ in range(20)]
    alphabet = string.ascii_letters + "\\{}İı √"
    near_misses = ["".join(rnd.choice(alphabet) for _ in range(30)) + "\\boxed{" + rnd.choice(["up", "Rİght"]) + "}"]
    return [
        None,
        "",
        0,
        False,
        [],
        12,
        3.5,
        b"\\boxed{up}",
        ["\\boxed{up}"],
        object(),
        np.array([1, 2]),
        "\\boxed{rİght}",
        "\\boxed{rıght}",
        "\\BoXeD{DoWn}",
        "\\boxed{up}\\boxed{down}",
        "\\boxed{up" * 1000,
        "x" * (1 << 20),
        "y" * (1 << 20) + "\\boxed{left}",
        "\\boxed{right}" + "\u00e9" * (1 << 20),
        *unicode_soup,
        *near_misses,
    ]


def test_bad_input_is_handled_like_gem_or_rejected_with_a_typed_error() -> None:
    """Where GEM answers, we answer the same; where GEM crashes, we raise InvalidAction and the
    episode is unchanged."""
    gem_env = gem_sokoban("easy")
    ours = SokobanEnv(**VARIANTS["easy"])
    with preserved_global_rng():
        gem_env.reset(seed=5)
    crashed = 0
    for action in _bad_inputs():
        reference = copy.deepcopy(gem_env)
        ours.reset(seed=5)
        try:
            expected = reference.step(action)
        except Exception:
            crashed += 1
            with pytest.raises(InvalidAction):
                ours.step(action)
            assert ours.turn_count == 0
            assert ours.step("\\boxed{up}")[0].startswith("At turn 1,")
            continue
        assert same_step(ours.step(action), expected), repr(action)[:80]
    assert crashed >= 6  # ints, floats, bytes, lists, objects, arrays and 'rİght' crash GEM
