"""A sandbox command's output over a WebSocket: same output as SSE, clean closes on bad input, no leaks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import rock_env as rock
from rock_env.errors import InvalidArgument, SandboxNotFound, Unauthorized
from rock_env.remote import RemoteSandbox
from rock_env.remote.ws_stream import WsOutputStream, ws_url
from rock_env.server.app import create_app
from rock_env.server.runner import BackgroundServer
from rock_env.server.settings import ServerSettings
from tests.processes import pids_with_cmdline

pytestmark = [pytest.mark.server, pytest.mark.bwrap]

OPTIONS = {"proxy": None, "open_timeout": 60}


@pytest.fixture(scope="module")
def sandbox(server: BackgroundServer) -> Iterator[RemoteSandbox]:
    with rock.Sandbox(runtime="namespace", base_url=server.url) as sb:
        assert isinstance(sb, RemoteSandbox)
        yield sb


def running(marker: str) -> list[int]:
    """PIDs of host processes whose command line contains ``marker`` (a namespace sandbox's processes are visible there)."""
    return pids_with_cmdline(marker, skip="pytest")


def wait_gone(marker: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while running(marker):
        assert time.monotonic() < deadline, f"command {marker!r} still runs after the client left"
        time.sleep(0.05)


def stream_url(sb: RemoteSandbox) -> str:
    return ws_url(sb.base_url, f"/api/v1/sandboxes/{sb.id}/stream/ws")


def test_ws_output_equals_sse(sandbox: RemoteSandbox) -> None:
    cmd = "for i in 1 2 3; do echo line-$i; sleep 0.02; done; echo $V; basename $(pwd); exit 3"
    sandbox.run("mkdir -p streamdir")
    sse = sandbox.stream(cmd, env={"V": "v"}, cwd="streamdir")
    ws = sandbox.stream(cmd, env={"V": "v"}, cwd="streamdir", transport="ws")
    assert isinstance(ws, WsOutputStream)
    chunks = list(ws)
    assert "".join(chunks) == "".join(sse) == "line-1\nline-2\nline-3\nv\nstreamdir\n"
    assert ws.exit_code == sse.exit_code == 3 and not ws.timed_out
    timed = sandbox.stream("echo before; sleep 30", timeout=0.5, transport="ws")
    assert "".join(timed) == "before\n" and timed.timed_out
    with pytest.raises(InvalidArgument, match="'sse' or 'ws'"):
        sandbox.stream("true", transport="carrier-pigeon")  # type: ignore[arg-type]


def test_async_ws_stream(server: BackgroundServer) -> None:
    async def main() -> str:
        async with rock.AsyncSandbox(runtime="namespace", base_url=server.url) as sb:
            return "".join([c async for c in sb.stream("echo a; echo b >&2", transport="ws")])

    assert asyncio.run(main()) == "a\nb\n"


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        ("not json", "invalid first message"),
        (json.dumps({"cmd": 5}), "cmd"),
        (json.dumps({"cmd": "ls", "unknown": 1}), "unknown"),
        (b"\xff\x00binary", "invalid first message"),
    ],
)
def test_malformed_first_message_closes_with_4422(sandbox: RemoteSandbox, first: str | bytes, problem: str) -> None:
    with connect(stream_url(sandbox), **OPTIONS) as ws:  # type: ignore[arg-type]
        ws.send(first)
        error = json.loads(ws.recv(timeout=60))
        assert error["event"] == "error" and error["error"] == "RequestInvalid" and error["status"] == 422
        assert problem in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4422 and closed.value.rcvd.reason == "RequestInvalid"
    assert sandbox.run("echo still fine").output == "still fine\n"


def test_unknown_sandbox_is_refused_at_the_handshake(server: BackgroundServer) -> None:
    from rock_env.protocol import StreamRequest

    with pytest.raises(SandboxNotFound):
        WsOutputStream(server.url, "/api/v1/sandboxes/sbx-nope/stream/ws", None, StreamRequest(cmd="ls"))


@pytest.mark.parametrize("how", ["close", "drop"])
def test_client_leaving_mid_stream_kills_the_command(sandbox: RemoteSandbox, how: str) -> None:
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    ws = connect(stream_url(sandbox), **OPTIONS).__enter__()  # type: ignore[arg-type]
    ws.send(json.dumps({"cmd": f"echo started; sleep {marker}; echo never"}))
    assert json.loads(ws.recv(timeout=60)) == {"event": "output", "text": "started\n"}
    assert running(f"sleep {marker}")
    if how == "close":
        ws.close()
    else:  # the client vanishes without a close frame
        ws.socket.close()
    wait_gone(f"sleep {marker}")
    assert sandbox.run("echo next").output == "next\n"


def test_client_message_stops_the_command(sandbox: RemoteSandbox) -> None:
    marker = f"{70 + uuid.uuid4().int % 1000 / 1000:.3f}"
    with connect(stream_url(sandbox), **OPTIONS) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"cmd": f"echo go; sleep {marker}"}))
        assert json.loads(ws.recv(timeout=60))["text"] == "go\n"
        ws.send("stop")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert closed.value.rcvd.reason == "stopped by the client"
    wait_gone(f"sleep {marker}")


def test_wrong_token_is_refused(tmp_path: Path) -> None:
    token = "s3cret-token-for-ws"
    srv = BackgroundServer(create_app(ServerSettings(data_dir=str(tmp_path), token=token))).start()
    try:
        with rock.Sandbox(runtime="namespace", base_url=srv.url, token=token) as sb:
            assert "".join(sb.stream("echo ok", transport="ws")) == "ok\n"
            url = stream_url(sb)  # type: ignore[arg-type]
            from rock_env.protocol import StreamRequest

            with pytest.raises(Unauthorized):
                WsOutputStream(
                    srv.url, url.split(srv.url.split("://")[1], 1)[1], "wrong-token", StreamRequest(cmd="ls")
                )
            with pytest.raises(Unauthorized):
                WsOutputStream(srv.url, url.split(srv.url.split("://")[1], 1)[1], None, StreamRequest(cmd="ls"))
    finally:
        srv.stop()


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_sdk_errors_surface_as_the_same_class(sandbox: RemoteSandbox, transport: str) -> None:
    with pytest.raises(InvalidArgument, match="non-empty list"):
        list(sandbox.stream([], transport=transport))  # type: ignore[arg-type]
