"""The Ray-free placement loop and config of ``rock_env.server.cluster`` with a fake cluster.

The real Ray path is covered by tests/integration/test_ray_cluster.py; here a fake backend
lets each rule be checked exactly: one actor per alive node, losses on node death, actor
death and start timeout, backoff after failed starts, and the service-side loss marking.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rock_env.errors import ConfigError, WorkerLost
from rock_env.protocol import WorkerCapacity, WorkerHeartbeatRequest, WorkerRegisterRequest
from rock_env.server.cluster import RayClusterSettings, cluster_settings
from rock_env.server.cluster.hook import mark_worker_lost
from rock_env.server.cluster.placement import NodeView, PlacementLoop, WorkerGone, WorkerStarted
from rock_env.server.cluster.ray_backend import address_is_loopback
from rock_env.server.config import compose
from rock_env.server.service import Service
from rock_env.server.settings import ServerSettings


@dataclass(eq=False)
class Handle:
    worker_id: str
    node_id: str


@dataclass
class FakeCluster:
    """Nodes by id; ``died`` maps handles to a death reason; ``fail`` makes starts raise."""

    nodes_: dict[str, NodeView] = field(default_factory=dict)
    died: dict[Any, str] = field(default_factory=dict)
    fail: bool = False
    started: list[Handle] = field(default_factory=list)
    killed: list[Handle] = field(default_factory=list)

    def add(self, node_id: str, alive: bool = True) -> None:
        self.nodes_[node_id] = NodeView(node_id, "127.0.0.1", alive)

    def nodes(self) -> list[NodeView]:
        return list(self.nodes_.values())

    def start_worker(self, node: NodeView, worker_id: str) -> Handle:
        if self.fail:
            raise RuntimeError("no resources")
        handle = Handle(worker_id, node.node_id)
        self.started.append(handle)
        return handle

    def dead_workers(self, handles: Iterable[Any]) -> dict[Any, str]:
        return {h: self.died[h] for h in handles if h in self.died}

    def kill_worker(self, handle: Any) -> None:
        self.killed.append(handle)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_loop(cluster: FakeCluster, clock: Clock) -> PlacementLoop:
    return PlacementLoop(cluster, start_timeout=30.0, restart_backoff=2.0, clock=clock, run="")


def test_one_actor_per_alive_node_and_new_nodes_get_one() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add("aaaaaaaa11")
    cluster.add("bbbbbbbb22", alive=False)
    loop = make_loop(cluster, clock)
    assert loop.tick() == [WorkerStarted("ray-aaaaaaaa-1", "aaaaaaaa11")]
    assert loop.tick(["ray-aaaaaaaa-1"]) == []  # steady state: nothing more
    cluster.add("cccccccc33")
    assert loop.tick(["ray-aaaaaaaa-1"]) == [WorkerStarted("ray-cccccccc-2", "cccccccc33")]
    assert sorted(loop.worker_ids()) == ["ray-aaaaaaaa-1", "ray-cccccccc-2"]
    assert len(cluster.started) == 2 and cluster.killed == []


@pytest.mark.parametrize("gone", ["dead", "removed"])
def test_node_loss_marks_the_worker_lost(gone: str) -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add("aaaaaaaa11")
    cluster.add("bbbbbbbb22")
    loop = make_loop(cluster, clock)
    loop.tick()
    if gone == "dead":
        cluster.add("bbbbbbbb22", alive=False)
    else:
        del cluster.nodes_["bbbbbbbb22"]
    events = loop.tick(["ray-aaaaaaaa-1", "ray-bbbbbbbb-2"])
    assert len(events) == 1 and isinstance(events[0], WorkerGone)
    assert events[0].worker_id == "ray-bbbbbbbb-2" and "Ray node bbbbbbbb22" in events[0].reason
    assert [h.worker_id for h in cluster.killed] == ["ray-bbbbbbbb-2"]
    assert loop.worker_ids() == ["ray-aaaaaaaa-1"]
    assert loop.tick(["ray-aaaaaaaa-1"]) == []  # a dead node gets no new actor


def test_dead_actor_is_replaced_at_once_under_a_new_id() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add("aaaaaaaa11")
    loop = make_loop(cluster, clock)
    loop.tick()
    loop.tick(["ray-aaaaaaaa-1"])  # it registered
    cluster.died[cluster.started[0]] = "RayActorError: killed"
    events = loop.tick(["ray-aaaaaaaa-1"])
    assert events == [
        WorkerGone("ray-aaaaaaaa-1", "aaaaaaaa11", "its Ray actor died (RayActorError: killed)"),
        WorkerStarted("ray-aaaaaaaa-2", "aaaaaaaa11"),
    ]


def test_failed_starts_back_off_exponentially_and_reset_after_success() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add("aaaaaaaa11")
    loop = make_loop(cluster, clock)
    cluster.fail = True
    assert loop.tick() == []
    clock.now += 1.0
    cluster.fail = False
    assert loop.tick() == []  # still within the 2 s backoff
    clock.now += 1.5
    assert [type(e) for e in loop.tick()] == [WorkerStarted]
    # the actor dies before it registered: the next try waits twice as long (4 s)
    cluster.died[cluster.started[-1]] = "RayActorError: import failed"
    assert [type(e) for e in loop.tick()] == [WorkerGone]
    clock.now += 3.0
    assert loop.tick() == []
    clock.now += 1.5
    assert [type(e) for e in loop.tick()] == [WorkerStarted]
    loop.tick([loop.worker_ids()[0]])  # registered: backoff forgotten
    cluster.died[cluster.started[-1]] = "RayActorError: killed"
    assert [type(e) for e in loop.tick()] == [WorkerGone, WorkerStarted]


def test_actor_that_never_registers_is_replaced_after_the_start_timeout() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add("aaaaaaaa11")
    loop = make_loop(cluster, clock)
    loop.tick()
    clock.now += 29.0
    assert loop.tick() == []
    clock.now += 2.0
    events = loop.tick()
    assert len(events) == 1 and isinstance(events[0], WorkerGone) and "did not register within 30s" in events[0].reason
    clock.now += 2.0
    assert [e.worker_id for e in loop.tick()] == ["ray-aaaaaaaa-2"]


def test_mark_worker_lost_makes_its_objects_raise_worker_lost_naming_them(tmp_path: Path) -> None:
    service = Service(ServerSettings(data_dir=str(tmp_path), embedded_worker=False))
    capacity = WorkerCapacity(cpus=1, memory=1, slots=8, runtimes=["local"])
    service.register_worker(
        WorkerRegisterRequest(worker_id="ray-aaaaaaaa-1", url="http://127.0.0.1:9", capacity=capacity)
    )
    entry = service.place(1)
    rec = service.add_record("env-1", "env", entry, "anonymous", 1, {"env_id": "game:Sokoban-v0-easy"}, {}, None)
    assert mark_worker_lost(service, "ray-aaaaaaaa-1", "its Ray actor died (RayActorError: killed)") == 1
    assert service.workers["ray-aaaaaaaa-1"].status == "lost"
    with pytest.raises(WorkerLost, match=r"env-1.*Sokoban.*is lost: its Ray actor died"):
        service.lookup(rec.id, ("env",), "anonymous")
    assert mark_worker_lost(service, "unknown", "x") == 0
    # the loss is final: a late heartbeat or re-registration of the dead actor's worker cannot revive it
    assert service.heartbeat("ray-aaaaaaaa-1", WorkerHeartbeatRequest(objects=[], used_slots=0)).known is False
    assert service.workers["ray-aaaaaaaa-1"].status == "lost"
    with pytest.raises(WorkerLost, match="retired"):
        service.register_worker(
            WorkerRegisterRequest(worker_id="ray-aaaaaaaa-1", url="http://127.0.0.1:9", capacity=capacity)
        )
    asyncio.run(service.workers["ray-aaaaaaaa-1"].host.aclose())


def test_config_groups_compose_for_the_admin() -> None:
    assert cluster_settings(compose("serve_admin", [])) is None
    cfg = compose("serve_admin", ["cluster=ray", "cluster.address=local", "ray_workers.slots=64"])
    settings = cluster_settings(cfg)
    assert settings == RayClusterSettings(address="local", slots=64)
    assert settings.is_local_head
    with pytest.raises(ConfigError, match="poll_interval"):
        cluster_settings(compose("serve_admin", ["cluster=ray", "ray_workers.poll_interval=0"]))


def test_the_admin_ignores_the_rollout_only_cluster_keys(caplog: pytest.LogCaptureFixture) -> None:
    """``cluster/ray.yaml`` is shared with ``rock-env rollout``: its rollout knobs must not break the admin."""
    cfg = compose("serve_admin", ["cluster=ray"])
    assert set(cfg["cluster"]) >= {"workers", "cpus_per_worker", "max_retries"}  # the shared yaml has them
    assert cluster_settings(cfg) == RayClusterSettings()
    overrides = ["cluster=ray", "cluster.address=local", "cluster.workers=4", "cluster.max_retries=0"]
    with caplog.at_level("WARNING", logger="rock_env.server.cluster.settings"):
        assert cluster_settings(compose("serve_admin", overrides)) == RayClusterSettings(address="local")
    assert "ignores the rollout-only keys cluster.max_retries, cluster.workers" in caplog.text


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("local", True), ("127.0.0.1:6379", True), ("[::1]:6379", True), ("10.0.0.5:6379", False), ("auto", False)],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert address_is_loopback(address) is loopback


def test_leftover_ray_processes_are_recorded_and_reaped(tmp_path: Path) -> None:
    from rock_env.cluster import leftovers
    from rock_env.sandbox import hostproc
    from rock_env.sandbox.state import ProcessRef

    # a parent (standing in for the admin) with a Ray-looking child and an ordinary one
    script = '(exec -a "ray::FakeAgent" sleep 60) & (exec sleep 60) & wait'
    parent = subprocess.Popen(["bash", "--norc", "--noprofile", "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(hostproc.descendants(parent.pid)) < 2 or not leftovers.ray_descendants(parent.pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        children = hostproc.descendants(parent.pid)
        assert leftovers.record(tmp_path, root=parent.pid) == 1
        recorded = json.loads((tmp_path / leftovers.RECORD_NAME).read_text())
        fake = recorded[0]["pid"]
        assert fake in children and recorded[0]["role"].startswith("ray::FakeAgent")
        assert leftovers.reap(tmp_path) == 1
        deadline = time.monotonic() + 10
        while ProcessRef.model_validate(recorded[0]).alive():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert [c for c in children if c != fake and ProcessRef.of(c).alive()]  # the ordinary child lives on
        assert not (tmp_path / leftovers.RECORD_NAME).exists()
        assert leftovers.reap(tmp_path) == 0  # no record: nothing to do
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # its own session: the parent and both children
        parent.wait(10)
