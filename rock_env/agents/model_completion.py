"""OpenAI chat-completion objects: from a trainer's reply, and as server-sent chunks.

:func:`completion_from_reply` turns what a trainer answers (assistant text, an assistant message
with ``tool_calls``, or a full ``chat.completion`` object) into a full ``chat.completion`` object,
checking the shape so that a bad reply is the trainer's :class:`~rock_env.errors.InvalidArgument`,
not a harness that cannot parse its answer. :func:`completion_chunks` splits one into the
``chat.completion.chunk`` objects a ``stream: true`` request gets, tool calls included.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from rock_env.errors import InvalidArgument

_ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _check_tool_calls(calls: Any) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise InvalidArgument(f"tool_calls must be a list of tool calls, got {type(calls).__name__}")
    out = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise InvalidArgument(
                f"tool_calls[{i}] must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., "
                f"'arguments': '<json>'}}}}, got {call!r:.200}"
            )
        function = call["function"]
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"tool_calls[{i}].function.name must be a non-empty string, got {name!r:.100}")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):  # a dict is accepted and sent as JSON text, as OpenAI does
            try:
                arguments = json.dumps(arguments)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"tool_calls[{i}].function.arguments is not JSON-serialisable: {exc}") from None
        call_id = call.get("id") or "call_" + secrets.token_hex(8)
        if not isinstance(call_id, str):
            raise InvalidArgument(f"tool_calls[{i}].id must be a string, got {call_id!r:.100}")
        out.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return out


def assistant_message(reply: str | dict[str, Any]) -> dict[str, Any]:
    """The assistant message of a reply given as text or as a message dict (checked, normalised)."""
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}
    if not isinstance(reply, dict):
        raise InvalidArgument(
            f"a reply is assistant text (str), an assistant message dict or a chat.completion dict, "
            f"got {type(reply).__name__}"
        )
    role = reply.get("role", "assistant")
    if role != "assistant":
        raise InvalidArgument(f"a reply message must have role 'assistant', got {role!r:.50}")
    content = reply.get("content")
    if content is not None and not isinstance(content, str):
        raise InvalidArgument(f"a reply's content must be a string or None, got {type(content).__name__}")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reply.get("tool_calls"):
        message["tool_calls"] = _check_tool_calls(reply["tool_calls"])
    elif content is None:
        raise InvalidArgument("a reply message needs content (text) or tool_calls; it has neither")
    for key in ("reasoning_content", "refusal"):
        if isinstance(reply.get(key), str):
            message[key] = reply[key]
    return message


def completion_from_reply(reply: str | dict[str, Any], *, model: str) -> dict[str, Any]:
    """A full ``chat.completion`` object for ``reply`` (text, assistant message, or a completion)."""
    if isinstance(reply, dict) and "choices" in reply:
        choices = reply["choices"]
        if not isinstance(choices, list) or not choices:
            raise InvalidArgument("a chat.completion reply needs a non-empty 'choices' list")
        fixed = []
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict) or "message" not in choice:
                raise InvalidArgument(f"choices[{i}] of a chat.completion reply needs a 'message'")
            message = assistant_message(choice["message"])
            reason = choice.get("finish_reason") or ("tool_calls" if message.get("tool_calls") else "stop")
            fixed.append({**choice, "index": choice.get("index", i), "message": message, "finish_reason": reason})
        return {
            **reply,
            "id": reply.get("id") or "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": reply.get("created") or int(time.time()),
            "model": reply.get("model") or model,
            "choices": fixed,
        }
    message = assistant_message(reply)
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "logprobs": None,
            }
        ],
        "usage": dict(_ZERO_USAGE),
    }


def completion_chunks(completion: dict[str, Any], *, include_usage: bool = False) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream ``completion`` (role, content, tool calls, finish).

    ``include_usage`` (the request's ``stream_options.include_usage``) adds OpenAI's last chunk with
    no choices and the usage.
    """
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }
    chunks: list[dict[str, Any]] = []
    for choice in completion["choices"]:
        index = choice.get("index", 0)
        message = choice["message"]

        def chunk(delta: dict[str, Any], finish: str | None = None, *, index: int = index) -> dict[str, Any]:
            return {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}]}

        chunks.append(chunk({"role": "assistant", "content": ""}))
        if message.get("content"):
            chunks.append(chunk({"content": message["content"]}))
        for i, call in enumerate(message.get("tool_calls") or []):
            delta_call = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": call["function"]["arguments"]},
            }
            chunks.append(chunk({"tool_calls": [delta_call]}))
        chunks.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": completion.get("usage") or dict(_ZERO_USAGE)})
    return chunks


def sse_event(data: dict[str, Any] | str) -> bytes:
    """One server-sent event line (``data: ...`` and a blank line)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def openai_error(message: str, *, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """An error body in OpenAI's format."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


__all__ = ["assistant_message", "completion_chunks", "completion_from_reply", "openai_error", "sse_event"]
