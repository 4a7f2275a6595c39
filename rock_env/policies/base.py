"""The policy protocol used by rollouts.

A policy turns observations into text actions for one env at a time. The rollout makes one
policy instance per env slot (so a policy may keep per-episode state such as a chat history),
calls :meth:`Policy.reset` at the start of every episode and :meth:`Policy.act` once per step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Policy(ABC):
    """Base class of rollout policies."""

    #: Short name used in logs and sweep tables.
    name: str = "policy"

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        """Start an episode of ``env`` whose first observation is ``observation``."""
        return None

    @abstractmethod
    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        """The action for ``observation`` (normally a string; the env judges what it gets)."""

    def observe(self, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """Called after each step with its outcome (the next observation comes with ``act``)."""
        return None

    def close(self) -> None:
        """Release resources (HTTP clients, ...). Idempotent."""
        return None
