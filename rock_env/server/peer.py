"""The admin's HTTP connection to a remote worker (used by :class:`~rock_env.server.hosts.PeerHost`)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from rock_env.errors import WorkerLost


def nodelay_async_transport(retries: int = 0) -> httpx.AsyncHTTPTransport:
    """An async transport whose sockets have TCP_NODELAY (no Nagle/delayed-ACK stalls)."""
    return httpx.AsyncHTTPTransport(
        retries=retries, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)], http2=False
    )


class WorkerPeer:
    """Talks to one worker's ``/api/v1`` routes with a keep-alive client."""

    def __init__(self, worker_id: str, url: str, token: str | None, timeout: float = 600.0) -> None:
        self.worker_id = worker_id
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=nodelay_async_transport(retries=1),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _lost(self, exc: Exception, what: str) -> WorkerLost:
        return WorkerLost(
            f"worker {self.worker_id!r} at {self.url} did not answer ({type(exc).__name__}: {exc}) while {what}; "
            "objects it hosted are gone if it died: make new ones."
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        what: str = "forwarding a request",
    ) -> httpx.Response:
        """Send one request and read the whole answer."""
        try:
            return await self._client.request(method, path, content=content, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise self._lost(exc, what) from exc

    async def send(
        self, method: str, path: str, params: dict[str, str], body: AsyncIterator[bytes] | None
    ) -> httpx.Response:
        """Send a request whose body may be a stream; the answer is returned unread (the caller closes it)."""
        request = self._client.build_request(
            method, path, params=params, content=body, headers={"content-type": "application/octet-stream"}
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._lost(exc, f"forwarding {method} {path}") from exc

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        content: bytes | AsyncIterator[bytes] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        what: str = "streaming",
    ) -> AsyncIterator[httpx.Response]:
        """Send one request and stream the answer."""
        try:
            async with self._client.stream(method, path, content=content, params=params, headers=headers) as resp:
                yield resp
        except httpx.TransportError as exc:
            raise self._lost(exc, what) from exc
