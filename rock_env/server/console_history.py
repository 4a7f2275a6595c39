"""A small per-env history for the web console: the current observation and the last steps.

The worker records every reset and step of the envs it hosts here (a bounded deque per env,
O(1) per step), so that the console's env page can follow an episode while a rollout runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

#: How many steps of each env are kept.
KEPT_STEPS = 50


class EnvHistory:
    """What one env did lately: its episode, step count, return, observation and last steps."""

    def __init__(self) -> None:
        self.episode = 0
        self.step = 0
        self.episode_return = 0.0
        self.observation: Any = None
        self.done = False
        self.updated = time.time()
        self.steps: deque[dict[str, Any]] = deque(maxlen=KEPT_STEPS)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {
            "episode": self.episode,
            "step": self.step,
            "episode_return": self.episode_return,
            "observation": self.observation,
            "done": self.done,
            "updated": self.updated,
            "steps": list(self.steps),
        }


class EnvHistories:
    """The histories of all envs of one worker (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._envs: dict[str, EnvHistory] = {}

    def reset(self, obj_id: str, observation: Any) -> None:
        """Env ``obj_id`` started a new episode with ``observation``."""
        with self._lock:
            hist = self._envs.setdefault(obj_id, EnvHistory())
            hist.episode += 1
            hist.step = 0
            hist.episode_return = 0.0
            hist.observation = observation
            hist.done = False
            hist.updated = time.time()
            hist.steps.clear()

    def stepped(
        self, obj_id: str, action: str | None, observation: Any, reward: float, terminated: bool, truncated: bool
    ) -> None:
        """Env ``obj_id`` took ``action``."""
        with self._lock:
            hist = self._envs.setdefault(obj_id, EnvHistory())
            hist.step += 1
            hist.episode_return += reward
            hist.observation = observation
            hist.done = terminated or truncated
            hist.updated = time.time()
            hist.steps.append(
                {
                    "step": hist.step,
                    "action": action,
                    "reward": reward,
                    "terminated": terminated,
                    "truncated": truncated,
                    "time": hist.updated,
                }
            )

    def get(self, obj_id: str) -> dict[str, Any] | None:
        """The history of ``obj_id`` (None before its first reset or step)."""
        with self._lock:
            hist = self._envs.get(obj_id)
            return None if hist is None else hist.snapshot()

    def forget(self, obj_id: str) -> None:
        """Drop the history of a closed env."""
        with self._lock:
            self._envs.pop(obj_id, None)


class VecHistory:
    """What a vector env did lately; each step keeps the lists of the step (references, O(1) per step)."""

    def __init__(self) -> None:
        self.step = 0
        self.observations: list[Any] = []
        self.updated = time.time()
        #: (step, actions, rewards, terminations, truncations, time) of the last vector steps
        self.steps: deque[tuple[int, list[str | None], list[float], list[bool], list[bool], float]] = deque(
            maxlen=KEPT_STEPS
        )

    def sub_env(self, index: int) -> dict[str, Any]:
        """The history of sub-env ``index``, shaped as :meth:`EnvHistory.snapshot`.

        Only the kept steps are known: ``episode`` is 0 (not counted) and ``episode_return`` sums the
        current episode's kept steps.
        """
        steps: list[dict[str, Any]] = []
        episode_return = 0.0
        for step, actions, rewards, terms, truncs, at in self.steps:
            if index >= len(actions):
                continue
            steps.append(
                {
                    "step": step,
                    "action": actions[index],
                    "reward": rewards[index],
                    "terminated": terms[index],
                    "truncated": truncs[index],
                    "time": at,
                }
            )
        for item in steps:
            episode_return += item["reward"]
            if item["terminated"] or item["truncated"]:
                episode_return = 0.0
        return {
            "episode": 0,
            "step": self.step,
            "episode_return": episode_return,
            "observation": self.observations[index] if index < len(self.observations) else None,
            "done": bool(steps and (steps[-1]["terminated"] or steps[-1]["truncated"])),
            "updated": self.updated,
            "steps": steps,
        }


class VecHistories:
    """The histories of all vector envs of one worker (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vecs: dict[str, VecHistory] = {}

    def reset(self, obj_id: str, observations: list[Any]) -> None:
        """Vector env ``obj_id`` was reset."""
        with self._lock:
            hist = self._vecs[obj_id] = VecHistory()
            hist.observations = observations

    def stepped(
        self,
        obj_id: str,
        actions: list[str | None],
        observations: list[Any],
        rewards: list[float],
        terminations: list[bool],
        truncations: list[bool],
    ) -> None:
        """Vector env ``obj_id`` took one step (the lists are kept, not copied)."""
        with self._lock:
            hist = self._vecs.setdefault(obj_id, VecHistory())
            hist.step += 1
            hist.observations = observations
            hist.updated = time.time()
            hist.steps.append((hist.step, actions, rewards, terminations, truncations, hist.updated))

    def get(self, obj_id: str, index: int) -> dict[str, Any] | None:
        """The history of sub-env ``index`` of ``obj_id`` (None before its first reset or step)."""
        with self._lock:
            hist = self._vecs.get(obj_id)
            return None if hist is None else hist.sub_env(index)

    def forget(self, obj_id: str) -> None:
        """Drop the history of a closed vector env."""
        with self._lock:
            self._vecs.pop(obj_id, None)
