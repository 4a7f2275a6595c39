"""A policy backed by an OpenAI-compatible chat completions endpoint (over httpx).

Works with anything that serves ``POST {base_url}/chat/completions``: vLLM, SGLang,
llama.cpp's server, OpenAI. Each episode is one chat: the first observation is the first user
message; the model's reply becomes the action; the next observation is the next user message
(or the ``tool`` message answering the model's tool call).

If the env has ``tools`` (a list of OpenAI tool schemas, or objects with ``openai_schema()``)
and ``use_tools`` is on, they are sent as ``tools``; a tool call in the reply becomes the action
through ``env.tool_call_to_action(name, arguments)`` when the env has it, else as the text
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. A reply that the env cannot parse
is still passed to the env, which applies its own invalid-action handling.

Agent envs (``agent:`` ids) are different: their observation is a harness's model request
(``info["request"]``), which is sent upstream as it is; the reply (an assistant message, tool
calls included) is the action, as JSON text.

GEM envs put part of the prompt in ``info["prefix"]``/``info["suffix"]`` (Sokoban's board and
"Enter your move." live in the suffix); they are added around the observation the way GEM's
observation wrappers do, so the model sees what the env means it to see.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import httpx

from rock_env.errors import RemoteError, RequestInvalid, ServerUnavailable, Unauthorized
from rock_env.policies.base import Policy

logger = logging.getLogger(__name__)


def tool_schemas(env: Any) -> list[dict[str, Any]]:
    """The env's tools as OpenAI ``tools`` entries ([] if it has none)."""
    tools = getattr(env, "tools", None)
    if tools is None:
        tools = getattr(getattr(env, "unwrapped", None), "tools", None)
    if callable(tools):
        tools = tools()
    out: list[dict[str, Any]] = []
    for tool in tools or []:
        if hasattr(tool, "openai_schema"):
            tool = tool.openai_schema()
        elif hasattr(tool, "model_dump"):
            tool = tool.model_dump()
        if not isinstance(tool, dict):
            raise RequestInvalid(f"env tool {tool!r} is not an OpenAI tool schema (a dict).")
        if "function" not in tool:
            tool = {"type": "function", "function": tool}
        out.append(tool)
    return out


def observation_text(observation: Any, info: dict[str, Any] | None) -> str:
    """``observation`` with GEM's ``info["prefix"]`` before it and ``info["suffix"]`` after it."""
    text = observation if isinstance(observation, str) else str(observation)
    info = info or {}
    prefix, suffix = info.get("prefix"), info.get("suffix")
    if isinstance(prefix, str) and prefix:
        text = prefix + text
    if isinstance(suffix, str) and suffix:
        text = text + suffix if text.endswith("\n") or suffix.startswith("\n") or not text else f"{text}\n{suffix}"
    return text


def tool_call_text(name: str, arguments: Any) -> str:
    """The textual form of a tool call: ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``."""
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "</tool_call>"


class OpenAIChatPolicy(Policy):
    """Chat-model policy; see the module docstring."""

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8001/v1",
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        use_tools: bool = True,
        system_prompt: str | None = None,
        max_history: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.use_tools = use_tools
        self.system_prompt = system_prompt
        self.max_history = max_history
        self.max_retries = max_retries
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self.messages: list[dict[str, Any]] = []
        self._tools: list[dict[str, Any]] = []
        self._pending_tool_call: str | None = None
        #: Token usage summed over all requests (keys as in the API's ``usage``).
        self.usage: dict[str, int] = {}

    # -- episode -------------------------------------------------------------------------

    def reset(self, env: Any, observation: str, info: dict[str, Any], *, seed: int | None = None) -> None:
        """Start a new chat with ``observation`` as the first user message."""
        self._tools = tool_schemas(env) if self.use_tools else []
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        self.messages.append({"role": "user", "content": observation_text(observation, info)})
        self._pending_tool_call = None

    def act(self, env: Any, observation: str, info: dict[str, Any]) -> Any:
        """Ask the model for the next action."""
        request = info.get("request") if isinstance(info, dict) else None
        if isinstance(request, dict) and isinstance(request.get("messages"), list):
            return self._answer_request(request)
        if self.messages and self.messages[-1]["role"] == "assistant":
            self._add_observation(observation_text(observation, info))
        message = self._complete()
        tool_calls = message.get("tool_calls") or []
        content = message.get("content")
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            assistant["tool_calls"] = tool_calls
        self.messages.append(assistant)
        if tool_calls:
            call = tool_calls[0]
            self._pending_tool_call = call.get("id")
            return self._tool_action(env, call)
        self._pending_tool_call = None
        return content if isinstance(content, str) else ""

    def _answer_request(self, request: dict[str, Any]) -> str:
        """An agent env's observation is a harness's model request: send it upstream as it is.

        The request's messages, tools and sampling fields go to the model server (the policy's
        ``temperature``/``max_tokens`` only where the request sets none; ``model`` is the policy's);
        the assistant message that comes back is the action, as JSON text (what local and remote
        agent envs both take).
        """
        payload: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        payload.update({k: v for k, v in request.items() if k not in ("model", "stream", "stream_options")})
        payload["model"] = self.model
        message = self._complete(payload)
        reply: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            reply["tool_calls"] = message["tool_calls"]
        self.messages = [*request["messages"], reply]
        return json.dumps(reply, ensure_ascii=False)

    def _add_observation(self, observation: str) -> None:
        if self._pending_tool_call is not None:
            self.messages.append({"role": "tool", "tool_call_id": self._pending_tool_call, "content": observation})
        else:
            self.messages.append({"role": "user", "content": observation})
        self._trim()

    def _tool_action(self, env: Any, call: dict[str, Any]) -> Any:
        function = call.get("function") or {}
        name = str(function.get("name", ""))
        raw = function.get("arguments", "{}")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            arguments = raw  # garbage arguments: let the env's parser reject them
        convert = getattr(env, "tool_call_to_action", None)
        if callable(convert):
            return convert(name, arguments)
        return tool_call_text(name, arguments)

    def _trim(self) -> None:
        """Keep the system prompt, the first observation and the last ``max_history`` turns."""
        if self.max_history is None:
            return
        head = 2 if self.system_prompt else 1
        body = self.messages[head:]
        keep = 2 * self.max_history
        if len(body) > keep:
            body = body[len(body) - keep :] if keep else []
            while body and body[0]["role"] != "assistant":
                body.pop(0)
            self.messages = self.messages[:head] + body

    # -- HTTP ----------------------------------------------------------------------------

    def _complete(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        if payload is None:
            payload = {
                "model": self.model,
                "messages": self.messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
            if self._tools:
                payload["tools"] = self._tools
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(0.2 * 2**attempt, 2.0))
            try:
                response = self._client.post(url, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("model server %s: %s (attempt %d)", url, last_error, attempt + 1)
                continue
            except httpx.TimeoutException as exc:
                last_error = f"timed out: {exc}"
                continue
            if response.status_code >= 500:
                last_error = f"HTTP {response.status_code}: {response.text[:300]}"
                continue
            return self._parse(response, url)
        raise ServerUnavailable(
            f"model server at {url} failed after {self.max_retries + 1} attempts ({last_error}); "
            "check that it is running and that policy.base_url points to it (it should end in /v1)."
        )

    def _parse(self, response: httpx.Response, url: str) -> dict[str, Any]:
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"model server at {url} refused the API key (HTTP {response.status_code}); "
                "set policy.api_key or OPENAI_API_KEY."
            )
        if response.status_code >= 400:
            raise RequestInvalid(
                f"model server at {url} rejected the request (HTTP {response.status_code}): "
                f"{response.text[:500]}. Check policy.model and the server's limits."
            )
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RemoteError(
                f"model server at {url} sent a reply that is not a chat completion: {response.text[:300]!r}"
            ) from None
        if not isinstance(message, dict):
            raise RemoteError(f"model server at {url} sent a malformed message: {message!r}")
        for key, value in (data.get("usage") or {}).items():
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value
        return message

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
