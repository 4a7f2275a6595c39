"""ROCK's own SDK (rl-rock, in a venv of its own) against a live ``rock-env admin start``, on namespace and docker.

ROCK's README examples (env and Sandbox SDK) run unchanged: ``tests/server/rock_scripts/readme_*.py.txt``
are the code blocks of rl-rock 1.11.0's README byte for byte (``.txt``: no linter or formatter touches
them), run under ``observe.py``, which only records what the client's methods returned. ``all_calls.py`` makes every call of ROCK's sandbox API that rock-env
serves (start + status polling, is_alive, sessions, arun normal and nohup, execute, files,
upload, stop, delete, errors) and the same sandboxes are used through rock-env's own API both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.server.testing import ServerProcess
from tests.rock_sdk import rock_sdk_python

pytestmark = [pytest.mark.server, pytest.mark.slow]

SCRIPTS = Path(__file__).parent / "rock_scripts"
RUNTIMES = [
    pytest.param("namespace", marks=pytest.mark.bwrap),
    pytest.param("docker", marks=pytest.mark.docker),
    # `rock-env admin start` as it comes: the sandboxes live in its worker processes
    pytest.param("namespace:workers=auto", marks=pytest.mark.bwrap, id="namespace-worker-processes"),
]


@pytest.fixture(scope="session")
def rock_python() -> Path:
    """The python of the cached rl-rock venv."""
    return rock_sdk_python()


@pytest.fixture()
def admin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """``rock-env admin start runtime=<param>`` as a child process on a free loopback port (``<runtime>:<override>``:
    with that override too, e.g. ``namespace:workers=auto``, the admin as it comes, with worker processes)."""
    runtime, _, extra = request.param.partition(":")
    if runtime == "docker":
        request.getfixturevalue("docker_image")  # the daemon up and the base image built
    data = tmp_path / "admin"
    data.mkdir()
    with ServerProcess.admin(data, *([extra] if extra else []), f"runtime={runtime}") as server:
        yield server


def run_rock(python: Path, admin: ServerProcess, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a script with the rl-rock venv's python, ROCK_BASE_URL pointing at the admin."""
    env = {**os.environ, "ROCK_BASE_URL": admin.url}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def observe(python: Path, admin: ServerProcess, script: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Run a README example unchanged; what each of the client's calls returned."""
    out = tmp_path / f"{script}.json"
    run_rock(python, admin, str(SCRIPTS / "observe.py"), str(SCRIPTS / script), str(out), cwd=tmp_path)
    calls: list[dict[str, Any]] = json.loads(out.read_text())
    return calls


def live_sandboxes(admin: ServerProcess) -> list[Any]:
    sandboxes: list[Any] = httpx.get(admin.url + "/api/v1/sandboxes", timeout=60).json()["sandboxes"]
    return sandboxes


@pytest.mark.parametrize("admin", RUNTIMES, indirect=True)
def test_rock_sdk_runs_unchanged(admin: ServerProcess, rock_python: Path, tmp_path: Path) -> None:
    runtime = admin.argv[-1].split("=", 1)[1]

    # ROCK's README "Sandbox SDK Usage", unchanged
    calls = observe(rock_python, admin, "readme_sandbox.py.txt", tmp_path)
    assert [c["call"] for c in calls] == ["start", "create_session", "arun", "stop"]
    arun = calls[2]["result"]
    assert (arun["output"], arun["exit_code"]) == ("Hello Rock", 0)
    assert calls[0]["sandbox_id"].startswith("sbx-")
    assert live_sandboxes(admin) == []  # stop() stopped it

    if runtime == "namespace":  # ROCK's README "Using Env Protocol", unchanged (envs do not depend on the runtime)
        calls = observe(rock_python, admin, "readme_env.py.txt", tmp_path)
        names = [c["call"] for c in calls]
        assert names[0] == "reset" and names[-1] == "close" and names.count("step") >= 1
        expected, _ = rock.make("game:Sokoban-v0-easy").reset(seed=42)
        assert calls[0]["result"][0] == expected
        last = calls[-2]["result"]
        assert last[2] or last[3]  # the loop ran until the episode ended

    # every call of ROCK's sandbox API
    run_rock(rock_python, admin, str(SCRIPTS / "all_calls.py"), str(tmp_path), cwd=tmp_path)
    out = json.loads((tmp_path / "all_calls.json").read_text())
    check_all_calls(out, runtime)
    assert live_sandboxes(admin) == []


def check_all_calls(out: dict[str, Any], runtime: str) -> None:
    """What every call of ``all_calls.py`` must have returned."""
    status = out["status"]
    assert status["sandbox_id"] == out["sandbox_id"] and status["is_alive"] is True and out["is_alive"] is True
    assert status["state"] == "running" and status["status"]["sandbox_start"]["status"] == "success"
    assert (status["image"], status["memory"], status["cpus"]) == ("python:3.11", "1g", 1.0)
    assert (status["user_id"], status["experiment_id"], status["namespace"]) == ("u-1", "exp-1", "ns-1")
    # sessions and arun (normal mode): env, state kept between commands, temp sessions, check="raise"
    assert (out["arun"]["output"], out["arun"]["exit_code"]) == ("bar\n42", 0)
    assert out["arun_state"] == "/tmp\nyes"
    assert out["arun_tmp_session"] == "in-a-temp-session"
    assert "failed with exit code 3" in out["arun_failing"]
    assert out["arun_after_failure"] == "still-here"
    # arun nohup: background process, completion check (kill -0), output read back
    assert (out["nohup"]["output"], out["nohup"]["exit_code"]) == ("nohup finished", 0)
    assert out["nohup_seconds"] >= 1
    detached = out["nohup_detached"]
    assert detached["exit_code"] == 0 and "Output file: /tmp/rock-out/job.log" in detached["output"]
    assert "File size: 13 bytes" in detached["output"] and out["nohup_file"] == "kept-in-file\n"
    # execute
    assert out["execute_argv"] == {"stdout": "argv ok\n", "stderr": "", "exit_code": 0}
    assert out["execute_shell"] == {"stdout": "via-bash\n", "stderr": "", "exit_code": 4}
    assert out["execute_cwd_env"]["stdout"] == "/tmp z\n"
    # files and upload; failures come back the way ROCK's SDK reports them
    assert out["write"]["success"] is True and out["read"] == "h\u00e9llo\nline 2\n"
    assert out["write_bad"]["success"] is False and "SandboxFileNotFound" in out["write_bad"]["message"]
    assert out["read_missing"] is not None
    assert out["upload"]["success"] is True and out["upload_auto"]["success"] is True
    assert out["upload_check"] == "16384\na1f259d4365ed432"
    assert out["upload_missing_sandbox_path"]["success"] is False
    # the same sandbox through rock-env's own API, and one of ours through ROCK's
    assert out["ours_status"]["runtime"] == runtime and out["ours_status"]["status"] == "running"
    assert out["ours_run"]["output"] == "h\u00e9llo\nline 2\n"
    native = out["native_via_rock"]
    assert native["attached_id"] == native["id"] and native["arun"] == "made-by-our-api"
    assert out["native_after_stop"] == "stopped"
    # close_session, stop, delete and unknown ids
    assert out["close_session"] == {"session_type": "bash"}
    assert "SessionNotFound" in out["run_closed_session"] and "SessionNotFound" in out["close_unknown_session"]
    assert out["after_stop"] == {"state": "stopped", "is_alive": False}
    assert "SandboxNotFound" in out["run_after_stop"]
    assert out["delete"] is None and "SandboxNotFound" in out["status_after_delete"]
    unmapped = out["unmapped_image"]
    assert unmapped.startswith("BadRequestRockError") and "server.rock_image_map" in unmapped
    assert "SandboxNotFound" in out["attach_unknown"]
