"""Unit tests of the agent envs' pieces that need no sandbox: actions -> replies, rendering, harness launch."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

import rock_env as rock
from rock_env.agents.agent_actions import action_text, reply_of
from rock_env.agents.agent_harness import TASK_FILE, Harness
from rock_env.agents.agent_render import render_request
from rock_env.agents.harness.bash_agent import TOOLS
from rock_env.errors import ConfigError, InvalidArgument, InvalidEnvKwargs


def test_text_is_the_assistant_content() -> None:
    assert reply_of("hello", TOOLS) == ({"role": "assistant", "content": "hello"}, "")
    assert reply_of("{not json", TOOLS)[0] == {"role": "assistant", "content": "{not json"}
    assert reply_of('{"a": 1}', TOOLS)[0] == {"role": "assistant", "content": '{"a": 1}'}, "JSON that is no message"


def test_tool_call_tags_become_openai_tool_calls() -> None:
    reply, error = reply_of('Let me look.\n<tool_call>{"name": "bash", "arguments": {"cmd": "ls"}}</tool_call>', TOOLS)
    assert error == "" and reply is not None
    assert reply["content"] == "Let me look."
    (call,) = reply["tool_calls"]
    assert call["type"] == "function" and call["id"] == "call_0"
    assert call["function"] == {"name": "bash", "arguments": json.dumps({"command": "ls"})}, "aliases are normalised"
    # without tools in the request the tag is only text
    assert reply_of('<tool_call>{"name": "bash", "arguments": {}}</tool_call>', None)[0]["content"].startswith("<tool")


def test_assistant_messages_and_completions() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "submit", "arguments": {}}}]}  # fmt: skip
    for action in (message, action_text(message)):
        reply, error = reply_of(action, TOOLS)
        assert error == "" and reply is not None
        assert reply["tool_calls"][0] == {
            "id": "c1",
            "type": "function",
            "function": {"name": "submit", "arguments": "{}"},
        }
    completion = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
    }
    reply, error = reply_of(json.dumps(completion), TOOLS)
    assert error == "" and reply is not None
    assert reply["choices"][0] == {
        "message": {"role": "assistant", "content": "hi"},
        "index": 0,
        "finish_reason": "stop",
    }


@pytest.mark.parametrize(
    ("action", "tools", "why"),
    [
        (None, TOOLS, "empty"),
        (3, TOOLS, "must be a string or an assistant message"),
        ({"role": "tool", "content": "x"}, TOOLS, "role"),
        ({"role": "assistant", "content": 5}, TOOLS, '"content" must be'),
        ({"role": "assistant", "tool_calls": {}}, TOOLS, "must be a list"),
        ({"role": "assistant", "tool_calls": ["x"]}, TOOLS, "not an object"),
        ({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}, TOOLS, 'no function "name"'),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "bash", "arguments": "[1]"}}]},
            TOOLS,
            "JSON object",
        ),
        ({"role": "assistant", "tool_calls": [{"function": {"name": "bash", "arguments": "{"}}]}, TOOLS, "valid JSON"),
        ({"role": "assistant", "tool_calls": [{"function": {"name": "bash", "arguments": "{}"}}]}, TOOLS, "needs the"),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "web", "arguments": "{}"}}]},
            TOOLS,
            "Unknown tool",
        ),
        ({"role": "assistant", "tool_calls": [{"function": {"name": "bash", "arguments": "{}"}}]}, None, "no tools"),
        ({"role": "assistant"}, TOOLS, "neither content nor tool calls"),
        ({"choices": []}, TOOLS, "choices"),
        ('<tool_call>{"name": "bash", "arguments": {"command": "ls"}}', TOOLS, "Malformed"),
    ],
)
def test_malformed_actions_say_what_is_wrong(action: Any, tools: Any, why: str) -> None:
    reply, error = reply_of(action, tools)
    assert reply is None and why in error, error


def test_render_shows_tools_roles_tool_calls_and_results() -> None:
    body = {
        "tools": TOOLS,
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "do it"}, {"type": "image_url"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "a.txt\n[exit code: 0]"},
        ],
    }  # fmt: skip
    text = render_request(body)
    assert text.startswith("[tools]\n{") and '"name":"submit"' in text
    assert "[system]\nsys\n\n[user]\ndo it[image_url]\n\n[assistant]\n" in text
    assert '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>' in text
    assert text.endswith("[tool result c1]\na.txt\n[exit code: 0]")


def test_harness_launch_fills_placeholders() -> None:
    kw: dict[str, Any] = {
        "workdir": "/workspace",
        "max_turns": 7,
        "model": "m",
        "command_timeout": 5.0,
        "output_limit": 99,
    }
    builtin = Harness().launch("the task", **kw)
    assert builtin.argv[:4] == ["python3", "-I", "-S", "-c"] and "def main()" in builtin.argv[4]
    config = json.loads(builtin.env["ROCK_AGENT_CONFIG"])
    assert (config["task"], config["max_turns"], config["output_limit"]) == ("the task", 8, 99)
    command = Harness("agent --task {task} --file {task_file} -n {max_turns} awk '{print $1}'", env={"X": "1"})
    launch = command.launch("it's a task", **kw)
    assert launch.argv[:4] == ["bash", "--norc", "--noprofile", "-c"]
    quoted = shlex.quote("it's a task")
    assert launch.argv[4] == f"agent --task {quoted} --file {TASK_FILE} -n 7 awk '{{print $1}}'"
    assert launch.files == {TASK_FILE: "it's a task"} and launch.env["X"] == "1"
    assert launch.env["ROCK_AGENT_TASK"] == "it's a task" and launch.env["OPENAI_MODEL"] == "m"
    argv = Harness(["run", "{task}"]).launch("a b", **kw)
    assert argv.argv == ["run", "a b"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"harness": ""}, ConfigError),
        ({"harness": 5}, ConfigError),
        ({"harness_files": {"relative.py": "x"}}, ConfigError),
        ({"harness_env": {"A": 1}}, ConfigError),
        ({"sampling": {"messages": []}}, ConfigError),
        ({"max_turns": 0}, InvalidArgument),
        ({"model_timeout": -1}, InvalidArgument),
        ({"harnes": "builtin"}, InvalidEnvKwargs),
    ],
)
def test_bad_kwargs_are_typed_errors(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        rock.make("agent:Bash-v0", **kwargs)


def test_agent_ids_are_registered() -> None:
    for env_id in ("agent:Bash-v0", "agent:Python-v0", "agent:Python-v0-strict"):
        spec = rock.spec(env_id)
        assert "sandbox" in spec.requirements
    env = rock.make("agent:Python-v0-strict")
    try:
        assert env.strict and env.task_ids()[0] == "py/two-sum" and env.tools == TOOLS
    finally:
        env.close()
