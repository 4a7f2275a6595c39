"""Tool definitions in OpenAI function format, and argument checking against them.

``env.tools`` of every tool env is a list of these dicts, ready for a chat API's ``tools=``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rock_env.tools.parsing import ToolCall

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}

#: Argument names agents commonly use instead of the schema's (alias -> canonical).
ARGUMENT_ALIASES: dict[str, dict[str, str]] = {
    "bash": {"cmd": "command", "script": "command", "code": "command"},
    "python": {"source": "code", "script": "code", "command": "code"},
    "submit": {"solution": "code"},
}


def function_tool(
    name: str, description: str, properties: dict[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    """An OpenAI function-format tool definition."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(required),
                "additionalProperties": False,
            },
        },
    }


def bash_tool(default_timeout: float) -> dict[str, Any]:
    """The ``bash`` tool: run a command in the task's persistent shell."""
    return function_tool(
        "bash",
        "Run a bash command in the task's persistent shell (working directory, variables and functions persist). "
        "Returns the output (stdout and stderr, possibly truncated) and the exit code.",
        {
            "command": {"type": "string", "description": "The bash command(s) to run."},
            "timeout": {
                "type": "number",
                "description": f"Seconds before the command is killed (default {default_timeout:g}).",
            },
        },
        required=["command"],
    )


def submit_tool(
    description: str, properties: dict[str, Any] | None = None, required: Sequence[str] = ()
) -> dict[str, Any]:
    """The ``submit`` tool that ends the episode."""
    return function_tool("submit", description, properties or {}, required)


def python_tool(default_timeout: float) -> dict[str, Any]:
    """The ``python`` tool: run a Python script in a sandbox."""
    return function_tool(
        "python",
        "Run a complete Python 3 script in a sandbox and return what it prints (stdout and stderr). "
        f"It is killed after {default_timeout:g} s. Nothing persists between calls.",
        {"code": {"type": "string", "description": "The Python script to run."}},
        required=["code"],
    )


def tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of OpenAI function-format tools."""
    return [str(t["function"]["name"]) for t in tools]


def validate_call(call: ToolCall, tools: Sequence[Mapping[str, Any]]) -> tuple[ToolCall, str | None]:
    """Check ``call`` against the tool definitions; return ``(normalised call, error or None)``.

    Aliased argument names (``cmd`` for ``command``) are renamed; unknown tools, missing
    required arguments, unknown arguments and wrong JSON types are errors.
    """
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    if call.name not in by_name:
        return call, f"Unknown tool {call.name!r}; available tools: {', '.join(sorted(by_name))}."
    params = by_name[call.name].get("parameters", {})
    props: dict[str, Any] = params.get("properties", {})
    aliases = ARGUMENT_ALIASES.get(call.name, {})
    args: dict[str, Any] = {}
    for key, value in call.arguments.items():
        canonical = key if key in props else aliases.get(key, key)
        if canonical in props and canonical not in args:
            args[canonical] = value
        elif canonical not in props:
            if not props:
                continue  # a tool without parameters ignores stray arguments (e.g. submit's answer)
            return call, f"Tool {call.name!r} has no argument {key!r}; its arguments are: {', '.join(props)}."
    for req in params.get("required", []):
        if req not in args:
            return call, f"Tool {call.name!r} needs the argument {req!r}."
    for key, value in args.items():
        expected = props[key].get("type")
        types = _JSON_TYPES.get(expected or "")
        if types is None:
            continue
        if isinstance(value, bool) and expected in ("integer", "number"):
            return call, f"Argument {key!r} of tool {call.name!r} must be a {expected}, got a boolean."
        if not isinstance(value, types):
            return call, f"Argument {key!r} of tool {call.name!r} must be a {expected}, got {type(value).__name__}."
    return call.model_copy(update={"arguments": args}), None
