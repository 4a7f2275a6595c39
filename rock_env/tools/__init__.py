"""Tool and code envs that run in sandboxes: tool-call parsing, ``tool:Bash-v0``, ``code:Python-v0``.

Modules: :mod:`~rock_env.tools.parsing` (tool-call formats), :mod:`~rock_env.tools.schemas`
(OpenAI function definitions), :mod:`~rock_env.tools.bash_tasks` and
:mod:`~rock_env.tools.bash_env` (``tool:Bash-v0``), :mod:`~rock_env.tools.problems` and
:mod:`~rock_env.tools.code_env` (``code:Python-v0``), :mod:`~rock_env.tools.python_tool`
(a python tool for any env) and :mod:`~rock_env.tools.specs` (the registry entries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rock_env.tools.parsing import ParsedAction, ToolCall, extract_code, parse_action

_PARSING_NAMES = ("ParsedAction", "ToolCall", "extract_code", "parse_action")


def __getattr__(name: str) -> Any:
    # lazy, so that listing the registry (rock_env.tools.specs) does not import the parser
    if name in _PARSING_NAMES:
        from rock_env.tools import parsing

        return getattr(parsing, name)
    raise AttributeError(f"module 'rock_env.tools' has no attribute {name!r}")


__all__ = ["ParsedAction", "ToolCall", "extract_code", "parse_action"]
