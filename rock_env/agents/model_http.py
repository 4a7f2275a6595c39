"""The HTTP/1.1 server side of the model service: one asyncio connection handler over h11.

Each bridge (one per sandbox) listens on a unix socket or a loopback port; every connection is
served by :func:`serve_connection`, which parses requests with h11 (keep-alive, pipelining-safe),
hands ``(method, path, body)`` to the service's dispatcher and writes what it returns: a whole
body, or server-sent events (chunked transfer encoding). No polling: it blocks on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11

logger = logging.getLogger(__name__)

#: largest request body accepted (bytes); a bigger one gets 413
MAX_BODY = 16 << 20
READ_SIZE = 1 << 16


@dataclass
class HttpReply:
    """What a dispatcher returns: a status and a body, or a list of server-sent event payloads."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    events: list[bytes] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


Dispatcher = Callable[[str, str, bytes], Awaitable[HttpReply]]


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await reader.read(READ_SIZE)
        conn.receive_data(data)


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader) -> bytes | None:
    """The body of the current request, or None if it is larger than :data:`MAX_BODY`."""
    parts: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                return None
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)
        else:
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a request body")


def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Response | h11.Data | h11.EndOfMessage
) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)


async def _respond(conn: h11.Connection, writer: asyncio.StreamWriter, reply: HttpReply) -> None:
    headers = [("content-type", reply.content_type), *reply.headers]
    if reply.events is None:
        headers.append(("content-length", str(len(reply.body))))
        _send(conn, writer, h11.Response(status_code=reply.status, headers=headers))
        if reply.body:
            _send(conn, writer, h11.Data(data=reply.body))
    else:
        headers.append(("cache-control", "no-cache"))
        _send(conn, writer, h11.Response(status_code=reply.status, headers=headers))
        for payload in reply.events:
            _send(conn, writer, h11.Data(data=payload))
    _send(conn, writer, h11.EndOfMessage())
    await writer.drain()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dispatch: Dispatcher) -> None:
    """Serve HTTP/1.1 requests on one connection until the client closes it (or sends garbage)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    try:
        while True:
            event = await _next_event(conn, reader)
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            body = await _read_body(conn, reader)
            if body is None:
                reply = HttpReply(413, b'{"error":{"message":"request body too large","type":"invalid_request_error"}}')
                await _respond(conn, writer, reply)
                return
            method = event.method.decode()
            path = event.target.decode().split("?", 1)[0]
            reply = await dispatch(method, path, body)
            await _respond(conn, writer, reply)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
        logger.debug("model service: bad HTTP on a bridge connection: %s", exc)
        with contextlib.suppress(Exception):
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _respond(conn, writer, HttpReply(400, b'{"error":{"message":"malformed HTTP request"}}'))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


__all__ = ["MAX_BODY", "Dispatcher", "HttpReply", "serve_connection"]
