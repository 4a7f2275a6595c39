"""Coalesced single-env calls (``coalesce=True``): many envs' makes, resets and steps travel as batches.

Against real servers: the server's own request counters (``/metrics``) show that the calls were
batched (far fewer batched requests than calls, no single-env request at all), the transcripts
equal local envs' ones, one env's error reaches that env only, and batches sent straight to a
worker process skip the admin; when that worker is killed, each env gets ``WorkerLost`` naming it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import rock_env as rock
from rock_env.errors import EnvInstanceNotFound, WorkerLost
from rock_env.remote.aio import AsyncRemoteEnv
from rock_env.remote.pool import aclose_shared
from rock_env.server.runner import BackgroundServer
from rock_env.server.testing import ServerProcess
from tests.server.test_lifecycle import wait_for

pytestmark = pytest.mark.server

ENV_ID = "game:Sokoban-v0-easy"
ACTIONS = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}"]
SEEDS = 16  # distinct seeds; env i plays seed i % SEEDS
OPS = ("batch_make", "batch_reset", "batch_step", "env_make", "env_reset", "env_step")


def ops(url: str) -> dict[str, float]:
    """The server's per-operation request counters (its /metrics)."""
    text = httpx.get(url + "/metrics", timeout=60).text
    found = {m[1]: float(m[2]) for m in re.finditer(r'rock_env_op_seconds_count\{op="([^"]+)"\} (\S+)', text)}
    return {op: found.get(op, 0.0) for op in OPS}


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {op: after[op] - before[op] for op in OPS}


_local: dict[int, list[object]] = {}


def transcript_local(seed: int) -> list[object]:
    """``[reset observation, step[:4], ...]`` of a local env (cached per seed)."""
    if seed not in _local:
        env = rock.make(ENV_ID)
        out: list[object] = [env.reset(seed=seed)[0]]
        out += [tuple(env.step(a)[:4]) for a in ACTIONS]
        env.close()
        _local[seed] = out
    return _local[seed]


def test_asyncio_envs_are_batched_and_match_local(server: BackgroundServer) -> None:
    n = 200

    async def main() -> list[list[object]]:
        envs: list[AsyncRemoteEnv] = []
        try:
            envs = await asyncio.gather(*(rock.amake(ENV_ID, base_url=server.url, coalesce=True) for _ in range(n)))
            assert len({e.remote_id for e in envs}) == n
            outs: list[list[object]] = [
                [obs] for obs, _ in await asyncio.gather(*(e.areset(seed=i % SEEDS) for i, e in enumerate(envs)))
            ]
            for action in ACTIONS:
                steps = await asyncio.gather(*(e.astep(action) for e in envs))
                for out, step in zip(outs, steps, strict=True):
                    out.append(tuple(step[:4]))
            return outs
        finally:
            await asyncio.gather(*(e.aclose() for e in envs))
            await aclose_shared()

    before = ops(server.url)
    outs = asyncio.run(main())
    delta = moved(before, ops(server.url))
    assert outs == [transcript_local(i % SEEDS) for i in range(n)]
    # n makes, n resets and 3n steps: a handful of batched requests, no single-env request
    assert 1 <= delta["batch_make"] <= 3, delta
    assert 1 <= delta["batch_reset"] <= 3, delta
    assert len(ACTIONS) <= delta["batch_step"] <= 3 * len(ACTIONS), delta
    assert delta["env_make"] == delta["env_reset"] == delta["env_step"] == 0, delta


def test_threads_are_batched_and_match_local(server: BackgroundServer) -> None:
    n = 32
    barrier = threading.Barrier(n)
    outs: list[list[object] | BaseException | None] = [None] * n

    def play(i: int) -> None:
        try:
            barrier.wait()
            env = rock.make(ENV_ID, backend="remote", base_url=server.url, coalesce=True)
            try:
                barrier.wait()
                out: list[object] = [env.reset(seed=i % SEEDS)[0]]
                for action in ACTIONS:
                    barrier.wait()
                    out.append(tuple(env.step(action)[:4]))
                outs[i] = out
            finally:
                env.close()
        except BaseException as exc:  # reported below, with the thread's index
            barrier.abort()
            outs[i] = exc

    before = ops(server.url)
    threads = [threading.Thread(target=play, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    delta = moved(before, ops(server.url))
    errors = [o for o in outs if isinstance(o, BaseException)]
    assert not errors, errors
    assert outs == [transcript_local(i % SEEDS) for i in range(n)]
    calls = n * (2 + len(ACTIONS))
    batched = delta["batch_make"] + delta["batch_reset"] + delta["batch_step"]
    assert delta["env_make"] == delta["env_reset"] == delta["env_step"] == 0, delta
    assert delta["batch_make"] < n and delta["batch_reset"] < n and delta["batch_step"] < n * len(ACTIONS), delta
    assert batched <= calls / 2, f"{batched} batched requests carried {calls} calls: {delta}"


def test_one_envs_error_in_a_coalesced_turn_is_its_own(server: BackgroundServer) -> None:
    n = 8

    async def main() -> None:
        envs: list[AsyncRemoteEnv] = []
        try:
            envs = await asyncio.gather(*(rock.amake(ENV_ID, base_url=server.url, coalesce=True) for _ in range(n)))
            await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
            victim = envs[3]
            # another client closes one env behind this process's back
            assert httpx.delete(f"{server.url}/api/v1/envs/{victim.remote_id}", timeout=60).json() == {"ok": True}
            before = ops(server.url)
            outcomes = await asyncio.gather(*(e.astep(ACTIONS[0]) for e in envs), return_exceptions=True)
            assert moved(before, ops(server.url))["batch_step"] == 1  # one turn, one request
            bad = outcomes[3]
            assert isinstance(bad, EnvInstanceNotFound) and victim.remote_id in str(bad), bad
            for i, out in enumerate(outcomes):
                if i != 3:
                    assert not isinstance(out, BaseException), out
                    assert tuple(out[:4]) == transcript_local(i)[1]  # type: ignore[index]
            # the survivors go on together; the victim keeps failing on its own
            outcomes = await asyncio.gather(*(e.astep(ACTIONS[1]) for e in envs), return_exceptions=True)
            assert isinstance(outcomes[3], EnvInstanceNotFound)
            assert all(tuple(o[:4]) == transcript_local(i)[2] for i, o in enumerate(outcomes) if i != 3)  # type: ignore[index]
            with pytest.raises(EnvInstanceNotFound, match=victim.remote_id):
                await victim.areset(seed=0)
        finally:
            await asyncio.gather(*(e.aclose() for e in envs))
            await aclose_shared()

    asyncio.run(main())


def test_one_threads_error_in_a_coalesced_batch_is_its_own(server: BackgroundServer) -> None:
    n = 6
    envs = [rock.make(ENV_ID, backend="remote", base_url=server.url, coalesce=True) for _ in range(n)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=i)
        httpx.delete(f"{server.url}/api/v1/envs/{envs[2].remote_id}", timeout=60)
        barrier = threading.Barrier(n)
        outcomes: list[object] = [None] * n

        def step(i: int) -> None:
            barrier.wait()
            try:
                outcomes[i] = tuple(envs[i].step(ACTIONS[0])[:4])
            except Exception as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=step, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert isinstance(outcomes[2], EnvInstanceNotFound) and envs[2].remote_id in str(outcomes[2])
        assert [o for i, o in enumerate(outcomes) if i != 2] == [transcript_local(i)[1] for i in range(n) if i != 2]
    finally:
        for env in envs:
            env.close()


# --- straight to a worker process ----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """An admin and one worker process, without auth: placements name the worker and carry no grant."""
    tmp = tmp_path_factory.mktemp("coalesce-direct")
    admin = ServerProcess.admin(
        tmp, "server.embedded_worker=false", "server.reap_interval=0.3", "server.heartbeat_timeout=5"
    ).start()
    worker = None
    try:
        worker = ServerProcess.worker(admin.url, tmp, "worker.heartbeat_interval=0.3", "worker.id=w1").start()
        wait_for(lambda: len(httpx.get(admin.url + "/api/v1/workers", timeout=60).json()["workers"]) == 1)
        yield admin, worker
    finally:
        if worker is not None:
            worker.stop()
        admin.stop()


def test_coalesced_batches_go_straight_to_the_worker(cluster: tuple[ServerProcess, ServerProcess]) -> None:
    admin, worker = cluster
    n = 16

    async def main() -> None:
        envs: list[AsyncRemoteEnv] = []
        try:
            envs = await asyncio.gather(*(rock.amake(ENV_ID, base_url=admin.url, coalesce=True) for _ in range(n)))
            assert all(e.info.worker_url == worker.url and e.info.grant is None for e in envs), envs[0].info
            admin_before, worker_before = ops(admin.url), ops(worker.url)
            resets = await asyncio.gather(*(e.areset(seed=i % SEEDS) for i, e in enumerate(envs)))
            assert [obs for obs, _ in resets] == [transcript_local(i % SEEDS)[0] for i in range(n)]
            for turn, action in enumerate(ACTIONS[:2]):
                steps = await asyncio.gather(*(e.astep(action) for e in envs))
                assert [tuple(s[:4]) for s in steps] == [transcript_local(i % SEEDS)[turn + 1] for i in range(n)]
            admin_delta = moved(admin_before, ops(admin.url))
            assert all(v == 0 for v in admin_delta.values()), f"the admin served data-plane calls: {admin_delta}"
            worker_delta = moved(worker_before, ops(worker.url))
            assert 1 <= worker_delta["batch_reset"] <= 2 and 2 <= worker_delta["batch_step"] <= 4, worker_delta
            assert worker_delta["env_step"] == 0, worker_delta

            worker.kill()  # SIGKILL by PID: the worker process this module started
            outcomes = await asyncio.gather(*(e.astep(ACTIONS[2]) for e in envs), return_exceptions=True)
            for env, out in zip(envs, outcomes, strict=True):
                assert isinstance(out, WorkerLost), out
                assert env.remote_id in str(out), str(out)
            # and again, now that the admin may know the worker is gone
            with pytest.raises(WorkerLost, match=envs[0].remote_id):
                await envs[0].astep(ACTIONS[0])
        finally:
            await asyncio.gather(*(e.aclose() for e in envs))
            await aclose_shared()

    asyncio.run(main())


def test_restarted_worker_loses_coalesced_envs_like_single_ones(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    fast = ("server.reap_interval=0.3", "server.heartbeat_timeout=5")
    admin = ServerProcess.admin(tmp_path, "server.embedded_worker=false", *fast).start()
    worker = None
    try:
        worker_args = ("worker.heartbeat_interval=0.3", "worker.id=w1", f"worker.port={port}")
        worker = ServerProcess.worker(admin.url, tmp_path, *worker_args).start()

        async def main() -> None:
            try:
                env = await rock.amake(ENV_ID, base_url=admin.url, coalesce=True)
                assert env.info.worker_url == worker.url
                await env.areset(seed=1)
                worker.kill()  # SIGKILL by PID, then a new worker process on the same URL
                worker.start()
                # the single-call path says WorkerLost (the admin knows the worker restarted)
                step = f"{admin.url}/api/v1/envs/{env.remote_id}/step"
                wait_for(
                    lambda: (
                        httpx.post(step, json={"action": ACTIONS[0]}, timeout=60).json().get("error") == "WorkerLost"
                    ),
                    timeout=20,
                )
                with pytest.raises(WorkerLost, match=env.remote_id):
                    await env.astep(ACTIONS[0])
            finally:
                await aclose_shared()

        asyncio.run(main())
    finally:
        if worker is not None:
            worker.stop()
        admin.stop()


def test_a_forked_child_gets_its_own_senders_and_connections(server: BackgroundServer) -> None:
    """A child forked after the parent's coalesced env has stepped steps that env on its own sender
    threads and sockets (the parent's are not in the child), and the parent goes on unharmed."""
    import os

    env = rock.make(ENV_ID, backend="remote", base_url=server.url, coalesce=True)
    local = rock.make(ENV_ID)
    assert env.reset(seed=5) == local.reset(seed=5)
    assert env.step("\\boxed{up}") == local.step("\\boxed{up}")
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its step answered correctly, quickly
        code = 1
        try:
            done = threading.Event()
            result: list[object] = []
            worker = threading.Thread(target=lambda: (result.append(env.step("\\boxed{left}")), done.set()))
            worker.start()
            code = 0 if done.wait(30) and result[0][0] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's own state was not touched by the child: its next step is the same as locally
    # after up, left (the child's step went to the same server-side env)
    local.step("\\boxed{left}")
    assert env.step("\\boxed{down}") == local.step("\\boxed{down}")
    env.close()
