"""Many threads stepping envs on the direct data plane share one pool without breaking connections.

Regression: httpcore's sync pool closed connections that other threads were reading (its idle
check saw IDLE, then the just-arrived answer made the socket readable: "server disconnected"),
so 64 threads stepping envs on ``workers=2`` got ``ReadError: [Errno 9] Bad file descriptor``,
and the client then called the live worker lost. A real admin with two real worker processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpcore
import httpx
import pytest

import rock_env as rock
from rock_env.errors import ServerUnavailable, WorkerLost
from rock_env.remote.client import HEALTH_PATH, MAX_CONNECTIONS_ENV_VAR, ApiClient
from rock_env.remote.pool import Route, close_shared, open_fds
from rock_env.server.testing import ServerProcess

pytestmark = [pytest.mark.server, pytest.mark.slow]

ENV_ID = "game:Sokoban-v0-easy"
THREADS = 64
STEPS = 25
MOVES = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}", "\\boxed{right}"]
QUIET = ("server.env_idle_ttl=null", "server.log_level=warning", "worker.log_level=warning")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("workers2")
    with ServerProcess.admin(tmp, "workers=2", *QUIET) as admin:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            workers = httpx.get(admin.url + "/api/v1/workers", timeout=30).json()["workers"]
            if sum(1 for w in workers if w["status"] == "alive" and w.get("url")) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("workers=2 did not register two workers in 120 s")
        yield admin.url
    close_shared()


def test_64_threads_step_direct_envs_without_a_broken_connection(two_workers: str) -> None:
    url = two_workers
    close_shared()  # a fresh pool for this server
    with ThreadPoolExecutor(THREADS) as pool:
        envs = list(pool.map(lambda _: rock.make(ENV_ID, backend="remote", base_url=url), range(THREADS)))
        try:
            workers = {e.info.worker_url for e in envs}
            assert len(workers) == 2 and None not in workers, f"not placed on two direct workers: {workers}"
            list(pool.map(lambda p: p[1].reset(seed=p[0]), enumerate(envs)))
            start = threading.Barrier(THREADS)

            def play(env: rock.Env) -> int:
                start.wait()
                for k in range(STEPS):
                    _, _, terminated, truncated, _ = env.step(MOVES[k % 4])
                    if terminated or truncated:
                        env.reset()
                return STEPS

            # any error (EBADF -> ServerUnavailable / WorkerLost) fails the test here
            assert sum(pool.map(play, envs)) == THREADS * STEPS
        finally:
            list(pool.map(lambda e: e.close(), envs))


def test_client_pool_survives_threads_across_two_workers(two_workers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """48 threads, two servers, 4 connections: the pool keeps swapping origins under live requests.

    With httpcore's pool (the client's before the fix) dozens of these 2,000 requests failed with
    ``ReadError: [Errno 9] Bad file descriptor`` or hung to their read timeout.
    """
    monkeypatch.setenv(MAX_CONNECTIONS_ENV_VAR, "4")
    workers = httpx.get(two_workers + "/api/v1/workers", timeout=30).json()["workers"]
    urls = [(w["url"] + HEALTH_PATH).encode() for w in workers if w["url"]][:2]
    assert len(urls) == 2
    pool = ApiClient._new_pool()
    timeouts = {"timeout": {"connect": 10, "read": 10, "write": 10, "pool": 30}}
    errors: list[str] = []

    def one(i: int) -> int:
        try:
            return pool.request(b"GET", urls[i % 2], extensions=timeouts).status
        except Exception as exc:
            errors.append(repr(exc))
            return 0

    before = open_fds()
    try:
        with ThreadPoolExecutor(48) as threads:
            statuses = list(threads.map(one, range(2000)))
        assert not errors, f"{len(errors)} requests failed: {sorted(set(errors))[:3]}"
        assert statuses == [200] * 2000
        assert open_fds() - before <= 4
        pool.close()
        assert pool.connections == 0
        assert pool.request(b"GET", urls[0], extensions=timeouts).status == 200  # usable again after close
    finally:
        pool.close()


def test_a_live_worker_is_never_called_lost(two_workers: str) -> None:
    """A step whose connection dropped: WorkerLost only if the worker also fails its health check."""
    workers = httpx.get(two_workers + "/api/v1/workers", timeout=30).json()["workers"]
    live = next(w["url"] for w in workers if w["url"])
    client = ApiClient(two_workers)
    try:
        assert client.alive() and client.alive(live)
        assert not client.alive("http://127.0.0.1:9", timeout=1)  # nothing listens on port 9

        def dropped() -> ServerUnavailable:
            exc = ServerUnavailable("connection dropped")
            exc.__cause__ = httpcore.ReadError("[Errno 9] Bad file descriptor")
            return exc

        route = Route("/api/v1/envs/e1", live, "grant", "env 'e1'")
        with pytest.raises(ServerUnavailable) as raised:
            route._fallback(client, dropped(), idempotent=False)
        assert not isinstance(raised.value, WorkerLost) and "alive" in str(raised.value)
        assert route.origin == live  # the env stays on its worker
        dead = Route("/api/v1/envs/e2", "http://127.0.0.1:9", "grant", "env 'e2'")
        with pytest.raises(WorkerLost, match="e2"):
            dead._fallback(client, dropped(), idempotent=False)
    finally:
        client.close()
