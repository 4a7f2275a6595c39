"""One connection pool per process and server, shared by every remote env, vector env and sandbox.

:func:`shared_client` hands out the process's :class:`~rock_env.remote.client.ApiClient` for a
``(base_url, token)`` pair, so 10,000 remote envs hold at most the pool's bounded connections
(``$ROCK_ENV_MAX_CONNECTIONS`` per kind, 16 by default) instead of two sockets each; a direct
call to a worker goes through the same pool. :func:`shared_async_client` does the same for one
event loop. A forked child gets its own pools (sockets are never shared across processes).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from typing import TypeVar

from pydantic import BaseModel

from rock_env.errors import EnvInstanceNotFound, RockEnvError, ServerUnavailable, WorkerLost
from rock_env.remote.client import _NOT_SENT, ApiClient, AsyncApiClient, resolve_token, resolve_url

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

_lock = threading.Lock()
_sync: dict[tuple[int, str, str | None], ApiClient] = {}
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], AsyncApiClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(base_url: str | None = None, token: str | None = None, timeout: float = 300.0) -> ApiClient:
    """This process's client for the server at ``base_url`` with ``token`` (made on first use).

    The client keeps the longest ``timeout`` its callers asked for (per-call timeouts still work).
    """
    key = (os.getpid(), resolve_url(base_url), resolve_token(token))
    client = _sync.get(key)
    if client is None:
        with _lock:
            client = _sync.get(key)
            if client is None:
                client = _sync[key] = ApiClient(key[1], key[2], timeout=timeout)
    client.widen_timeout(timeout)
    return client


def shared_async_client(
    base_url: str | None = None, token: str | None = None, timeout: float = 300.0
) -> AsyncApiClient:
    """The running event loop's client for the server at ``base_url`` with ``token``."""
    loop = asyncio.get_running_loop()
    key = (resolve_url(base_url), resolve_token(token))
    clients = _async.setdefault(loop, {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = AsyncApiClient(key[0], key[1], timeout=timeout)
    client.widen_timeout(timeout)
    return client


async def aclose_shared() -> None:
    """Close the running loop's shared async clients (e.g. before ``asyncio.run`` returns)."""
    clients = _async.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


def close_shared() -> None:
    """Close this process's shared sync clients (they are made again on next use)."""
    with _lock:
        mine = [k for k in _sync if k[0] == os.getpid()]
        clients = [_sync.pop(k) for k in mine]
    for client in clients:
        client.close()


def open_fds() -> int:
    """File descriptors this process has open now (Linux ``/proc/self/fd``; -1 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


atexit.register(close_shared)


# --- the direct data plane: an object's calls go to the worker that hosts it -------------------


def _never_sent(exc: BaseException) -> bool:
    """Whether a failed call's connection could not even be opened (the request never left)."""
    return isinstance(exc.__cause__, _NOT_SENT)


class Route:
    """Where the hot calls of one hosted object go: its worker (``origin``, with its ``grant``), else the admin.

    The admin places and records; the worker's URL and a grant for this object come with the
    placement. A worker that cannot be connected to, or no longer knows the object, sends the
    call back to the admin (the fallback, which knows whether the worker is lost and raises
    :class:`~rock_env.errors.WorkerLost` naming the object). A call that may have reached the
    worker and is not idempotent is never sent again: if the worker then fails its health check
    it raises ``WorkerLost`` naming the object, else ``ServerUnavailable`` (the worker is alive;
    the call may or may not have been applied).
    """

    __slots__ = ("admin_path", "grant", "origin", "what")

    def __init__(self, admin_path: str, origin: str | None, grant: str | None, what: str) -> None:
        self.admin_path = admin_path
        self.origin = origin.rstrip("/") if origin else None
        self.grant = grant
        self.what = what

    def lost_error(self, exc: RockEnvError, origin: str | None, alive: bool) -> RockEnvError:
        """The error of a non-idempotent call whose connection to a worker dropped after sending."""
        if alive:  # the worker answers its health check: it is not lost, only this connection was
            return ServerUnavailable(
                f"{self.what}: the connection to its worker at {origin} dropped during the call "
                f"({exc.__cause__!r}); the worker is alive and the env is still there, but the call may or "
                "may not have been applied. Reset the env (or check its state) and go on."
            )
        return WorkerLost(
            f"{self.what} is lost: its worker at {origin} dropped the connection ({exc.__cause__!r}) "
            "and does not answer its health check. Make a new one; the other envs go on."
        )

    def must_raise(self, exc: RockEnvError, idempotent: bool) -> bool:
        """Whether a failed direct call may not be sent to the admin instead (it may have been applied)."""
        return isinstance(exc, ServerUnavailable) and not _never_sent(exc) and not idempotent

    def _fallback(self, client: ApiClient, exc: RockEnvError, idempotent: bool) -> None:
        """Judge a failed direct call: return to send it to the admin instead, or raise."""
        origin = self.origin
        if self.must_raise(exc, idempotent):
            alive = client.alive(origin)
            if not alive:
                self.origin = None
            raise self.lost_error(exc, origin, alive) from exc
        self.origin = None
        logger.info("%s: worker %s did not serve the call (%s); asking the admin", self.what, origin, exc)

    async def _afallback(self, client: AsyncApiClient, exc: RockEnvError, idempotent: bool) -> None:
        """The async twin of :meth:`_fallback`."""
        origin = self.origin
        if self.must_raise(exc, idempotent):
            alive = await client.alive(origin)
            if not alive:
                self.origin = None
            raise self.lost_error(exc, origin, alive) from exc
        self.origin = None
        logger.info("%s: worker %s did not serve the call (%s); asking the admin", self.what, origin, exc)

    def post(self, client: ApiClient, op: str, body: BaseModel, model: type[M], *, idempotent: bool = False) -> M:
        """POST ``body`` to the object's ``op`` (e.g. ``step``) where it lives."""
        path = f"{self.admin_path}/{op}"
        if self.origin is not None:
            try:
                return client.post_fast(path, body, model, idempotent=idempotent, origin=self.origin, bearer=self.grant)
            except (ServerUnavailable, EnvInstanceNotFound) as exc:
                self._fallback(client, exc, idempotent)
        return client.post_fast(path, body, model, idempotent=idempotent)

    async def apost(
        self, client: AsyncApiClient, op: str, body: BaseModel, model: type[M], *, idempotent: bool = False
    ) -> M:
        """The async twin of :meth:`post`."""
        path = f"{self.admin_path}/{op}"
        if self.origin is not None:
            try:
                return await client.post_fast(
                    path, body, model, idempotent=idempotent, origin=self.origin, bearer=self.grant
                )
            except (ServerUnavailable, EnvInstanceNotFound) as exc:
                await self._afallback(client, exc, idempotent)
        return await client.post_fast(path, body, model, idempotent=idempotent)


__all__ = ["Route", "aclose_shared", "close_shared", "open_fds", "shared_async_client", "shared_client"]
