"""A server process forbids the unisolated ``local`` runtime for every sandbox it starts, not only its routes'."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_env.errors import PolicyViolation
from rock_env.sandbox import Sandbox
from rock_env.sandbox.runtimes import deny_local_runtime, select_runtime
from rock_env.server.policy import ServerPolicy


@pytest.fixture
def denied() -> Iterator[None]:
    ServerPolicy(allow_local_runtime=False).apply_to_process()
    yield
    deny_local_runtime(None)


def test_local_is_refused_once_a_server_policy_applies(denied: None, sandbox_state: Path) -> None:
    with pytest.raises(PolicyViolation, match=r"worker\.allow_local_runtime=true"):
        select_runtime("local")
    with pytest.raises(PolicyViolation, match="allow_local_runtime"):
        Sandbox(runtime="local").start()
    assert select_runtime("auto") in {"namespace", "docker"}  # isolating runtimes still work


def test_auto_never_falls_back_to_local_when_denied(denied: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from rock_env.sandbox import runtimes

    monkeypatch.setattr(runtimes, "_probe", lambda name: False)  # a host without bubblewrap or Docker
    with pytest.raises(PolicyViolation, match="neither bubblewrap nor Docker"):
        select_runtime("auto")


def test_a_server_that_allows_local_allows_it(sandbox_state: Path) -> None:
    ServerPolicy(allow_local_runtime=True).apply_to_process()
    assert select_runtime("local") == "local"
