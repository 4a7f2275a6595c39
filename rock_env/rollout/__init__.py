"""Rollouts: run episodes of an env with a policy, write trajectories, summaries and sweep tables.

The command is ``rock-env rollout`` (:mod:`rock_env.rollout.cli`); :func:`run_rollout` is the
same from Python.
"""

from __future__ import annotations

from rock_env.rollout.records import read_jsonl
from rock_env.rollout.run import run_rollout
from rock_env.rollout.runner import EpisodeResult, RolloutResult, episode_seeds
from rock_env.rollout.sweep import collect_rows, write_tables

__all__ = [
    "EpisodeResult",
    "RolloutResult",
    "collect_rows",
    "episode_seeds",
    "read_jsonl",
    "run_rollout",
    "write_tables",
]
