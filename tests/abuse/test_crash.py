"""Crashes leave nothing behind: a SIGKILLed driver holding many sandboxes, a SIGKILLed admin holding sandboxes.

Only processes this test started are killed, by their pid.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rock_env.errors import WorkerLost
from tests.abuse import hostscan
from tests.abuse.conftest import Arena, brief, new_server, open_sandbox, target_params

pytestmark = [pytest.mark.abuse, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DRIVER = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import rock_env as rock
runtime, count, ttl, tag, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def make(i):
    sb = rock.Sandbox(runtime=runtime, ttl=ttl, pids=64, env={"ROCK_ENV_ABUSE_TAG": tag})
    sb.start()
    sb.run("sleep 1000 >/dev/null 2>&1 &")
    return sb
with ThreadPoolExecutor(threads) as pool:
    sandboxes = list(pool.map(make, range(count)))
print("READY " + json.dumps([sb.id for sb in sandboxes]), flush=True)
time.sleep(3600)
"""
DRIVER_SANDBOXES = 20
#: the sandboxes' ttl: longer than starting all of them takes on a loaded CI machine (docker: ~1 s a start, 4 at a
#: time; else the first ones expire, and are reaped, before the driver reports them)
DRIVER_TTL = {"namespace": 6.0, "docker": 20.0}
#: the driver starts its sandboxes from this many threads (docker starts take ~1 s each; namespace ones
#: ~0.3 s, and concurrent namespace starts are not what this case is about)
DRIVER_THREADS = {"namespace": 1, "docker": 4}


def read_line(proc: subprocess.Popen[bytes], prefix: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            data += chunk
            for line in data.splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :]
        elif proc.poll() is not None:
            break
    raise AssertionError(f"the driver did not report its sandboxes: {data[-2000:]!r}")


@pytest.mark.parametrize("target", target_params(vias=("sdk",)), indirect=True)
def test_sigkill_of_a_driver_holding_sandboxes(arena: Arena) -> None:
    """A child process creates 20 sandboxes with a ttl and is SIGKILLed: after the ttl, nothing of them is left,
    and ``rock-env sandbox gc --dry-run`` would reap neither them nor the live canary."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DRIVER,
            arena.target.runtime,
            str(DRIVER_SANDBOXES),
            str(DRIVER_TTL[arena.target.runtime]),
            arena.scope.tag,
            str(DRIVER_THREADS[arena.target.runtime]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    arena.scope.pids.add(proc.pid)
    try:
        ids = json.loads(read_line(proc, b"READY ", 180))
        arena.scope.ids.update(ids)
        held = hostscan.leaks(arena.before, hostscan.snapshot(arena.scope))
        held_dirs = [item for item in held if item.startswith("state dir")]
        assert len(held_dirs) >= DRIVER_SANDBOXES, f"the leak counter does not see the driver's sandboxes: {held[:5]}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    killed_at = time.monotonic()
    left, _after = hostscan.wait_for_no_leaks(
        arena.scope, arena.before, settle=DRIVER_TTL[arena.target.runtime] + 60
    )  # 20 reapers each start a Python: slow on a loaded 2-core host
    took = time.monotonic() - killed_at
    if left:
        hostscan.reap_leftovers(arena.scope)
    assert not left, (
        f"{len(left)} things of the SIGKILLed driver's {DRIVER_SANDBOXES} sandboxes are left {took:.0f}s after the "
        f"kill (ttl {DRIVER_TTL[arena.target.runtime]:.0f}s; held: {len(held)}):{hostscan.describe(left)}"
    )
    # gc (dry run: a real gc also reaps other programs' orphaned containers host-wide) would reap none of
    # the driver's sandboxes (nothing is left) and not the live canary
    gc = subprocess.run(
        [sys.executable, "-m", "rock_env.cli", "sandbox", "gc", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert gc.returncode == 0, gc.stdout + gc.stderr
    mentioned = [sid for sid in [*ids, *arena.scope.keep] if sid in gc.stdout + gc.stderr]
    assert not mentioned, f"gc would still reap {mentioned}: {gc.stdout[-1000:]}"
    arena.finish()


@pytest.mark.parametrize("target", target_params(vias=("server",)), indirect=True)
def test_sigkill_of_the_admin(arena: Arena) -> None:
    """An admin holding sandboxes is SIGKILLed and restarted on the same data dir: clients get ``WorkerLost``,
    and none of its sandboxes' processes, containers, mounts, cgroups or state dirs are left."""
    server = new_server(arena.scope, "killed").start()
    try:
        sandboxes = [open_sandbox(arena.target, arena.scope, server) for _ in range(3)]
        for sb in sandboxes:
            result = sb.run("sleep 1000 >/dev/null 2>&1 & echo up")
            assert result.output == "up\n", brief(result)
        held = hostscan.leaks(arena.before, hostscan.snapshot(arena.scope))
        assert len([i for i in held if i.startswith("state dir")]) >= 3, f"not seen by the leak counter: {held[:5]}"
        server.kill()
        server.restart()
        for sb in sandboxes:
            with pytest.raises(WorkerLost):
                sb.run("echo still-there", timeout=10)
        left, _ = hostscan.wait_for_no_leaks(arena.scope, arena.before)
        if left:
            hostscan.reap_leftovers(arena.scope)
        assert not left, f"left after the admin was SIGKILLed and restarted:{hostscan.describe(left)}"
        for sb in sandboxes:
            sb.stop()
    finally:
        server.stop()
    arena.finish()
