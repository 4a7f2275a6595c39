"""``rock-env admin start workers=N``: N worker processes on this host, serving envs directly."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.server.cli_admin import worker_count
from rock_env.server.testing import ServerProcess
from tests.server.test_lifecycle import wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]
ENV_ID = "game:Sokoban-v0-easy"
HTTP = httpx.Client(timeout=60)


def worker_pids(admin_pid: int) -> list[int]:
    """PIDs of the worker processes the admin ``admin_pid`` started (their ids name it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"worker.id=local-{admin_pid}-".encode() in b" ".join(cmdline):
            pids.append(int(entry))
    return pids


def test_worker_count() -> None:
    assert worker_count(0) == 0 and worker_count("3") == 3 and worker_count("auto") == (os.cpu_count() or 1)
    with pytest.raises(rock.RockEnvError, match="workers=N"):
        worker_count("many")


def test_admin_runs_n_worker_processes(tmp_path: Path) -> None:
    admin = ServerProcess.admin(tmp_path, "workers=2", "worker.heartbeat_interval=0.3").start()
    try:
        wait_for(lambda: len(HTTP.get(admin.url + "/api/v1/workers").json()["workers"]) == 2, timeout=90)
        workers = HTTP.get(admin.url + "/api/v1/workers").json()["workers"]
        assert all(not w["embedded"] and w["url"] != "embedded" for w in workers)
        assert len(worker_pids(admin.pid)) == 2
        envs = [rock.make(ENV_ID, backend="remote", base_url=admin.url) for _ in range(4)]
        assert {e.info.worker_id for e in envs} == {w["id"] for w in workers}  # both processes host envs
        assert {e.info.worker_url for e in envs} == {w["url"] for w in workers}
        for i, e in enumerate(envs):
            assert e.reset(seed=i) == rock.make(ENV_ID).reset(seed=i)
            e.close()
    finally:
        admin.stop()
    wait_for(lambda: not worker_pids(admin.pid), timeout=30)  # the admin stopped the workers it started


def test_default_is_one_worker_process_per_core_and_first_make_waits_for_them(tmp_path: Path) -> None:
    """``rock-env admin start`` with no ``workers=``: one worker process per core, and a make sent the
    moment the admin listens is placed on one of them (it waits for their registration, no NoCapacity)."""
    cores = os.cpu_count() or 1
    admin = ServerProcess(
        ["admin", "start", "server.port=0", f"server.data_dir={tmp_path}", f"server.port_file={tmp_path / 'port'}"],
        tmp_path / "port",
        None,
    ).start()
    try:
        env = rock.make(ENV_ID, backend="remote", base_url=admin.url)  # no wait for the workers here
        workers = HTTP.get(admin.url + "/api/v1/workers").json()["workers"]
        assert len(workers) == cores and all(not w["embedded"] for w in workers)
        assert len(worker_pids(admin.pid)) == cores
        assert env.info.worker_id in {w["id"] for w in workers} and env.info.worker_url
        assert env.reset(seed=3) == rock.make(ENV_ID).reset(seed=3)
        env.close()
    finally:
        admin.stop()
    wait_for(lambda: not worker_pids(admin.pid), timeout=30)


def test_workers_zero_keeps_everything_in_the_admin(tmp_path: Path) -> None:
    with ServerProcess.admin(tmp_path, "workers=0") as admin:
        workers = HTTP.get(admin.url + "/api/v1/workers").json()["workers"]
        assert [w["embedded"] for w in workers] == [True]
        assert not worker_pids(admin.pid)


def test_worker_processes_that_cannot_start_give_no_capacity_at_once(tmp_path: Path) -> None:
    """The first creations wait for the admin's worker processes only while one of them runs."""
    with ServerProcess.admin(tmp_path, "workers=2", "worker.log_level=nonsense") as admin:
        wait_for(lambda: not worker_pids(admin.pid), timeout=30)  # both refused their config and exited
        started = time.monotonic()
        with pytest.raises(rock.errors.NoCapacity, match="no worker can host"):
            rock.make(ENV_ID, backend="remote", base_url=admin.url)
        assert time.monotonic() - started < 10


@pytest.mark.bwrap
def test_default_admin_serves_sandboxes_and_sandbox_envs_from_its_workers(tmp_path: Path) -> None:
    """The default admin (worker processes) hosts a namespace sandbox and a tool env on them."""
    with ServerProcess.admin(tmp_path, "workers=auto") as admin:
        with rock.Sandbox(runtime="namespace", base_url=admin.url) as sb:
            assert sb.run("echo hi from a worker").output == "hi from a worker\n"
            listed = HTTP.get(admin.url + "/api/v1/sandboxes").json()["sandboxes"]
            assert [s["worker_id"] for s in listed] and all(s["worker_id"].startswith("local-") for s in listed)
        env = rock.make("tool:Bash-v0", backend="remote", base_url=admin.url)
        try:
            obs, _ = env.reset(seed=0)
            assert obs and env.info.worker_id.startswith("local-")
        finally:
            env.close()
