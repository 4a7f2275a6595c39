"""``AsyncRemoteEnv``: remote envs for asyncio trainers (``await env.areset()``, ``await env.astep(a)``).

``await rock.amake(id, base_url=...)`` returns one. All envs of a process and server share one
bounded connection pool (:func:`~rock_env.remote.pool.shared_client`; the calls are carried by
as many threads as the pool has connections, see :func:`_hot_path_executor`), so one loop drives
10,000 envs with a few dozen sockets. Calls go straight to the worker that hosts the env
when the placement names one (see :class:`~rock_env.remote.pool.Route`).

With ``coalesce=True`` the makes, resets and steps that many envs send in the same turn of the
event loop travel together, as ``POST /api/v1/batch/{make,reset,step}`` (each env still gets its
own answer or error; see :mod:`~rock_env.remote.coalesce`), which brings single-env code close to
a vector env's throughput without batching by hand.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pydantic import BaseModel

from rock_env.errors import EnvClosed, EnvInstanceNotFound, InvalidAction, ServerUnavailable, WorkerLost
from rock_env.protocol import (
    EnvInfo,
    EnvMakeRequest,
    EnvResetRequest,
    EnvResetResponse,
    EnvStepRequest,
    EnvStepResponse,
    Ok,
    require_json,
)
from rock_env.remote.client import ApiClient, AsyncApiClient, max_connections
from rock_env.remote.coalesce import coalescer
from rock_env.remote.pool import Route, shared_async_client, shared_client

logger = logging.getLogger(__name__)

#: ``(observation, reward, terminated, truncated, info)``.
StepTuple = tuple[Any, float, bool, bool, dict[str, Any]]
M = TypeVar("M", bound=BaseModel)
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _hot_path_executor() -> ThreadPoolExecutor:
    """The threads that carry the async envs' reset/step calls over the shared sync pool.

    httpcore's asyncio pool scans every connection on each request (milliseconds per call with
    thousands of envs awaiting); its sync pool does not, so the hot calls run there, on as many
    threads as the pool has connections (the socket count stays bounded).
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_connections(), thread_name_prefix="rock-env-aio")
        return _executor


class AsyncRemoteEnv:
    """A remote env driven from asyncio (see the module docstring).

    Attributes:
        info: the server's :class:`~rock_env.protocol.EnvInfo` of this env.
        remote_id: its instance id on the server.
    """

    def __init__(
        self, info: EnvInfo, client: AsyncApiClient, *, coalesce: bool = False, sync_client: ApiClient | None = None
    ) -> None:
        self.info = info
        self._sync = sync_client or shared_client(client.base_url, client.token, client.timeout)
        self.remote_id = info.id
        self.tools = info.tools
        self._client = client
        self._base = f"/api/v1/envs/{info.id}"
        self._route = Route(
            self._base, info.worker_url, info.grant, f"env {info.id!r} ({info.env_id}) on worker {info.worker_id!r}"
        )
        self._coalesce = coalesce
        if coalesce:
            self._resets, self._steps = coalescer(client, "reset"), coalescer(client, "step")
        self.closed = False

    @classmethod
    async def create(
        cls,
        env_id: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 300.0,
        idle_ttl: float | None = None,
        coalesce: bool = False,
        **kwargs: Any,
    ) -> AsyncRemoteEnv:
        """Make ``env_id`` on the server at ``base_url`` (else ``$ROCK_ENV_URL``)."""
        require_json(kwargs, f"the keyword arguments of {env_id!r}")
        client = shared_async_client(base_url, token, timeout)
        sync = shared_client(base_url, token, timeout)
        request = EnvMakeRequest(env_id=env_id, kwargs=kwargs, idle_ttl=idle_ttl)
        if coalesce:
            info = EnvInfo.model_validate(await coalescer(client, "make").submit(request.model_dump(mode="json")))
        else:
            loop = asyncio.get_running_loop()
            info = await loop.run_in_executor(
                _hot_path_executor(), lambda: sync.call("POST", "/api/v1/envs", EnvInfo, body=request, idempotent=False)
            )
        return cls(info, client, coalesce=coalesce, sync_client=sync)

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise EnvClosed(f"AsyncRemoteEnv.{what}() on a closed env: make a new one with rock.amake.")

    async def areset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode: ``(observation, info)``."""
        self._check_open("areset")
        body = EnvResetRequest(seed=seed, options=options or None)
        if self._coalesce:
            item = {"env": self.remote_id, "seed": body.seed, "options": body.options}
            result = await self._resets.submit(item, self._route)
            return result["observation"], result["info"]
        answer = await self._hot("reset", body, EnvResetResponse, idempotent=True)
        return answer.observation, answer.info

    async def astep(self, action: str) -> StepTuple:
        """Apply ``action``: ``(observation, reward, terminated, truncated, info)``."""
        self._check_open("astep")
        if not isinstance(action, str):
            raise InvalidAction(f"a remote env takes text actions, got {type(action).__name__}: pass str(action).")
        if self._coalesce:
            item = {"env": self.remote_id, "action": action}
            r = await self._steps.submit(item, self._route)
            return r["observation"], r["reward"], r["terminated"], r["truncated"], r["info"]
        answer = await self._hot("step", EnvStepRequest(action=action), EnvStepResponse)
        return answer.observation, answer.reward, answer.terminated, answer.truncated, answer.info

    async def _hot(self, op: str, body: BaseModel, model: type[M], *, idempotent: bool = False) -> M:
        """One reset/step call where the env lives, carried by the hot-path threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _hot_path_executor(), lambda: self._route.post(self._sync, op, body, model, idempotent=idempotent)
        )

    async def aclose(self) -> None:
        """Close the env on the server (idempotent; a lost env or server is not an error here)."""
        if self.closed:
            return
        self.closed = True
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(_hot_path_executor(), lambda: self._sync.call("DELETE", self._base, Ok))
        except (EnvInstanceNotFound, WorkerLost, ServerUnavailable) as exc:
            logger.debug("closing remote env %s: %s", self.remote_id, exc)

    async def __aenter__(self) -> AsyncRemoteEnv:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncRemoteEnv id={self.info.env_id!r} remote_id={self.remote_id!r} at {self._client.base_url}>"


__all__ = ["AsyncRemoteEnv"]
