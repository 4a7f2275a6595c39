"""Autoreset mode parsing and the per-sub-env step under each mode."""

from __future__ import annotations

import pytest
from gymnasium.vector import AutoresetMode

from rock_env.errors import InvalidArgument
from rock_env.vector.autoreset import parse_autoreset_mode, reset_sub_env, step_sub_env
from tests.vector.envs import CountEnv


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("next_step", AutoresetMode.NEXT_STEP),
        ("NextStep", AutoresetMode.NEXT_STEP),
        ("SAME_STEP", AutoresetMode.SAME_STEP),
        ("same-step", AutoresetMode.SAME_STEP),
        ("disabled", AutoresetMode.DISABLED),
        (AutoresetMode.DISABLED, AutoresetMode.DISABLED),
    ],
)
def test_parse_accepts_names_values_and_the_enum(given: object, expected: AutoresetMode) -> None:
    assert parse_autoreset_mode(given) is expected


def test_parse_accepts_gems_enum() -> None:
    from gem.vector.vector_env import AutoresetMode as GemAutoresetMode

    assert parse_autoreset_mode(GemAutoresetMode.SAME_STEP) is AutoresetMode.SAME_STEP


@pytest.mark.parametrize("bad", ["next", "", None, 1])
def test_parse_rejects_unknown_modes(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="autoreset_mode"):
        parse_autoreset_mode(bad)


def test_next_step_resets_instead_of_stepping() -> None:
    env = CountEnv(length=1, seed=3)
    reset_sub_env(env, None, None)
    ended = step_sub_env(env, "ab", AutoresetMode.NEXT_STEP, needs_reset=False)
    assert ended.terminated and ended.reward == 2.0 and ended.final is None
    after = step_sub_env(env, "ignored", AutoresetMode.NEXT_STEP, needs_reset=True)
    assert after.obs.startswith("start") and after.reward == 0.0
    assert not after.terminated and not after.truncated
    assert after.info["episode"] == 1


def test_same_step_resets_within_the_step_and_keeps_the_final_transition() -> None:
    env = CountEnv(length=1, seed=3)
    reset_sub_env(env, None, None)
    result = step_sub_env(env, "abc", AutoresetMode.SAME_STEP, needs_reset=False)
    assert result.terminated and result.reward == 3.0
    assert result.obs.startswith("start") and result.info["episode"] == 1
    assert result.final is not None
    final_obs, final_info = result.final
    assert "t=1" in final_obs and final_info["done_at"] == 1


def test_reset_passes_options_only_when_given() -> None:
    class NoOptions(CountEnv):
        def reset(self, seed: int | None = None) -> tuple[str, dict[str, object]]:  # type: ignore[override]
            return super().reset(seed=seed)

    obs, _ = reset_sub_env(NoOptions(), 1, None)
    assert obs.startswith("start")
    obs, _ = reset_sub_env(CountEnv(), 1, {"start": "go"})
    assert obs.startswith("go")
