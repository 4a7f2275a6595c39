"""Fixtures of the tools tests: a private sandbox state dir per module (``sandbox_state`` and ``docker_image`` are in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


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
