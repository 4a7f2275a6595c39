"""Small real envs for the vector tests (they follow the rock_env protocol; no mocks).

``CountEnv`` runs episodes of ``length`` steps. Special actions exercise failure paths:
``"crash"`` raises ``RuntimeError``, ``"bad"`` raises ``InvalidAction`` (a rock_env error),
``"die"`` kills the hosting process with exit code 3, ``"sleep"`` blocks for 60 s, ``"lock"``
returns an info that cannot be pickled.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from rock_env.core import Env, StepResult, text_space
from rock_env.errors import InvalidAction


class CountEnv(Env):
    """Episodes of ``length`` steps; reward is the action's length; the reset obs shows an RNG draw."""

    def __init__(
        self, length: int = 3, tag: str = "", close_dir: str | None = None, *, seed: int | None = None
    ) -> None:
        super().__init__(seed=seed)
        self.length = length
        self.tag = tag
        self.close_dir = close_dir
        self.action_space = text_space(max_length=2 << 20)
        self.observation_space = text_space(max_length=2 << 20)
        self.t = 0
        self.episode = -1
        self.draw = 0

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.t = 0
        self.episode += 1
        self.draw = self.rng.randint(0, 10**9)
        start = options.get("start", "start")
        return f"{start} {self.tag} draw={self.draw}", {"draw": self.draw, "episode": self.episode, "kind": "reset"}

    def _step(self, action: str) -> StepResult:
        if action == "crash":
            raise RuntimeError("boom")
        if action == "bad":
            raise InvalidAction("this env refuses 'bad'")
        if action == "die":
            os._exit(3)
        if action == "sleep":
            time.sleep(60)
        if action == "lock":
            return "locked", 0.0, False, False, {"lock": threading.Lock()}
        self.t += 1
        terminated = self.t >= self.length
        info: dict[str, Any] = {"t": self.t, "ratio": self.t / self.length, "kind": "step"}
        if terminated:
            info["done_at"] = self.t
        return f"{self.tag} draw={self.draw} t={self.t} a={action[:20]}", float(len(action)), terminated, False, info

    def describe(self, prefix: str = "") -> str:
        """A method to call through ``VectorEnv.call``."""
        return f"{prefix}{self.tag}:{self.t}"

    def close(self) -> None:
        if self.close_dir is not None and not self._closed:
            path = os.path.join(self.close_dir, f"closed-{self.tag}-{os.getpid()}-{id(self)}")
            with open(path, "w") as handle:
                handle.write("closed")
        super().close()


class BrokenEnv(CountEnv):
    """Fails in its constructor."""

    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("cannot build this env")


def make_count_env(length: int = 3, tag: str = "") -> CountEnv:
    """A factory by reference (importable in worker processes)."""
    return CountEnv(length=length, tag=tag)
