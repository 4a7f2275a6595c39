"""Random and chat-model policies with backend=remote: the same episodes and prompts as locally.

A real admin (uvicorn on a free loopback port) hosts the envs; the rollouts go through the
``rock-env rollout`` entry point.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rock_env as rock
from rock_env.core import Env
from rock_env.rollout import read_jsonl
from rock_env.rollout.cli import main
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings
from tests.policies.fake_openai import FakeOpenAI
from tests.rollout.helpers import LINE_ID, LineEnv, files_of, register_line_env

pytestmark = pytest.mark.server

SPACE_LINE_ID = "test:RolloutSpaceLine-v0"


class SpaceSampledLineEnv(LineEnv):
    """LineEnv whose random actions come from its (seeded) action space, as the base Env does."""

    sample_random_action = Env.sample_random_action


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    rock.register(SPACE_LINE_ID, f"{__name__}:SpaceSampledLineEnv", override=True)
    server = BackgroundServer(create_app(ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin"))))).start()
    try:
        yield server.url
    finally:
        server.stop()


def rollout(out: Path, *overrides: str) -> None:
    assert main([*overrides, "progress=false", f"output_dir={out}", f"hydra.run.dir={out / 'hydra'}"]) == 0


def test_random_policy_remote_writes_the_same_bytes_as_local(admin: str, tmp_path: Path) -> None:
    common = ["env=sokoban_easy", "policy=random", "episodes=20", "seed=0"]
    rollout(tmp_path / "local", *common)
    rollout(tmp_path / "remote", *common, "backend=remote", f"backend.base_url={admin}")
    local, remote = dict(files_of(tmp_path / "local")), dict(files_of(tmp_path / "remote"))
    assert remote == local
    episodes = read_jsonl(tmp_path / "remote" / "episodes.jsonl")
    assert len(episodes) == 20 and len({e["length"] for e in episodes}) > 1  # real, varied episodes


def test_random_policy_seeds_the_remote_action_space(admin: str, tmp_path: Path) -> None:
    common = [f"env.id={SPACE_LINE_ID}", "policy=random", "episodes=3", "seed=4", "num_envs=2"]
    rollout(tmp_path / "local", *common)
    rollout(tmp_path / "remote", *common, "backend=remote", f"backend.base_url={admin}")
    assert dict(files_of(tmp_path / "remote")) == dict(files_of(tmp_path / "local"))
    actions = [r["action"] for r in read_jsonl(tmp_path / "remote" / "trajectories.jsonl") if r["type"] == "step"]
    assert len(set(actions)) > 10  # random text drawn from the seeded action space


def bash_model(request: dict[str, Any]) -> dict[str, Any]:
    """Run one command, then submit (as tool calls)."""
    first = not any(m["role"] == "assistant" for m in request["messages"])
    name, arguments = ("bash", {"command": "echo tool-$((6*7))"}) if first else ("submit", {})
    function = {"name": name, "arguments": json.dumps(arguments)}
    call = {"id": f"call_{name}", "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def test_openai_policy_tool_calls_through_the_remote_envs_hook(admin: str, tmp_path: Path) -> None:
    register_line_env()
    common = [f"env.id={LINE_ID}", "policy=openai", "episodes=2", "seed=3", "num_envs=2"]

    def model(request: dict[str, Any]) -> dict[str, Any]:
        board = request["messages"][-1]["content"].strip().splitlines()[-1]
        direction = "right" if "T" in board and "P" in board and board.index("T") > board.index("P") else "left"
        function = {"name": "move", "arguments": json.dumps({"direction": direction})}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "m", "type": "function", "function": function}],
        }

    for name, extra in (("local", []), ("remote", ["backend=remote", f"backend.base_url={admin}"])):
        with FakeOpenAI(model) as fake:
            rollout(tmp_path / name, *common, f"policy.base_url={fake.url}", *extra)
    assert dict(files_of(tmp_path / "remote")) == dict(files_of(tmp_path / "local"))
    steps = [r for r in read_jsonl(tmp_path / "remote" / "trajectories.jsonl") if r["type"] == "step"]
    assert steps and {s["action"] for s in steps} <= {"\\boxed{left}", "\\boxed{right}"}  # the env's own hook


@pytest.mark.bwrap
def test_openai_policy_gets_the_tools_of_a_remote_bash_env(admin: str, tmp_path: Path) -> None:
    common = ["env=bash", "runtime=namespace", "policy=openai", "episodes=1", "seed=1", "+env.kwargs.max_turns=3"]
    requests = {}
    for name, extra in (("local", []), ("remote", ["backend=remote", f"backend.base_url={admin}"])):
        with FakeOpenAI(bash_model) as model:
            rollout(tmp_path / name, *common, f"policy.base_url={model.url}", *extra)
        requests[name] = model.requests
    remote = requests["remote"]
    assert [t["function"]["name"] for t in remote[0]["tools"]] == ["bash", "submit"]
    assert remote == requests["local"]  # the same prompts, tools and tool answers
    tool_answer = remote[1]["messages"][-1]
    assert tool_answer["role"] == "tool" and "tool-42" in tool_answer["content"]
