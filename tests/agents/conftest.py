"""Fixtures of the agent tests: the official ``openai`` client as a directory a sandbox's python3 can import."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.sandbox import teardown

#: the openai client and its dependencies, installed with --target for the sandbox's python3 (3.11)
OPENAI_TARGET = Path.home() / ".cache" / "rock-env" / "openai-py311"


@pytest.fixture(scope="session")
def openai_lib() -> Path:
    """A tar.gz of ``openai`` and its dependencies (pip --target, cached; built once across xdist workers).

    One compressed file uploads into a sandbox ten times faster than the thousands of files in it.
    """
    OPENAI_TARGET.parent.mkdir(parents=True, exist_ok=True)
    with open(OPENAI_TARGET.parent / "openai-py311.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (OPENAI_TARGET / ".complete").exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--target", str(OPENAI_TARGET), "openai"],
                check=True,
                timeout=600,
            )
            (OPENAI_TARGET / ".complete").write_text("ok\n")
        tarball = OPENAI_TARGET.parent / "openai-py311-v2.tgz"
        if not tarball.exists():
            partial = tarball.with_suffix(".part")
            subprocess.run(
                ["tar", "czf", str(partial), "-C", str(OPENAI_TARGET), "--exclude=bin", "."],
                check=True,
                timeout=300,
            )
            partial.rename(tarball)
    return tarball


@pytest.fixture
def agent_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private sandbox state root; fails if a sandbox left state behind (after background teardowns)."""
    root = tmp_path / "sandbox-state"
    monkeypatch.setenv("ROCK_ENV_SANDBOX_STATE", str(root))
    yield root
    assert teardown.wait_all(timeout=30), "background sandbox teardowns did not finish"
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert not left, f"sandbox state left behind: {left}"


@pytest.fixture(scope="module")
def agent_module_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private sandbox state root for a module's agent envs; fails if a sandbox left state behind."""
    import os

    root = tmp_path_factory.mktemp("agent-sandbox-state")
    old = os.environ.get("ROCK_ENV_SANDBOX_STATE")
    os.environ["ROCK_ENV_SANDBOX_STATE"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("ROCK_ENV_SANDBOX_STATE", None)
        else:
            os.environ["ROCK_ENV_SANDBOX_STATE"] = old
    assert teardown.wait_all(timeout=30), "background sandbox teardowns did not finish"
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert not left, f"sandbox state left behind: {left}"
