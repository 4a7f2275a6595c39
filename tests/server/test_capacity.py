"""Capacity by resources: light envs take no slot, their memory is measured and reported."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.protocol import WorkerCapacity
from rock_env.server.capacity import DEFAULT_ENV_MEMORY, MEASURE_AFTER, MemoryMeter
from tests.server.conftest import serve

pytestmark = pytest.mark.server
ENV_ID = "game:Sokoban-v0-easy"


def test_meter_turns_memory_into_a_light_env_budget() -> None:
    meter = MemoryMeter(memory=1 << 30, fraction=0.5)
    capacity = WorkerCapacity(cpus=1, memory=1 << 30, slots=4)
    meter.baseline = 0
    meter.update(capacity, 0)
    assert capacity.env_memory == DEFAULT_ENV_MEMORY and capacity.max_envs == (1 << 29) // DEFAULT_ENV_MEMORY
    meter.baseline = meter.rss() - MEASURE_AFTER * 10_000  # as if each of 64 envs took 10 kB
    meter.update(capacity, MEASURE_AFTER)
    assert 9_000 <= capacity.env_memory <= 11_000


def test_light_envs_take_no_slot_and_memory_is_reported(tmp_path: Path) -> None:
    """A worker with 2 slots hosts 100 game envs; /api/v1/workers reports their measured memory."""
    srv = serve(tmp_path, slots=2, limits={"max_envs": None})
    try:
        envs = [rock.make(ENV_ID, backend="remote", base_url=srv.url) for _ in range(100)]
        for i, env in enumerate(envs):
            env.reset(seed=i)
        worker = httpx.get(srv.url + "/api/v1/workers", timeout=60).json()["workers"][0]
        assert worker["used_slots"] == 0 and worker["light_envs"] == 100
        cap = worker["capacity"]
        assert 0 < cap["env_memory"] < 4 << 20 and cap["rss"] > 0
        assert cap["max_envs"] >= 10_000, cap  # a worker hosts >= 10,000 light envs on this host's memory
        for env in envs:
            env.close()
    finally:
        srv.stop()
