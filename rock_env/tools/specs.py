"""Built-in specs of the tools family (entry points are strings: nothing is imported here)."""

from __future__ import annotations

from rock_env.registry.spec import EnvSpec

_BASH = "rock_env.tools.bash_env:BashEnv"
_PYTHON = "rock_env.tools.code_env:PythonCodeEnv"


def builtin_specs() -> list[EnvSpec]:
    """``tool:Bash-v0``, ``code:Python-v0`` and ``code:Python-v0-strict`` (they need a sandbox)."""
    return [
        EnvSpec(
            id="tool:Bash-v0",
            entry_point=_BASH,
            kwargs={"max_turns": 30},
            requirements=("sandbox",),
            description="Bash tasks (files, text, git, fixes, processes, permissions) in a sandbox; verifier reward.",
            source="builtin",
        ),
        EnvSpec(
            id="code:Python-v0",
            entry_point=_PYTHON,
            kwargs={"strict": False},
            requirements=("sandbox",),
            description="Python problems (built-in, HumanEval or MBPP JSONL); reward = fraction of hidden tests passed.",
            source="builtin",
        ),
        EnvSpec(
            id="code:Python-v0-strict",
            entry_point=_PYTHON,
            kwargs={"strict": True},
            requirements=("sandbox",),
            description="Python problems; reward 1 if every hidden test passes, else 0.",
            source="builtin",
        ),
    ]
