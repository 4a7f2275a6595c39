"""uvicorn's httptools protocol, writing each response in one ``send()`` instead of two.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body on
``http.response.body``: two system calls, and with TCP_NODELAY two packets, per response. On
loopback the sender also pays for the receiver's TCP processing; py-spy attributed about half
of the admin's samples under load to these two writes (200 clients stepping envs). Here the
connection's writes are held back and sent together when the response completes, or at the
next turn of the event loop at the latest (streamed responses, error answers), in order.

Opt-in (``ROCK_ENV_UVICORN_HTTP=coalescing``): it halves the segments per response, but under a
200-client load on the shared 2-core machine its throughput and p99 were within noise of stock
httptools (``benchmarks/results/remote.md``), not worth relying on uvicorn internals by default.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport wrapper that joins the writes made within one turn of the event loop."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        """Queue ``data``; it is sent by :meth:`flush` (at the latest on the next loop turn)."""
        if not data:
            return
        self._buffer.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def writelines(self, chunks: Any) -> None:
        """Queue every chunk."""
        for chunk in chunks:
            self.write(chunk)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Send what was queued, in one write."""
        buffer = self._buffer
        if not buffer:
            return
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Send what was queued, then close."""
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        """Drop what was queued and close at once."""
        self._buffer.clear()
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        """Bytes queued here plus in the transport."""
        return sum(len(b) for b in self._buffer) + self.transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose responses leave in one write (see the module doc)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport."""
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        """Send the whole response now, then let uvicorn go on (keep-alive, pipelining)."""
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        """Hand the raw transport to the WebSocket protocol."""
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
            self.transport = transport.transport
        super().handle_websocket_upgrade()
