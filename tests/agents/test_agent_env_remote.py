"""Agent envs through a real admin server (backend="remote"): the server builds the env, answers travel as actions.

The trainer needs no model service: the env on the server hides it; its tool-call answers go
as JSON text actions. The transcript is the one a local env gives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rock_env as rock
from rock_env.agents.agent_actions import action_text
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings

pytestmark = [pytest.mark.server, pytest.mark.bwrap]


def bash(command: str, call_id: str) -> str:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}  # fmt: skip
    return action_text(message)


ACTIONS = [
    bash('echo "Hello, World!" > hello.txt; cat hello.txt', "c1"),
    '{"role": "assistant", "tool_calls": [{"function": {"name": "nope", "arguments": "{}"}}]}',  # format error
    '<tool_call>{"name": "submit", "arguments": {}}</tool_call>',
]


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, agent_module_state: Path) -> Iterator[str]:
    """An admin on a free loopback port, served from a background thread."""
    settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin")))
    server = BackgroundServer(create_app(settings)).start()
    yield server.url
    server.stop()


def transcript(env: Any) -> list[Any]:
    obs, info = env.reset(options={"task_id": "files/create-hello"})
    out: list[Any] = [obs, info["task_id"], info["turn"], [t["function"]["name"] for t in info["tools"]]]
    for action in ACTIONS:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info.get("end_reason"), info.get("format_error", False)))
    return out


def test_remote_agent_env_matches_local(admin: str) -> None:
    local = rock.make("agent:Bash-v0", runtime="namespace")
    remote = rock.make("agent:Bash-v0", backend="remote", base_url=admin, runtime="namespace")
    try:
        got = transcript(remote)
        assert got == transcript(local)
        assert got[-1][1:5] == (1.0, True, False, "harness_exit")
        assert got[-2][-1] is True and "Unknown tool 'nope'" in got[-2][0]
        assert "Hello, World!\n[exit code: 0]" in got[4][0]
    finally:
        local.close()
        remote.close()


def test_remote_vector_of_agent_envs(admin: str) -> None:
    vec = rock.make_vec("agent:Bash-v0", 2, backend="remote", base_url=admin, runtime="namespace")
    try:
        obs, _ = vec.reset(seed=1, options={"task_id": "files/create-hello"})
        assert len(obs) == 2 and all("[user]\nTask:" in o for o in obs)
        obs, rewards, terminated, _, _ = vec.step([bash(f"echo r{i}", f"c{i}") for i in range(2)])
        assert [f"r{i}\n[exit code: 0]" in o for i, o in enumerate(obs)] == [True, True]
        _, rewards, terminated, _, _ = vec.step(["done", "done"])
        assert list(terminated) == [True, True] and list(rewards) == [0.0, 0.0]
    finally:
        vec.close()
