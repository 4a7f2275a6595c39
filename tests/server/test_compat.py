"""ROCK's GEM env routes, driven with requests shaped exactly like ROCK's ``RockEnv`` client sends them.

rl-rock does not install here; its client (rock/sdk/envs) POSTs JSON with only a
Content-Type header to /apis/v1/envs/gem/{make,reset,step,close} and reads the fields below.
"""

from __future__ import annotations

import httpx
import pytest

import rock_env as rock
from rock_env.server.runner import BackgroundServer

pytestmark = pytest.mark.server

ENV_ID = "game:Sokoban-v0-easy"


def rock_call(base_url: str, endpoint: str, params: dict[str, object]) -> dict[str, object]:
    """What ROCK's ``_call_admin_api`` does: a fresh client per call, JSON in, JSON out."""
    with httpx.Client(timeout=httpx.Timeout(timeout=300.0, connect=300.0, read=300.0)) as client:
        response = client.post(
            f"{base_url}/apis/v1/envs/gem/{endpoint}", headers={"Content-Type": "application/json"}, json=params
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def test_rock_client_episode_matches_local(server: BackgroundServer) -> None:
    sandbox_id = rock_call(server.url, "make", {"env_id": ENV_ID})["sandbox_id"]
    assert isinstance(sandbox_id, str) and sandbox_id
    local = rock.make(ENV_ID)
    result = rock_call(server.url, "reset", {"sandbox_id": sandbox_id, "seed": 42})
    assert (result["observation"], result["info"]) == local.reset(seed=42)
    for action in ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}"]:
        result = rock_call(server.url, "step", {"sandbox_id": sandbox_id, "action": action})
        remote = (result["observation"], result["reward"], result["terminated"], result["truncated"], result["info"])
        assert remote == local.step(action)
        if remote[2] or remote[3]:
            break
    assert rock_call(server.url, "close", {"sandbox_id": sandbox_id}) == {"sandbox_id": sandbox_id}
    local.close()


def test_rock_reset_without_seed_and_list(server: BackgroundServer) -> None:
    sandbox_id = rock_call(server.url, "make", {"env_id": ENV_ID})["sandbox_id"]
    result = rock_call(server.url, "reset", {"sandbox_id": sandbox_id})
    assert set(result) == {"observation", "info"}
    listed = rock_call(server.url, "list", {"sandbox_id": sandbox_id})["env_id"]
    assert ENV_ID in listed  # type: ignore[operator]
    rock_call(server.url, "close", {"sandbox_id": sandbox_id})


def test_rock_errors_are_4xx(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        resp = client.post("/apis/v1/envs/gem/step", json={"sandbox_id": "nope", "action": "x"})
        assert resp.status_code == 404 and resp.json()["error"] == "EnvInstanceNotFound"
        resp = client.post("/apis/v1/envs/gem/make", json={"env_id": "game:NoSuchGame-v0"})
        assert resp.status_code == 404 and resp.json()["error"] == "EnvNotFound"
        resp = client.post("/apis/v1/envs/gem/reset", json={})
        assert resp.status_code == 422
