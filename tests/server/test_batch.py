"""Batched env calls over HTTP: ``POST /api/v1/batch/{make,reset,step}`` against real servers.

Every item gets its own result or its own typed error, in the order of the request; a bad item
never fails the others; a rejected request creates nothing; quotas apply per item; and through an
admin with two worker processes, a killed worker's envs get ``WorkerLost`` naming them while the
other worker's envs still step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.protocol import MAX_BATCH_MAKE, BatchMakeResponse, BatchResetResponse, BatchStepResponse
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import Limits
from rock_env.server.testing import ServerProcess
from tests.server.conftest import serve
from tests.server.test_lifecycle import wait_for

pytestmark = pytest.mark.server

SOKOBAN = "game:Sokoban-v0-easy"
ACTIONS = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}", "\\boxed{up}"]


def batch(http: httpx.Client, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST a batch; its per-item ``{"result", "error"}`` list (checked against the response model)."""
    key = {"make": "makes", "reset": "resets", "step": "steps"}[kind]
    resp = http.post(f"/api/v1/batch/{kind}", json={key: items})
    assert resp.status_code == 200, resp.text
    model = {"make": BatchMakeResponse, "reset": BatchResetResponse, "step": BatchStepResponse}[kind]
    model.model_validate(resp.json())
    results: list[dict[str, Any]] = resp.json()["results"]
    assert len(results) == len(items)
    for item in results:
        assert (item["result"] is None) != (item["error"] is None), item
    return results


def env_ids(http: httpx.Client) -> set[str]:
    return {e["id"] for e in http.get("/api/v1/envs").json()["envs"] if e["status"] == "live"}


def make_many(http: httpx.Client, n: int) -> list[str]:
    results = batch(http, "make", [{"env_id": SOKOBAN}] * n)
    assert all(r["error"] is None for r in results), results
    return [r["result"]["id"] for r in results]


def close_all(http: httpx.Client, ids: list[str]) -> None:
    for env in ids:
        http.delete(f"/api/v1/envs/{env}")


# --- make -------------------------------------------------------------------------------------


def test_batch_make_answers_each_item_in_order(http: httpx.Client) -> None:
    before = env_ids(http)
    makes = [
        {"env_id": SOKOBAN},
        {"env_id": "game:NoSuchGame-v0"},
        {"env_id": SOKOBAN, "kwargs": {"nope": 1}},
        {"env_id": SOKOBAN, "seed": 11},
        {"env_id": SOKOBAN, "idle_ttl": 600},
    ]
    results = batch(http, "make", makes)
    assert [r["error"]["error"] if r["error"] else None for r in results] == [
        None,
        "EnvNotFound",
        "InvalidEnvKwargs",
        None,
        None,
    ]
    assert "NoSuchGame" in results[1]["error"]["message"] and results[1]["error"]["status"] == 404
    assert "nope" in results[2]["error"]["message"] and results[2]["error"]["status"] == 422
    made = [r["result"] for r in results if r["result"] is not None]
    assert [m["env_id"] for m in made] == [SOKOBAN] * 3
    assert made[2]["idle_ttl"] == 600  # each item's own settings, in the order of the request
    ids = [m["id"] for m in made]
    assert len(set(ids)) == 3
    try:
        assert env_ids(http) - before == set(ids)  # the failing items created nothing
        # make(seed=11) seeds the first reset, as a local make does
        local = rock.make(SOKOBAN, seed=11)
        try:
            seeded = http.post(f"/api/v1/envs/{ids[1]}/reset", json={}).json()["observation"]
            assert seeded == local.reset()[0]
        finally:
            local.close()
        for env in ids:  # the envs made are usable like singly made ones
            assert http.get(f"/api/v1/envs/{env}").json()["status"] == "live"
            reset = http.post(f"/api/v1/envs/{env}/reset", json={"seed": 3})
            assert reset.status_code == 200 and reset.json()["observation"]
            step = http.post(f"/api/v1/envs/{env}/step", json={"action": ACTIONS[0]})
            assert step.status_code == 200 and isinstance(step.json()["reward"], float)
    finally:
        close_all(http, ids)


def test_batch_make_of_nothing_is_nothing(http: httpx.Client) -> None:
    for kind, key in (("make", "makes"), ("reset", "resets"), ("step", "steps")):
        resp = http.post(f"/api/v1/batch/{kind}", json={key: []})
        assert resp.status_code == 200 and resp.json() == {"results": []}


# --- reset and step ---------------------------------------------------------------------------


def test_batch_reset_and_step_match_single_and_local_transcripts(http: httpx.Client) -> None:
    seeds = [0, 1, 2, 3, 4, 5]
    batched = make_many(http, len(seeds))
    single = make_many(http, len(seeds))  # twins driven one request at a time
    locals_ = [rock.make(SOKOBAN) for _ in seeds]
    try:
        resets = batch(http, "reset", [{"env": e, "seed": s} for e, s in zip(batched, seeds, strict=True)])
        for env, seed, local, item in zip(single, seeds, locals_, resets, strict=True):
            one = http.post(f"/api/v1/envs/{env}/reset", json={"seed": seed}).json()
            assert item["result"] == one
            assert item["result"]["observation"] == local.reset(seed=seed)[0]
        # different seeds gave different boards: the items were not mixed up
        assert len({r["result"]["observation"] for r in resets}) > 1
        for turn, _ in enumerate(ACTIONS):
            actions = [ACTIONS[(turn + i) % len(ACTIONS)] for i in range(len(seeds))]
            steps = batch(http, "step", [{"env": e, "action": a} for e, a in zip(batched, actions, strict=True)])
            for env, action, local, item in zip(single, actions, locals_, steps, strict=True):
                one = http.post(f"/api/v1/envs/{env}/step", json={"action": action}).json()
                assert item["result"] == one
                obs, reward, terminated, truncated, _ = local.step(action)
                res = item["result"]
                assert (res["observation"], res["reward"], res["terminated"], res["truncated"]) == (
                    obs,
                    reward,
                    terminated,
                    truncated,
                )
    finally:
        close_all(http, batched + single)
        for local in locals_:
            local.close()


def test_unknown_or_closed_env_fails_its_item_only(http: httpx.Client) -> None:
    a, closed, b = make_many(http, 3)
    http.delete(f"/api/v1/envs/{closed}")
    try:
        resets = batch(
            http,
            "reset",
            [
                {"env": a, "seed": 1},
                {"env": closed, "seed": 1},
                {"env": "env-never-made", "seed": 1},
                {"env": b, "seed": 2},
            ],
        )
        assert [r["error"]["error"] if r["error"] else None for r in resets] == [
            None,
            "EnvInstanceNotFound",
            "EnvInstanceNotFound",
            None,
        ]
        assert closed in resets[1]["error"]["message"] and resets[1]["error"]["status"] == 404
        assert "env-never-made" in resets[2]["error"]["message"]
        steps = batch(
            http,
            "step",
            [
                {"env": a, "action": ACTIONS[0]},
                {"env": closed, "action": ACTIONS[0]},
                {"env": b, "action": ACTIONS[1]},
                {"env": a, "action": ACTIONS[1]},  # the same env twice: applied in order
            ],
        )
        assert steps[1]["error"]["error"] == "EnvInstanceNotFound" and closed in steps[1]["error"]["message"]
        assert steps[0]["result"] and steps[2]["result"] and steps[3]["result"]
        local = rock.make(SOKOBAN)
        try:
            local.reset(seed=1)
            assert steps[0]["result"]["observation"] == local.step(ACTIONS[0])[0]
            assert steps[3]["result"]["observation"] == local.step(ACTIONS[1])[0]
        finally:
            local.close()
        # an env's own error (no episode running) is its item's error too
        fresh = make_many(http, 1)[0]
        mixed = batch(http, "step", [{"env": fresh, "action": "x"}, {"env": b, "action": ACTIONS[2]}])
        assert mixed[0]["error"]["error"] == "ResetNeeded" and mixed[0]["error"]["status"] == 409
        assert mixed[1]["result"]["observation"]
        http.delete(f"/api/v1/envs/{fresh}")
    finally:
        close_all(http, [a, b])


# --- malformed bodies -------------------------------------------------------------------------

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("make", {"makes": "x"}, "makes"),
        ("make", {}, "makes"),
        ("make", {"makes": [{"env_id": SOKOBAN}, {"env_id": 5}]}, "makes.1.env_id"),
        ("make", {"makes": [{"env_id": SOKOBAN}, {"env_id": SOKOBAN, "typo": 1}]}, "typo"),
        ("make", {"makes": [{"env_id": SOKOBAN}, {"env_id": SOKOBAN, "max_episode_steps": 0}]}, "max_episode_steps"),
        ("make", {"makes": [{"env_id": SOKOBAN}] * (MAX_BATCH_MAKE + 1)}, str(MAX_BATCH_MAKE)),
        ("reset", {"resets": [{"env": "env-x", "seed": "seven"}]}, "seed"),
        ("reset", {"resets": [{"seed": 1}]}, "env"),
        ("reset", {"steps": []}, "resets"),
        ("step", {"steps": [{"env": "env-x", "action": 3}]}, "action"),
        ("step", {"steps": [{"env": "env-x", "action": None}]}, "action"),
        ("step", {"steps": [{"env": "env-x"}]}, "action"),
        ("step", {"steps": {"env": "env-x", "action": "x"}}, "steps"),
        ("step", [], ""),
    ],
)
def test_malformed_batches_are_4xx_and_create_nothing(http: httpx.Client, path: str, body: object, needle: str) -> None:
    before = env_ids(http)
    resp = http.post(f"/api/v1/batch/{path}", json=body)
    assert 400 <= resp.status_code < 500, resp.text
    err = resp.json()
    assert err["error"] == "RequestInvalid" and err["status"] == resp.status_code
    assert needle in err["message"] and f"/api/v1/batch/{path}" in err["message"]
    assert env_ids(http) == before


@pytest.mark.parametrize("path", ["make", "reset", "step"])
def test_not_json_is_4xx(http: httpx.Client, path: str) -> None:
    resp = http.post(f"/api/v1/batch/{path}", content=b"{not json", headers=JSON)
    assert 400 <= resp.status_code < 500 and resp.json()["error"] == "RequestInvalid" and resp.json()["message"]


# --- quota ------------------------------------------------------------------------------------

QUOTA = 4


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    srv = serve(tmp_path_factory.mktemp("batch-quota"), limits=Limits(max_envs=QUOTA))
    yield srv
    srv.stop()


def test_batch_make_stops_at_the_quota(small: BackgroundServer) -> None:
    with httpx.Client(base_url=small.url, timeout=60) as http:
        started = time.monotonic()
        results = batch(http, "make", [{"env_id": SOKOBAN}] * (QUOTA + 3))
        assert time.monotonic() - started < 10
        made = [r["result"]["id"] for r in results if r["result"] is not None]
        refused = [r["error"] for r in results if r["error"] is not None]
        try:
            assert len(made) == QUOTA and len(refused) == 3
            for err in refused:
                assert err["error"] == "QuotaExceeded" and err["status"] == 429
                assert "max_envs" in err["message"]
            assert env_ids(http) == set(made)
            assert http.get("/api/v1/health").json()["envs"] == QUOTA
            # a full quota refuses every item of the next batch; a closed env gives its share back
            assert all(r["error"]["error"] == "QuotaExceeded" for r in batch(http, "make", [{"env_id": SOKOBAN}] * 2))
            http.delete(f"/api/v1/envs/{made.pop()}")
            again = batch(http, "make", [{"env_id": SOKOBAN}] * 2)
            assert again[0]["result"] is not None and again[1]["error"]["error"] == "QuotaExceeded"
            made.append(again[0]["result"]["id"])
        finally:
            close_all(http, made)


# --- two worker processes behind an admin -----------------------------------------------------

FAST = ("server.reap_interval=0.3", "server.heartbeat_timeout=5")


def test_batch_step_across_two_workers_and_a_killed_one(tmp_path: Path) -> None:
    admin = ServerProcess.admin(tmp_path, "server.embedded_worker=false", *FAST).start()
    w1 = w2 = None
    try:
        (tmp_path / "w1").mkdir()
        (tmp_path / "w2").mkdir()
        w1 = ServerProcess.worker(admin.url, tmp_path / "w1", "worker.heartbeat_interval=0.3", "worker.id=w1").start()
        w2 = ServerProcess.worker(admin.url, tmp_path / "w2", "worker.heartbeat_interval=0.3", "worker.id=w2").start()
        with httpx.Client(base_url=admin.url, timeout=60) as http:
            wait_for(lambda: len(http.get("/api/v1/workers").json()["workers"]) == 2)
            made = [r["result"] for r in batch(http, "make", [{"env_id": SOKOBAN}] * 8)]
            on = {w: [m["id"] for m in made if m["worker_id"] == w] for w in ("w1", "w2")}
            assert on["w1"] and on["w2"], f"placement put every env on one worker: {made}"
            ids = [m["id"] for m in made]
            resets = batch(http, "reset", [{"env": e, "seed": i} for i, e in enumerate(ids)])
            assert all(r["error"] is None for r in resets), resets
            local = rock.make(SOKOBAN)
            try:
                for i, r in enumerate(resets):  # each item's answer is its own env's, across workers
                    assert r["result"]["observation"] == local.reset(seed=i)[0]
            finally:
                local.close()
            steps = batch(http, "step", [{"env": e, "action": ACTIONS[0]} for e in ids])
            assert all(r["error"] is None and r["result"]["observation"] for r in steps), steps

            w1.kill()  # SIGKILL by PID: the process this test started
            steps = batch(http, "step", [{"env": e, "action": ACTIONS[1]} for e in ids])
            for env, item in zip(ids, steps, strict=True):
                if env in on["w1"]:
                    assert item["error"] is not None, item
                    assert item["error"]["error"] == "WorkerLost", item
                    assert env in item["error"]["message"]
                else:
                    assert item["error"] is None and item["result"]["observation"], item
            # once the admin knows the worker is gone, its envs are still WorkerLost, one by one
            wait_for(
                lambda: (
                    {w["id"]: w["status"] for w in http.get("/api/v1/workers").json()["workers"]}
                    == {"w1": "lost", "w2": "alive"}
                ),
                timeout=20,
            )
            resets = batch(http, "reset", [{"env": e} for e in ids])
            for env, item in zip(ids, resets, strict=True):
                if env in on["w1"]:
                    assert item["error"]["error"] == "WorkerLost" and env in item["error"]["message"], item
                else:
                    assert item["result"]["observation"], item
            close_all(http, ids)
    finally:
        for proc in (w2, w1, admin):
            if proc is not None:
                proc.stop()
