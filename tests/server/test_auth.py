"""Tokens (constant-time checked), per-token quotas, and the refusal to bind publicly without a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.errors import ConfigError, QuotaExceeded, Unauthorized
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import Limits, ServerSettings, TokenSpec, is_loopback
from tests.server.conftest import serve

pytestmark = pytest.mark.server

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"
SOKOBAN = "game:Sokoban-v0-easy"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(
        tmp_path_factory.mktemp("auth"),
        tokens=[
            TokenSpec(name="alice", token=ALICE, limits=Limits(max_envs=2, max_sandboxes=0, max_vec_envs=2)),
            TokenSpec(name="bob", token=BOB),
        ],
    )
    yield srv
    srv.stop()


def test_missing_and_wrong_tokens_are_401(secured: BackgroundServer) -> None:
    assert httpx.get(secured.url + "/api/v1/health", timeout=60).status_code == 200  # health is public
    for headers in ({}, {"authorization": "Bearer wrong-token-xxxxxx"}, {"authorization": f"Bearer {ALICE}x"}):
        resp = httpx.get(secured.url + "/api/v1/envs", headers=headers, timeout=60)
        assert resp.status_code == 401 and resp.json()["error"] == "Unauthorized", resp.text
    resp = httpx.post(
        secured.url + "/api/v1/envs/env-x/step", json={"action": "x"}, timeout=60
    )  # the hot path checks too
    assert resp.status_code == 401
    assert (
        httpx.get(secured.url + "/api/v1/envs", headers={"authorization": f"Bearer {ALICE}"}, timeout=60).status_code
        == 200
    )
    assert httpx.get(secured.url + "/api/v1/envs", headers={"x-api-key": BOB}, timeout=60).status_code == 200


def test_client_maps_401_to_unauthorized(secured: BackgroundServer) -> None:
    with pytest.raises(Unauthorized, match="token"):
        rock.make(SOKOBAN, backend="remote", base_url=secured.url, token="not-the-token-123")


def test_quota_per_token_and_isolation(secured: BackgroundServer) -> None:
    envs = [rock.make(SOKOBAN, backend="remote", base_url=secured.url, token=ALICE) for _ in range(2)]
    try:
        with pytest.raises(QuotaExceeded, match="at most 2 envs"):
            rock.make(SOKOBAN, backend="remote", base_url=secured.url, token=ALICE)
        with pytest.raises(QuotaExceeded):
            rock.make_vec(SOKOBAN, 3, backend="remote", base_url=secured.url, token=ALICE)
        # bob has no limits and cannot see or drive alice's envs
        with httpx.Client(base_url=secured.url, headers={"authorization": f"Bearer {BOB}"}, timeout=60) as bob:
            assert bob.get("/api/v1/envs").json()["envs"] == []
            resp = bob.post(f"/api/v1/envs/{envs[0].remote_id}/reset", json={})
            assert resp.status_code == 404 and resp.json()["error"] == "EnvInstanceNotFound"
    finally:
        for env in envs:
            env.close()
    again = rock.make(SOKOBAN, backend="remote", base_url=secured.url, token=ALICE)
    again.close()


def test_sandbox_quota_zero(secured: BackgroundServer) -> None:
    resp = httpx.post(
        secured.url + "/api/v1/sandboxes",
        json={"config": {"runtime": "namespace"}},
        headers={"authorization": f"Bearer {ALICE}"},
        timeout=60,
    )
    assert resp.status_code == 429 and resp.json()["error"] == "QuotaExceeded"


def test_public_bind_needs_a_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ROCK_ENV_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="without an API token"):
        ServerSettings(host="0.0.0.0", data_dir=str(tmp_path)).check_bind()
    ServerSettings(host="127.0.0.1").check_bind()
    ServerSettings(host="0.0.0.0", token="a-long-enough-token").check_bind()
    monkeypatch.setenv("ROCK_ENV_TOKEN", "from-the-environment")
    ServerSettings(host="0.0.0.0").check_bind()
    assert [t.name for t in ServerSettings().all_tokens()] == ["default"]
    with pytest.raises(ConfigError, match="at least 8"):
        ServerSettings(token="short").all_tokens()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
