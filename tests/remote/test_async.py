"""The asyncio API: ``await rock.amake``, ``areset``/``astep``, one loop driving many envs, coalescing."""

from __future__ import annotations

import asyncio

import pytest

import rock_env as rock
from rock_env.errors import EnvClosed, EnvNotFound, InvalidAction
from rock_env.remote.pool import aclose_shared, open_fds, shared_async_client
from rock_env.server.runner import BackgroundServer

pytestmark = pytest.mark.server
ENV_ID = "game:Sokoban-v0-easy"
ACTIONS = ["\\boxed{up}", "\\boxed{left}", "\\boxed{down}"]


def transcript_local(seed: int) -> list[object]:
    env = rock.make(ENV_ID)
    out: list[object] = [env.reset(seed=seed)[0]]
    out += [env.step(a)[:4] for a in ACTIONS]
    env.close()
    return out


@pytest.mark.parametrize("coalesce", [False, True])
def test_async_envs_match_local_transcripts(server: BackgroundServer, coalesce: bool) -> None:
    async def play(seed: int) -> list[object]:
        async with await rock.amake(ENV_ID, base_url=server.url, coalesce=coalesce) as env:
            out: list[object] = [(await env.areset(seed=seed))[0]]
            for action in ACTIONS:
                out.append((await env.astep(action))[:4])
            return out

    async def main() -> list[list[object]]:
        try:
            return await asyncio.gather(*(play(seed) for seed in range(8)))
        finally:
            await aclose_shared()

    assert asyncio.run(main()) == [transcript_local(seed) for seed in range(8)]


def test_one_loop_drives_many_envs_on_one_bounded_pool(server: BackgroundServer) -> None:
    async def main() -> tuple[int, int]:
        before = open_fds()
        envs = await asyncio.gather(*(rock.amake(ENV_ID, base_url=server.url) for _ in range(200)))
        try:
            assert len({id(env._client) for env in envs}) == 1
            assert envs[0]._client is shared_async_client(server.url)
            await asyncio.gather(*(env.areset(seed=i) for i, env in enumerate(envs)))
            steps = await asyncio.gather(*(env.astep("\\boxed{up}") for env in envs))
            return len(steps), open_fds() - before
        finally:
            await asyncio.gather(*(env.aclose() for env in envs))
            await aclose_shared()

    stepped, grown = asyncio.run(main())
    assert stepped == 200
    assert grown <= 2 * 2 * 16, f"{grown} new fds for 200 envs"  # client + server end of each pooled socket


def test_async_errors_are_typed(server: BackgroundServer) -> None:
    async def main() -> None:
        try:
            with pytest.raises(EnvNotFound):
                await rock.amake("game:NoSuchGame-v0", base_url=server.url)
            env = await rock.amake(ENV_ID, base_url=server.url, coalesce=True)
            with pytest.raises(InvalidAction):
                await env.astep(3)  # type: ignore[arg-type]
            await env.aclose()
            with pytest.raises(EnvClosed):
                await env.astep("\\boxed{up}")
        finally:
            await aclose_shared()

    asyncio.run(main())
