"""Fixtures of the tools tests: a private sandbox state dir, and envs that are always closed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def module_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private sandbox state root for a module's envs; fails if a sandbox left state behind."""
    root = tmp_path_factory.mktemp("sandbox-state")
    old = os.environ.get("ROCK_ENV_SANDBOX_STATE")
    os.environ["ROCK_ENV_SANDBOX_STATE"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("ROCK_ENV_SANDBOX_STATE", None)
        else:
            os.environ["ROCK_ENV_SANDBOX_STATE"] = old
    left = sorted(p.name for p in root.iterdir())
    assert not left, f"sandbox state left behind: {left}"


@pytest.fixture
def sandbox_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private sandbox state root for one test; fails if a sandbox left state behind."""
    root = tmp_path / "sandbox-state"
    monkeypatch.setenv("ROCK_ENV_SANDBOX_STATE", str(root))
    yield root
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert not left, f"sandbox state left behind: {left}"


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The rock-env base image in Docker (the daemon is started and the image built once if needed)."""
    from rock_env.sandbox.image import DEFAULT_IMAGE_NAME, build_base_image
    from rock_env.sandbox.runtimes.docker import DockerRuntime, docker_api

    if not DockerRuntime.available():
        subprocess.run(
            ["bash", "--norc", "--noprofile", str(REPO / "scripts" / "ensure-docker.sh")], check=False, timeout=120
        )
    assert docker_api().ping(), "the Docker daemon must answer (run scripts/ensure-docker.sh as root)"
    built = build_base_image(DEFAULT_IMAGE_NAME)
    return built.name
