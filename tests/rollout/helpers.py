"""Envs, policies and fixtures shared by the rollout, config and policy tests.

``LineEnv`` is a real rock_env env (own RNG, own spaces, tools): walk a token along a line
to a target cell with ``\\boxed{left}``/``\\boxed{right}``. Its episodes depend only on the
reset seed and the actions, so slot order and threads cannot change them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

from rock_env.core import Env, StepResult, text_space
from rock_env.errors import ServerUnavailable
from rock_env.policies import Policy, RandomPolicy

LINE_ID = "test:HydraLine-v0"
_MOVE = re.compile(r"\\boxed\{\s*(left|right)\s*\}")


class LineEnv(Env):
    """Reach the target cell of a line; +1 on arrival, -0.1 for an action that is not a move."""

    def __init__(self, length: int = 7, max_turns: int = 12, delay: float = 0.0, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.length = length
        self.max_turns = max_turns
        self.delay = delay
        self.action_space = text_space(max_length=64)
        self.observation_space = text_space(max_length=1024)
        self.tools = [
            {
                "type": "function",
                "function": {
                    "name": "move",
                    "description": "Move the token one cell.",
                    "parameters": {
                        "type": "object",
                        "properties": {"direction": {"type": "string", "enum": ["left", "right"]}},
                        "required": ["direction"],
                    },
                },
            }
        ]
        self.pos = 0
        self.target = 0
        self.turn = 0

    def board(self) -> str:
        """The line as text: ``P`` the token, ``T`` the target."""
        return "".join("P" if i == self.pos else "T" if i == self.target else "_" for i in range(self.length))

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.pos = self.rng.randrange(self.length)
        self.target = (self.pos + self.rng.randrange(1, self.length)) % self.length
        self.turn = 0
        return f"Move P onto T with \\boxed{{left}} or \\boxed{{right}}.\n{self.board()}", {"suffix": "Your move."}

    def _step(self, action: str) -> StepResult:
        if self.delay:
            time.sleep(self.delay)
        self.turn += 1
        match = _MOVE.search(str(action))
        out_of_turns = self.turn >= self.max_turns
        if match is None:
            return f"Invalid action {str(action)[:40]!r}.\n{self.board()}", -0.1, False, out_of_turns, {"valid": False}
        step = 1 if match.group(1) == "right" else -1
        self.pos = min(max(self.pos + step, 0), self.length - 1)
        if self.pos == self.target:
            return f"Done.\n{self.board()}", 1.0, True, False, {"valid": True, "success": True}
        return self.board(), 0.0, False, out_of_turns, {"valid": True, "success": False}

    def sample_random_action(self) -> str:
        return f"\\boxed{{{self.rng.choice(['left', 'right'])}}}"

    def tool_call_to_action(self, name: str, arguments: Any) -> str:
        """The text action of a ``move`` tool call (anything else is passed on as garbage)."""
        if name == "move" and isinstance(arguments, dict):
            return f"\\boxed{{{arguments.get('direction')}}}"
        return f"bad tool call {name}"


def register_line_env() -> str:
    """Register :class:`LineEnv` as :data:`LINE_ID` (idempotent) and return the id."""
    import rock_env as rock

    rock.register(LINE_ID, "tests.rollout.helpers:LineEnv", override=True, description="rollout test env")
    return LINE_ID


def walk_to_target(observation: str) -> str:
    """Scripted policy for LineEnv: read the board and step towards ``T``."""
    line = observation.strip().splitlines()[-1]
    if "T" not in line or "P" not in line:
        return "\\boxed{right}"
    return "\\boxed{right}" if line.index("T") > line.index("P") else "\\boxed{left}"


def garbage(observation: str) -> str:
    """Scripted policy that never plays a valid action."""
    return "I think I will fly over the wall"


class FailAfter(Policy):
    """Plays ``walk_to_target`` and raises ServerUnavailable on the ``calls``-th call (a dying model)."""

    name = "fail-after"

    def __init__(self, calls: int = 10) -> None:
        self.calls = calls
        self.made = 0

    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        self.made += 1
        if self.made >= self.calls:
            raise ServerUnavailable("scripted outage of the model server at http://127.0.0.1:1/v1")
        return walk_to_target(observation)


def files_of(directory: Any) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the JSONL outputs of a run, for byte comparisons."""
    for name in ("trajectories.jsonl", "episodes.jsonl"):
        yield name, (directory / name).read_bytes()


def crash_on_right(observation: str) -> str:
    """Scripted policy with a bug: raises a plain exception when the target is to the right."""
    action = walk_to_target(observation)
    if action == "\\boxed{right}":
        raise ZeroDivisionError("a bug in the policy")
    return action


class RandomThatDies(RandomPolicy):
    """``policy=random`` that ends its own process (a crashed Ray actor) on the episode reset with ``seed``.

    It dies at the episode's third action. With ``marker`` (a file path) it dies only the first
    time: the marker says it already did, so a rerun of the episode plays it out.
    """

    def __init__(self, seed: int, marker: str | None = None) -> None:
        self.kill_seed = seed
        self.marker = marker
        self.doomed = False
        self.actions = 0

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        super().reset(env, observation, info, seed=seed)
        self.doomed = seed == self.kill_seed and not (self.marker and os.path.exists(self.marker))
        self.actions = 0

    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        self.actions += 1
        if self.doomed and self.actions == 3:
            if self.marker:
                with open(self.marker, "w") as fh:
                    fh.write(str(os.getpid()))
            os._exit(17)
        return super().act(env, observation, info)


class RandomThatFails(RandomPolicy):
    """``policy=random`` that raises ServerUnavailable at the start of the episode reset with ``seed``."""

    def __init__(self, seed: int) -> None:
        self.fail_seed = seed

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        if seed == self.fail_seed:
            raise ServerUnavailable("scripted outage of the model server at http://127.0.0.1:1/v1")
        super().reset(env, observation, info, seed=seed)


class RandomSlowOn(RandomPolicy):
    """``policy=random`` that takes ``delay`` seconds before the first action of the episode reset with ``seed``."""

    def __init__(self, seed: int, delay: float) -> None:
        self.slow_seed = seed
        self.delay = delay
        self.pending = False

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        super().reset(env, observation, info, seed=seed)
        self.pending = seed == self.slow_seed

    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        if self.pending:
            self.pending = False
            time.sleep(self.delay)
        return super().act(env, observation, info)
