"""An admin with ``cluster=ray`` on a real Ray cluster on loopback (head + one extra node).

The test process starts the Ray cluster (``ray.cluster_utils.Cluster``, every server on
127.0.0.1) and connects as a second driver; the admin is a child process that joins it with
``cluster.address=HOST:PORT`` and places one worker actor per node. Killing an actor and
removing a node must turn the objects on it into ``WorkerLost`` errors that name them (from
the Ray watch, not the heartbeat timeout), and the admin must put a fresh actor in its place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.errors import WorkerLost
from rock_env.sandbox.state import state_root
from rock_env.server.cluster.ray_backend import LOOPBACK_ENV_VAR
from rock_env.server.testing import ServerProcess

pytestmark = [pytest.mark.ray, pytest.mark.server, pytest.mark.slow]

ENV_ID = "game:Sokoban-v0-easy"
ACTIONS = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}"]
HTTP = httpx.Client(timeout=60)
#: Fast failure detection so that a dead node is noticed in seconds, not ~30 s.
FAST_HEALTH = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def workers(url: str) -> list[dict[str, Any]]:
    return list(HTTP.get(url + "/api/v1/workers").json()["workers"])


def alive(url: str) -> list[dict[str, Any]]:
    return [w for w in workers(url) if w["status"] == "alive"]


@pytest.fixture()
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(LOOPBACK_ENV_VAR, "0")  # before Ray is imported: every Ray server on 127.0.0.1
    temp = tempfile.mkdtemp(prefix="rock-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", temp)  # Ray's default dir (and its ray_current_cluster file) in here
    cluster = None
    try:
        os.mkdir(os.path.join(temp, "ray"))
        import ray
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster

        assert not ray_constants.ENABLE_RAY_CLUSTER, "Ray was imported before the loopback switch was set"
        head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": os.path.join(temp, "ray")}
        cluster = Cluster(initialize_head=True, head_node_args={**head, "_system_config": FAST_HEALTH})
        cluster.connect(namespace="rock-env")
        yield cluster
    finally:
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if temp.startswith("/tmp/rock-ray-") and os.path.isdir(temp):
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture()
def admin(ray_cluster: Any, tmp_path: Path) -> Iterator[ServerProcess]:
    data = tmp_path
    proc = ServerProcess.admin(
        data,
        "cluster=ray",
        f"cluster.address={ray_cluster.address}",
        "ray_workers.poll_interval=0.3",
        "server.heartbeat_timeout=60",  # losses below must come from the Ray watch, not missed heartbeats
        env={LOOPBACK_ENV_VAR: "0"},
    ).start(timeout=120)
    try:
        yield proc
    finally:
        proc.stop()


def node_of(worker_id: str) -> str:
    return worker_id.split("-")[1]  # ray-<node id prefix>-<run><sequence number>


def test_private_head_serves_and_its_leftovers_are_reaped_after_an_admin_crash(tmp_path: Path) -> None:
    """``cluster.address=local``: the admin runs its own Ray head; after SIGKILL the next admin reaps it."""
    temp = tempfile.mkdtemp(prefix="rock-ray-", dir="/tmp")  # Ray's session dir; short for its socket paths
    try:
        run_private_head(tmp_path, temp)
        assert os.listdir(temp), "Ray should have used the configured temp dir"
    finally:
        if temp.startswith("/tmp/rock-ray-") and os.path.isdir(temp):
            shutil.rmtree(temp, ignore_errors=True)


def run_private_head(tmp_path: Path, temp: str) -> None:
    from rock_env.cluster.leftovers import RECORD_NAME, ray_descendants
    from rock_env.sandbox.state import ProcessRef

    proc = ServerProcess.admin(
        tmp_path,
        "cluster=ray",
        "cluster.address=local",
        "ray_workers.poll_interval=0.3",
        f"ray_workers.temp_dir={temp}",
        "server.heartbeat_timeout=60",
    )
    proc.start(timeout=120)
    new_head: list[ProcessRef] = []
    try:
        worker = wait_for(lambda: alive(proc.url))[0]
        env = rock.make(ENV_ID, backend="remote", base_url=proc.url)
        assert env.reset(seed=5) == rock.make(ENV_ID).reset(seed=5)
        head = ray_descendants(proc.pid)
        assert any("gcs_server" in r.role for r in head) and any("raylet" in r.role for r in head)
        wait_for(lambda: len(json.loads((tmp_path / RECORD_NAME).read_text())) >= len(head))
        proc.kill()  # a crash: Ray's fate sharing ends most of the head, not all of it
        proc.restart(timeout=120)
        assert not [r for r in head if r.alive()], "the new admin should have killed the old head's processes"
        # the old actor ended with the old admin: its worker is lost at start (heartbeat_timeout is 60 s)
        wait_for(lambda: {w["id"]: w["status"] for w in workers(proc.url)}.get(worker["id"]) == "lost", timeout=20)
        with pytest.raises(WorkerLost, match=env.remote_id) as lost:
            env.step(ACTIONS[0])
        assert "ended with the previous admin process" in str(lost.value)
        env.close()
        wait_for(lambda: [w for w in alive(proc.url) if w["id"] != worker["id"]])  # a new actor took the node
        new_head = ray_descendants(proc.pid)
    finally:
        proc.stop()
    wait_for(lambda: not [r for r in new_head if r.alive()])
    assert not (tmp_path / RECORD_NAME).exists()


def check_actor_kill(admin: ServerProcess) -> None:
    """Killing a worker actor: WorkerLost naming the env and the sandbox, a fresh actor on the node."""
    import ray

    first = wait_for(lambda: alive(admin.url))
    assert len(first) == 1 and first[0]["id"].startswith("ray-")
    assert first[0]["url"].startswith("http://127.0.0.1:")
    worker_id = first[0]["id"]

    local = rock.make(ENV_ID)
    env = rock.make(ENV_ID, backend="remote", base_url=admin.url)
    assert env.reset(seed=3) == local.reset(seed=3)
    for action in ACTIONS:
        assert env.step(action) == local.step(action)
    sandbox = rock.Sandbox(runtime="namespace", base_url=admin.url).start()
    assert sandbox.run("echo ray-placed; echo $((6 * 7))").output == "ray-placed\n42\n"
    placed = {e["id"]: e["worker_id"] for e in HTTP.get(admin.url + "/api/v1/envs").json()["envs"]}
    assert placed[env.remote_id] == worker_id

    assert sandbox.placement is not None
    sandbox_dir = state_root() / sandbox.placement.config["sandbox_id"]
    assert sandbox_dir.is_dir()
    actor = ray.get_actor(f"rock-env-worker-{worker_id}", namespace="rock-env")
    ray.kill(actor, no_restart=True)
    wait_for(lambda: {w["id"]: w["status"] for w in workers(admin.url)}[worker_id] == "lost", timeout=50)
    with pytest.raises(WorkerLost, match=env.remote_id) as lost:
        env.step(ACTIONS[0])
    assert "Ray actor died" in str(lost.value) and ENV_ID in str(lost.value)
    with pytest.raises(WorkerLost, match=sandbox.id):
        sandbox.run("echo again")
    env.close()
    sandbox.stop()

    fresh = wait_for(lambda: [w for w in alive(admin.url) if w["id"] != worker_id])
    metrics = HTTP.get(admin.url + "/metrics").text
    assert "rock_env_ray_workers_lost_total 1" in metrics and "rock_env_ray_actors_started_total 2" in metrics
    wait_for(lambda: not sandbox_dir.exists())  # the node's new actor reaped what the sandbox left
    assert node_of(fresh[0]["id"]) == node_of(worker_id)  # the same node got a new actor
    again = rock.make(ENV_ID, backend="remote", base_url=admin.url)
    assert again.reset(seed=3) == local.reset(seed=3)
    again.close()


def check_node_loss(admin: ServerProcess, ray_cluster: Any) -> None:
    """A new node gets exactly one actor; removing the node: WorkerLost for its env, others unaffected."""
    before = {w["id"] for w in wait_for(lambda: alive(admin.url))}
    node = ray_cluster.add_node(num_cpus=1)
    new_node = node.node_id[:8]
    added = wait_for(lambda: [w for w in alive(admin.url) if node_of(w["id"]) == new_node])
    assert len(added) == 1 and added[0]["id"] not in before
    assert len(alive(admin.url)) == len(before) + 1  # exactly one actor per node

    envs = [rock.make(ENV_ID, backend="remote", base_url=admin.url) for _ in range(2)]
    placed = {e["id"]: e["worker_id"] for e in HTTP.get(admin.url + "/api/v1/envs").json()["envs"]}
    on_node = [e for e in envs if placed[e.remote_id] == added[0]["id"]]
    assert on_node, f"neither env was placed on the new node's worker: {placed}"
    for env in envs:
        env.reset(seed=0)

    ray_cluster.remove_node(node)
    wait_for(lambda: {w["id"]: w["status"] for w in workers(admin.url)}[added[0]["id"]] == "lost", timeout=50)
    with pytest.raises(WorkerLost, match=on_node[0].remote_id) as lost:
        on_node[0].step(ACTIONS[0])
    assert "its Ray node" in str(lost.value) or "its Ray actor died" in str(lost.value)
    for env in envs:
        if env is not on_node[0]:
            env.step(ACTIONS[0])  # the other node's env is unaffected
        env.close()
    assert not [w for w in alive(admin.url) if node_of(w["id"]) == new_node]


def test_actor_kill_and_node_loss_give_worker_lost_and_fresh_actors(admin: ServerProcess, ray_cluster: Any) -> None:
    # one test (one Ray cluster and one admin): under pytest-xdist two tests could each start their own
    check_actor_kill(admin)
    check_node_loss(admin, ray_cluster)
