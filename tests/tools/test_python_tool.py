"""PythonToolWrapper: a python tool for any env, on the namespace runtime."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.errors import InvalidArgument
from rock_env.tools.python_tool import PythonToolWrapper

pytestmark = pytest.mark.bwrap


@pytest.fixture
def game(module_state: Path) -> Iterator[PythonToolWrapper]:
    """Sokoban with a python tool (2 s timeout, 3 tool uses)."""
    env = PythonToolWrapper(rock.make("game:Sokoban-v0-easy"), runtime="namespace", timeout=2, max_tool_uses=3)
    yield env
    env.close()


def test_tool_calls_run_code_and_do_not_end_the_episode(game: PythonToolWrapper) -> None:
    obs, info = game.reset(seed=0)
    assert "<python>" in obs and info["use_tool"] is False and info["tool_use_counter"] == 0
    obs, reward, terminated, truncated, info = game.step("Let me compute. <python>print(6 * 7)</python>")
    assert obs == "Code execution result: 42\n\n"
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["use_tool"] and info["tool_type"] == "python_code" and info["tool_success_counter"] == 1
    obs, *_, info = game.step('{"name": "python", "arguments": {"code": "import sys; sys.exit(3)"}}')
    assert info["tool_use_counter"] == 2 and not info["tool_success"]
    names = [t["function"]["name"] for t in game.tools]
    assert names[-1] == "python"


def test_other_actions_step_the_wrapped_env(game: PythonToolWrapper) -> None:
    game.reset(seed=0)
    inner = rock.make("game:Sokoban-v0-easy")
    inner.reset(seed=0)
    expected = inner.step("\\boxed{up}")
    got = game.step("\\boxed{up}")
    assert got[0] == expected[0] and got[1] == expected[1] and got[2:4] == expected[2:4]
    assert got[4]["use_tool"] is False
    inner.close()


def test_timeout_is_honoured_and_tool_uses_are_limited(game: PythonToolWrapper) -> None:
    game.reset(seed=1)
    start = time.monotonic()
    obs, *_ = game.step("```python\nimport time\nwhile True:\n    time.sleep(0.1)\n```")
    assert time.monotonic() - start < 10
    assert "timed out after 2 s" in obs
    game.step("<python>print(1)</python>")
    obs, *_, info = game.step("<python>print(2)</python>")
    assert "maximum number of tool use" in obs and info["tool_use_counter"] == 3
    obs, _, _, _, info = game.step("<python>print(3)</python>")
    assert info["use_tool"] is False, "past the limit, the action goes to the wrapped env"


def test_code_runs_sandboxed_and_nothing_persists(game: PythonToolWrapper, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("host")
    game.reset(seed=2)
    obs, *_ = game.step(f"<python>open('note', 'w').write('x'); print(open('{canary}').read())</python>")
    assert "FileNotFoundError" in obs
    obs, *_ = game.step("<python>import os; print(os.path.exists('note'))</python>")
    assert "False" in obs
    obs, *_ = game.step("<python>import socket; socket.create_connection(('1.1.1.1', 53), 2)</python>")
    assert "Error" in obs
    assert canary.read_text() == "host"


def test_wrapping_a_code_env(module_state: Path) -> None:
    env = PythonToolWrapper(rock.make("code:Python-v0", runtime="namespace"), runtime="namespace")
    try:
        env.reset(options={"task_id": "py/fibonacci"})
        obs, *_ = env.step({"name": "python", "arguments": {"code": "print(2 ** 10)"}})  # type: ignore[arg-type]
        assert "1024" in obs
        submit = {"name": "submit", "arguments": {"code": "def fib(n):\n    return n"}}
        _, reward, terminated, _, info = env.step(submit)  # type: ignore[arg-type]
        assert terminated and reward < 1.0 and info["tool_use_counter"] == 1
        assert [t["function"]["name"] for t in env.tools] == ["submit", "python"]
    finally:
        env.close()


def test_tool_rewards(module_state: Path) -> None:
    env = PythonToolWrapper(
        rock.make("game:Sokoban-v0-easy"), runtime="namespace", tool_reward=0.1, tool_success_reward=0.5
    )
    try:
        env.reset(seed=0)
        assert env.step("<python>print(1)</python>")[1] == pytest.approx(0.6)
        assert env.step("<python>raise SystemExit(2)</python>")[1] == pytest.approx(0.1)
    finally:
        env.close()


def test_bad_timeout() -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        PythonToolWrapper(object(), timeout=0)
