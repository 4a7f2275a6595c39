"""The server's collector policy (:class:`~rock_env.server.gc_policy.GcPolicy`) and a real admin running it."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rock_env.server.gc_policy import FREEZE_EVERY, GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD, GcPolicy
from rock_env.server.testing import ServerProcess

pytestmark = pytest.mark.server

SOKOBAN = "game:Sokoban-v0-easy"
ODD = (701, 11, 9)
TUNED = (GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


class Node:
    """An object in a reference cycle (only a collection frees it)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture()
def gc_state() -> Iterator[None]:
    """ODD thresholds and nothing frozen during the test; the process's GC state back after."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.unfreeze()
    gc.set_threshold(*ODD)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        if frozen:
            gc.freeze()


def test_start_and_stop_restore_thresholds_and_unfreeze(gc_state: None) -> None:
    policy = GcPolicy()
    policy.start()
    assert gc.get_threshold() == TUNED and gc.get_freeze_count() > 0
    policy.start()  # twice: the thresholds from before the first start are kept
    policy.stop()
    assert gc.get_threshold() == ODD and gc.get_freeze_count() == 0
    policy.stop()  # idempotent: a later setting stays
    gc.set_threshold(800, 10, 10)
    policy.stop()
    assert gc.get_threshold() == (800, 10, 10)


def test_full_collection_frees_frozen_cycles(gc_state: None) -> None:
    policy = GcPolicy()
    node = Node()
    ref = weakref.ref(node)
    policy.start()  # freezes the node
    try:
        del node
        gc.collect()
        assert ref() is not None  # frozen: not walked
        policy.full_collection()
        assert ref() is None
        assert gc.get_freeze_count() > 0  # what survived is frozen again
        assert gc.get_threshold() == TUNED
    finally:
        policy.stop()
    assert gc.get_threshold() == ODD and gc.get_freeze_count() == 0


def test_run_freezes_and_collects_on_schedule(gc_state: None) -> None:
    policy = GcPolicy(freeze_every=0.01, full_every=0.1)

    async def main() -> weakref.ref[Node]:
        policy.start()
        gc.unfreeze()
        task = asyncio.create_task(policy.run())
        try:
            await asyncio.sleep(0.05)
            assert gc.get_freeze_count() > 0  # a periodic freeze ran
            node = Node()
            ref = weakref.ref(node)
            await asyncio.sleep(0.05)  # frozen by now
            del node
            gc.collect()
            alive_while_frozen = ref() is not None
            await asyncio.sleep(0.3)  # a full collection ran since
            assert alive_while_frozen
            return ref
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    try:
        ref = asyncio.run(main())
        assert ref() is None
    finally:
        policy.stop()
    assert gc.get_threshold() == ODD and gc.get_freeze_count() == 0


def test_admin_process_serves_with_the_policy_running(tmp_path: Path) -> None:
    admin = ServerProcess.admin(tmp_path, "limits.max_envs=100").start()
    started = time.monotonic()
    try:
        with httpx.Client(base_url=admin.url, timeout=60) as http:
            made = http.post("/api/v1/batch/make", json={"makes": [{"env_id": SOKOBAN}] * 50}).json()["results"]
            ids = [m["result"]["id"] for m in made]
            assert len(ids) == 50
            resets = http.post("/api/v1/batch/reset", json={"resets": [{"env": e, "seed": 1} for e in ids]})
            assert all(r["result"]["observation"] for r in resets.json()["results"])
            time.sleep(max(0.0, 2.5 * FREEZE_EVERY - (time.monotonic() - started)))  # freezes ran meanwhile
            for _ in range(3):
                steps = http.post(
                    "/api/v1/batch/step", json={"steps": [{"env": e, "action": "\\boxed{up}"} for e in ids]}
                )
                assert all(r["error"] is None for r in steps.json()["results"]), steps.text
            one = http.post(f"/api/v1/envs/{ids[0]}/step", json={"action": "\\boxed{left}"})
            assert one.status_code == 200
            for env in ids:
                assert http.delete(f"/api/v1/envs/{env}").json() == {"ok": True}
            assert http.get("/api/v1/health").json()["envs"] == 0
            fresh = http.post("/api/v1/envs", json={"env_id": SOKOBAN})
            assert fresh.status_code == 200
            http.delete(f"/api/v1/envs/{fresh.json()['id']}")
        assert admin.proc is not None and admin.proc.poll() is None
        assert "Traceback" not in admin.log(), admin.log()
    finally:
        # a clean exit (uvicorn re-raises the SIGTERM it caught once it has shut down)
        assert admin.stop() in (0, -signal.SIGTERM), admin.log()
