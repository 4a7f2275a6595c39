"""ROCK's GEM env routes (/apis/v1/envs/gem/...), driven by ROCK's own client (rl-rock's ``rock.make``).

The episode test runs rl-rock's ``RockEnv`` (in its own venv, see tests/rock_sdk.py) against the
admin and compares its transcript with the same env made locally; the other tests send raw
requests to see the wire answers (fields, errors).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.server.runner import BackgroundServer
from tests.rock_sdk import rock_sdk_python

pytestmark = pytest.mark.server

ENV_ID = "game:Sokoban-v0-easy"
SCRIPTS = Path(__file__).parent / "rock_scripts"


def rock_call(base_url: str, endpoint: str, params: dict[str, object]) -> dict[str, object]:
    """What ROCK's ``_call_admin_api`` sends: a fresh client per call, JSON in, JSON out."""
    with httpx.Client(timeout=httpx.Timeout(timeout=300.0, connect=300.0, read=300.0)) as client:
        response = client.post(
            f"{base_url}/apis/v1/envs/gem/{endpoint}", headers={"Content-Type": "application/json"}, json=params
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def test_rock_client_episode_matches_local(server: BackgroundServer, tmp_path: Path) -> None:
    actions = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}"]
    out = tmp_path / "transcript.json"
    env = {**os.environ, "ROCK_BASE_URL": server.url}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(rock_sdk_python()), str(SCRIPTS / "env_transcript.py"), ENV_ID, "42", str(out), *actions],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    remote = json.loads(out.read_text())
    local = rock.make(ENV_ID)
    assert tuple(remote["reset"]) == local.reset(seed=42)
    assert remote["steps"], "the episode made at least one step"
    for step, action in zip(remote["steps"], actions, strict=False):
        assert tuple(step) == local.step(action)
    local.close()
    assert httpx.get(server.url + "/api/v1/health", timeout=60).json()["envs"] == 0  # close() closed it


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
