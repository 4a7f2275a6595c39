"""Client side of the WebSocket output stream (``/api/v1/sandboxes/{id}/stream/ws``).

``RemoteSandbox.stream(cmd, transport="ws")`` returns a :class:`WsOutputStream` and
``AsyncRemoteSandbox.stream(cmd, transport="ws")`` iterates :func:`aiter_ws_output`. The
protocol is described in :mod:`rock_env.server.routes.stream_ws`. Needs the ``websockets``
package (in the ``server`` extra).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rock_env.errors import ConfigError, RemoteError, RockEnvError, ServerUnavailable
from rock_env.protocol import StreamRequest, exception_from_body

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

#: Options of every connection: no proxy from the environment, no compression, no keepalive pings
#: (a command may print nothing for minutes), messages up to 64 MiB.
_OPTIONS: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": 64 * 1024 * 1024, "proxy": None}


def ws_url(base_url: str, path: str) -> str:
    """``base_url`` (http/https) + ``path`` as a ws/wss URL."""
    scheme, _, rest = base_url.partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + rest.rstrip("/") + path


def _headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _import_error(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"transport='ws' needs the websockets package ({exc}); pip install 'rock-env[server]' "
        "or use the default transport='sse'."
    )


def _refused(exc: Exception, url: str) -> RockEnvError:
    """The typed error of a refused handshake (the server answers with a JSON ErrorBody)."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            data = json.loads(bytes(response.body or b""))
        except ValueError:
            data = None
        if isinstance(data, dict) and "error" in data:
            return exception_from_body(data)
        return RemoteError(f"the server refused the WebSocket {url} with HTTP {response.status_code}.")
    if isinstance(exc, OSError | TimeoutError):
        return ServerUnavailable(
            f"cannot open the WebSocket {url} ({type(exc).__name__}: {exc}). Is `rock-env admin start` running there?"
        )
    return RemoteError(f"opening the WebSocket {url} failed: {type(exc).__name__}: {exc}")


def _nodelay_socket(url: str, timeout: float) -> socket.socket:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _event(raw: str | bytes) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict) or "event" not in data:
        raise RemoteError(f"unexpected message on the output stream: {str(raw)[:200]!r}")
    return data


def _closed_early(exc: Exception) -> RemoteError:
    rcvd = getattr(exc, "rcvd", None)
    detail = f" (close code {rcvd.code}, {rcvd.reason!r})" if rcvd is not None else ""
    return RemoteError(f"the output stream ended before the command did{detail}.")


class WsOutputStream:
    """Iterate over a remote command's output as it comes (WebSocket); ``exit_code`` after the end."""

    def __init__(self, base_url: str, path: str, token: str | None, body: StreamRequest, timeout: float = 10.0) -> None:
        try:
            from websockets.exceptions import InvalidHandshake
            from websockets.sync.client import connect
        except ImportError as exc:
            raise _import_error(exc) from exc
        self.exit_code: int | None = None
        self.timed_out = False
        self._done = False
        url = ws_url(base_url, path)
        try:
            sock = _nodelay_socket(url, timeout)
        except OSError as exc:
            raise _refused(exc, url) from exc
        try:
            # entered at once (and left in close()): the form every websockets >= 12 accepts without warning
            self._ws: ClientConnection = connect(
                url, sock=sock, additional_headers=_headers(token), open_timeout=timeout, **_OPTIONS
            ).__enter__()
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            sock.close()
            raise _refused(exc, url) from exc
        self._ws.send(body.model_dump_json())

    def __iter__(self) -> WsOutputStream:
        return self

    def __next__(self) -> str:
        from websockets.exceptions import ConnectionClosed

        if self._done:
            raise StopIteration
        try:
            data = _event(self._ws.recv())
        except ConnectionClosed as exc:
            self.close()
            raise _closed_early(exc) from exc
        kind = data.pop("event")
        if kind == "output":
            return str(data.get("text", ""))
        self.close()
        if kind == "error":
            raise exception_from_body(data)
        self.exit_code = data.get("exit_code")
        self.timed_out = bool(data.get("timed_out"))
        raise StopIteration

    def close(self) -> None:
        """Stop reading; if the command still runs, the server kills it."""
        if not self._done:
            self._done = True
            self._ws.close()

    def __enter__(self) -> WsOutputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def aiter_ws_output(
    base_url: str, path: str, token: str | None, body: StreamRequest, timeout: float = 10.0
) -> AsyncIterator[str]:
    """Async-iterate over a remote command's output (WebSocket); leaving the loop early kills the command."""
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
    except ImportError as exc:
        raise _import_error(exc) from exc
    url = ws_url(base_url, path)
    try:
        ws = await connect(url, additional_headers=_headers(token), open_timeout=timeout, **_OPTIONS)
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise _refused(exc, url) from exc
    try:
        transport_sock = ws.transport.get_extra_info("socket")
        if transport_sock is not None:
            transport_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await ws.send(body.model_dump_json())
        while True:
            try:
                data = _event(await ws.recv())
            except ConnectionClosed as exc:
                raise _closed_early(exc) from exc
            kind = data.pop("event")
            if kind == "output":
                yield str(data.get("text", ""))
            elif kind == "error":
                raise exception_from_body(data)
            else:
                return
    finally:
        await ws.close()
