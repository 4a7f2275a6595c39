"""The opt-in one-write HTTP protocol: one TCP segment per small response, streams still flow, pipelining works."""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Iterator

import pytest

import rock_env as rock
from rock_env.server.app import create_app
from rock_env.server.http_protocol import CoalescingHttpToolsProtocol
from rock_env.server.runner import HTTP_PROTOCOL_ENV_VAR, BackgroundServer, http_protocol
from rock_env.server.settings import ServerSettings
from tests.remote.test_stream_ws import running, wait_gone

pytestmark = pytest.mark.server

#: Offset of ``tcpi_segs_in`` in Linux's ``struct tcp_info`` (8 u8 fields, 24 u32, 4 u64, segs_out).
_SEGS_IN = 140


def segments_in(sock: socket.socket) -> int:
    """TCP segments this socket has received so far (Linux ``TCP_INFO``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _SEGS_IN)[0])


def read_response(sock: socket.socket, buffer: bytearray) -> bytes:
    """One HTTP response with a Content-Length, from ``sock`` (extra bytes stay in ``buffer``)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    total = len(head) + 4 + length
    while len(buffer) < total:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk
    response = bytes(buffer[:total])
    del buffer[:total]
    return response


def segments_per_response(url: str, n: int = 60) -> float:
    host, port = url.removeprefix("http://").split(":")
    request = f"GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        for _ in range(5):  # past TCP's quick-ACK start
            sock.sendall(request)
            read_response(sock, buffer)
        before = segments_in(sock)
        for _ in range(n):
            sock.sendall(request)
            assert b'"status":"ok"' in read_response(sock, buffer)
        return (segments_in(sock) - before) / n


@pytest.fixture(scope="module")
def coalescing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HTTP_PROTOCOL_ENV_VAR, "coalescing")
        assert http_protocol() is CoalescingHttpToolsProtocol
        settings = ServerSettings(data_dir=str(tmp_path_factory.mktemp("admin")), gc_freeze=False)
        srv = BackgroundServer(create_app(settings)).start()
    yield srv
    srv.stop()


def test_one_segment_per_response(server: BackgroundServer, coalescing_server: BackgroundServer) -> None:
    ours, stock = segments_per_response(coalescing_server.url), segments_per_response(server.url)
    assert stock >= 1.8  # uvicorn's httptools protocol (the default): head and body leave separately
    assert ours <= 1.5, f"{ours:.2f} segments per response"  # (a pure ACK of a slow answer adds one)


def test_pipelined_requests_are_answered_in_order(coalescing_server: BackgroundServer) -> None:
    host, port = coalescing_server.url.removeprefix("http://").split(":")
    paths = ["/api/v1/health", "/api/v1/envs/nope", "/api/v1/health"]
    requests = b"".join(f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(requests)
        buffer = bytearray()
        answers = [read_response(sock, buffer) for _ in paths]
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"404", b"200"]
    assert b"EnvInstanceNotFound" in answers[1]


@pytest.mark.parametrize("protocol", ["auto", "coalescing"])
def test_server_sent_events_and_websockets_flow_while_the_command_runs(
    server: BackgroundServer, coalescing_server: BackgroundServer, protocol: str
) -> None:
    url = coalescing_server.url if protocol == "coalescing" else server.url
    marker = f"{80 + uuid.uuid4().int % 1000 / 1000:.3f}"
    with rock.Sandbox(runtime="namespace", base_url=url) as sb:
        stream = sb.stream(f"echo first; sleep {marker}; echo never")
        assert next(iter(stream)) == "first\n"
        assert running(f"sleep {marker}")  # the chunk came while the command still runs
        stream.close()
        wait_gone(f"sleep {marker}")
        assert "".join(sb.stream("echo over; echo ws", transport="ws")) == "over\nws\n"
