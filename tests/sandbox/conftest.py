"""Fixtures of the sandbox tests: a private state dir per test, and sandboxes that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.sandbox import Sandbox, teardown


@pytest.fixture
def sandbox_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the sandbox state root at a private directory; fail if a sandbox left state behind (after teardown)."""
    root = tmp_path / "sandbox-state"
    monkeypatch.setenv("ROCK_ENV_SANDBOX_STATE", str(root))
    yield root
    assert teardown.wait_all(timeout=30), "background sandbox teardowns did not finish"
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert not left, f"sandbox state left behind: {left}"


@pytest.fixture
def ns(sandbox_state: Path) -> Iterator[Sandbox]:
    """A started namespace sandbox, stopped after the test."""
    with Sandbox(runtime="namespace") as sb:
        yield sb


@pytest.fixture
def local(sandbox_state: Path) -> Iterator[Sandbox]:
    """A started local sandbox, stopped after the test."""
    with Sandbox(runtime="local") as sb:
        yield sb


@pytest.fixture(params=["local", pytest.param("namespace", marks=pytest.mark.bwrap)])
def any_sandbox(request: pytest.FixtureRequest, sandbox_state: Path) -> Iterator[Sandbox]:
    """A started sandbox of each host runtime (the namespace one needs bubblewrap)."""
    with Sandbox(runtime=request.param) as sb:
        yield sb
