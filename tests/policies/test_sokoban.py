"""The solver-backed scripted Sokoban policy (the default of policy=scripted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rock_env as rock
from rock_env.config import compose_config
from rock_env.policies.sokoban import board_from_text, solve_sokoban
from rock_env.rollout import read_jsonl, run_rollout


def test_board_from_text_takes_the_last_board() -> None:
    text = "intro\n# # #\n# P #\n# # #\nmore text\n# # # #\n# P X O\n# # # #\nEnter your move."
    assert board_from_text(text) == "# # # #\n# P X O\n# # # #"
    assert board_from_text("no board here") is None


@pytest.mark.parametrize("env_id", ["game:Sokoban-v0-easy", "game:Sokoban-v0-hard"])
def test_solver_policy_solves_every_episode(env_id: str, tmp_path: Path) -> None:
    variant = env_id.rsplit("-", 1)[-1]
    cfg = compose_config([f"env=sokoban_{variant}", "policy=scripted", "episodes=15", "seed=4", "progress=false"])
    result = run_rollout(cfg, tmp_path)
    assert [ep.success for ep in result.episodes] == [True] * 15
    assert all(ep.episode_return > 0 for ep in result.episodes)
    actions = [r["action"] for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert all(a.startswith("\\boxed{") for a in actions)


class _TextOnly:
    """Stands for an env the policy cannot look into (e.g. a remote env): only text is known."""

    def sample_random_action(self) -> str:
        return "\\boxed{up}"


def test_solver_policy_reads_the_board_from_the_text(tmp_path: Path) -> None:
    env = rock.make("game:Sokoban-v0-easy")
    try:
        for seed in range(5):
            obs, info = env.reset(seed=seed)
            plan = solve_sokoban(obs, _TextOnly(), info)
            assert isinstance(plan, list) and plan
            reward: Any = 0.0
            for action in plan:
                obs, reward, terminated, _, info = env.step(action)
            assert terminated and reward > 0
    finally:
        env.close()


def test_solver_policy_falls_back_to_a_random_move_without_a_board() -> None:
    assert solve_sokoban("nothing to see", _TextOnly(), {}) == "\\boxed{up}"
