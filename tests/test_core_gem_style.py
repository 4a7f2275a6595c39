"""Envs written the GEM/Gymnasium way (overriding ``reset``/``step``) and GEM's wrappers before the first reset."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from gem.wrappers.episode_tracking_wrapper import EpisodeTrackingWrapper
from gem.wrappers.observation_wrapper import ObservationWrapper

import rock_env as rock
from rock_env.core import Env, text_space
from rock_env.errors import EnvClosed, ResetNeeded
from tests.envs_for_tests import GuessEnv


class GemStyleGuess(Env):
    """Guess a number, written as GEM's and Gymnasium's docs teach: reset/step overridden."""

    def __init__(self, high: int = 100, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.high = high
        self.action_space = text_space(max_length=16)
        self.answer = 0

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.answer = self.rng.randint(1, self.high)
        self.noise = float(self.np_random.random())
        return f"Guess a number in 1..{self.high}", {"high": self.high}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        guess = int(action)
        if guess == self.answer:
            return "Correct!", 1.0, True, False, {}
        return ("higher" if guess < self.answer else "lower"), 0.0, False, False, {}


class GymnasiumStyle(Env):
    """Gymnasium's signature: ``reset(*, seed=None, options=None)`` forwarding both to super()."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed, options=options)
        return str(self.np_random.integers(0, 1000)), {"options": options}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return action, 0.0, True, False, {}


class NeitherStyle(Env):
    """Implements neither ``_reset`` nor ``reset``."""


def play(env: Env, seed: int | None) -> tuple[int, float]:
    env.reset(seed=seed)
    return env.answer, env.noise  # type: ignore[attr-defined]


def test_gem_style_subclass_resets_with_per_env_seeding() -> None:
    random.seed(1)
    before = random.random()
    a, b = GemStyleGuess(), GemStyleGuess()
    assert play(a, 7) == play(b, 7)
    assert play(a, 8) != play(a, 7)
    random.seed(1)
    assert random.random() == before, "the global RNG is untouched"
    obs, info = a.reset(seed=3)
    assert obs == "Guess a number in 1..100" and info == {"high": 100}


def test_gem_style_constructor_seed_acts_as_first_reset_seed() -> None:
    first = [play(GemStyleGuess(seed=5), None) for _ in range(2)]
    assert first[0] == first[1] == play(GemStyleGuess(), 5)


def test_gem_style_episode_plays_to_the_end_and_close_is_honoured() -> None:
    env = GemStyleGuess(high=3)
    env.reset(seed=0)
    results = [env.step(str(g)) for g in (1, 2, 3)]
    assert any(r[2] for r in results) and sum(r[1] for r in results) == 1.0
    env.close()
    with pytest.raises(EnvClosed):
        env.reset()


def test_gymnasium_style_forwards_options_and_seeds_np_random() -> None:
    env = GymnasiumStyle()
    obs1, info = env.reset(seed=11, options={"x": 1})
    obs2, _ = GymnasiumStyle().reset(seed=11)
    assert obs1 == obs2 and info == {"options": {"x": 1}}
    assert env.np_random_seed == 11


def test_base_reset_returns_an_empty_observation_for_overriding_subclasses() -> None:
    env = GymnasiumStyle()
    assert Env.reset(env, seed=1) == ("", {})


def test_env_with_neither_reset_nor_underscore_reset_says_what_to_implement() -> None:
    with pytest.raises(NotImplementedError, match=r"implement _reset\(seed, options\).*super\(\).reset\(seed=seed\)"):
        NeitherStyle().reset(seed=0)


def test_own_contract_still_raises_reset_needed() -> None:
    env = GuessEnv()
    with pytest.raises(ResetNeeded):
        env.step("1")
    env.reset(seed=0)
    env.step("1")


def test_gem_style_env_through_registry_make_vec_and_gem_wrappers() -> None:
    rock.register("test:GemStyleGuess-v0", GemStyleGuess, kwargs={"high": 10}, override=True)
    try:
        env = rock.make("test:GemStyleGuess-v0")
        wrapped = EpisodeTrackingWrapper(ObservationWrapper(env, include_action=True, include_chat_template=False))
        obs, info = wrapped.reset(seed=2)
        assert obs.startswith("Guess a number in 1..10") and info["step_counter"] == 0
        obs, _, _, _, info = wrapped.step("5")
        assert "5" in obs and info["step_counter"] == 1
        vec = rock.make_vec("test:GemStyleGuess-v0", num_envs=2, seed=4)
        observations, _ = vec.reset(seed=4)
        assert list(observations) == ["Guess a number in 1..10"] * 2
        vec.close()
    finally:
        rock.registry.unregister("test:GemStyleGuess-v0")


class LiveAttributeEnv(GuessEnv):
    """An env with an attribute whose reading starts something."""

    live_attributes = frozenset({"expensive"})
    started = 0

    @property
    def expensive(self) -> str:
        type(self).started += 1
        return "started"


def test_live_attributes_are_not_listed_so_gem_wrappers_do_not_read_them() -> None:
    env = LiveAttributeEnv()
    assert "expensive" not in dir(env) and "reset" in dir(env)
    wrapper = EpisodeTrackingWrapper(env)  # GEM's EnvWrapper.__init__ copies what dir(env) lists
    assert LiveAttributeEnv.started == 0 and not hasattr(wrapper, "expensive")
    assert wrapper.unwrapped.expensive == "started"


@pytest.mark.parametrize("env_id", ["game:Sokoban-v0-easy", "game:Sokoban-v0-random"])
def test_every_public_attribute_reads_before_the_first_reset(env_id: str) -> None:
    env = rock.make(env_id)
    values = {name: getattr(env, name) for name in dir(env) if not name.startswith("_")}
    assert values["room_state"] is None and values["player_position"] is None
    env.reset(seed=1)
    assert isinstance(env.room_state, np.ndarray) and env.room_state.shape == env.dim_room
    env.close()
