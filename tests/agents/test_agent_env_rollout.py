"""Agent envs in Hydra (``env=agent_bash``) and ``rock-env rollout`` with the openai policy.

The upstream model is a tiny real OpenAI-compatible HTTP server on 127.0.0.1 started by the test:
the policy sends it each harness request as it is (messages and tools) and the reply answers it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rock_env.cli import main as cli_main
from rock_env.config import compose_config
from rock_env.rollout import read_jsonl, run_rollout
from tests.policies.fake_openai import FakeOpenAI

pytestmark = pytest.mark.bwrap

TASKS = (
    "+env.kwargs.tasks=[{id: hello, description: 'Write Hello to hello.txt.', checks: ['grep -qx Hello hello.txt']}]"
)


def agent_model(body: dict[str, Any]) -> dict[str, Any]:
    """A 'model' that calls the harness's tools: first bash, then submit."""
    assert [t["function"]["name"] for t in body["tools"]] == ["bash", "submit"]
    if body["messages"][-1]["role"] == "user":
        arguments = json.dumps({"command": "echo Hello > hello.txt"})
        call = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": arguments}}
    else:
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "[exit code: 0]"}
        call = {"id": "c2", "type": "function", "function": {"name": "submit", "arguments": "{}"}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def test_hydra_rollout_with_the_openai_policy(tmp_path: Path, agent_module_state: Path) -> None:
    with FakeOpenAI(agent_model) as server:
        cfg = compose_config(
            ["env=agent_bash", "runtime=namespace", "policy=openai", f"policy.base_url={server.url}",
             "policy.model=up-model", "progress=false", "episodes=2", "num_envs=2", TASKS]
        )  # fmt: skip
        result = run_rollout(cfg, tmp_path)
    assert [(e.episode_return, e.length, e.success) for e in result.episodes] == [(1.0, 2, True)] * 2
    assert len(server.requests) == 4 and {r["model"] for r in server.requests} == {"up-model"}
    first = server.requests[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user"] and first["temperature"] == 0.0
    records = read_jsonl(tmp_path / "trajectories.jsonl")
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == 4 and all(json.loads(s["action"])["tool_calls"] for s in steps)
    ends = [s for s in steps if s["terminated"]]
    assert [s["info"]["end_reason"] for s in ends] == ["harness_exit"] * 2 and all(s["reward"] == 1.0 for s in ends)
    resets = [r for r in records if r["type"] == "reset"]
    assert all(r["info"]["request"]["messages"][1]["content"].startswith("Task: Write Hello") for r in resets)


def test_rock_env_rollout_command(tmp_path: Path, agent_module_state: Path) -> None:
    with FakeOpenAI(agent_model) as server:
        code = cli_main(
            ["rollout", "env=agent_bash", "runtime=namespace", "policy=openai", f"policy.base_url={server.url}",
             "progress=false", "episodes=1", TASKS, f"hydra.run.dir={tmp_path}", f"output_dir={tmp_path}"]
        )  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 1 and summary["success_rate"] == 1.0, summary
    assert len(server.requests) == 2
