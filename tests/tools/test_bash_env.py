"""tool:Bash-v0 on the namespace runtime: every task's reference solution, episodes, limits, bad input."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.errors import InvalidArgument, ResetNeeded
from rock_env.tools.bash_env import FORMAT_ERROR_REWARD, BashEnv
from rock_env.tools.bash_tasks import builtin_tasks
from tests.tools.bash_solutions import SOLUTIONS

pytestmark = pytest.mark.bwrap

TASK_IDS = [t.id for t in builtin_tasks()]

LIST_PROCS = r"for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null < $p/cmdline && echo; done"


@pytest.fixture(scope="module")
def env(module_state: Path) -> Iterator[BashEnv]:
    """One namespace env shared by the module (each test resets it)."""
    e = BashEnv(runtime="namespace", command_timeout=20)
    yield e
    e.close()


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_reference_solution_scores_1_and_doing_nothing_scores_0(env: BashEnv, task_id: str) -> None:
    obs, info = env.reset(options={"task_id": task_id})
    assert info["task_id"] == task_id
    assert env.task is not None and env.task.description.strip() in obs
    _, reward, terminated, truncated, info = env.step("<submit></submit>")
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert not any(info["checks"])

    env.reset(options={"task_id": task_id})
    obs, reward, terminated, _, _ = env.step(f"<bash>{SOLUTIONS[task_id]}</bash>")
    assert (reward, terminated) == (0.0, False)
    obs, reward, terminated, truncated, info = env.step("<submit/>")
    assert reward == 1.0, obs
    assert terminated and not truncated and info["success"] and all(info["checks"])


def test_observation_has_output_and_exit_code(env: BashEnv) -> None:
    env.reset(options={"task_id": "files/create-hello"})
    obs, _reward, *_, info = env.step("<bash>echo out; echo err >&2; exit 3</bash>")
    assert "out\n" in obs and "err\n" in obs and "[exit code: 3]" in obs
    assert info["exit_code"] == 3 and info["tool_calls"] == ["bash"]
    obs, *_ = env.step("<bash>export A=1; cd /tmp; f() { echo fn; }</bash>")
    obs, *_ = env.step("<bash>echo $A $(pwd); f</bash>")
    assert "1 /tmp\nfn" in obs, "the shell keeps state between commands"


def test_openai_style_calls_and_tools(env: BashEnv) -> None:
    names = [t["function"]["name"] for t in env.tools]
    assert names == ["bash", "submit"]
    env.reset(options={"task_id": "files/create-hello"})
    message = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "1",
                "type": "function",
                "function": {"name": "bash", "arguments": json.dumps({"cmd": "echo 'Hello, World!' > hello.txt"})},
            },
            {"id": "2", "type": "function", "function": {"name": "submit", "arguments": "{}"}},
        ],
    }
    _obs, reward, terminated, _, info = env.step(json.dumps(message))
    assert reward == 1.0 and terminated and info["tool_calls"] == ["bash", "submit"]


def test_malformed_action_gets_explanation_and_gem_format_error_reward(env: BashEnv) -> None:
    env.reset(options={"task_id": "files/create-hello"})
    obs, reward, terminated, truncated, info = env.step("I would run ls")
    assert reward == FORMAT_ERROR_REWARD == -0.1
    assert not terminated and not truncated and info["format_error"]
    assert "No tool call found" in obs and "<bash>" in obs
    obs, reward, *_ = env.step('{"name": "python", "arguments": {"code": "1"}}')
    assert reward == -0.1 and "Unknown tool 'python'" in obs
    obs, reward, *_ = env.step("<bash>echo still fine</bash>")
    assert reward == 0.0 and "still fine" in obs


def test_reset_by_seed_is_deterministic_and_task_id_is_checked(env: BashEnv) -> None:
    first = [env.reset(seed=s)[1]["task_id"] for s in (1, 2, 3)]
    again = [env.reset(seed=s)[1]["task_id"] for s in (1, 2, 3)]
    assert first == again
    assert len({env.reset(seed=s)[1]["task_id"] for s in range(20)}) > 3
    with pytest.raises(InvalidArgument, match="Did you mean files/create-hello"):
        env.reset(options={"task_id": "files/create-helo"})


def test_reset_restores_the_workspace_and_kills_leftover_processes(env: BashEnv) -> None:
    env.reset(options={"task_id": "text/csv-sum"})
    env.step(
        "<bash>rm -f sales.csv; echo junk > extra.txt; (sleep 1000 >/dev/null 2>&1 &); "
        "setsid -f sleep 2000 >/dev/null 2>&1</bash>"
    )
    obs, *_ = env.step(f"<bash>{LIST_PROCS}</bash>")
    assert "sleep 1000" in obs and "sleep 2000" in obs
    env.reset(options={"task_id": "text/csv-sum"})
    obs, *_ = env.step(f"<bash>ls; {LIST_PROCS}</bash>")
    assert "sales.csv" in obs and "extra.txt" not in obs
    assert "sleep 1000" not in obs and "sleep 2000" not in obs


def test_turn_limit_truncates_and_verifies(module_state: Path) -> None:
    with BashEnv(runtime="namespace", max_turns=2) as e:
        e.reset(options={"task_id": "files/create-hello"})
        _, _, terminated, truncated, _ = e.step("<bash>echo 'Hello, World!' > hello.txt</bash>")
        assert not terminated and not truncated
        obs, reward, terminated, truncated, _info = e.step("<bash>true</bash>")
        assert truncated and not terminated and reward == 1.0 and "last turn" in obs
        with pytest.raises(ResetNeeded):
            e.step("<bash>ls</bash>")


def test_episode_time_limit_cuts_a_long_command(module_state: Path) -> None:
    e = BashEnv(runtime="namespace", episode_timeout=1.5)
    try:
        e.reset(options={"task_id": "files/create-hello"})
        obs, reward, terminated, truncated, info = e.step("<bash>sleep 30</bash>")
        assert truncated and not terminated and reward == 0.0
        assert info["timed_out"] and "time limit" in obs
    finally:
        e.close()


def test_command_timeout_leaves_the_shell_usable(env: BashEnv) -> None:
    env.reset(options={"task_id": "files/create-hello"})
    obs, *_ = env.step('{"name": "bash", "arguments": {"command": "sleep 30", "timeout": 0.5}}')
    assert "timed out after 0.5 s" in obs
    obs, *_ = env.step("<bash>echo after</bash>")
    assert "after" in obs and "[exit code: 0]" in obs


def test_rm_rf_root_leaves_the_host_alone_and_the_next_episode_works(env: BashEnv, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("host data")
    env.reset(options={"task_id": "files/create-hello"})
    obs, *_ = env.step("<bash>rm -rf --no-preserve-root / 2>&1 | tail -2; echo rc=$?</bash>")
    assert "rc=" in obs
    assert canary.read_text() == "host data"
    assert Path("/usr/bin/bash").exists() and Path("/etc/passwd").stat().st_size > 0
    env.reset(options={"task_id": "files/create-hello"})
    env.step(f"<bash>{SOLUTIONS['files/create-hello']}</bash>")
    assert env.step("<submit/>")[1] == 1.0


def test_host_files_and_network_are_out_of_reach(env: BashEnv, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("host data")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        env.reset(options={"task_id": "files/create-hello"})
        obs, *_ = env.step(f"<bash>cat {canary} /root/.bashrc; wc -c < /etc/shadow</bash>")
        assert "host data" not in obs and "No such file" in obs
        assert obs.split("\n")[-2].strip() == "0", obs
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2); print('CONNECTED')"
        obs, *_ = env.step(f'<bash>python3 -c "{code}" 2>&1 | tail -1</bash>')
        assert "CONNECTED" not in obs and "Error" in obs
    finally:
        listener.close()


def test_huge_output_is_truncated(env: BashEnv) -> None:
    env.reset(options={"task_id": "files/create-hello"})
    obs, *_, info = env.step("<bash>head -c 1000000000 /dev/zero | tr '\\0' a</bash>")
    assert len(obs) < 200_000 and "[exit code: 0]" in obs and info["truncated"]
    obs, *_ = env.step("<bash>echo alive</bash>")
    assert "alive" in obs


def test_fork_bomb_is_contained_and_cleaned_up_at_reset(env: BashEnv) -> None:
    env.reset(options={"task_id": "files/create-hello"})
    obs, *_ = env.step("<bash>:(){ :|:& };: 2>/dev/null; echo bomb-started</bash>")
    assert "bomb-started" in obs or "timed out" in obs
    env.reset(options={"task_id": "files/create-hello"})
    obs, *_ = env.step(f"<bash>sleep 0.5; {{ {LIST_PROCS}; }} | grep -c . </bash>")
    assert int(obs.split("\n")[0]) < 20, "the fork bomb was killed at reset"
    env.step(f"<bash>{SOLUTIONS['files/create-hello']}</bash>")
    assert env.step("<submit/>")[1] == 1.0


def test_make_from_registry_and_close(module_state: Path) -> None:
    spec = rock.spec("tool:Bash-v0")
    assert spec.requirements == ("sandbox",) and spec.source == "builtin"
    e = rock.make("tool:Bash-v0", runtime="namespace", seed=3)
    try:
        _obs, info = e.reset()
        assert info["task_id"] in TASK_IDS and info["tools"] == ["bash", "submit"]
        sandbox = e.unwrapped.sandbox
    finally:
        e.close()
    assert not sandbox.alive()


def test_local_runtime(sandbox_state: Path) -> None:
    e = BashEnv(runtime="local", tasks=[t for t in builtin_tasks() if t.id.startswith("files/")])
    try:
        for task_id in ("files/create-hello", "files/find-large"):
            e.reset(options={"task_id": task_id})
            e.step(f"<bash>{SOLUTIONS[task_id]}</bash>")
            assert e.step("<submit/>")[1] == 1.0
    finally:
        e.close()


def test_custom_task_file(tmp_path: Path, sandbox_state: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "- id: mine/count\n  description: Write the number of lines of in.txt to n.txt.\n"
        "  setup: seq 7 > in.txt\n  checks: ['[ \"$(cat n.txt)\" = 7 ]']\n"
    )
    e = BashEnv(tasks=path, runtime="namespace")
    try:
        assert e.task_ids() == ["mine/count"]
        e.reset()
        e.step("<bash>wc -l < in.txt > n.txt</bash>")
        assert e.step("<submit/>")[1] == 1.0
    finally:
        e.close()
