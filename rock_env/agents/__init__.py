"""Agents in sandboxes: the model service (an OpenAI-compatible endpoint answered by the trainer) and agent envs."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ModelService": "rock_env.agents.model_service",
    "AsyncModelService": "rock_env.agents.model_service",
    "RemoteModelService": "rock_env.agents.model_remote",
    "AsyncRemoteModelService": "rock_env.agents.model_remote",
    "Recorder": "rock_env.agents.recording",
    "Replay": "rock_env.agents.recording",
    "read_recording": "rock_env.agents.recording",
    "AgentEnv": "rock_env.agents.env",
    "AgentBashEnv": "rock_env.agents.agent_bash",
    "AgentPythonEnv": "rock_env.agents.agent_python",
    "action_text": "rock_env.agents.agent_actions",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rock_env.agents' has no attribute {name!r}")


__all__ = sorted(_LAZY)
