"""Per-token quotas, on by default: envs, sandboxes, vector sub-envs and vector worker processes.

Each refusal is a 429 ``QuotaExceeded`` that names the quota and the setting; closing an object
gives its share back; concurrent creations cannot overshoot; ``null`` turns a quota off.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.errors import QuotaExceeded
from rock_env.server.config import admin_settings, compose
from rock_env.server.runner import BackgroundServer
from rock_env.server.service import Service
from rock_env.server.settings import Limits, ServerSettings, TokenSpec
from tests.server.conftest import serve

pytestmark = pytest.mark.server

SOKOBAN = "game:Sokoban-v0-easy"
CAROL = "carol-token-0123456789"
DAVE = "dave-token-0123456789"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """Small global quotas, set explicitly."""
    limits = Limits(max_envs=3, max_sandboxes=1, max_vec_envs=4, max_vec_workers=2)
    srv = serve(tmp_path_factory.mktemp("quotas"), limits=limits)
    yield srv
    srv.stop()


def test_defaults_are_on() -> None:
    limits = ServerSettings().limits
    assert (limits.max_envs, limits.max_sandboxes, limits.max_vec_envs, limits.max_vec_workers) == (1024, 64, 4096, 32)
    composed, _ = admin_settings(compose("serve_admin", []))
    assert composed.limits == limits  # the Hydra group says the same
    off, _ = admin_settings(compose("serve_admin", ["limits.max_envs=null", "limits.max_vec_workers=7"]))
    assert off.limits.max_envs is None and off.limits.max_vec_workers == 7 and off.limits.max_sandboxes == 64


def test_default_quota_refuses_a_cluster_sized_vector_env(tmp_path: Path) -> None:
    srv = serve(tmp_path)  # nothing configured: the defaults apply to anonymous loopback use too
    try:
        resp = httpx.post(srv.url + "/api/v1/vecs", json={"env_id": SOKOBAN, "num_envs": 4097}, timeout=60)
        assert resp.status_code == 429 and resp.json()["error"] == "QuotaExceeded"
        assert "max_vec_envs" in resp.json()["message"] and "limits.max_vec_envs" in resp.json()["message"]
        assert httpx.get(srv.url + "/api/v1/health", timeout=60).json()["envs"] == 0
    finally:
        srv.stop()


def test_env_quota(small: BackgroundServer) -> None:
    envs = [rock.make(SOKOBAN, backend="remote", base_url=small.url) for _ in range(3)]
    try:
        with pytest.raises(QuotaExceeded, match=r"quota max_envs exceeded.*at most 3 envs.*limits\.max_envs"):
            rock.make(SOKOBAN, backend="remote", base_url=small.url)
        envs.pop().close()
        envs.append(rock.make(SOKOBAN, backend="remote", base_url=small.url))  # its share came back
        vec = rock.make_vec(SOKOBAN, 2, backend="remote", base_url=small.url)  # vector sub-envs count apart
        vec.close()
    finally:
        for env in envs:
            env.close()


@pytest.mark.bwrap
def test_sandbox_quota(small: BackgroundServer) -> None:
    with rock.Sandbox(runtime="namespace", base_url=small.url):
        with pytest.raises(QuotaExceeded, match=r"max_sandboxes.*at most 1 sandboxes.*limits\.max_sandboxes"):
            rock.Sandbox(runtime="namespace", base_url=small.url).start()
        assert httpx.get(small.url + "/api/v1/health", timeout=60).json()["sandboxes"] == 1
    with rock.Sandbox(runtime="namespace", base_url=small.url) as again:
        assert again.run("echo ok").output == "ok\n"


def test_vector_quotas(small: BackgroundServer) -> None:
    first = rock.make_vec(SOKOBAN, 3, backend="remote", base_url=small.url)
    try:
        with pytest.raises(QuotaExceeded, match=r"max_vec_envs.*holds 3 and asked for 2"):
            rock.make_vec(SOKOBAN, 2, backend="remote", base_url=small.url)
    finally:
        first.close()
    procs = rock.make_vec(SOKOBAN, 2, backend="remote", base_url=small.url, mode="async", num_workers=2)
    try:
        with pytest.raises(QuotaExceeded, match=r"max_vec_workers.*vector worker processes"):
            rock.make_vec(SOKOBAN, 1, backend="remote", base_url=small.url, mode="async", num_workers=1)
    finally:
        procs.close()
    again = rock.make_vec(SOKOBAN, 1, backend="remote", base_url=small.url, mode="async", num_workers=1)
    again.close()


def test_concurrent_creations_cannot_overshoot(small: BackgroundServer) -> None:
    def make() -> int:
        return httpx.post(small.url + "/api/v1/envs", json={"env_id": SOKOBAN}, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: make(), range(8)))
    try:
        assert sorted(codes) == [200] * 3 + [429] * 5
    finally:
        for env in httpx.get(small.url + "/api/v1/envs", timeout=60).json()["envs"]:
            httpx.delete(f"{small.url}/api/v1/envs/{env['id']}", timeout=60)


def test_token_limits_override_only_what_they_set(tmp_path: Path) -> None:
    srv = serve(
        tmp_path,
        limits=Limits(max_envs=5, max_sandboxes=0),
        tokens=[
            TokenSpec(name="carol", token=CAROL, limits=Limits.model_validate({"max_envs": 1})),
            TokenSpec(name="dave", token=DAVE, limits=Limits.model_validate({"max_envs": None})),
        ],
    )
    try:
        svc: Service = srv.app.state.service
        assert svc.limits_of("carol").max_envs == 1 and svc.limits_of("carol").max_sandboxes == 0  # inherited
        assert svc.limits_of("dave").max_envs is None  # null: unlimited for dave
        carol = rock.make(SOKOBAN, backend="remote", base_url=srv.url, token=CAROL)
        with pytest.raises(QuotaExceeded, match="'carol' may hold at most 1 envs"):
            rock.make(SOKOBAN, backend="remote", base_url=srv.url, token=CAROL)
        daves = [rock.make(SOKOBAN, backend="remote", base_url=srv.url, token=DAVE) for _ in range(7)]
        resp = httpx.post(
            srv.url + "/api/v1/sandboxes",
            json={"config": {"runtime": "namespace"}},
            headers={"authorization": f"Bearer {DAVE}"},
            timeout=60,
        )
        assert resp.status_code == 429 and "max_sandboxes" in resp.json()["message"]
        for env in [carol, *daves]:
            env.close()
    finally:
        srv.stop()
