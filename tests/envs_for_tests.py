"""Small envs used by the foundation tests (real envs, not mocks: they follow the protocol)."""

from __future__ import annotations

from typing import Any

from rock_env.core import Env, StepResult, text_space


class GuessEnv(Env):
    """Guess a number in [1, high]; the answer comes from the env's own RNG."""

    def __init__(self, high: int = 10, max_turns: int = 5, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.high = high
        self.max_turns = max_turns
        self.action_space = text_space(max_length=64)
        self.observation_space = text_space(max_length=256)
        self._answer = 0
        self._turn = 0

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._answer = self.rng.randint(1, self.high)
        self._turn = 0
        return f"Guess a number between 1 and {self.high}.", {"high": self.high}

    def _step(self, action: str) -> StepResult:
        self._turn += 1
        try:
            guess = int(str(action).strip())
        except ValueError:
            return "Not a number.", -0.1, False, self._turn >= self.max_turns, {"valid": False}
        if guess == self._answer:
            return "Correct!", 1.0, True, False, {"valid": True}
        hint = "higher" if guess < self._answer else "lower"
        return f"Try {hint}.", 0.0, False, self._turn >= self.max_turns, {"valid": True}

    def sample_random_action(self) -> str:
        return str(self.rng.randint(1, self.high))
