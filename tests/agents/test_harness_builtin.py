"""The built-in harness program on its own (run on the host, as the sandbox runs it) against a fake model server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rock_env.agents.harness import harness_source
from tests.policies.fake_openai import FakeOpenAI


def run_harness(url: str, workdir: Path, *, timeout: float = 30, **config: Any) -> subprocess.CompletedProcess[str]:
    settings = {"task": "the task", "max_turns": 5, "command_timeout": 5, "output_limit": 200, **config}
    env = {"PATH": os.environ["PATH"], "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "k-1",
           "ROCK_AGENT_CONFIG": json.dumps(settings)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", harness_source()],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def call(name: str, arguments: Any, call_id: str) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]}  # fmt: skip


def test_tool_loop_output_limit_timeout_and_background_processes(tmp_path: Path) -> None:
    replies = [
        call("bash", {"command": "echo hi > f.txt; cat f.txt; exit 4"}, "a"),
        call("bash", {"command": "head -c 1000 /dev/zero | tr '\\0' x"}, "b"),
        call("bash", {"command": "sleep 30", "timeout": 0.5}, "c"),
        call("bash", {"command": "sleep 30 > /dev/null 2>&1 & echo started"}, "d"),
        call("bash", "{not json", "e"),
        call("submit", {}, "f"),
    ]
    with FakeOpenAI(lambda body: replies[(len(body["messages"]) - 1) // 2]) as server:
        started = time.monotonic()
        done = run_harness(server.url, tmp_path, max_turns=10, sampling={"temperature": 0.5})
        assert time.monotonic() - started < 10, "a background process does not hold the harness"
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted" in done.stdout and (tmp_path / "f.txt").read_text() == "hi\n"
    last = server.requests[-1]
    assert last["temperature"] == 0.5 and last["model"] == "rock-env" and len(server.requests) == 6
    assert server.headers[0]["Authorization"] == "Bearer k-1"
    results = {m["tool_call_id"]: m["content"] for m in last["messages"] if m["role"] == "tool"}
    assert results["a"] == "hi\n[exit code: 4]"
    assert results["b"].startswith("x" * 200 + "\n[output truncated: 200 of 1000 bytes shown]")
    assert results["c"] == "[command timed out after 0.5 s and was killed]"
    assert results["d"] == "started\n[exit code: 0]"
    assert "not a JSON object" in results["e"]
    assert [m["role"] for m in last["messages"][:2]] == ["user", "assistant"], "no system prompt unless given"


@pytest.mark.parametrize(
    ("reply", "config", "code", "log"),
    [
        ("done", {}, 0, "without a tool call"),
        (500, {}, 3, "HTTP 500"),
        (call("bash", {"command": "true"}, "x"), {"max_turns": 2}, 2, "turn limit (2)"),
        ("x", {"task": None, "broken": True}, 4, "bad settings"),
    ],
)
def test_exit_codes(tmp_path: Path, reply: Any, config: dict[str, Any], code: int, log: str) -> None:
    with FakeOpenAI(lambda body: reply) as server:
        if config.pop("broken", False):
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-c", harness_source()], env={"OPENAI_BASE_URL": server.url},
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        else:
            done = run_harness(server.url, tmp_path, **config)
    assert done.returncode == code and log in done.stdout, done.stdout + done.stderr


def test_unreachable_model_is_exit_code_3(tmp_path: Path) -> None:
    done = run_harness("http://127.0.0.1:9/v1", tmp_path)
    assert done.returncode == 3 and "ConnectionRefusedError" in done.stdout
