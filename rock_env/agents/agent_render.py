"""Render a harness's chat-completions request as the text observation of an agent env.

Each message becomes a block headed by its role (``[system]``, ``[user]``, ``[assistant]``,
``[tool result <call id>]``); an assistant's tool calls are written in the Hermes/Qwen style
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` that the env also accepts as an
action. The request's tools come first, one JSON schema per line, as chat templates show them.
The full request is always in ``info["request"]`` too: a trainer with its own chat template
uses that instead of this text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string, or a list of parts; non-text parts are named)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, Mapping):
                parts.append(f"[{part.get('type', 'part')}]")
            else:
                parts.append(str(part))
        return "".join(parts)
    return str(content)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def render_tool_call(call: Mapping[str, Any]) -> str:
    """One OpenAI tool call as ``<tool_call>{...}</tool_call>``."""
    function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
    assert isinstance(function, Mapping)
    payload = {"name": function.get("name"), "arguments": _arguments(function.get("arguments"))}
    return "<tool_call>" + json.dumps(payload, ensure_ascii=False) + "</tool_call>"


def render_message(message: Mapping[str, Any]) -> str:
    """One chat message as a text block."""
    role = str(message.get("role", "?"))
    if role == "tool":
        head = f"[tool result {message.get('tool_call_id') or message.get('name') or ''}]".replace(" ]", "]")
    else:
        head = f"[{role}]"
    lines = [head]
    text = content_text(message.get("content"))
    if text:
        lines.append(text)
    calls = message.get("tool_calls")
    if isinstance(calls, Sequence) and not isinstance(calls, str):
        lines.extend(render_tool_call(c) for c in calls if isinstance(c, Mapping))
    return "\n".join(lines)


def render_tools(tools: Sequence[Any] | None) -> str:
    """The request's tools as a ``[tools]`` block (one function schema per line), or ``""``."""
    if not tools:
        return ""
    lines = ["[tools]"]
    for tool in tools:
        schema = tool.get("function", tool) if isinstance(tool, Mapping) else tool
        lines.append(json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines)


def render_request(body: Mapping[str, Any]) -> str:
    """The whole request (tools, then every message) as text."""
    blocks: list[str] = []
    tools = body.get("tools")
    tools_text = render_tools(tools if isinstance(tools, Sequence) else None)
    if tools_text:
        blocks.append(tools_text)
    messages = body.get("messages")
    if isinstance(messages, Sequence):
        blocks.extend(render_message(m) for m in messages if isinstance(m, Mapping))
    return "\n\n".join(blocks)


__all__ = ["content_text", "render_message", "render_request", "render_tool_call", "render_tools"]
