"""A client that vanishes with thousands of envs: the idle TTL reaps them and their memory is reused.

A real ``rock-env admin start`` process (its GC policy on); each client is a separate Python
process that makes and resets 3,000 remote envs (coalesced) and exits without closing them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from rock_env.server.testing import ServerProcess
from tests.server.test_lifecycle import wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]

ENVS = 3000
HTTP = httpx.Client(timeout=60)

CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    import rock_env as rock

    async def main():
        envs = await asyncio.gather(
            *(rock.amake("game:Sokoban-v0-easy", base_url=sys.argv[1], coalesce=True) for _ in range({n}))
        )
        await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
        await asyncio.gather(*(e.astep("\\\\boxed{{up}}") for e in envs))
        print(len(envs), "made")

    asyncio.run(main())  # exits without closing a single env
    """
).format(n=ENVS)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def live_envs(url: str) -> int:
    workers = HTTP.get(url + "/api/v1/workers").json()["workers"]
    return sum(w["light_envs"] for w in workers)


def vanish(url: str) -> None:
    out = subprocess.run([sys.executable, "-c", CLIENT, url], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and f"{ENVS} made" in out.stdout, out.stderr[-2000:]


def test_envs_of_a_vanished_client_are_reaped_and_their_memory_reused(tmp_path: Path) -> None:
    ttl = ("server.env_idle_ttl=3", "server.reap_interval=0.5", "limits.max_envs=null", "workers=0")
    with ServerProcess.admin(tmp_path, *ttl) as admin:
        before = rss_kb(admin.pid)
        vanish(admin.url)
        assert live_envs(admin.url) == ENVS
        grown = rss_kb(admin.pid)
        assert grown > before  # the envs cost something
        wait_for(lambda: live_envs(admin.url) == 0, timeout=60)  # reaped by the idle TTL
        assert HTTP.get(admin.url + "/api/v1/envs").json()["envs"] == []
        metrics = HTTP.get(admin.url + "/metrics").text
        assert f'rock_env_objects_reaped_total{{kind="env"}} {ENVS}' in metrics
        after_first = rss_kb(admin.pid)
        vanish(admin.url)  # the same again: the freed memory is reused, not added to
        wait_for(lambda: live_envs(admin.url) == 0, timeout=60)
        after_second = rss_kb(admin.pid)
        growth = grown - before
        assert after_second - after_first < growth / 2, (before, grown, after_first, after_second)
