"""The tool envs on the docker runtime (the base image from ``rock-env image build-base``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rock_env.tools.bash_env import BashEnv
from rock_env.tools.code_env import PythonCodeEnv
from tests.tools.bash_solutions import SOLUTIONS
from tests.tools.python_solutions import REFERENCE, WRONG

pytestmark = pytest.mark.docker

DOCKER_TASKS = ["git/resolve-conflict", "proc/stop-runaway", "text/top-ips", "fix/python-mean", "perm/world-writable"]
LIST_PROCS = r"for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null < $p/cmdline && echo; done"


def test_bash_env_on_docker(docker_image: str, module_state: Path) -> None:
    env = BashEnv(runtime="docker", sandbox={"image": docker_image})
    try:
        for task_id in DOCKER_TASKS:
            env.reset(options={"task_id": task_id})
            assert env.step("<submit/>")[1] == 0.0
            env.reset(options={"task_id": task_id})
            obs, *_ = env.step(f"<bash>{SOLUTIONS[task_id]}</bash>")
            assert env.step("<submit/>")[1] == 1.0, obs
        assert env.runtime_name == "docker"
        sandbox_id = env.sandbox.id
        env.reset(options={"task_id": "text/csv-sum"})
        env.step("<bash>rm sales.csv; setsid -f sleep 1000 >/dev/null 2>&1</bash>")
        env.reset(options={"task_id": "text/csv-sum"})
        obs, *_ = env.step(f"<bash>ls; {LIST_PROCS}</bash>")
        assert "sales.csv" in obs and "sleep 1000" not in obs
        assert env.sandbox.id == sandbox_id, "one container for all episodes"
        env.reset(options={"task_id": "files/create-hello"})
        env.step("<bash>rm -rf --no-preserve-root / >/dev/null 2>&1; echo done</bash>")
        env.reset(options={"task_id": "files/create-hello"})
        env.step(f"<bash>{SOLUTIONS['files/create-hello']}</bash>")
        assert env.step("<submit/>")[1] == 1.0, "a wrecked container is replaced at reset"
    finally:
        env.close()


def test_code_env_on_docker(docker_image: str, module_state: Path) -> None:
    env = PythonCodeEnv(runtime="docker", sandbox={"image": docker_image}, time_limit=2)
    try:
        env.reset(options={"task_id": "py/lru-cache"})
        assert env.step(f"```python\n{REFERENCE['py/lru-cache']}\n```")[1] == 1.0
        env.reset(options={"task_id": "py/lru-cache"})
        assert env.step(f"```python\n{WRONG['py/lru-cache']}\n```")[1] < 1.0
        env.reset(options={"task_id": "py/lru-cache"})
        sneaky = "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())"
        obs, reward, *_ = env.step(f"```python\n{sneaky}\n```")
        assert reward == 0.0 and "read the hidden tests" in obs
    finally:
        env.close()


def test_tests_stay_unreadable_on_docker(docker_image: str, module_state: Path) -> None:
    """Raw libc opens of the grader's /proc files fail in a container too (no CAP_SYS_PTRACE)."""
    probe = (
        "import ctypes, os\n"
        "def probe():\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    fds = [libc.open(f'/proc/{os.getppid()}/{n}'.encode(), 0) for n in ('mem', 'environ', 'fd/0')]\n"
        "    assert fds == [-1, -1, -1], fds\n"
        "    return 'x'\n"
    )
    dataset = [{"task_id": "probe", "prompt": "p", "entry_point": "probe", "tests": ["assert probe() == 'x'"]}]
    env = PythonCodeEnv(dataset=dataset, runtime="docker", sandbox={"image": docker_image})
    try:
        env.reset()
        obs, reward, *_ = env.step(f"```python\n{probe}\n```")
        assert reward == 1.0, obs
    finally:
        env.close()
