"""Async remote sandboxes: :class:`AsyncRemoteSandbox`, an :class:`~rock_env.sandbox.AsyncSandbox` on a server.

The async twin of :class:`~rock_env.remote.sandbox.RemoteSandbox`: the same ops of the table,
built and parsed by the same layer (:mod:`rock_env.remote.sandbox_wire`), sent with the async
HTTP client.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from rock_env.errors import SandboxNotFound, WorkerLost
from rock_env.protocol import StreamRequest
from rock_env.remote import sandbox_wire as wire
from rock_env.remote.client import AsyncApiClient, error_from_response
from rock_env.remote.pool import shared_async_client
from rock_env.remote.sandbox_wire import Call, RemoteProcessState, RemoteState
from rock_env.sandbox.aio import AsyncSandbox
from rock_env.sandbox.contract import OPS_BY_NAME, StreamTransport
from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    ProcessInfo,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
)

logger = logging.getLogger(__name__)


class AsyncRemoteBackgroundProcess(RemoteProcessState):
    """Async handle of a background command in a remote sandbox (the contract's ``AsyncProcessAPI``)."""

    _sandbox: AsyncRemoteSandbox

    async def _call(self, name: str, /, **args: Any) -> Any:
        return await self._sandbox._call(name, proc=self.id, **args)

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout``."""
        self._handle = await self._call("process_wait", timeout=timeout, http_timeout=self._wait_timeout(timeout))
        return self._handle.exit_code

    async def output(self) -> str:
        """The output so far."""
        return str((await self._call("process_output")).output)

    async def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult`."""
        code = await self.wait(timeout)
        return self._result(code, await self.output())

    async def kill(self) -> None:
        """SIGKILL the process and its descendants."""
        self._handle = await self._call("process_kill")

    async def info(self) -> ProcessInfo:
        """Describe the process."""
        self._handle = await self._call("process")
        return self._info(self._handle)


class AsyncRemoteSandbox(RemoteState, AsyncSandbox):
    """A sandbox on a rock-env server with the async API (``await sb.arun(cmd)``); an :class:`AsyncSandbox`."""

    @property
    def _client(self) -> AsyncApiClient:
        """The running loop's shared client for this server (one bounded pool for every remote object)."""
        return shared_async_client(self._base_url, self._token, self._timeout)

    async def _send(self, call: Call) -> Any:
        resp = await self._client.send(
            call.method, call.url, body=call.body, content=call.content, params=call.params, timeout=call.timeout
        )
        return wire.parse(call.op, resp.content)

    async def _call(self, name: str, /, **args: Any) -> Any:
        """Run op ``name`` with the method's arguments (starting the sandbox first if the contract says so)."""
        op = OPS_BY_NAME[name]
        if self._plan(op) == "answer":
            wire.check(op, args)
            return self._answer(op, args)
        return await self._send(await self._prepare(name, **args))

    async def _prepare(self, name: str, /, **args: Any) -> Call:
        """The checked request of op ``name``, once the sandbox runs (started here if the contract says so)."""
        op = OPS_BY_NAME[name]
        wire.check(op, args)
        if self._plan(op) == "start":
            await self.start()
        return wire.build(op, self.id, **args)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, cmd: str | list[str] | None = None) -> Any:
        """Create the sandbox on the server (returns it); with a command, start that in the background."""
        if cmd is not None:
            return await self.spawn(cmd)
        if self._check_start():
            self._created(await self._send(self._create_call()))
        return self

    async def stop(self) -> None:
        """Stop the sandbox on the server (idempotent)."""
        if self._live():
            self._stopped = True
            try:
                await self._send(wire.build(OPS_BY_NAME["stop"], self.id))
            except (SandboxNotFound, WorkerLost) as exc:
                logger.debug("stopping remote sandbox %s: %s", self.id, exc)
        self._stopped = True

    async def alive(self) -> bool:
        """Whether the sandbox runs."""
        if not self._live():
            return False
        try:
            return (await self.status()).status == "running"
        except (SandboxNotFound, WorkerLost):
            return False

    async def status(self) -> SandboxInfo:
        """Describe the sandbox (the server's answer once created)."""
        return await self._call("status")  # type: ignore[no-any-return]

    # -- commands ------------------------------------------------------------------------

    async def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session."""
        return await self._call("run", cmd=cmd, session=session, timeout=timeout)  # type: ignore[no-any-return]

    async def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""
        args = {"cmd": cmd, "cwd": cwd, "env": env, "timeout": timeout, "stdin": stdin}
        return await self._call("exec", **args)  # type: ignore[no-any-return]

    async def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to a session."""
        await self._call("interrupt", session=session)

    async def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named bash session."""
        return await self._call("create_session", name=name, env=env, cwd=cwd)  # type: ignore[no-any-return]

    async def close_session(self, name: str) -> None:
        """Close a session."""
        await self._call("close_session", name=name)

    async def sessions(self) -> list[SessionInfo]:
        """The open sessions."""
        return await self._call("sessions")  # type: ignore[no-any-return]

    async def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> AsyncRemoteBackgroundProcess:
        """Start a command in the background."""
        started = time.monotonic()
        return AsyncRemoteBackgroundProcess(self, await self._call("spawn", cmd=cmd, cwd=cwd, env=env), started)

    async def process(self, proc_id: str) -> AsyncRemoteBackgroundProcess:
        """A background process by its handle id."""
        return AsyncRemoteBackgroundProcess(self, await self._call("process", proc=proc_id))

    async def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        transport: StreamTransport = "sse",
    ) -> AsyncIterator[str]:
        """Async-iterate over a command's output as it comes (server-sent events, or a WebSocket with ``"ws"``)."""
        name = "stream_ws" if transport == "ws" else "stream"
        call = await self._prepare(name, cmd=cmd, cwd=cwd, env=env, timeout=timeout, transport=transport)
        assert isinstance(call.body, StreamRequest)
        if transport == "ws":
            from rock_env.remote.ws_stream import aiter_ws_output

            async for chunk in aiter_ws_output(self.base_url, call.url, self._client.token, call.body):
                yield chunk
            return
        headers = {"content-type": "application/json"}
        content = call.body.model_dump_json()
        timeouts = httpx.Timeout(None, connect=10.0)
        async with self._client._http.stream(
            call.method, call.url, content=content, headers=headers, timeout=timeouts
        ) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise error_from_response(resp)
            sse = wire.SseDecoder()
            async for line in resp.aiter_lines():
                text = sse.feed(line)
                if text is not None:
                    yield text
                elif sse.done:
                    return

    # -- files ---------------------------------------------------------------------------

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created); ``str`` is written as UTF-8."""
        data = content.encode() if isinstance(content, str) else content
        await self._call("write_file", path=path, content=data)

    async def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""
        data: bytes = await self._call("read_file", path=path)
        return data if binary else data.decode("utf-8", errors="replace")

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""
        return await self._call("list_dir", path=path)  # type: ignore[no-any-return]

    async def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory into the sandbox (a streamed tar)."""
        await self._prepare("upload", path=remote)  # checks the arguments and starts the sandbox before the tar is made
        archive = wire.tar_of(local, remote)

        async def chunks() -> AsyncIterator[bytes]:
            with archive.open("rb") as fh:
                while data := fh.read(wire.CHUNK):
                    yield data

        try:
            await self._call("upload", path=remote, content=chunks())
        finally:
            archive.unlink(missing_ok=True)

    async def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory out of the sandbox (a streamed tar)."""
        call = await self._prepare("download", path=remote)
        fd, archive = wire.download_file()
        with os.fdopen(fd, "wb") as fh:
            async with self._client._http.stream(call.method, call.url, params=call.params) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    archive.unlink(missing_ok=True)
                    raise error_from_response(resp)
                async for chunk in resp.aiter_raw():
                    fh.write(chunk)
        wire.extract_to(archive, local, remote)

    # -- snapshots -----------------------------------------------------------------------

    async def snapshot(self) -> str:
        """Save the workspace; the id restores it."""
        return str((await self._call("snapshot")).snapshot_id)

    async def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""
        return await self._call("snapshots")  # type: ignore[no-any-return]

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""
        await self._call("delete_snapshot", snapshot_id=snapshot_id)

    async def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""
        await self._call("restore", snapshot_id=snapshot_id)

    def __repr__(self) -> str:
        return f"<AsyncRemoteSandbox id={self.id!r} at {self.base_url}>"


__all__ = ["AsyncRemoteBackgroundProcess", "AsyncRemoteSandbox"]
