"""Built-in specs of the agent family (entry points are strings: nothing is imported here)."""

from __future__ import annotations

from rock_env.registry.spec import EnvSpec

_BASH = "rock_env.agents.agent_bash:AgentBashEnv"
_PYTHON = "rock_env.agents.agent_python:AgentPythonEnv"


def builtin_specs() -> list[EnvSpec]:
    """``agent:Bash-v0``, ``agent:Python-v0`` and ``agent:Python-v0-strict`` (they need a sandbox)."""
    return [
        EnvSpec(
            id="agent:Bash-v0",
            entry_point=_BASH,
            kwargs={"max_turns": 30},
            requirements=("sandbox",),
            description="Bash tasks solved by an agent harness in the sandbox; its model calls are the observations.",
            source="builtin",
        ),
        EnvSpec(
            id="agent:Python-v0",
            entry_point=_PYTHON,
            kwargs={"strict": False},
            requirements=("sandbox",),
            description="Python problems solved by an agent harness in the sandbox; reward = hidden tests passed.",
            source="builtin",
        ),
        EnvSpec(
            id="agent:Python-v0-strict",
            entry_point=_PYTHON,
            kwargs={"strict": True},
            requirements=("sandbox",),
            description="Python problems solved by an agent harness; reward 1 if every hidden test passes, else 0.",
            source="builtin",
        ),
    ]
