"""``cluster=ray``: worker actors on a simulated multi-node Ray cluster (every node on 127.0.0.1)
are reached directly, like ``rock-env worker start`` workers: the admin only places."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rock_env as rock
from rock_env.server.cluster.ray_backend import LOOPBACK_ENV_VAR
from rock_env.server.testing import ServerProcess
from tests.server.test_direct import admin_ops
from tests.server.test_lifecycle import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.server, pytest.mark.slow]
ENV_ID = "game:Sokoban-v0-easy"
HTTP = httpx.Client(timeout=60)
NODES = 2


@pytest.fixture()
def ray_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(LOOPBACK_ENV_VAR, "0")  # every Ray server on 127.0.0.1
    temp = tempfile.mkdtemp(prefix="rock-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", temp)
    cluster = None
    try:
        os.mkdir(os.path.join(temp, "ray"))
        from ray.cluster_utils import Cluster

        head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": os.path.join(temp, "ray")}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(NODES - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_envs_spread_over_ray_nodes_are_stepped_directly(ray_nodes: Any, tmp_path: Path) -> None:
    admin = ServerProcess.admin(
        tmp_path,
        "cluster=ray",
        f"cluster.address={ray_nodes.address}",
        "ray_workers.poll_interval=0.3",
        env={LOOPBACK_ENV_VAR: "0"},
    ).start(timeout=180)
    try:
        alive = lambda: [w for w in HTTP.get(admin.url + "/api/v1/workers").json()["workers"] if w["status"] == "alive"]  # noqa: E731
        wait_for(lambda: len(alive()) >= NODES, timeout=180)
        workers = alive()
        assert len(workers) == NODES
        envs = [rock.make(ENV_ID, backend="remote", base_url=admin.url) for _ in range(3 * NODES)]
        assert {e.info.worker_id for e in envs} == {w["id"] for w in workers}  # spread across the nodes
        assert all(e.info.worker_url and e.info.worker_url != admin.url for e in envs)
        before = admin_ops(admin)
        for i, env in enumerate(envs):
            assert env.reset(seed=i) == rock.make(ENV_ID).reset(seed=i)
            env.step("\\boxed{up}")
        assert admin_ops(admin) == before  # the admin was not in the data path
        for env in envs:
            env.close()
    finally:
        admin.stop()
