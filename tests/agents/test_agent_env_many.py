"""Many agent episodes at once: 64 envs through one trainer loop, and a vector env (make_vec).

Every env's harness talks to the same model service (one per process); each must get exactly
its own answers.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import rock_env as rock
from rock_env.agents import agent_services
from rock_env.agents.agent_actions import action_text
from rock_env.agents.agent_bash import AgentBashEnv

pytestmark = pytest.mark.bwrap

SUBMIT = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'
HELLO = 'echo "Hello, World!" > hello.txt'


def bash(command: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}  # fmt: skip


def last_tool_result(observation: str) -> str:
    return observation.rsplit("[tool result", 1)[1]


def test_64_episodes_at_once_each_gets_its_own_answers(agent_module_state: Path) -> None:
    n = 64
    envs = [AgentBashEnv(runtime="namespace") for _ in range(n)]
    try:
        with ThreadPoolExecutor(16) as pool:
            resets = list(pool.map(lambda i: envs[i].reset(options={"task_id": "files/create-hello"}), range(n)))
            assert len({info["sandbox_id"] for _, info in resets}) == n
            assert agent_services.shared_count() == 1, "one model service serves every env of the process"

            def first(i: int) -> str:
                return envs[i].step(bash(f"echo token-{i} > mine.txt; cat mine.txt"))[0]

            for i, obs in enumerate(pool.map(first, range(n))):
                result = last_tool_result(obs)
                assert f"token-{i}\n[exit code: 0]" in result, result
                assert result.count("token-") == 1

            def finish(i: int) -> tuple[float, bool, str]:
                envs[i].step(bash(HELLO if i % 2 == 0 else "echo nope > other.txt"))
                _, reward, terminated, _, info = envs[i].step(SUBMIT)
                return float(reward), bool(terminated), info["end_reason"]

            outcomes = list(pool.map(finish, range(n)))
        wrong = [(i, o) for i, o in enumerate(outcomes) if o != (1.0 if i % 2 == 0 else 0.0, True, "harness_exit")]
        assert not wrong
    finally:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda e: e.close(), envs))
    assert agent_services.shared_count() == 0, "the shared model service closes with its last env"


def test_make_vec_gives_the_batch_of_pending_requests(agent_module_state: Path) -> None:
    vec = rock.make_vec("agent:Bash-v0", 3, runtime="namespace", env_kwargs=[{"model": f"m{i}"} for i in range(3)])
    try:
        obs, infos = vec.reset(seed=0, options={"task_id": "files/create-hello"})
        assert len(obs) == 3 and all("[user]\nTask: Create a file named hello.txt" in o for o in obs)
        assert list(infos["request"]["model"]) == ["m0", "m1", "m2"], "vector infos batch nested dicts"
        assert len(set(infos["sandbox_id"])) == 3
        actions = [action_text(bash(f"echo vec-{i}")) for i in range(3)]
        obs, rewards, terminated, _, infos = vec.step(actions)
        assert [f"vec-{i}\n" in last_tool_result(o) for i, o in enumerate(obs)] == [True] * 3
        assert list(rewards) == [0.0] * 3 and not any(terminated)
        obs, rewards, terminated, _, infos = vec.step([action_text(bash(HELLO)), "give up", action_text(bash(HELLO))])
        assert list(terminated) == [False, True, False] and list(rewards) == [0.0, 0.0, 0.0]
        obs, rewards, terminated, _, _ = vec.step([SUBMIT, "ignored: autoreset", SUBMIT])
        assert list(rewards) == [1.0, 0.0, 1.0] and list(terminated) == [True, False, True]
        assert "[user]\nTask:" in obs[1], "sub-env 1 was reset: its new episode's first request"
    finally:
        vec.close()
