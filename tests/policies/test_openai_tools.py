"""The openai policy with tools: a fake model drives the real sandboxed bash env by tool calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rock_env.config import compose_config
from rock_env.policies.openai_chat import tool_call_text, tool_schemas
from rock_env.rollout import read_jsonl, run_rollout
from rock_env.tools.bash_tasks import load_tasks
from tests.policies.fake_openai import FakeOpenAI
from tests.rollout.helpers import LINE_ID, register_line_env
from tests.tools.bash_solutions import SOLUTIONS

pytestmark = [pytest.mark.bwrap, pytest.mark.slow]


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


def bash_agent() -> Any:
    """A 'model' that knows the reference solution of every built-in bash task."""
    by_description = {task.description.strip(): SOLUTIONS[task.id] for task in load_tasks(None)}

    def reply(request: dict[str, Any]) -> dict[str, Any]:
        prompt = request["messages"][0]["content"]
        description = prompt.split("Task: ", 1)[1].split("\n\nRun one command", 1)[0]
        if not any(m["role"] == "assistant" for m in request["messages"]):
            return call("call_1", "bash", {"command": by_description[description]})
        return call("call_2", "submit", {})

    return reply


def test_model_solves_bash_tasks_with_tool_calls(tmp_path: Path, sandbox_state: Path) -> None:
    with FakeOpenAI(bash_agent()) as server:
        cfg = compose_config(
            ["env=bash", "runtime=namespace", "policy=openai", f"policy.base_url={server.url}", "episodes=3",
             "num_envs=2", "seed=5", "progress=false"]
        )  # fmt: skip
        result = run_rollout(cfg, tmp_path)
    assert [ep.success for ep in result.episodes] == [True] * 3
    assert [ep.length for ep in result.episodes] == [2] * 3
    first = server.requests[0]
    assert [t["function"]["name"] for t in first["tools"]] == ["bash", "submit"]
    assert first["tools"][0]["function"]["parameters"]["properties"]["command"]["type"] == "string"
    answer = next(r for r in server.requests if len(r["messages"]) == 3)["messages"]
    assert answer[1]["tool_calls"][0]["id"] == "call_1"
    assert answer[2]["role"] == "tool" and answer[2]["tool_call_id"] == "call_1"
    steps = [r for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert steps[0]["action"].startswith('<tool_call>{"name": "bash"')
    assert all(s["info"]["tool_calls"] in (["bash"], ["submit"]) for s in steps)


def test_env_tool_call_hook_and_schemas(tmp_path: Path) -> None:
    register_line_env()
    move = {"type": "function", "function": {"name": "move", "arguments": json.dumps({"direction": "right"})}}
    with FakeOpenAI(lambda request: {"role": "assistant", "content": "", "tool_calls": [{"id": "c", **move}]}) as srv:
        cfg = compose_config([f"env.id={LINE_ID}", "policy=openai", f"policy.base_url={srv.url}", "episodes=1",
                              "progress=false"])  # fmt: skip
        run_rollout(cfg, tmp_path)
    steps = [r for r in read_jsonl(tmp_path / "trajectories.jsonl") if r["type"] == "step"]
    assert {s["action"] for s in steps} == {"\\boxed{right}"}  # env.tool_call_to_action made the action
    assert srv.requests[0]["tools"][0]["function"]["name"] == "move"


def test_tool_helpers() -> None:
    class Tools:
        tools = [{"name": "f", "parameters": {"type": "object"}}]

    assert tool_schemas(Tools()) == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert tool_schemas(object()) == []
    assert (
        tool_call_text("bash", {"command": "ls"})
        == '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>'
    )
