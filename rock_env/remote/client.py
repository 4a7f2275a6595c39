"""HTTP clients for the admin API: :class:`ApiClient` (sync) and :class:`AsyncApiClient`.

Both share the model layer (requests and answers are :mod:`rock_env.protocol` models) and
the same rules:

* keep-alive connections whose sockets have TCP_NODELAY (Python's defaults cost ~40 ms
  per request on loopback through Nagle and delayed ACK);
* retries with exponential backoff for idempotent calls (and for any call whose
  connection could not even be opened, which never reached the server);
* an error answer raises the same :class:`~rock_env.errors.RockEnvError` subclass as the
  server raised; a server that cannot be reached raises :class:`ServerUnavailable`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any, TypeVar

import httpcore
import httpx
from pydantic import BaseModel

from rock_env.errors import RemoteError, RockEnvError, ServerUnavailable
from rock_env.protocol import exception_from_body

M = TypeVar("M", bound=BaseModel)

# httpx logs every request at INFO; a remote env makes thousands. Quiet it unless the user set a level.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

URL_ENV_VAR = "ROCK_ENV_URL"
TOKEN_ENV_VAR = "ROCK_ENV_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
#: Status codes worth retrying for idempotent calls (the server or a proxy was briefly unavailable).
_RETRY_STATUS = frozenset({502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def resolve_url(base_url: str | None) -> str:
    """``base_url``, else ``$ROCK_ENV_URL``, else ``http://127.0.0.1:8080``."""
    url = base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url.rstrip("/")


def resolve_token(token: str | None) -> str | None:
    """``token``, else ``$ROCK_ENV_TOKEN``, else none."""
    return token or os.environ.get(TOKEN_ENV_VAR) or None


def _headers(token: str | None) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def error_from_response(resp: httpx.Response) -> RockEnvError:
    """The typed error an error answer carries."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return exception_from_body(data)
    text = resp.text[:300]
    return RemoteError(f"HTTP {resp.status_code} from {resp.request.method} {resp.request.url}: {text}")


def _unavailable(base_url: str, exc: Exception) -> ServerUnavailable:
    return ServerUnavailable(
        f"cannot reach the rock-env server at {base_url} ({type(exc).__name__}: {exc}). "
        "Is `rock-env admin start` running there? Check base_url or $ROCK_ENV_URL."
    )


class _Base:
    def __init__(self, base_url: str | None, token: str | None, timeout: float, retries: int) -> None:
        self.base_url = resolve_url(base_url)
        self.token = resolve_token(token)
        self.timeout = timeout
        self.retries = retries

    @staticmethod
    def _content(body: BaseModel | None) -> bytes | None:
        return None if body is None else body.model_dump_json().encode()

    def _should_retry(
        self, method: str, idempotent: bool | None, attempt: int, exc: Exception | None, status: int
    ) -> bool:
        if attempt >= self.retries:
            return False
        safe = idempotent if idempotent is not None else method in _IDEMPOTENT
        if exc is not None:
            # A connection that could not be opened never delivered the request: always safe to retry.
            return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
                safe and isinstance(exc, httpx.TransportError)
            )
        return safe and status in _RETRY_STATUS

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(min(0.05 * (2**attempt), 2.0))


class ApiClient(_Base):
    """Synchronous client with one keep-alive connection pool."""

    def __init__(
        self, base_url: str | None = None, token: str | None = None, timeout: float = 300.0, retries: int = 3
    ) -> None:
        super().__init__(base_url, token, timeout, retries)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=_headers(self.token),
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=httpx.HTTPTransport(socket_options=_NODELAY),
        )
        # The hot path (env reset/step) goes through httpcore directly: the same connection
        # machinery as httpx without its request/response objects (~150 us less per call).
        self._pool = httpcore.ConnectionPool(socket_options=_NODELAY, keepalive_expiry=60.0, max_connections=16)
        self._fast_headers = [(k.encode(), v.encode()) for k, v in _headers(self.token).items()] + [
            (b"content-type", b"application/json"),
        ]
        self._fast_timeout = {"connect": 10.0, "read": timeout, "write": timeout, "pool": timeout}

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
        self._pool.close()

    def post_fast(self, path: str, body: BaseModel, model: type[M], *, idempotent: bool = False) -> M:
        """POST a JSON body on the low-overhead path and parse the answer into ``model``."""
        url = (self.base_url + path).encode()
        content = body.model_dump_json().encode()
        headers = [*self._fast_headers, (b"content-length", str(len(content)).encode())]
        attempt = 0
        while True:
            try:
                resp = self._pool.request(
                    b"POST", url, headers=headers, content=content, extensions={"timeout": self._fast_timeout}
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if attempt < self.retries:
                    time.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise _unavailable(self.base_url, exc) from exc
            except httpcore.TimeoutException as exc:
                raise RemoteError(f"POST {path} timed out after {self.timeout:.0f}s: {exc}") from exc
            except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
                if idempotent and attempt < self.retries:
                    time.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise _unavailable(self.base_url, exc) from exc
            if resp.status >= 400:
                if idempotent and resp.status in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                try:
                    data = json.loads(resp.content)
                except ValueError:
                    data = None
                if isinstance(data, dict) and "error" in data:
                    raise exception_from_body(data)
                raise RemoteError(f"HTTP {resp.status} from POST {path}: {resp.content[:300]!r}")
            return model.model_validate_json(resp.content)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        content: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send a request (retrying as the rules allow); raise the typed error of an error answer."""
        data = self._content(body) if body is not None else content
        headers = {"content-type": "application/json"} if data is not None else None
        attempt = 0
        while True:
            try:
                resp = self._http.request(
                    method,
                    path,
                    content=data,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                if self._should_retry(method, idempotent, attempt, exc, 0):
                    time.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
                    raise RemoteError(f"{method} {path} timed out after {self.timeout:.0f}s: {exc}") from exc
                raise _unavailable(self.base_url, exc) from exc
            if resp.status_code >= 400:
                if self._should_retry(method, idempotent, attempt, None, resp.status_code):
                    time.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise error_from_response(resp)
            return resp

    def call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> M:
        """Send and parse the answer into ``model``."""
        resp = self.send(method, path, body=body, params=params, idempotent=idempotent, timeout=timeout)
        return model.model_validate_json(resp.content)


class AsyncApiClient(_Base):
    """Asynchronous twin of :class:`ApiClient`."""

    def __init__(
        self, base_url: str | None = None, token: str | None = None, timeout: float = 300.0, retries: int = 3
    ) -> None:
        super().__init__(base_url, token, timeout, retries)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=_headers(self.token),
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=httpx.AsyncHTTPTransport(socket_options=_NODELAY),
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        content: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send a request (retrying as the rules allow); raise the typed error of an error answer."""
        data = self._content(body) if body is not None else content
        headers = {"content-type": "application/json"} if data is not None else None
        attempt = 0
        while True:
            try:
                resp = await self._http.request(
                    method,
                    path,
                    content=data,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                if self._should_retry(method, idempotent, attempt, exc, 0):
                    await asyncio.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
                    raise RemoteError(f"{method} {path} timed out after {self.timeout:.0f}s: {exc}") from exc
                raise _unavailable(self.base_url, exc) from exc
            if resp.status_code >= 400:
                if self._should_retry(method, idempotent, attempt, None, resp.status_code):
                    await asyncio.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise error_from_response(resp)
            return resp

    async def call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> M:
        """Send and parse the answer into ``model``."""
        resp = await self.send(method, path, body=body, params=params, idempotent=idempotent, timeout=timeout)
        return model.model_validate_json(resp.content)
