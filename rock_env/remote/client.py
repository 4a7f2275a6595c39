"""HTTP clients for the admin API: :class:`ApiClient` (sync) and :class:`AsyncApiClient`.

Both share the model layer (requests and answers are :mod:`rock_env.protocol` models) and
the same rules:

* keep-alive connections whose sockets have TCP_NODELAY (Python's defaults cost ~40 ms
  per request on loopback through Nagle and delayed ACK);
* one request path (:meth:`ApiClient._retrying`; the async twin is the same three lines) and one
  :class:`RetryRule`: exponential backoff for idempotent calls, and for any call whose
  connection could not even be opened (it never reached the server); ``post_fast`` only
  swaps the transport for a leaner one;
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

import httpcore
import httpx
from pydantic import BaseModel

from rock_env.errors import RemoteError, RockEnvError, ServerUnavailable
from rock_env.protocol import exception_from_body
from rock_env.remote.connections import ConnectionPool, PoolTransport

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
#: Connections one client keeps at most per pool (control calls; hot path, one per server it reaches);
#: ``$ROCK_ENV_MAX_CONNECTIONS``.
MAX_CONNECTIONS_ENV_VAR = "ROCK_ENV_MAX_CONNECTIONS"
DEFAULT_MAX_CONNECTIONS = 16
#: Every rock-env server (admin or worker) answers here without auth.
HEALTH_PATH = "/api/v1/health"


def max_connections() -> int:
    """How many connections one client opens at most per pool (``$ROCK_ENV_MAX_CONNECTIONS``, else 16)."""
    try:
        return max(1, int(os.environ.get(MAX_CONNECTIONS_ENV_VAR, DEFAULT_MAX_CONNECTIONS)))
    except ValueError:
        return DEFAULT_MAX_CONNECTIONS


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


def _fast_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    """The headers of the low-overhead path (httpcore's form)."""
    return [(k.encode(), v.encode()) for k, v in _headers(token).items()] + [(b"content-type", b"application/json")]


def _with_bearer(
    headers: list[tuple[bytes, bytes]], origin: str | None, bearer: str | None
) -> list[tuple[bytes, bytes]]:
    """``headers`` for ``origin``: another server (a worker) gets the object's grant, never this client's token."""
    if origin is None:
        return list(headers)
    out = [h for h in headers if h[0] != b"authorization"]
    if bearer:
        out.append((b"authorization", f"Bearer {bearer}".encode()))
    return out


def error_from_response(resp: httpx.Response) -> RockEnvError:
    """The typed error an error answer carries."""
    return _error_from(resp.status_code, resp.content, resp.request.method, str(resp.request.url))


def _error_from(status: int, content: bytes, method: str, where: str) -> RockEnvError:
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return exception_from_body(data)
    text = content[:300].decode("utf-8", errors="replace")
    return RemoteError(f"HTTP {status} from {method} {where}: {text}")


#: A connection that could not be opened never delivered the request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpcore.ConnectError, httpcore.ConnectTimeout)
_TIMEOUTS = (httpx.TimeoutException, httpcore.TimeoutException)
#: What one attempt may raise instead of answering (httpx for ``send``, httpcore for ``post_fast``).
TRANSPORT_ERRORS = (
    httpx.TransportError,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.RemoteProtocolError,
)

Answer = httpx.Response | httpcore.Response
A = TypeVar("A", httpx.Response, httpcore.Response)


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of ``send`` and ``call`` (both clients)."""

    body: BaseModel | None
    content: Any
    params: dict[str, Any] | None
    idempotent: bool | None
    timeout: float | None


@dataclass(frozen=True)
class RetryRule:
    """The one rule for sending a request again, used by every call of both clients.

    A request that never left (its connection could not be opened) is always sent again; one
    that may have reached the server is sent again only if it is idempotent (by default: GET,
    HEAD, PUT, DELETE, OPTIONS) and failed in transport or got 502/503/504. At most
    ``retries`` times, waiting ``base_delay * 2**attempt`` seconds (at most ``max_delay``).
    """

    retries: int = 3
    base_delay: float = 0.05
    max_delay: float = 2.0
    statuses: frozenset[int] = _RETRY_STATUS

    def delay(self, attempt: int, *, idempotent: bool, failure: Exception | None, status: int = 0) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None``: do not retry."""
        if attempt >= self.retries:
            return None
        if failure is not None:
            retry = isinstance(failure, _NOT_SENT) or idempotent
        else:
            retry = idempotent and status in self.statuses
        return min(self.base_delay * 2**attempt, self.max_delay) if retry else None


class _Exchange:
    """One request's attempts so far: judges each outcome by the :class:`RetryRule`."""

    __slots__ = ("attempt", "base_url", "idempotent", "method", "path", "result", "rule", "timeout")

    def __init__(self, client: _Base, method: str, path: str, idempotent: bool | None) -> None:
        self.rule = client.rule
        self.base_url = client.base_url
        self.timeout = client.timeout
        self.method = method
        self.path = path
        self.idempotent = idempotent if idempotent is not None else method in _IDEMPOTENT
        self.attempt = 0
        self.result: Any = None

    def judge(self, outcome: Answer | Exception) -> float | None:
        """``None``: ``outcome`` is the answer (in :attr:`result`); else the seconds to wait before
        trying again. Raises the typed error when the request failed for good."""
        if isinstance(outcome, Exception):
            delay = self.rule.delay(self.attempt, idempotent=self.idempotent, failure=outcome)
            if delay is None:
                raise self._failed(outcome) from outcome
        else:
            status = outcome.status_code if isinstance(outcome, httpx.Response) else outcome.status
            if status < 400:
                self.result = outcome
                return None
            delay = self.rule.delay(self.attempt, idempotent=self.idempotent, failure=None, status=status)
            if delay is None:
                raise _error_from(status, outcome.content, self.method, self.path)
        self.attempt += 1
        return delay

    def _failed(self, exc: Exception) -> RockEnvError:
        if isinstance(exc, _TIMEOUTS) and not isinstance(exc, _NOT_SENT):
            return RemoteError(f"{self.method} {self.path} timed out after {self.timeout:.0f}s: {exc}")
        return _unavailable(self.base_url, exc)


def _outcome(attempt: Callable[[], A]) -> A | Exception:
    try:
        return attempt()
    except TRANSPORT_ERRORS as exc:
        return exc


async def _async_outcome(attempt: Callable[[], Awaitable[A]]) -> A | Exception:
    try:
        return await attempt()
    except TRANSPORT_ERRORS as exc:
        return exc


def _unavailable(base_url: str, exc: Exception) -> ServerUnavailable:
    return ServerUnavailable(
        f"cannot reach the rock-env server at {base_url} ({type(exc).__name__}: {exc}). "
        "Is `rock-env admin start` running there? Check base_url or $ROCK_ENV_URL."
    )


class _Base:
    _http: Any  # httpx.Client or httpx.AsyncClient (the subclass makes it)
    _fast_timeout: dict[str, float]

    def __init__(self, base_url: str | None, token: str | None, timeout: float, retries: int) -> None:
        self.base_url = resolve_url(base_url)
        self.token = resolve_token(token)
        self.timeout = timeout
        self.rule = RetryRule(retries=retries)
        #: What the httpx client of either kind is built with (the transport is the subclass's).
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": _headers(self.token),
            "timeout": httpx.Timeout(timeout, connect=10.0),
        }
        #: Bounds the connections of the httpx transport (a transport ignores the client's ``limits``).
        self._limits = httpx.Limits(max_connections=max_connections(), max_keepalive_connections=max_connections())

    def widen_timeout(self, timeout: float) -> None:
        """Let calls take up to ``timeout`` seconds if that is longer than now (a shared client serves
        callers that asked for different timeouts: it keeps the longest)."""
        if timeout > self.timeout:
            self.timeout = timeout
            self._http.timeout = httpx.Timeout(timeout, connect=10.0)
            self._fast_timeout = {"connect": 10.0, "read": timeout, "write": timeout, "pool": timeout}

    @property
    def retries(self) -> int:
        """How often a failed request is sent again at most (see :class:`RetryRule`)."""
        return self.rule.retries

    def _exchange(self, method: str, path: str, idempotent: bool | None) -> _Exchange:
        return _Exchange(self, method, path, idempotent)

    @staticmethod
    def _request_args(options: RequestOptions) -> dict[str, Any]:
        body, timeout = options.get("body"), options.get("timeout")
        data = body.model_dump_json().encode() if body is not None else options.get("content")
        return {
            "content": data,
            "params": options.get("params"),
            "headers": {"content-type": "application/json"} if data is not None else None,
            "timeout": timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        }


class ApiClient(_Base):
    """Synchronous client with one keep-alive connection pool."""

    def __init__(
        self, base_url: str | None = None, token: str | None = None, timeout: float = 300.0, retries: int = 3
    ) -> None:
        super().__init__(base_url, token, timeout, retries)
        # Both transports use our thread-safe pool: httpcore's closes connections other threads are
        # reading (EBADF under many threads; see rock_env.remote.connections).
        self._http = httpx.Client(**self._http_options, transport=PoolTransport(self._new_pool()))
        # The hot path (env reset/step) goes through httpcore directly: the same connection
        # machinery as httpx without its request/response objects (~150 us less per call).
        # One pool for the admin and every worker reached directly: at most max_connections sockets in
        # all (an idle connection to one server is dropped, by the pool that owns it, to open another's).
        self._pool = self._new_pool()
        self._fast_headers = _fast_headers(self.token)
        #: this client's batchers of coalesced calls, by kind (see :mod:`rock_env.remote.coalesce`)
        self.coalescers: dict[str, Any] = {}
        self._fast_timeout = {"connect": 10.0, "read": timeout, "write": timeout, "pool": timeout}

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
        self._pool.close()

    @staticmethod
    def _new_pool() -> ConnectionPool:
        return ConnectionPool(max_connections(), keepalive_expiry=60.0, socket_options=_NODELAY)

    def post_fast(
        self,
        path: str,
        body: BaseModel,
        model: type[M],
        *,
        idempotent: bool = False,
        origin: str | None = None,
        bearer: str | None = None,
    ) -> M:
        """POST a JSON body on the low-overhead path and parse the answer into ``model``.

        The same request path and retry rule as :meth:`send`; only the transport is leaner.
        ``origin`` sends it to another server of the same deployment (a worker that hosts the
        object: the direct data plane) through the same bounded pool, with ``bearer`` (the
        object's grant) instead of this client's token.
        """
        content = body.model_dump_json().encode()
        answer = self.post_json(path, content, idempotent=idempotent, origin=origin, bearer=bearer)
        return model.model_validate_json(answer)

    def post_json(
        self,
        path: str,
        content: bytes,
        *,
        idempotent: bool = False,
        origin: str | None = None,
        bearer: str | None = None,
    ) -> bytes:
        """:meth:`post_fast` with the body already JSON; the answer's JSON bytes (batched calls build both
        without a model per item)."""
        url = ((origin or self.base_url) + path).encode()
        headers = [*_with_bearer(self._fast_headers, origin, bearer), (b"content-length", str(len(content)).encode())]
        extensions = {"timeout": self._fast_timeout}
        exchange = self._exchange("POST", path, idempotent)
        if origin is not None:
            exchange.base_url = origin
        pool = self._pool
        resp = self._retrying(
            exchange,
            lambda: pool.request(b"POST", url, headers=headers, content=content, extensions=extensions),
        )
        return bytes(resp.content)

    def alive(self, origin: str | None = None, timeout: float = 3.0) -> bool:
        """Whether the server at ``origin`` (``None``: this client's) answers its health check now."""
        url = ((origin or self.base_url) + HEALTH_PATH).encode()
        extensions = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}
        try:
            return self._pool.request(b"GET", url, extensions=extensions).status == 200
        except TRANSPORT_ERRORS:
            return False

    @staticmethod
    def _retrying(exchange: _Exchange, attempt: Callable[[], A]) -> A:
        """The request path of every call: attempt, judge by the retry rule, wait, again."""
        while (delay := exchange.judge(_outcome(attempt))) is not None:
            time.sleep(delay)
        return exchange.result  # type: ignore[no-any-return]

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """Send a request (retrying as the rules allow); raise the typed error of an error answer."""
        args = self._request_args(options)
        exchange = self._exchange(method, path, options.get("idempotent"))
        return self._retrying(exchange, lambda: self._http.request(method, path, **args))

    def call(self, method: str, path: str, model: type[M], **options: Unpack[RequestOptions]) -> M:
        """Send and parse the answer into ``model``."""
        return model.model_validate_json(self.send(method, path, **options).content)


class AsyncApiClient(_Base):
    """Asynchronous twin of :class:`ApiClient`."""

    def __init__(
        self, base_url: str | None = None, token: str | None = None, timeout: float = 300.0, retries: int = 3
    ) -> None:
        super().__init__(base_url, token, timeout, retries)
        self._http = httpx.AsyncClient(
            **self._http_options, transport=httpx.AsyncHTTPTransport(socket_options=_NODELAY, limits=self._limits)
        )
        self._pool = httpcore.AsyncConnectionPool(
            socket_options=_NODELAY, keepalive_expiry=60.0, max_connections=max_connections()
        )
        self._fast_headers = _fast_headers(self.token)
        #: this client's batchers of coalesced calls, by kind (see :mod:`rock_env.remote.coalesce`)
        self.coalescers: dict[str, Any] = {}
        self._fast_timeout = {"connect": 10.0, "read": timeout, "write": timeout, "pool": timeout}
        # At most as many requests in flight as the pools have connections: the rest wait here, in a
        # FIFO that costs O(1) each, instead of in httpcore's queue, which is scanned on every
        # release (O(n^2) with 10,000 envs awaiting at once).
        self._gate = asyncio.Semaphore(max_connections())

    async def alive(self, origin: str | None = None, timeout: float = 3.0) -> bool:
        """Whether the server at ``origin`` (``None``: this client's) answers its health check now."""
        url = ((origin or self.base_url) + HEALTH_PATH).encode()
        extensions = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}
        try:
            return (await self._pool.request(b"GET", url, extensions=extensions)).status == 200
        except TRANSPORT_ERRORS:
            return False

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()
        await self._pool.aclose()

    async def post_fast(
        self,
        path: str,
        body: BaseModel,
        model: type[M],
        *,
        idempotent: bool = False,
        origin: str | None = None,
        bearer: str | None = None,
    ) -> M:
        """The async twin of :meth:`ApiClient.post_fast` (same retry rule, same direct-to-worker options)."""
        content = body.model_dump_json().encode()
        answer = await self.post_json(path, content, idempotent=idempotent, origin=origin, bearer=bearer)
        return model.model_validate_json(answer)

    async def post_json(
        self,
        path: str,
        content: bytes,
        *,
        idempotent: bool = False,
        origin: str | None = None,
        bearer: str | None = None,
    ) -> bytes:
        """The async twin of :meth:`ApiClient.post_json`."""
        url = ((origin or self.base_url) + path).encode()
        headers = [*_with_bearer(self._fast_headers, origin, bearer), (b"content-length", str(len(content)).encode())]
        extensions = {"timeout": self._fast_timeout}
        exchange = self._exchange("POST", path, idempotent)
        if origin is not None:
            exchange.base_url = origin

        async def attempt() -> httpcore.Response:
            async with self._gate:
                return await self._pool.request(b"POST", url, headers=headers, content=content, extensions=extensions)

        while (delay := exchange.judge(await _async_outcome(attempt))) is not None:
            await asyncio.sleep(delay)
        return bytes(exchange.result.content)

    async def __aenter__(self) -> AsyncApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, method: str, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """Send a request (retrying as the rules allow); raise the typed error of an error answer."""
        args = self._request_args(options)
        exchange = self._exchange(method, path, options.get("idempotent"))

        async def attempt() -> httpx.Response:
            async with self._gate:
                return await self._http.request(method, path, **args)

        while (delay := exchange.judge(await _async_outcome(attempt))) is not None:
            await asyncio.sleep(delay)
        return exchange.result  # type: ignore[no-any-return]

    async def call(self, method: str, path: str, model: type[M], **options: Unpack[RequestOptions]) -> M:
        """Send and parse the answer into ``model``."""
        return model.model_validate_json((await self.send(method, path, **options)).content)
