"""run_rollout: output files, reproducibility, lockstep slots, threads, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from rock_env.config import compose_config, validate_rollout_config
from rock_env.errors import ConfigError, ServerUnavailable
from rock_env.rollout import episode_seeds, read_jsonl, run_rollout
from rock_env.rollout.runner import thread_plan
from tests.rollout.helpers import files_of, register_line_env


@pytest.fixture(scope="module", autouse=True)
def line_env() -> str:
    return register_line_env()


def line_cfg(*overrides: str) -> Any:
    return compose_config(["env.id=test:HydraLine-v0", "progress=false", *overrides])


def scripted(target: str, **kwargs: Any) -> list[str]:
    out = ["policy=scripted", f"policy.target={target}"]
    out += [f"+policy.kwargs.{k}={v}" for k, v in kwargs.items()]
    return out


def test_episode_seeds_are_fixed_by_the_seed() -> None:
    assert episode_seeds(0, 5) == episode_seeds(0, 5)
    assert episode_seeds(0, 5)[:3] == episode_seeds(0, 3)
    assert episode_seeds(0, 5) != episode_seeds(1, 5)
    assert len(set(episode_seeds(7, 100))) == 100


def test_rollout_writes_trajectories_episodes_and_summary(tmp_path: Path) -> None:
    result = run_rollout(line_cfg("episodes=6", "seed=3"), tmp_path)
    records = read_jsonl(tmp_path / "trajectories.jsonl")
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    summary = json.loads((tmp_path / "summary.json").read_text())

    assert [r["type"] for r in records].count("reset") == 6
    assert [r for r in records if r["type"] == "episode"] == episodes
    assert [e["seed"] for e in sorted(episodes, key=lambda e: e["episode"])] == episode_seeds(3, 6)
    for ep in episodes:  # each episode's step records add up to its episode record
        steps = [r for r in records if r["type"] == "step" and r["episode"] == ep["episode"]]
        assert len(steps) == ep["length"]
        assert math.isclose(sum(s["reward"] for s in steps), ep["return"])
        assert steps[-1]["terminated"] or steps[-1]["truncated"]
        assert set(steps[0]) >= {"observation", "action", "reward", "terminated", "truncated", "info"}
    assert summary["status"] == "ok" and summary["error"] is None
    assert summary["episodes"] == 6 and summary["total_steps"] == sum(e["length"] for e in episodes)
    assert summary["success_rate"] == sum(e["success"] for e in episodes) / 6
    assert summary["mean_length"] == pytest.approx(sum(e["length"] for e in episodes) / 6)
    assert summary["steps_per_s"] > 0
    assert summary["config"]["env"]["id"] == "test:HydraLine-v0"
    assert len(result.episodes) == 6


def test_rerun_is_byte_identical(tmp_path: Path) -> None:
    for name in ("a", "b"):
        run_rollout(line_cfg("episodes=8", "seed=11", "policy=random"), tmp_path / name)
    assert dict(files_of(tmp_path / "a")) == dict(files_of(tmp_path / "b"))
    run_rollout(line_cfg("episodes=8", "seed=12", "policy=random"), tmp_path / "c")
    assert dict(files_of(tmp_path / "a")) != dict(files_of(tmp_path / "c"))


def test_gem_sokoban_rerun_is_byte_identical(tmp_path: Path) -> None:
    cfg = compose_config(["env=sokoban_easy", "episodes=4", "seed=0", "progress=false"])
    run_rollout(cfg, tmp_path / "a")
    run_rollout(cfg, tmp_path / "b")
    assert dict(files_of(tmp_path / "a")) == dict(files_of(tmp_path / "b"))
    assert len(read_jsonl(tmp_path / "a" / "episodes.jsonl")) == 4


def episodes_by_index(directory: Path) -> list[dict[str, Any]]:
    return sorted(read_jsonl(directory / "episodes.jsonl"), key=lambda e: e["episode"])


def test_slots_play_the_same_episodes_as_one_env(tmp_path: Path) -> None:
    run_rollout(line_cfg("episodes=9", "num_envs=1"), tmp_path / "one")
    run_rollout(line_cfg("episodes=9", "num_envs=4"), tmp_path / "four")
    assert episodes_by_index(tmp_path / "one") == episodes_by_index(tmp_path / "four")


def test_threads_do_not_change_the_output(tmp_path: Path) -> None:
    cfg = ["episodes=10", "num_envs=4", "+env.kwargs.delay=0.002"]
    run_rollout(line_cfg(*cfg, "threads=false"), tmp_path / "plain")
    run_rollout(line_cfg(*cfg, "threads=true"), tmp_path / "threads")
    assert dict(files_of(tmp_path / "plain")) == dict(files_of(tmp_path / "threads"))


def test_thread_plan() -> None:
    line = validate_rollout_config(line_cfg("num_envs=4"))
    assert thread_plan(line, 4) == thread_plan(line, 1)  # a local game: nothing to wait for
    assert not thread_plan(line, 4).env
    assert thread_plan(validate_rollout_config(line_cfg("threads=true")), 4).env
    remote = validate_rollout_config(line_cfg("backend=remote"))
    assert thread_plan(remote, 4).env and not thread_plan(remote, 4).policy
    openai = validate_rollout_config(line_cfg("policy=openai"))
    assert thread_plan(openai, 4).policy and not thread_plan(openai, 4).env
    assert not thread_plan(openai, 1).policy
    bash = validate_rollout_config(compose_config(["env=bash"]))
    assert thread_plan(bash, 2).env
    gem = validate_rollout_config(compose_config(["env.id=game:GuessTheNumber-v0-easy", "backend=remote"]))
    assert not thread_plan(gem, 4).env  # GEM envs use global RNGs: never threaded
    gem_forced = validate_rollout_config(compose_config(["env.id=game:GuessTheNumber-v0-easy", "threads=true"]))
    with pytest.raises(ConfigError, match="global RNG"):
        thread_plan(gem_forced, 4)


def test_max_steps_truncates(tmp_path: Path) -> None:
    run_rollout(line_cfg("episodes=3", *scripted("tests.rollout.helpers:garbage"), "max_steps=2"), tmp_path)
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert [(e["length"], e["truncated"], e["success"]) for e in episodes] == [(2, True, False)] * 3


def test_garbage_actions_get_the_envs_invalid_action_handling(tmp_path: Path) -> None:
    run_rollout(line_cfg("episodes=2", *scripted("tests.rollout.helpers:garbage")), tmp_path)
    steps = [r for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert steps and all(s["reward"] == -0.1 and s["info"] == {"valid": False} for s in steps)
    assert all(s["observation"].startswith("Invalid action") for s in steps)
    assert [e["length"] for e in read_jsonl(tmp_path / "episodes.jsonl")] == [12, 12]


def test_scripted_walker_solves_every_episode(tmp_path: Path) -> None:
    result = run_rollout(line_cfg("episodes=20", *scripted("tests.rollout.helpers:walk_to_target")), tmp_path)
    assert all(ep.success for ep in result.episodes)


def test_save_steps_false_writes_only_resets_and_episodes(tmp_path: Path) -> None:
    run_rollout(line_cfg("episodes=3", "save_steps=false"), tmp_path)
    kinds = {r["type"] for r in read_jsonl(tmp_path / "trajectories.jsonl")}
    assert kinds == {"reset", "episode"}


def test_failure_midway_keeps_finished_episodes(tmp_path: Path) -> None:
    cfg = line_cfg("episodes=50", *scripted("tests.rollout.helpers:FailAfter", calls=30))
    with pytest.raises(ServerUnavailable, match="scripted outage"):
        run_rollout(cfg, tmp_path)
    episodes = read_jsonl(tmp_path / "episodes.jsonl")  # valid JSONL up to the failure
    records = read_jsonl(tmp_path / "trajectories.jsonl")
    assert 0 < len(episodes) < 50
    assert [r for r in records if r["type"] == "episode"] == episodes
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "ServerUnavailable" in summary["error"] and summary["episodes"] == len(episodes)


def test_cluster_ray_runs_one_env_per_actor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="each Ray actor plays one env"):
        run_rollout(line_cfg("cluster=ray", "num_envs=2"), tmp_path)
    assert not (tmp_path / "summary.json").exists()  # rejected before anything ran


def test_play_episode_is_one_whole_episode_of_the_lockstep(tmp_path: Path) -> None:
    import rock_env as rock
    from rock_env.policies import make_policy
    from rock_env.rollout.runner import play_episode

    cfg = line_cfg("episodes=3", "seed=4", *scripted("tests.rollout.helpers:walk_to_target"))
    run_rollout(cfg, tmp_path)
    env, policy = rock.make("test:HydraLine-v0"), make_policy(validate_rollout_config(cfg).policy)
    played = [play_episode(env, policy, i, s, None, True) for i, s in enumerate(episode_seeds(4, 3))]
    assert [r for records, _ in played for r in records] == read_jsonl(tmp_path / "trajectories.jsonl")
    assert [done.record() for _, done in played] == read_jsonl(tmp_path / "episodes.jsonl")
