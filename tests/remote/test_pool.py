"""The shared connection pool: one per process and server, bounded file descriptors, cheap makes."""

from __future__ import annotations

import statistics
import time

import pytest

import rock_env as rock
from rock_env.protocol import EnvInfo, EnvMakeRequest, Ok
from rock_env.remote.client import DEFAULT_MAX_CONNECTIONS
from rock_env.remote.pool import open_fds, shared_client
from rock_env.server.runner import BackgroundServer

pytestmark = pytest.mark.server
ENV_ID = "game:Sokoban-v0-easy"


def test_envs_share_one_client_per_server(server: BackgroundServer) -> None:
    a = rock.make(ENV_ID, backend="remote", base_url=server.url)
    b = rock.make(ENV_ID, backend="remote", base_url=server.url + "/")
    vec = rock.make_vec(ENV_ID, 2, backend="remote", base_url=server.url)
    try:
        assert a._client is b._client is vec._client is shared_client(server.url)
        a.close()
        assert b.reset(seed=0)[0]  # closing one env leaves the shared pool open for the others
    finally:
        b.close()
        vec.close()


def test_file_descriptors_stay_bounded_with_many_envs(server: BackgroundServer) -> None:
    """150 live envs (each stepped) add at most the pool's bound of sockets, not two per env.

    The server runs in this process, so each pooled connection shows up twice (client and server end).
    """
    before = open_fds()
    envs = [rock.make(ENV_ID, backend="remote", base_url=server.url) for _ in range(150)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=i)
            env.step("\\boxed{up}")
        grown = open_fds() - before
        assert grown <= 2 * 2 * DEFAULT_MAX_CONNECTIONS, f"{grown} new fds for 150 envs"
    finally:
        for env in envs:
            env.close()


def test_make_costs_about_its_request(server: BackgroundServer) -> None:
    """``make(..., backend="remote")`` p50 <= 2x the raw make request on the same pool (interleaved runs)."""
    client = shared_client(server.url)
    request = EnvMakeRequest(env_id=ENV_ID)
    made, raw = [], []
    for _ in range(20):
        started = time.perf_counter()
        info = client.call("POST", "/api/v1/envs", EnvInfo, body=request, idempotent=False)
        raw.append(time.perf_counter() - started)
        client.call("DELETE", f"/api/v1/envs/{info.id}", Ok)
        started = time.perf_counter()
        env = rock.make(ENV_ID, backend="remote", base_url=server.url)
        made.append(time.perf_counter() - started)
        env.close()
    assert statistics.median(made) <= 2 * statistics.median(raw), (statistics.median(made), statistics.median(raw))


@pytest.mark.bwrap
def test_sandboxes_share_the_pool_and_keep_fds_bounded(server: BackgroundServer) -> None:
    """Remote sandboxes use the process's shared client; stopping one leaves it open for the rest."""
    env = rock.make(ENV_ID, backend="remote", base_url=server.url)
    boxes = [rock.Sandbox(runtime="namespace", base_url=server.url) for _ in range(12)]
    try:
        before = open_fds()
        for sb in boxes:
            assert sb._client is shared_client(server.url)
            sb.start()
            assert sb.run("echo hi").output == "hi\n"
        grown = open_fds() - before
        assert grown <= 2 * 2 * DEFAULT_MAX_CONNECTIONS, f"{grown} new fds for {len(boxes)} sandboxes"
        boxes[0].stop()
        assert boxes[1].run("true").exit_code == 0  # the pool survives a sandbox's stop
        assert env.reset(seed=1)[0]
    finally:
        for sb in boxes:
            sb.stop()
        env.close()
