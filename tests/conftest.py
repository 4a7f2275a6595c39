"""Suite-wide test policy and the fixtures several test packages share.

With ``ROCK_ENV_REQUIRE_ALL_BACKENDS=1`` (set by ``.ci/run``), a skipped test counts as a
failure: CI must not pass because Docker, bubblewrap or the server could not be reached.

Shared fixtures: ``sandbox_state`` (a private sandbox state root for one test that fails if a
sandbox left state behind) and ``docker_image`` (the base image in the running Docker daemon).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("ROCK_ENV_REQUIRE_ALL_BACKENDS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but ROCK_ENV_REQUIRE_ALL_BACKENDS=1 requires every backend: {reason}"


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
    assert built.docker_image_id
    return built.name
