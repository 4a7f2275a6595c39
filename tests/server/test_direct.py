"""The direct data plane: envs on a remote worker are stepped there, without the admin in the path.

A real admin and a real worker process (uvicorn), both with a token. The placement answer names
the worker and carries a grant for that env only; the admin's request counters do not move while
the client steps; a grant opens nothing else; a killed worker's envs raise WorkerLost naming them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.errors import WorkerLost
from rock_env.remote.pool import aclose_shared
from rock_env.server.testing import ServerProcess
from tests.server.test_lifecycle import wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]

ENV_ID = "game:Sokoban-v0-easy"
TOKEN = "direct-plane-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
HTTP = httpx.Client(timeout=60)
FAST = ("server.reap_interval=0.3", "server.heartbeat_timeout=5", "server.log_level=warning")


def admin_ops(admin: ServerProcess) -> dict[str, float]:
    """The admin's per-operation request counters (its /metrics)."""
    text = HTTP.get(admin.url + "/metrics", headers=AUTH).text
    return {m[1]: float(m[2]) for m in re.finditer(r'rock_env_op_seconds_count\{op="([^"]+)"\} (\S+)', text)}


def worker_ops(worker: ServerProcess) -> dict[str, float]:
    """A worker's per-operation request counters (its /metrics)."""
    return admin_ops(worker)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("direct")
    env = {"ROCK_ENV_TOKEN": TOKEN}
    admin = ServerProcess.admin(tmp, "server.embedded_worker=false", *FAST, env=env).start()
    worker = ServerProcess.worker(admin.url, tmp, "worker.heartbeat_interval=0.3", "worker.id=w1", env=env).start()
    try:
        wait_for(lambda: len(HTTP.get(admin.url + "/api/v1/workers", headers=AUTH).json()["workers"]) == 1)
        yield admin, worker
    finally:
        worker.stop()
        admin.stop()


def test_steps_go_to_the_worker_without_the_admin(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = cluster
    env = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN)
    local = rock.make(ENV_ID)
    try:
        assert env.info.worker_url == worker.url and env.info.grant and TOKEN not in env.info.grant
        before = admin_ops(admin)
        assert env.reset(seed=5) == local.reset(seed=5)
        for action in ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}"] * 3:
            assert env.step(action) == local.step(action)
        after = admin_ops(admin)
        assert after == before, "the admin served a call of the data plane"
        # the worker saw them: its own counters moved
        worker_ops = HTTP.get(worker.url + "/metrics", headers=AUTH).text
        assert re.search(r'rock_env_op_seconds_count\{op="env_step"\} ([1-9]\d*)', worker_ops)
    finally:
        env.close()
        local.close()


def test_a_grant_opens_its_env_only(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = cluster
    mine = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN)
    other = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN)
    grant = {"authorization": f"Bearer {mine.info.grant}"}
    try:
        ok = HTTP.post(f"{worker.url}/api/v1/envs/{mine.remote_id}/reset", json={"seed": 1}, headers=grant)
        assert ok.status_code == 200
        denied = HTTP.post(f"{worker.url}/api/v1/envs/{other.remote_id}/step", json={"action": "x"}, headers=grant)
        assert denied.status_code == 404
        listed = HTTP.get(f"{worker.url}/api/v1/envs", headers=grant).json()["envs"]
        assert [e["id"] for e in listed] == [mine.remote_id]
        made = HTTP.post(f"{worker.url}/api/v1/envs", json={"env_id": ENV_ID}, headers=grant)
        assert made.status_code == 403 and made.json()["error"] == "Forbidden"
        forged = {"authorization": "Bearer " + mine.info.grant[:-4] + "0000"}  # type: ignore[index]
        assert HTTP.post(f"{worker.url}/api/v1/envs/{mine.remote_id}/reset", json={}, headers=forged).status_code == 401
        # the admin does not take grants: it wants the API token
        assert HTTP.get(f"{admin.url}/api/v1/envs", headers=grant).status_code == 401
    finally:
        mine.close()
        other.close()


def test_async_envs_use_the_direct_path(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = cluster

    async def main() -> list[tuple[object, ...]]:
        try:
            envs = [await rock.amake(ENV_ID, base_url=admin.url, token=TOKEN) for _ in range(8)]
            assert all(e.info.worker_url == worker.url for e in envs)
            before = admin_ops(admin)
            await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
            steps = await asyncio.gather(*(e.astep("\\boxed{up}") for e in envs))
            assert admin_ops(admin) == before
            await asyncio.gather(*(e.aclose() for e in envs))
            return steps
        finally:
            await aclose_shared()

    assert len(asyncio.run(main())) == 8


def test_coalesced_calls_with_grants_go_straight_to_the_worker(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    """Under auth a coalesced batch goes to the worker with one env's grant as its bearer and each
    item's own grant; the admin serves none of it."""
    admin, worker = cluster

    async def main() -> None:
        try:
            made = (rock.amake(ENV_ID, base_url=admin.url, token=TOKEN, coalesce=True) for _ in range(6))
            envs = await asyncio.gather(*made)
            assert all(e.info.worker_url == worker.url and e.info.grant for e in envs)
            before, worker_before = admin_ops(admin), worker_ops(worker)
            got = await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
            assert [g[0] for g in got] == [rock.make(ENV_ID).reset(seed=i)[0] for i in range(6)]
            steps = await asyncio.gather(*(e.astep("\\boxed{up}") for e in envs))
            assert admin_ops(admin) == before, "the admin served a call of the data plane"
            moved = worker_ops(worker)
            assert moved.get("batch_reset", 0) - worker_before.get("batch_reset", 0) == 1
            assert moved.get("batch_step", 0) - worker_before.get("batch_step", 0) == 1
            for i, step in enumerate(steps):
                local = rock.make(ENV_ID)
                local.reset(seed=i)
                assert step == local.step("\\boxed{up}")
            await asyncio.gather(*(e.aclose() for e in envs))
        finally:
            await aclose_shared()

    asyncio.run(main())


def test_a_direct_batch_checks_every_items_grant(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    """One env's grant as the bearer opens no other env of the batch: each item needs its own."""
    admin, worker = cluster
    a = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN)
    b = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN)
    try:
        a.reset(seed=1)
        b.reset(seed=2)
        bearer = {"authorization": f"Bearer {a.info.grant}"}
        forged = b.info.grant[:-4] + "0000"  # type: ignore[index]
        items = [
            {"env": a.remote_id, "action": "\\boxed{up}", "grant": a.info.grant},
            {"env": b.remote_id, "action": "\\boxed{up}"},  # no grant: the bearer is a's
            {"env": b.remote_id, "action": "\\boxed{up}", "grant": a.info.grant},  # a's grant for b
            {"env": b.remote_id, "action": "\\boxed{up}", "grant": forged},
            {"env": b.remote_id, "action": "\\boxed{up}", "grant": TOKEN},  # an API token is not a grant
            {"env": b.remote_id, "action": "\\boxed{up}", "grant": b.info.grant},
        ]
        answer = HTTP.post(f"{worker.url}/api/v1/batch/step", json={"steps": items}, headers=bearer)
        assert answer.status_code == 200
        results = answer.json()["results"]
        assert results[0]["result"] and results[5]["result"]
        assert [r["error"]["error"] for r in results[1:5]] == [
            "EnvInstanceNotFound",
            "EnvInstanceNotFound",
            "Unauthorized",
            "Unauthorized",
        ]
        # only b's last item stepped b: its transcript is one step in
        local = rock.make(ENV_ID)
        local.reset(seed=2)
        local.step("\\boxed{up}")
        assert b.step("\\boxed{left}") == local.step("\\boxed{left}")
    finally:
        a.close()
        b.close()


def test_killed_worker_loses_its_envs_only(cluster: tuple[ServerProcess, ServerProcess], tmp_path: Path) -> None:
    admin, w1 = cluster
    env = {"ROCK_ENV_TOKEN": TOKEN}
    w2 = ServerProcess.worker(admin.url, tmp_path, "worker.heartbeat_interval=0.3", "worker.id=w2", env=env).start()
    try:
        wait_for(lambda: len(HTTP.get(admin.url + "/api/v1/workers", headers=AUTH).json()["workers"]) == 2)
        envs = [rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN) for _ in range(6)]
        on = {w: [e for e in envs if e.info.worker_id == w] for w in ("w1", "w2")}
        assert on["w1"] and on["w2"], "placement spreads envs over both workers"
        for i, e in enumerate(envs):
            e.reset(seed=i)
        w1.kill()  # SIGKILL by PID, the process this test module started
        for e in on["w1"]:
            with pytest.raises(WorkerLost, match=e.remote_id):
                e.step("\\boxed{up}")
        for e in on["w2"]:
            assert e.step("\\boxed{up}")[0]  # the rest go on
        fresh = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=TOKEN)
        assert fresh.info.worker_id == "w2" and fresh.reset(seed=0)[0]  # the pool and placement recovered
        fresh.close()
        for e in envs:
            e.close()
    finally:
        w2.stop()
