"""Parse the tool calls that agents emit into :class:`ToolCall` objects.

Accepted formats (all of them, in one action):

* GEM's tags: ``<bash>ls -la</bash>``, ``<python>print(1)</python>``, ``<submit></submit>``
  (also ``<finish>`` and a self-closing ``<submit/>``).
* Fenced blocks: ```` ```bash ```` / ```` ```sh ```` / ```` ```python ```` / ```` ```py ````; an
  untagged fence means the ``default_fence`` tool (the env decides: bash or python).
* ``\\boxed{...}`` answers (the last one, as GEM's math envs take it): an ``answer`` call.
* ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes/Qwen style) and GEM's
  MCP style ``<tool_call><tool_name>x</tool_name><arguments>{...}</arguments></tool_call>``.
* OpenAI style: a JSON object ``{"name": ..., "arguments": {...} | "<json string>"}``, a
  ``{"type": "function", "function": {...}}`` object, an assistant message dict with
  ``tool_calls``, or a list of any of these. Dicts and lists may be passed as they are or as
  JSON text.

:func:`parse_action` never raises on malformed input: it returns a :class:`ParsedAction`
whose ``error`` says what was wrong and how to write the call, ready to be shown to the
agent as an observation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

#: Fence languages that mean a bash call.
BASH_LANGS = frozenset({"bash", "sh", "shell", "console", "zsh"})
#: Fence languages that mean a python call.
PYTHON_LANGS = frozenset({"python", "py", "python3"})

_TAG_RE = re.compile(r"<(bash|python|submit|finish)>(.*?)</\1>", re.DOTALL)
_SELF_CLOSING_RE = re.compile(r"<(submit|finish)\s*/>")
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_MCP_RE = re.compile(r"^\s*<tool_name>(.*?)</tool_name>\s*<arguments>(.*?)</arguments>\s*$", re.DOTALL)
_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OPEN_TAG_RE = re.compile(r"<(bash|python|tool_call|submit|finish)>")

#: The argument each tag's content maps to.
_TAG_ARGUMENT = {"bash": "command", "python": "code"}


class ToolCall(BaseModel):
    """One call of a tool: its name, its arguments and where it came from.

    Attributes:
        name: the tool name (``bash``, ``python``, ``submit``, ``answer``, or any name an
            OpenAI-style call used).
        arguments: the arguments as a dict (JSON-string arguments are decoded).
        format: where it was found: ``tag``, ``fence``, ``boxed``, ``tool_call``, ``openai``.
        raw: the text of the call as it appeared in the action (for dicts: its JSON).
        call_id: the OpenAI ``id`` of the call, if any (to answer with a ``tool`` message).
    """

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    format: str = "tag"
    raw: str = ""
    call_id: str | None = None


class ParsedAction(BaseModel):
    """The result of :func:`parse_action`.

    Attributes:
        calls: the tool calls in the order they appear.
        error: ``None``, or a message for the agent saying what was malformed.
        text: the action as text (dicts are JSON-encoded).
        parsed_action: the text up to the end of the first call (GEM's ``parsed_action``).
    """

    calls: list[ToolCall] = Field(default_factory=list)
    error: str | None = None
    text: str = ""
    parsed_action: str = ""

    @property
    def ok(self) -> bool:
        """At least one call and no error."""
        return bool(self.calls) and self.error is None


class _Found:
    """A call found in text at ``[start, end)``."""

    __slots__ = ("call", "end", "start")

    def __init__(self, start: int, end: int, call: ToolCall) -> None:
        self.start, self.end, self.call = start, end, call


def _decode_arguments(value: Any, name: str) -> dict[str, Any]:
    """Arguments as a dict; a JSON string is decoded. Raises ``ValueError`` with a message."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the arguments of tool {name!r} are not valid JSON ({exc.msg} at char {exc.pos})"
            ) from exc
    if not isinstance(value, dict):
        raise ValueError(f"the arguments of tool {name!r} must be a JSON object, got {type(value).__name__}")
    return dict(value)


def _call_from_mapping(obj: Mapping[str, Any], fmt: str, raw: str) -> ToolCall:
    """A :class:`ToolCall` from ``{name, arguments}`` or ``{type: function, function: {...}}``."""
    call_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    fn = obj.get("function")
    if isinstance(fn, Mapping):
        obj = fn
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError('a tool call needs a "name" string, e.g. {"name": "bash", "arguments": {"command": "ls"}}')
    args_key = "arguments" if "arguments" in obj else "parameters"
    arguments = _decode_arguments(obj.get(args_key), name)
    return ToolCall(name=name.strip(), arguments=arguments, format=fmt, raw=raw, call_id=call_id)


def _calls_from_object(obj: Any, raw: str) -> list[ToolCall]:
    """Tool calls from an OpenAI-style object: a call, a message with ``tool_calls``, or a list."""
    if isinstance(obj, list):
        calls: list[ToolCall] = []
        for item in obj:
            calls.extend(_calls_from_object(item, json.dumps(item, default=str)))
        return calls
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a JSON object or list for a tool call, got {type(obj).__name__}")
    if "tool_calls" in obj or obj.get("role") == "assistant":
        tool_calls = obj.get("tool_calls") or []
        if not isinstance(tool_calls, list):
            raise ValueError('"tool_calls" must be a list of {"type": "function", "function": {...}} objects')
        calls = [_call_from_mapping(tc, "openai", json.dumps(tc, default=str)) for tc in tool_calls if tc is not None]
        if not calls and isinstance(obj.get("content"), str):
            # A plain assistant message: its content may hold text-format calls.
            return parse_action(obj["content"]).calls
        return calls
    return [_call_from_mapping(obj, "openai", raw)]


def _looks_like_json_call(text: str) -> bool:
    stripped = text.strip()
    return (stripped.startswith("{") and stripped.endswith("}")) or (
        stripped.startswith("[") and stripped.endswith("]")
    )


def _find_boxed(text: str) -> tuple[int, int, str] | None:
    """The last ``\\boxed{...}`` with balanced braces: ``(start, end, content)``."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0 or text[start + len("\\boxed") : brace].strip():
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return start, i + 1, text[brace + 1 : i]
    return None


def _overlaps(found: list[_Found], start: int, end: int) -> bool:
    return any(f.start < end and start < f.end for f in found)


def _tool_call_block(body: str, raw: str) -> ToolCall:
    mcp = _MCP_RE.match(body)
    if mcp:
        name = mcp.group(1).strip()
        return ToolCall(name=name, arguments=_decode_arguments(mcp.group(2), name), format="tool_call", raw=raw)
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the <tool_call> body is not valid JSON ({exc.msg} at char {exc.pos}); write "
            '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>'
        ) from exc
    calls = _calls_from_object(obj, raw)
    if len(calls) != 1:
        raise ValueError("a <tool_call> block must hold exactly one call")
    return calls[0].model_copy(update={"format": "tool_call", "raw": raw})


def _parse_text(text: str, default_fence: str | None) -> tuple[list[_Found], list[str]]:
    found: list[_Found] = []
    errors: list[str] = []
    for m in _TOOL_CALL_RE.finditer(text):
        try:
            found.append(_Found(m.start(), m.end(), _tool_call_block(m.group(1), m.group(0))))
        except ValueError as exc:
            errors.append(str(exc))
            found.append(_Found(m.start(), m.end(), ToolCall(name="", format="invalid", raw=m.group(0))))
    for m in _TAG_RE.finditer(text):
        if _overlaps(found, m.start(), m.end()):
            continue
        tag, body = m.group(1), m.group(2)
        if tag in _TAG_ARGUMENT:
            call = ToolCall(name=tag, arguments={_TAG_ARGUMENT[tag]: body.strip("\n")}, format="tag", raw=m.group(0))
        else:
            args = {"answer": body.strip()} if body.strip() else {}
            call = ToolCall(name="submit", arguments=args, format="tag", raw=m.group(0))
        found.append(_Found(m.start(), m.end(), call))
    for m in _SELF_CLOSING_RE.finditer(text):
        if not _overlaps(found, m.start(), m.end()):
            found.append(_Found(m.start(), m.end(), ToolCall(name="submit", format="tag", raw=m.group(0))))
    for m in _FENCE_RE.finditer(text):
        if _overlaps(found, m.start(), m.end()):
            continue
        lang = m.group(1).lower()
        body = m.group(2)
        if lang in BASH_LANGS:
            name = "bash"
        elif lang in PYTHON_LANGS:
            name = "python"
        elif lang in ("", "text") and default_fence is not None:
            name = default_fence
        else:
            continue
        arg = _TAG_ARGUMENT.get(name, "code")
        found.append(
            _Found(m.start(), m.end(), ToolCall(name=name, arguments={arg: body}, format="fence", raw=m.group(0)))
        )
    boxed = _find_boxed(text)
    if boxed is not None and not _overlaps(found, boxed[0], boxed[1]):
        start, end, content = boxed
        found.append(
            _Found(
                start, end, ToolCall(name="answer", arguments={"answer": content}, format="boxed", raw=text[start:end])
            )
        )
    found.sort(key=lambda f: f.start)
    return found, errors


def _unclosed_hint(text: str) -> str | None:
    for m in _OPEN_TAG_RE.finditer(text):
        tag = m.group(1)
        if f"</{tag}>" not in text[m.end() :]:
            return f"<{tag}> is never closed: end the call with </{tag}>"
    if text.count("```") % 2 == 1:
        return "a ``` code fence is never closed: end the block with ```"
    return None


def format_help(tool_names: Sequence[str]) -> str:
    """A one-line reminder of how to call the given tools."""
    examples = {
        "bash": "<bash>ls -la</bash>",
        "python": "<python>print(1 + 1)</python>",
        "submit": "<submit></submit>",
        "answer": "\\boxed{42}",
    }
    shown = [examples.get(n, f'<tool_call>{{"name": "{n}", "arguments": {{...}}}}</tool_call>') for n in tool_names]
    return "Call a tool like this: " + ", ".join(shown) + "."


def parse_action(
    action: str | Mapping[str, Any] | Sequence[Any],
    *,
    default_fence: str | None = None,
) -> ParsedAction:
    """Parse every tool call in ``action`` (text, an OpenAI message/call dict, or a list of them).

    Args:
        action: what the agent emitted.
        default_fence: the tool an untagged ```` ``` ```` fence calls (``"bash"`` or ``"python"``);
            ``None`` ignores untagged fences.

    Returns:
        A :class:`ParsedAction`; when nothing valid was found, ``error`` says why.
    """
    if isinstance(action, (Mapping, list, tuple)):
        raw = json.dumps(action, default=str)
        try:
            calls = _calls_from_object(list(action) if isinstance(action, tuple) else action, raw)
        except ValueError as exc:
            return ParsedAction(error=f"Malformed tool call: {exc}.", text=raw)
        if not calls:
            return ParsedAction(error="The message holds no tool call.", text=raw)
        return ParsedAction(calls=calls, text=raw, parsed_action=raw)
    if not isinstance(action, str):
        return ParsedAction(error=f"An action must be text or a JSON object, got {type(action).__name__}.")
    text = action
    if _looks_like_json_call(text):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, (dict, list)) and _is_call_like(obj):
            try:
                calls = _calls_from_object(obj, text)
            except ValueError as exc:
                return ParsedAction(error=f"Malformed tool call: {exc}.", text=text)
            if calls:
                return ParsedAction(calls=calls, text=text, parsed_action=text)
    found, errors = _parse_text(text, default_fence)
    calls = [f.call for f in found if f.call.format != "invalid"]
    if errors:
        return ParsedAction(
            calls=calls,
            error="Malformed tool call: " + "; ".join(errors) + ".",
            text=text,
            parsed_action=text[: found[0].end] if found else "",
        )
    if not calls:
        hint = _unclosed_hint(text)
        msg = f"Malformed tool call: {hint}." if hint else "No tool call found in the action."
        return ParsedAction(error=msg, text=text)
    return ParsedAction(calls=calls, text=text, parsed_action=text[: found[0].end])


def _is_call_like(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and all(isinstance(x, dict) and _is_call_like(x) for x in obj)
    return isinstance(obj, dict) and ("name" in obj or "function" in obj or "tool_calls" in obj or "role" in obj)


def extract_code(text: str, language: str = "python") -> str | None:
    """The code an agent submitted: the last fenced block (any language) or ``<python>`` tag.

    This is GEM's convention for code envs (``extract_code_from_model``: the last fenced
    block), widened to ``<python>`` tags. Returns ``None`` when there is no block.
    """
    candidates: list[tuple[int, str]] = []
    for m in _FENCE_RE.finditer(text):
        lang = m.group(1).lower()
        if lang in ("", "text", language) or (language == "python" and lang in PYTHON_LANGS):
            candidates.append((m.start(), m.group(2)))
    tag = "python" if language == "python" else language
    for m in re.finditer(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL):
        candidates.append((m.start(), m.group(1).strip("\n")))
    if not candidates:
        return None
    return max(candidates)[1]
