"""Idle TTLs, admin crash recovery from SQLite, remote workers: placement, heartbeats, loss, orphans."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.errors import EnvInstanceNotFound, WorkerLost
from rock_env.server.testing import ServerProcess
from tests.remote.test_stream_ws import wait_gone
from tests.server.conftest import serve

pytestmark = pytest.mark.server

ENV_ID = "game:Sokoban-v0-easy"
FAST = ("server.reap_interval=0.3", "server.heartbeat_timeout=5")
#: Generous timeouts: the suite shares two cores with everything else.
HTTP = httpx.Client(timeout=60)


def wait_for(predicate: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_idle_envs_are_reaped(tmp_path: Path) -> None:
    srv = serve(tmp_path, env_idle_ttl=0.5, reap_interval=0.2)
    try:
        env = rock.make(ENV_ID, backend="remote", base_url=srv.url)
        kept = rock.make(ENV_ID, backend="remote", base_url=srv.url, idle_ttl=60)
        env.reset(seed=0)
        time.sleep(1.2)
        with pytest.raises(EnvInstanceNotFound, match="closed, reaped or never made"):
            env.step("\\boxed{up}")
        kept.reset(seed=0)
        assert "rock_env_objects_reaped_total" in HTTP.get(srv.url + "/metrics").text
        env.close()
        kept.close()
    finally:
        srv.stop()


@pytest.mark.slow
def test_admin_sigkill_recovers_records(tmp_path: Path) -> None:
    from rock_env.sandbox.state import state_root

    admin = ServerProcess.admin(tmp_path).start()
    try:
        env = rock.make(ENV_ID, backend="remote", base_url=admin.url)
        env.reset(seed=1)
        sandbox = rock.Sandbox(runtime="namespace", base_url=admin.url).start()
        assert sandbox.run("echo up").output == "up\n"
        assert sandbox.placement is not None
        sandbox_dir = state_root() / sandbox.placement.config["sandbox_id"]
        assert sandbox_dir.exists()
        admin.kill()
        admin.restart()
        listed = HTTP.get(admin.url + "/api/v1/envs").json()["envs"]
        assert [(e["id"], e["status"]) for e in listed] == [(env.remote_id, "lost")]
        with pytest.raises(WorkerLost, match=env.remote_id):
            env.step("\\boxed{up}")
        with pytest.raises(WorkerLost, match="admin restarted"):
            sandbox.run("echo again")
        env.close()
        sandbox.stop()
        assert HTTP.get(admin.url + "/api/v1/envs").json()["envs"] == []
        assert HTTP.get(admin.url + "/api/v1/sandboxes").json()["sandboxes"] == []
        wait_for(lambda: not sandbox_dir.exists())
    finally:
        admin.stop()


def start_cluster(tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    """An admin without an embedded worker, and one worker ``w1`` registered with it."""
    admin = ServerProcess.admin(tmp_path, "server.embedded_worker=false", *FAST).start()
    worker = ServerProcess.worker(admin.url, tmp_path, "worker.heartbeat_interval=0.3", "worker.id=w1").start()
    wait_for(lambda: len(HTTP.get(admin.url + "/api/v1/workers").json()["workers"]) == 1)
    return admin, worker


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """For tests that leave the cluster as they found it (nothing hosted, both processes up)."""
    admin, worker = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield admin, worker
    finally:
        worker.stop()
        admin.stop()


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """For tests that kill a process."""
    admin, worker = start_cluster(tmp_path)
    try:
        yield admin, worker
    finally:
        worker.stop()
        admin.stop()


@pytest.mark.slow
def test_remote_worker_hosts_envs_and_sandboxes(shared_cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = shared_cluster
    info = HTTP.get(admin.url + "/api/v1/workers").json()["workers"][0]
    assert info["id"] == "w1" and info["embedded"] is False and info["url"] == worker.url
    env = rock.make(ENV_ID, backend="remote", base_url=admin.url)
    local = rock.make(ENV_ID)
    assert env.info.worker_id == "w1"
    assert env.reset(seed=3) == local.reset(seed=3)
    for action in ["\\boxed{up}", "\\boxed{right}", "\\boxed{down}"]:
        assert env.step(action) == local.step(action)
    vec = rock.make_vec(ENV_ID, 3, backend="remote", base_url=admin.url)
    obs, _ = vec.reset(seed=0)
    assert len(obs) == 3 and vec.step(["\\boxed{up}"] * 3)[1].shape == (3,)
    batch = HTTP.post(
        admin.url + "/api/v1/batch/step", json={"steps": [{"env": env.remote_id, "action": "\\boxed{left}"}]}
    )
    assert batch.json()["results"][0]["result"]["observation"]
    with rock.Sandbox(runtime="namespace", base_url=admin.url) as sb:
        assert sb.run("echo on-worker").output == "on-worker\n"
        sb.write_file("x.txt", "data")
        assert sb.read_file("x.txt") == "data"
        assert "".join(sb.stream("echo a; echo b")) == "a\nb\n"
        ws = sb.stream("echo c; echo d; exit 4", transport="ws")  # the admin relays the worker's events
        assert "".join(ws) == "c\nd\n" and ws.exit_code == 4
        left = sb.stream("echo e; sleep 63.217", transport="ws")
        assert next(left) == "e\n"
        left.close()  # the admin drops the relay, the worker kills the command
        wait_gone("sleep 63.217")
        listed = HTTP.get(admin.url + "/api/v1/workers").json()["workers"][0]
        assert (listed["used_slots"], listed["light_envs"]) == (1, 4)  # a sandbox takes a slot, light envs memory
    vec.close()
    env.close()
    # the worker really hosts nothing now
    assert HTTP.get(worker.url + "/api/v1/health").json()["envs"] == 0


@pytest.mark.slow
def test_lost_worker_gives_worker_lost_and_orphans_are_closed(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = cluster
    # an object the admin never placed (an orphan) is closed at the next heartbeat
    orphan = HTTP.post(worker.url + "/api/v1/envs", json={"env_id": ENV_ID}).json()["id"]
    assert orphan
    wait_for(lambda: HTTP.get(worker.url + "/api/v1/health").json()["envs"] == 0)
    env = rock.make(ENV_ID, backend="remote", base_url=admin.url)
    env.reset(seed=0)
    worker.kill()
    with pytest.raises(WorkerLost, match="w1"):
        env.step("\\boxed{up}")
    wait_for(lambda: HTTP.get(admin.url + "/api/v1/workers").json()["workers"][0]["status"] == "lost")
    assert HTTP.get(admin.url + "/api/v1/envs").json()["envs"][0]["status"] == "lost"
    resp = HTTP.post(admin.url + "/api/v1/envs", json={"env_id": ENV_ID})
    assert resp.status_code == 503 and resp.json()["error"] == "NoCapacity"
    env.close()


@pytest.mark.slow
def test_admin_sigkill_keeps_objects_on_remote_workers(shared_cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = shared_cluster
    env = rock.make(ENV_ID, backend="remote", base_url=admin.url)
    local = rock.make(ENV_ID)
    assert env.reset(seed=4) == local.reset(seed=4)
    assert env.step("\\boxed{up}") == local.step("\\boxed{up}")
    admin.kill()
    # while the admin is down, something creates an object the admin will never know
    orphan = HTTP.post(worker.url + "/api/v1/envs", json={"env_id": ENV_ID}).json()["id"]
    admin.restart()
    # the record came back from SQLite and the worker still hosts the env: the episode continues
    assert env.step("\\boxed{left}") == local.step("\\boxed{left}")
    listed = HTTP.get(admin.url + "/api/v1/envs").json()["envs"]
    assert [(e["id"], e["status"]) for e in listed] == [(env.remote_id, "live")]
    # the worker's next heartbeat reconciles: the orphan is closed there, the env stays
    wait_for(lambda: HTTP.get(worker.url + "/api/v1/health").json()["envs"] == 1)
    assert orphan not in [e["id"] for e in HTTP.get(worker.url + "/api/v1/envs").json()["envs"]]
    env.close()
    local.close()


@pytest.mark.slow
def test_cluster_with_a_token(tmp_path: Path) -> None:
    token = "cluster-token-0123456789"
    env_vars = {"ROCK_ENV_TOKEN": token}
    auth = {"authorization": f"Bearer {token}"}
    admin = ServerProcess.admin(tmp_path, "server.embedded_worker=false", *FAST, env=env_vars).start()
    worker = ServerProcess.worker(admin.url, tmp_path, "worker.heartbeat_interval=0.3", env=env_vars).start()
    try:
        wait_for(lambda: len(HTTP.get(admin.url + "/api/v1/workers", headers=auth).json()["workers"]) == 1)
        assert HTTP.get(worker.url + "/api/v1/envs").status_code == 401  # the worker wants the token too
        env = rock.make(ENV_ID, backend="remote", base_url=admin.url, token=token)
        local = rock.make(ENV_ID)
        assert env.reset(seed=2) == local.reset(seed=2)
        assert env.step("\\boxed{down}") == local.step("\\boxed{down}")
        env.close()
    finally:
        worker.stop()
        admin.stop()
