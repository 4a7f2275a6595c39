"""Turn an agent env's action (the trainer's generation) into the reply to the harness's request.

Accepted actions:

* a plain string: the assistant's text (``content``), no tool call;
* a string with Hermes/Qwen-style ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  blocks (when the request offers tools): those calls, the text before the first one as ``content``;
* an OpenAI assistant message as a dict, or as its JSON text (what travels to a remote env):
  ``{"role": "assistant", "content": ..., "tool_calls": [{"id": ..., "type": "function",
  "function": {"name": ..., "arguments": "<JSON>"}}]}``;
* a full ``chat.completion`` object (has ``choices``), as a dict or JSON text.

Tool calls are checked against the request's tools (name, required arguments, JSON types);
arguments given as a dict are encoded, a missing ``id`` is made up. Anything malformed gives an
error message (the harness is not answered, so it is not disturbed) instead of a reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rock_env.tools.parsing import ToolCall, parse_action
from rock_env.tools.schemas import validate_call

#: the shape of an assistant message, for error messages
MESSAGE_HELP = (
    'Answer with text, or with tool calls as <tool_call>{"name": ..., "arguments": {...}}</tool_call>, or with an '
    'OpenAI assistant message {"role": "assistant", "content": ..., "tool_calls": [{"id": ..., "type": "function", '
    '"function": {"name": ..., "arguments": "<JSON object>"}}]}.'
)


def action_text(message: Mapping[str, Any]) -> str:
    """An assistant message (or completion) as the JSON text action a remote agent env takes."""
    return json.dumps(dict(message), ensure_ascii=False)


def _looks_like_message(obj: Any) -> bool:
    return isinstance(obj, dict) and (obj.get("role") == "assistant" or "tool_calls" in obj or "choices" in obj)


def _check_call(
    raw: Any, index: int, tools: Sequence[Mapping[str, Any]] | None, prefix: str
) -> tuple[dict[str, Any] | None, str]:
    """A normalised OpenAI tool call, or ``(None, error)``."""
    where = f"tool call #{index + 1}"
    if not isinstance(raw, Mapping):
        return None, f"{where} is not an object."
    function = raw.get("function")
    if not isinstance(function, Mapping):
        return None, f'{where} has no "function" object with "name" and "arguments".'
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return None, f'{where} has no function "name".'
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return None, f"the arguments of {where} ({name}) are not valid JSON: {exc}."
    else:
        decoded = arguments
    if not isinstance(decoded, dict):
        return None, f"the arguments of {where} ({name}) must be a JSON object, got {type(decoded).__name__}."
    if tools is not None:
        checked, error = validate_call(ToolCall(name=name, arguments=decoded, format="openai"), tools)
        if error is not None:
            return None, f"{where}: {error}"
        decoded = checked.arguments
    call_id = raw.get("id")
    return {
        "id": call_id if isinstance(call_id, str) and call_id else f"{prefix}_{index}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(decoded, ensure_ascii=False)},
    }, ""


def check_message(
    message: Any, tools: Sequence[Mapping[str, Any]] | None, call_prefix: str = "call"
) -> tuple[dict[str, Any] | None, str]:
    """A normalised assistant message, or ``(None, what is wrong)``; calls without an id get ``<call_prefix>_<index>``."""
    if not isinstance(message, Mapping):
        return None, f"the assistant message must be an object, got {type(message).__name__}."
    role = message.get("role", "assistant")
    if role != "assistant":
        return None, f'the message\'s role must be "assistant", got {role!r}.'
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        return None, f'"content" must be a string, a list of parts or null, got {type(content).__name__}.'
    out: dict[str, Any] = {"role": "assistant", "content": content}
    raw_calls = message.get("tool_calls")
    if raw_calls is not None:
        if not isinstance(raw_calls, list):
            return None, f'"tool_calls" must be a list, got {type(raw_calls).__name__}.'
        if raw_calls and not tools:
            return None, "the request offers no tools, so the answer cannot call one."
        calls = []
        for index, raw in enumerate(raw_calls):
            call, error = _check_call(raw, index, tools, call_prefix)
            if call is None:
                return None, error
            calls.append(call)
        if calls:
            out["tool_calls"] = calls
    if not out.get("tool_calls") and content in (None, "", []):
        return None, "the message has neither content nor tool calls."
    return out, ""


def _completion(
    obj: dict[str, Any], tools: Sequence[Mapping[str, Any]] | None, prefix: str
) -> tuple[dict[str, Any] | None, str]:
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None, 'a chat.completion needs a non-empty "choices" list of objects.'
    message, error = check_message(choices[0].get("message"), tools, prefix)
    if message is None:
        return None, f"choices[0].message: {error}"
    first = {**choices[0], "message": message}
    first.setdefault("index", 0)
    first.setdefault("finish_reason", "tool_calls" if message.get("tool_calls") else "stop")
    return {**obj, "choices": [first, *choices[1:]]}, ""


def _from_text(text: str, tools: Sequence[Mapping[str, Any]] | None, prefix: str) -> tuple[dict[str, Any] | None, str]:
    if not tools or "<tool_call>" not in text:
        return {"role": "assistant", "content": text}, ""
    parsed = parse_action(text)
    if parsed.error is not None:
        return None, parsed.error
    calls = [c for c in parsed.calls if c.format == "tool_call"]
    if not calls:
        return {"role": "assistant", "content": text}, ""
    head = text.split("<tool_call>", 1)[0].strip()
    message = {
        "role": "assistant",
        "content": head or None,
        "tool_calls": [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls],
    }
    return check_message(message, tools, prefix)


def reply_of(
    action: Any, tools: Sequence[Mapping[str, Any]] | None, call_prefix: str = "call"
) -> tuple[dict[str, Any] | None, str]:
    """The reply (assistant message or completion) an action stands for, or ``(None, the error)``.

    ``tools``: the tools of the request being answered (``None``: it offers none). Tool calls
    without an ``id`` get ``<call_prefix>_<index>`` (the env passes one per turn, so ids are
    unique in the conversation and the same for the same actions).
    """
    if action is None:
        return None, "the action is empty (None). " + MESSAGE_HELP
    obj: Any = None
    if isinstance(action, Mapping):
        obj = dict(action)
    elif isinstance(action, str):
        stripped = action.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                loaded = json.loads(stripped)
            except ValueError:
                loaded = None
            if _looks_like_message(loaded):
                obj = loaded
        if obj is None:
            reply, error = _from_text(action, tools, call_prefix)
            return reply, (error + " " + MESSAGE_HELP if reply is None else "")
    else:
        return None, f"an action must be a string or an assistant message dict, got {type(action).__name__}."
    if "choices" in obj:
        reply, error = _completion(obj, tools, call_prefix)
    else:
        reply, error = check_message(obj, tools, call_prefix)
    return reply, ("" if reply is not None else f"Malformed answer: {error} {MESSAGE_HELP}")


__all__ = ["MESSAGE_HELP", "action_text", "check_message", "reply_of"]
