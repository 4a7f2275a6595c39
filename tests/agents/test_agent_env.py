"""agent:Bash-v0 / agent:Python-v0 with real sandboxes: the harness runs inside, a scripted trainer answers.

Namespace sandboxes (network off) unless a test says docker. Every model call of the harness
crosses the model service's bridge; the trainer's answers are the env's actions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rock_env as rock
from rock_env.agents.agent_bash import AgentBashEnv
from rock_env.agents.env import FORMAT_ERROR_REWARD
from rock_env.errors import HarnessFailed
from tests.tools.bash_solutions import SOLUTIONS
from tests.tools.python_solutions import REFERENCE, WRONG

pytestmark = pytest.mark.bwrap

SUBMIT = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'
LIST_PROCS = r"for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null < $p/cmdline && echo; done"


def bash(command: str, call_id: str | None = None) -> dict[str, Any]:
    """An OpenAI assistant message calling the built-in harness's bash tool."""
    call: dict[str, Any] = {
        "type": "function",
        "function": {"name": "bash", "arguments": json.dumps({"command": command})},
    }
    if call_id:
        call["id"] = call_id
    return {"role": "assistant", "content": None, "tool_calls": [call]}


@pytest.fixture(scope="module")
def env(agent_module_state: Path) -> Iterator[AgentBashEnv]:
    """One namespace agent env shared by the module (each test resets it)."""
    e = rock.make("agent:Bash-v0", runtime="namespace", command_timeout=20)
    yield e
    e.close()


def test_builtin_harness_solves_a_bash_task_and_a_wrong_answer_scores_0(env: AgentBashEnv) -> None:
    obs, info = env.reset(options={"task_id": "text/csv-sum"})
    assert info["task_id"] == "text/csv-sum" and env.task is not None
    assert env.task.description.strip() in obs and "[system]" in obs and "[user]" in obs
    assert [t["function"]["name"] for t in info["tools"]] == ["bash", "submit"]
    assert [m["role"] for m in info["request"]["messages"]] == ["system", "user"]
    assert info["turn"] == 0 and info["sandbox_id"] == env.sandbox.id
    obs, reward, terminated, truncated, info = env.step(bash(SOLUTIONS["text/csv-sum"], "call-1"))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert "[tool result call-1]\n[exit code: 0]" in obs and info["turn"] == 1
    # the sandbox has no network, yet the harness reached the model (this very turn)
    probe = "python3 -c 'import socket; socket.create_connection((\"10.1.2.3\", 80), timeout=3)' 2>&1 | tail -1"
    obs, *_ = env.step(bash(probe + "; ip -o link 2>/dev/null | grep -vc ' lo:' || true"))
    assert "Network is unreachable" in obs.rsplit("[tool result", 1)[1], obs[-400:]
    obs, reward, terminated, truncated, info = env.step(SUBMIT)
    assert reward == 1.0, obs
    assert terminated and not truncated and info["success"] and all(info["checks"])
    assert info["end_reason"] == "harness_exit" and info["harness_exit_code"] == 0
    assert "submitted" in info["harness_output"] and info["turns"] == 3

    env.reset(options={"task_id": "text/csv-sum"})
    obs, reward, terminated, truncated, info = env.step("I think I am done.")  # no tool call: the harness stops
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["end_reason"] == "harness_exit" and not any(info["checks"])
    assert "without a tool call" in info["harness_output"]


def test_each_episode_starts_clean(env: AgentBashEnv) -> None:
    env.reset(options={"task_id": "text/csv-sum"})
    env.step(bash("rm sales.csv; echo junk > junk.txt; setsid -f sleep 1000 >/dev/null 2>&1"))
    env.step("stop here")
    _, info = env.reset(options={"task_id": "text/csv-sum"})
    obs, *_ = env.step(bash(f"ls; {LIST_PROCS}"))
    listing = obs.rsplit("[tool result", 1)[1]
    assert "sales.csv" in listing and "junk.txt" not in listing and "sleep 1000" not in listing
    assert listing.count("python3 -I -S -c") == 1, "only this episode's harness runs"
    assert info["sandbox_id"] == env.sandbox.id, "one sandbox for all episodes"
    env.step(SUBMIT)


def test_malformed_actions_get_the_format_error_reward_and_leave_the_harness_alone(env: AgentBashEnv) -> None:
    _, info = env.reset(options={"task_id": "files/create-hello"})
    request_id = info["request_id"]
    bad: list[tuple[Any, str]] = [
        ({"role": "assistant", "tool_calls": [{"function": {"name": "rm_rf", "arguments": "{}"}}]}, "Unknown tool"),
        ('<tool_call>{"name": "bash", "arguments": {"command": 1}}</tool_call>', "must be a string"),
        ({"role": "user", "content": "hi"}, "role"),
        (
            '{"role": "assistant", "tool_calls": [{"function": {"name": "bash", "arguments": "{oops"}}]}',
            "not valid JSON",
        ),
        ({"role": "assistant", "content": None}, "neither content nor tool calls"),
        (None, "empty"),
        ('<tool_call>{"name": "bash", "arguments": {"command": "ls"}}', "Malformed"),
    ]
    for action, why in bad:
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == FORMAT_ERROR_REWARD and not terminated and not truncated, (action, obs)
        assert info["format_error"] and why in info["error"] and why in obs, (why, info["error"])
        assert info["request_id"] == request_id and "still open" in obs
    obs, reward, terminated, _, info = env.step(bash(SOLUTIONS["files/create-hello"]))
    assert not terminated and info["turn"] == 1 and info["request_id"] != request_id
    assert [m["role"] for m in info["request"]["messages"]] == ["system", "user", "assistant", "tool"]
    assert env.step(SUBMIT)[1] == 1.0


def test_turn_limit_and_time_limit_stop_the_harness_and_verify(env: AgentBashEnv) -> None:
    env.max_turns = 2
    try:
        env.reset(options={"task_id": "files/create-hello"})
        env.step(bash(SOLUTIONS["files/create-hello"]))
        obs, reward, terminated, truncated, info = env.step(bash("echo again"))
        assert truncated and not terminated and info["end_reason"] == "turn_limit"
        assert reward == 1.0 and "turn limit" in obs, "the work done so far is verified"
    finally:
        env.max_turns = 30
    env.max_episode_steps = 1  # as rock.make(..., max_episode_steps=1) sets it: also stops and verifies
    try:
        env.reset(options={"task_id": "files/create-hello"})
        _, reward, terminated, truncated, info = env.step(bash(SOLUTIONS["files/create-hello"]))
        assert (reward, terminated, truncated, info["end_reason"]) == (1.0, False, True, "turn_limit")
    finally:
        env.max_episode_steps = None
    env.episode_timeout = 2.0
    try:
        env.reset(options={"task_id": "files/create-hello"})
        started = time.monotonic()
        obs, reward, terminated, truncated, info = env.step(bash("sleep 15"))
        assert time.monotonic() - started < 10
        assert truncated and info["end_reason"] == "time_limit" and reward == 0.0
        assert info["harness_exit_code"] is None, "the harness was stopped"
    finally:
        env.episode_timeout = 600.0


MINI_HARNESS = r"""
import json, os, sys, urllib.request
task = open(sys.argv[1]).read()
if "FAIL-AT-START" in task:
    print("cannot start: bad task"); sys.exit(9)
body = {"model": os.environ["OPENAI_MODEL"], "messages": [{"role": "user", "content": task}]}
req = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", json.dumps(body).encode(),
                             {"content-type": "application/json", "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
answer = json.load(urllib.request.urlopen(req, timeout=60))["choices"][0]["message"]["content"]
if answer == "crash":
    raise RuntimeError("boom: the harness crashed")
open("answer.txt", "w").write(answer + "\n")
print("wrote", answer)
"""
MINI_TASKS = [
    {"id": "answer", "description": "What is 6 x 7? Answer with the number.", "checks": ["grep -qx 42 answer.txt"]},
    {"id": "broken", "description": "FAIL-AT-START", "checks": ["true"]},
]


def test_an_uploaded_harness_script_crashes_and_sandbox_death(agent_module_state: Path) -> None:
    env = AgentBashEnv(
        MINI_TASKS,
        runtime="namespace",
        harness="python3 /tmp/mini/agent.py {task_file}",
        harness_files={"/tmp/mini/agent.py": MINI_HARNESS},
    )
    try:
        obs, info = env.reset(options={"task_id": "answer"})
        assert "What is 6 x 7?" in obs and info["tools"] == [] and env.tools == []
        assert env.step("42")[1:4] == (1.0, True, False)
        env.reset(options={"task_id": "answer"})
        assert env.step("41")[1] == 0.0
        # a harness that crashes mid-episode: the episode ends, the exit code and traceback are in info
        env.reset(options={"task_id": "answer"})
        _, reward, terminated, _, info = env.step("crash")
        assert terminated and reward == 0.0 and info["harness_exit_code"] == 1
        assert "boom: the harness crashed" in info["harness_output"]
        # a harness that dies before asking anything: a typed error naming its output
        with pytest.raises(HarnessFailed, match=r"code 9.*cannot start"):
            env.reset(options={"task_id": "broken"})
        # the sandbox dies mid-episode: clear info, nothing left behind, the next reset makes a new one
        _, info = env.reset(options={"task_id": "answer"})
        old = env.sandbox
        old.stop()
        _, reward, terminated, truncated, info = env.step("42")
        assert truncated and reward == 0.0 and "error" in info and info["end_reason"] == "request_dropped"
        assert old.id not in env.model_service.sandboxes
        _, info = env.reset(options={"task_id": "answer"})
        assert info["sandbox_id"] != old.id
        assert env.step("42")[1] == 1.0
    finally:
        env.close()


def test_a_trainer_that_does_not_answer_in_time(agent_module_state: Path) -> None:
    env = AgentBashEnv(runtime="namespace", model_timeout=1.0)
    try:
        env.reset(options={"task_id": "files/create-hello"})
        time.sleep(1.6)  # the harness's call gets HTTP 504 after model_timeout
        started = time.monotonic()
        obs, reward, terminated, truncated, info = env.step(bash("echo too late"))
        assert time.monotonic() - started < 8
        assert truncated and not terminated and info["end_reason"] == "model_timeout"
        assert "not answered in time" in info["error"]
        assert info["harness_exit_code"] == 3 and "504" in info["harness_output"]
        assert reward == 0.0 and "timed out" in obs
    finally:
        env.close()


def test_agent_python_grades_solution_py(agent_module_state: Path) -> None:
    env = rock.make("agent:Python-v0", runtime="namespace")
    try:
        for code, expected in ((REFERENCE["py/two-sum"], 1.0), (WRONG["py/two-sum"], None)):
            obs, info = env.reset(options={"task_id": "py/two-sum"})
            assert "solution.py" in obs and info["task_id"] == "py/two-sum"
            write = f"cat > solution.py <<'EOF'\n{code}\nEOF\npython3 -c 'import solution'"
            obs, *_ = env.step(bash(write))
            assert "[exit code: 0]" in obs
            _, reward, terminated, _, info = env.step(SUBMIT)
            assert terminated and info["status"] == "ok"
            if expected is not None:
                assert reward == expected and info["success"]
            else:
                assert 0.0 <= reward < 1.0 and not info["success"]
        env.reset(options={"task_id": "py/two-sum"})
        _, reward, terminated, _, info = env.step("done")
        assert terminated and reward == 0.0 and info["status"] == "no_solution" and "solution.py" in info["error"]
    finally:
        env.close()


@pytest.mark.docker
def test_agent_bash_on_docker(docker_image: str, agent_module_state: Path) -> None:
    env = AgentBashEnv(runtime="docker", sandbox={"image": docker_image})
    try:
        env.reset(options={"task_id": "text/csv-sum"})
        env.step(bash(SOLUTIONS["text/csv-sum"]))
        _, reward, terminated, _, info = env.step(SUBMIT)
        assert (reward, terminated, info["success"]) == (1.0, True, True) and env.runtime_name == "docker"
        env.reset(options={"task_id": "text/csv-sum"})
        assert env.step(bash("echo 0 > total.txt"))[1] == 0.0
        assert env.step(SUBMIT)[1] == 0.0
    finally:
        env.close()
