"""code:Python-v0 on the namespace runtime: every problem's reference and wrong solution, datasets, bad code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import rock_env as rock
from rock_env.tools.code_env import FORMAT_ERROR_REWARD, PythonCodeEnv
from rock_env.tools.problems import builtin_problems
from tests.tools.python_solutions import REFERENCE, WRONG
from tests.tools.test_problems import HUMANEVAL_RECORD, MBPP_RECORD

pytestmark = pytest.mark.bwrap

PROBLEM_IDS = [p.task_id for p in builtin_problems()]


def fenced(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def env(module_state: Path) -> Iterator[PythonCodeEnv]:
    """One namespace env shared by the module (each test resets it)."""
    e = PythonCodeEnv(runtime="namespace", time_limit=3)
    yield e
    e.close()


@pytest.mark.parametrize("task_id", PROBLEM_IDS)
def test_reference_scores_1_and_wrong_scores_less(env: PythonCodeEnv, task_id: str) -> None:
    obs, info = env.reset(options={"task_id": task_id})
    assert info["task_id"] == task_id and "```python" in obs
    obs, reward, terminated, truncated, info = env.step(fenced(REFERENCE[task_id]))
    assert reward == 1.0, obs
    assert terminated and not truncated and info["success"] and info["passed"] == info["total"]
    env.reset(options={"task_id": task_id})
    obs, reward, terminated, _, info = env.step(fenced(WRONG[task_id]))
    assert terminated and 0.0 <= reward < 1.0 and info["passed"] < info["total"], obs
    assert reward == pytest.approx(info["passed"] / info["total"])


def test_strict_variant_and_registry(module_state: Path) -> None:
    spec = rock.spec("code:Python-v0-strict")
    assert spec.requirements == ("sandbox",) and spec.kwargs == {"strict": True}
    e = rock.make("code:Python-v0-strict", runtime="namespace")
    try:
        e.reset(options={"task_id": "py/two-sum"})
        _, reward, _, _, info = e.step(fenced(WRONG["py/two-sum"]))
        assert reward == 0.0 and 0 < info["passed"] < info["total"]
        e.reset(options={"task_id": "py/two-sum"})
        assert e.step(fenced(REFERENCE["py/two-sum"]))[1] == 1.0
    finally:
        e.close()


def test_no_code_is_a_format_error_that_ends_a_single_turn_episode(env: PythonCodeEnv) -> None:
    env.reset(options={"task_id": "py/fizzbuzz"})
    obs, reward, terminated, _, info = env.step("I think the answer is to loop.")
    assert reward == FORMAT_ERROR_REWARD == -0.1 and terminated and info["format_error"]
    assert "```python" in obs


def test_submit_tool_call(env: PythonCodeEnv) -> None:
    assert [t["function"]["name"] for t in env.tools] == ["submit"]
    env.reset(options={"task_id": "py/fizzbuzz"})
    call = {"name": "submit", "arguments": json.dumps({"code": REFERENCE["py/fizzbuzz"]})}
    assert env.step(json.dumps(call))[1] == 1.0


def test_multi_turn_feedback_and_resubmission(module_state: Path) -> None:
    e = PythonCodeEnv(runtime="namespace", max_attempts=3)
    try:
        obs, _ = e.reset(options={"task_id": "py/caesar"})
        assert "3 attempts" in obs
        obs, reward, terminated, _, info = e.step(fenced(WRONG["py/caesar"]))
        assert not terminated and reward == 0.0 and info["attempt"] == 1
        assert "hidden tests passed" in obs and "test " in obs and "2 more attempts" in obs
        assert "caesar(" not in obs, "feedback must not show the hidden tests"
        obs, reward, terminated, _, info = e.step(fenced(REFERENCE["py/caesar"]))
        assert terminated and reward == 1.0 and info["attempt"] == 2
        e.reset(options={"task_id": "py/caesar"})
        for _ in range(2):
            assert not e.step(fenced(WRONG["py/caesar"]))[2]
        _, reward, terminated, _, _ = e.step(fenced(WRONG["py/caesar"]))
        assert terminated and 0 < reward < 1
    finally:
        e.close()


def test_a_daemon_from_one_submission_does_not_survive_into_the_next(module_state: Path) -> None:
    dataset = [{"task_id": "d", "prompt": "p", "entry_point": "f", "tests": ["assert f() == 0"]}]
    daemon = (
        "import os, subprocess\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)\ndef f():\n    return 1\n"
    )
    count = (
        "import os\n"
        "def f():\n"
        "    pids = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getppid()]\n"
        "    return sum(1 for p in pids if open(f'/proc/{p}/cmdline').read().startswith('sleep\\x001000'))\n"
    )
    e = PythonCodeEnv(dataset=dataset, runtime="namespace", max_attempts=2)
    try:
        e.reset()
        assert not e.step(fenced(daemon))[2]
        _, reward, terminated, _, _ = e.step(fenced(count))
        assert terminated and reward == 1.0, "the sleep daemon was killed before the second submission"
    finally:
        e.close()


def test_humaneval_and_mbpp_datasets(tmp_path: Path, module_state: Path) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(HUMANEVAL_RECORD) + "\n" + json.dumps(MBPP_RECORD) + "\n")
    e = rock.make("code:Python-v0", dataset=str(path), runtime="namespace")
    try:
        assert e.unwrapped.task_ids() == ["Demo/0", "601"]
        e.reset(options={"task_id": "Demo/0"})
        assert e.step(fenced("def total(xs):\n    return sum(xs)"))[1] == 1.0
        e.reset(options={"task_id": "Demo/0"})
        assert e.step(fenced("    return sum(xs)"))[1] == 1.0, "a bare body completes the prompt"
        e.reset(options={"task_id": "Demo/0"})
        _, reward, _, _, info = e.step(fenced("def total(xs):\n    return sum(x for x in xs if x > 0)"))
        assert (info["passed"], info["total"]) == (2, 3) and reward == pytest.approx(2 / 3)
        e.reset(options={"task_id": "601"})
        assert e.step(fenced(MBPP_RECORD["code"]))[1] == 1.0
        e.reset(options={"task_id": "601"})
        assert e.step(fenced("def largest(a, b, c):\n    return a"))[1] == pytest.approx(2 / 3)
    finally:
        e.close()


ESCAPES = {
    "loops forever": ("while True:\n    pass", "timeout", "too long"),
    "loops forever in a call": ("def two_sum(nums, target):\n    while True:\n        pass", "timeout", "too long"),
    "eats memory": ("def two_sum(nums, target):\n    x = bytearray(3 << 30)\n    return (0, 1)", "memory", "memory"),
    "prints gigabytes": ("def two_sum(nums, target):\n    while True:\n        print('x' * 65536)", "output", "output"),
    "reads the tests via /proc": (
        "import os\ndef two_sum(nums, target):\n    return open(f'/proc/{os.getppid()}/fd/0').read()",
        "forbidden",
        "read the hidden tests",
    ),
    "exits the process": ("import os\ndef two_sum(nums, target):\n    os._exit(0)", "crash", "crash"),
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_bad_code_scores_0_and_says_why(name: str, module_state: Path) -> None:
    code, status, words = ESCAPES[name]
    e = PythonCodeEnv(runtime="namespace", time_limit=1, memory_mb=256, output_limit=100_000)
    try:
        e.reset(options={"task_id": "py/two-sum"})
        obs, reward, terminated, _, info = e.step(fenced(code))
        assert (reward, terminated, info["status"]) == (0.0, True, status), obs
        assert words in obs
        e.reset(options={"task_id": "py/two-sum"})
        assert e.step(fenced(REFERENCE["py/two-sum"]))[1] == 1.0, "the env still works"
    finally:
        e.close()


def test_the_tests_cannot_be_read_even_without_the_audit_hook(env: PythonCodeEnv) -> None:
    """Raw libc calls bypass Python's audit hooks; the grader is non-dumpable, so /proc gives nothing."""
    probe = (
        "import ctypes, os\n"
        "def probe():\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    ppid = os.getppid()\n"
        "    fds = [libc.open(f'/proc/{ppid}/{n}'.encode(), 0) for n in ('mem', 'environ', 'fd/0', 'cmdline')]\n"
        "    assert fds[:3] == [-1, -1, -1], fds\n"
        "    return 'x'\n"
    )
    dataset = [{"task_id": "probe", "prompt": "p", "entry_point": "probe", "tests": ["assert probe() == 'x'"]}]
    e = PythonCodeEnv(dataset=dataset, runtime="namespace")
    try:
        e.reset()
        obs, reward, *_ = e.step(fenced(probe))
        assert reward == 1.0, obs
    finally:
        e.close()


def test_fork_bomb_and_rm_rf_are_contained(env: PythonCodeEnv, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("host")
    env.reset(options={"task_id": "py/two-sum"})
    bomb = "import os\nwhile True:\n    os.fork()"
    obs, reward, *_ = env.step(fenced(bomb))
    assert reward == 0.0 and "Score: 0" in obs
    env.reset(options={"task_id": "py/two-sum"})
    wipe = f"import shutil\nshutil.rmtree('/', ignore_errors=True)\nopen('{canary}', 'w').write('pwned')\n"
    obs, reward, *_ = env.step(fenced(wipe + REFERENCE["py/two-sum"]))
    assert canary.read_text() == "host"
    env.reset(options={"task_id": "py/two-sum"})
    assert env.step(fenced(REFERENCE["py/two-sum"]))[1] == 1.0


def test_reset_by_seed_is_deterministic(env: PythonCodeEnv) -> None:
    first = [env.reset(seed=s)[1]["task_id"] for s in (4, 5, 6)]
    assert first == [env.reset(seed=s)[1]["task_id"] for s in (4, 5, 6)]
