"""Fixtures of the vector tests: both modes, and a check that no worker process outlives a test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rock_env.vector.subproc import PARENT_ENV_VAR


def live_workers() -> list[int]:
    """Pids of live vector worker processes started by this (test) process."""
    marker = f"{PARENT_ENV_VAR}={os.getpid()}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            pids.append(int(entry))
    return pids


@pytest.fixture(autouse=True)
def no_leaked_workers() -> Iterator[None]:
    """Fail a test that leaves a worker process behind."""
    yield
    assert live_workers() == [], "a vector worker process outlived the test"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each shared-semantics test runs in both modes."""
    return str(request.param)
