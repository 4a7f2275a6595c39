"""``rock-env admin start`` / ``rock-env worker start`` as a user runs them (Hydra overrides, refusals)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.server.config import admin_settings, compose
from rock_env.server.testing import ServerProcess

pytestmark = pytest.mark.server


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rock_env.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_overrides_compose_into_settings() -> None:
    settings, extra = admin_settings(compose("serve_admin", ["server.port=9000", "runtime=docker", "limits=small"]))
    assert settings.port == 9000
    assert settings.runtime["runtime"] == "docker"
    assert settings.limits.max_envs == 1024
    assert extra == {"port_file": None}
    printed = run_cli("admin", "start", "--cfg", "server.port=9000", "runtime=docker")
    assert printed.returncode == 0, printed.stderr
    assert "port: 9000" in printed.stdout and "name: docker" in printed.stdout


def test_public_bind_without_token_is_refused() -> None:
    result = run_cli("admin", "start", "server=public", env={"ROCK_ENV_TOKEN": ""})
    assert result.returncode == 1
    assert "without an API token" in result.stderr


def test_bad_override_is_a_clear_error() -> None:
    result = run_cli("admin", "start", "server.nope=1")
    assert result.returncode == 1 and "bad override" in result.stderr


def test_worker_needs_admin_url() -> None:
    result = run_cli("worker", "start")
    assert result.returncode == 1 and "--admin" in result.stderr


@pytest.mark.slow
def test_admin_cli_serves_remote_envs(tmp_path: Path) -> None:
    # a local default runtime hands clients host access: the admin must say so explicitly
    with ServerProcess.admin(tmp_path, "runtime=local", "worker.allow_local_runtime=true") as admin:
        env = rock.make("game:Sokoban-v0-easy", backend="remote", base_url=admin.url)
        local = rock.make("game:Sokoban-v0-easy")
        assert env.reset(seed=5) == local.reset(seed=5)
        assert env.step("\\boxed{up}") == local.step("\\boxed{up}")
        env.close()
        with rock.Sandbox(base_url=admin.url) as sb:  # the admin's runtime=local default applies
            assert sb.runtime == "local"
            assert sb.run("echo via-cli").output == "via-cli\n"
        assert httpx.get(admin.url + "/api/v1/health", timeout=60).json()["envs"] == 0


def test_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("admin", "start", f"server.port={port}")
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_admin_runtime_override_places_docker_sandboxes(tmp_path: Path) -> None:
    with ServerProcess.admin(tmp_path, "runtime=docker") as admin, rock.Sandbox(base_url=admin.url) as sb:
        assert sb.runtime == "docker"
        assert sb.run("echo in-docker").output == "in-docker\n"
