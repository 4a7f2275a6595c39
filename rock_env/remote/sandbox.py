"""Remote sandboxes: the SDK's ``Sandbox``/``AsyncSandbox`` API over HTTP.

``rock.Sandbox(config, base_url=URL)`` returns a :class:`RemoteSandbox` and
``rock.AsyncSandbox(config, base_url=URL)`` an :class:`AsyncRemoteSandbox`: the admin
places the sandbox on a worker, which runs a local SDK sandbox. Method names, arguments,
return types and errors are the same as locally.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from rock_env.errors import InvalidArgument, PathOutsideSandbox, SandboxClosed, SandboxNotFound, WorkerLost
from rock_env.protocol import (
    ExecRequest,
    InterruptRequest,
    Ok,
    ProcessHandle,
    ProcessOutput,
    ProcessWaitRequest,
    RestoreRequest,
    RunRequest,
    SandboxCreateRequest,
    SandboxPlacement,
    SessionCreateRequest,
    SnapshotResponse,
    SpawnRequest,
    StreamRequest,
    exception_from_body,
)
from rock_env.remote.client import ApiClient, AsyncApiClient, error_from_response
from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    ProcessInfo,
    SandboxConfig,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
)
from rock_env.validation import check_exec, check_paths, check_run, check_session, check_session_name

if TYPE_CHECKING:
    from rock_env.remote.ws_stream import WsOutputStream

logger = logging.getLogger(__name__)
_CHUNK = 1 << 16
#: How a command's output is streamed: server-sent events over the keep-alive HTTP connection, or a WebSocket.
StreamTransport = Literal["sse", "ws"]


def _check_transport(transport: str) -> None:
    if transport not in ("sse", "ws"):
        raise InvalidArgument(f"transport must be 'sse' or 'ws', got {transport!r}.")


def _tar_of(local: Path, name: str) -> Path:
    """A temporary tar of ``local`` (file or directory) with top-level entry ``name``."""
    if not local.exists():
        raise InvalidArgument(f"local path {str(local)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="rock-env-upload-", suffix=".tar")
    os.close(fd)
    with tarfile.open(tmp, "w") as tar:
        tar.add(local, arcname=name)
    return Path(tmp)


def _extract_to(archive: Path, local: Path) -> None:
    """Extract a downloaded tar (one top-level entry) to ``local``."""
    from rock_env.sandbox.files import check_member

    local.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            check_member(member)
            _, _, rest = member.name.partition("/")
            member.name = local.name + ("/" + rest if rest else "")
            tar.extract(member, local.parent, filter="data")


def _remote_name(remote: str) -> str:
    return os.path.basename(remote.rstrip("/")) or "workspace"


def _parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


class RemoteBackgroundProcess:
    """A background command in a remote sandbox (same methods as the SDK's ``BackgroundProcess``)."""

    def __init__(self, sandbox: RemoteSandbox, handle: ProcessHandle, started: float | None = None) -> None:
        self._sandbox = sandbox
        self._handle = handle
        self.id = handle.id
        self.pid = handle.pid
        self.command = handle.command
        self._base = f"{sandbox._base}/processes/{handle.id}"
        self._started = time.monotonic() if started is None else started

    def _refresh(self) -> ProcessHandle:
        self._handle = self._sandbox._client.call("GET", self._base, ProcessHandle)
        return self._handle

    @property
    def running(self) -> bool:
        """True until the process has ended."""
        return self._refresh().running

    @property
    def exit_code(self) -> int | None:
        """The exit code once ended, else ``None``."""
        return self._refresh().exit_code

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout``."""
        http_timeout = None if timeout is None else timeout + 30.0
        self._handle = self._sandbox._client.call(
            "POST", f"{self._base}/wait", ProcessHandle, body=ProcessWaitRequest(timeout=timeout), timeout=http_timeout
        )
        return self._handle.exit_code

    def output(self) -> str:
        """The output so far."""
        return self._sandbox._client.call("GET", f"{self._base}/output", ProcessOutput).output

    def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult`."""
        code = self.wait(timeout)
        return CommandResult(
            output=self.output(),
            exit_code=code,
            duration=time.monotonic() - self._started,  # measured by the client, from the spawn request on
            timed_out=code is None and self._handle.running,
        )

    def kill(self) -> None:
        """SIGKILL the process and its descendants."""
        self._handle = self._sandbox._client.call("DELETE", self._base, ProcessHandle)

    def info(self) -> ProcessInfo:
        """Describe the process."""
        h = self._refresh()
        return ProcessInfo(pid=h.pid, command=h.command, running=h.running, exit_code=h.exit_code)


class RemoteOutputStream:
    """Iterate over a remote command's output as it comes; ``exit_code`` after the end."""

    def __init__(self, sandbox: RemoteSandbox, body: StreamRequest) -> None:
        self.exit_code: int | None = None
        self.timed_out = False
        client = sandbox._client._http
        self._cm = client.stream(
            "POST",
            f"{sandbox._base}/stream",
            content=body.model_dump_json(),
            headers={"content-type": "application/json"},
            timeout=httpx.Timeout(None, connect=10.0),
        )
        self._resp = self._cm.__enter__()
        if self._resp.status_code >= 400:
            self._resp.read()
            self._cm.__exit__(None, None, None)
            raise error_from_response(self._resp)
        self._events = _parse_sse(self._resp.iter_lines())
        self._done = False

    def __iter__(self) -> RemoteOutputStream:
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        for event, data in self._events:
            if event == "output":
                return str(data["text"])
            if event == "exit":
                self.exit_code = data.get("exit_code")
                self.timed_out = bool(data.get("timed_out"))
                break
            if event == "error":
                self.close()
                raise exception_from_body(data)
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Stop reading (the server kills the command if it still runs)."""
        if not self._done:
            self._done = True
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> RemoteOutputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteSandbox:
    """A sandbox on a rock-env server, with the SDK's synchronous API."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        **fields: Any,
    ) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = SandboxConfig.model_validate({**base, **fields})
        self._client = ApiClient(base_url, token, timeout=timeout)
        self.id: str | None = None
        self.placement: SandboxPlacement | None = None
        self._base = ""
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server."""
        return self._client.base_url

    @property
    def runtime(self) -> str | None:
        """The runtime the worker picked, once started."""
        return None if self.placement is None else self.placement.runtime

    def start(self, cmd: str | list[str] | None = None) -> Any:
        """Create the sandbox on the server (returns it); with a command, start that in the background."""
        if cmd is not None:
            return self.spawn(cmd)
        if self._stopped:
            raise SandboxClosed(f"sandbox {self.id} was stopped; create a new Sandbox")
        if self.id is None:
            body = SandboxCreateRequest(config=self.config.model_dump(mode="json", exclude_defaults=True))
            self.placement = self._client.call(
                "POST", "/api/v1/sandboxes", SandboxPlacement, body=body, idempotent=False
            )
            self.id = self.placement.id
            self._base = f"/api/v1/sandboxes/{self.id}"
        return self

    def _need(self) -> None:
        if self.id is None:
            raise SandboxClosed("the remote sandbox is not started: call start() or use it as a context manager.")
        if self._stopped:
            raise SandboxClosed(f"sandbox {self.id} was stopped; create a new Sandbox")

    def stop(self) -> None:
        """Stop the sandbox on the server (idempotent)."""
        if self.id is not None and not self._stopped:
            self._stopped = True
            try:
                self._client.call("DELETE", self._base, Ok)
            except (SandboxNotFound, WorkerLost) as exc:
                logger.debug("stopping remote sandbox %s: %s", self.id, exc)
        self._client.close()

    def __enter__(self) -> RemoteSandbox:
        return self.start()  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> SandboxInfo:
        """The SDK's status of the sandbox."""
        self._need()
        return self._client.call("GET", self._base, SandboxInfo)

    @property
    def alive(self) -> bool:
        """Whether the sandbox runs."""
        if self.id is None or self._stopped:
            return False
        try:
            return self.status().status == "running"
        except (SandboxNotFound, WorkerLost):
            return False

    # -- commands ------------------------------------------------------------------------

    def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session (the default one if ``session`` is None)."""
        self._need()
        check_run(cmd, session, timeout)
        if not isinstance(cmd, str):
            raise InvalidArgument(f"run() takes a command string, got {type(cmd).__name__}; use exec() for argv lists")
        body = RunRequest(cmd=cmd, session=session, timeout=timeout)
        return self._client.post_fast(f"{self._base}/run", body, CommandResult)

    def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""
        self._need()
        check_exec(cmd, cwd, env, timeout)
        text = stdin.decode() if isinstance(stdin, bytes) else stdin
        body = ExecRequest(cmd=cmd, cwd=cwd, env=env, timeout=timeout, stdin=text)
        return self._client.post_fast(f"{self._base}/exec", body, CommandResult)

    def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to the command running in a session."""
        self._need()
        check_session_name(session, allow_none=True)
        self._client.call("POST", f"{self._base}/interrupt", Ok, body=InterruptRequest(session=session))

    def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named bash session."""
        self._need()
        check_session(name, env, cwd)
        body = SessionCreateRequest(name=name, env=env, cwd=cwd)
        return self._client.call("POST", f"{self._base}/sessions", SessionInfo, body=body, idempotent=False)

    def close_session(self, name: str) -> None:
        """Close a session."""
        self._need()
        check_session_name(name)
        self._client.send("DELETE", f"{self._base}/sessions/{name}")

    def sessions(self) -> list[SessionInfo]:
        """The open sessions."""
        self._need()
        resp = self._client.send("GET", f"{self._base}/sessions")
        return [SessionInfo.model_validate(x) for x in resp.json()]

    def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> RemoteBackgroundProcess:
        """Start a command in the background."""
        self._need()
        check_exec(cmd, cwd, env)
        body = SpawnRequest(cmd=cmd, cwd=cwd, env=env)
        started = time.monotonic()
        handle = self._client.call("POST", f"{self._base}/processes", ProcessHandle, body=body, idempotent=False)
        return RemoteBackgroundProcess(self, handle, started)

    def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        transport: StreamTransport = "sse",
    ) -> RemoteOutputStream | WsOutputStream:
        """Run a command and iterate over its output as it is written.

        ``transport="sse"`` (default) reads server-sent events on the keep-alive connection;
        ``transport="ws"`` opens a WebSocket. Either way ``exit_code``/``timed_out`` are set
        after the end, and closing the stream early kills the command.
        """
        self._need()
        check_exec(cmd, cwd, env, timeout)
        _check_transport(transport)
        body = StreamRequest(cmd=cmd, cwd=cwd, env=env, timeout=timeout)
        if transport == "ws":
            from rock_env.remote.ws_stream import WsOutputStream

            return WsOutputStream(self.base_url, f"{self._base}/stream/ws", self._client.token, body)
        return RemoteOutputStream(self, body)

    # -- files ---------------------------------------------------------------------------

    def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created); ``str`` is written as UTF-8."""
        self._need()
        check_paths(path)
        if not isinstance(content, str | bytes):
            raise InvalidArgument(f"content must be str or bytes, got {type(content).__name__}")
        data = content.encode() if isinstance(content, str) else content
        self._client.send("PUT", f"{self._base}/file", content=data, params={"path": path})

    def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""
        self._need()
        check_paths(path)
        data = self._client.send("GET", f"{self._base}/file", params={"path": path}).content
        return data if binary else data.decode("utf-8", errors="replace")

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""
        self._need()
        check_paths(path)
        resp = self._client.send("GET", f"{self._base}/dir", params={"path": path})
        return [FileInfo.model_validate(x) for x in resp.json()]

    def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory to ``remote`` in the sandbox (a streamed tar)."""
        self._need()
        check_paths(remote)
        archive = _tar_of(Path(local), _remote_name(remote))
        try:
            with archive.open("rb") as fh:
                self._client.send(
                    "PUT", f"{self._base}/archive", content=iter(lambda: fh.read(_CHUNK), b""), params={"path": remote}
                )
        finally:
            archive.unlink(missing_ok=True)

    def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory from the sandbox to ``local`` (a streamed tar)."""
        self._need()
        check_paths(remote)
        fd, tmp = tempfile.mkstemp(prefix="rock-env-download-", suffix=".tar")
        try:
            with (
                os.fdopen(fd, "wb") as fh,
                self._client._http.stream("GET", f"{self._base}/archive", params={"path": remote}) as resp,
            ):
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(resp)
                for chunk in resp.iter_raw():
                    fh.write(chunk)
            _extract_to(Path(tmp), Path(local))
        except tarfile.TarError as exc:
            raise PathOutsideSandbox(f"the server sent a bad tar stream for {remote!r}: {exc}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> str:
        """Save the workspace; the id restores it."""
        self._need()
        return self._client.call("POST", f"{self._base}/snapshots", SnapshotResponse, idempotent=False).snapshot_id

    def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""
        self._need()
        self._client.call("POST", f"{self._base}/restore", Ok, body=RestoreRequest(snapshot_id=snapshot_id))

    def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""
        self._need()
        resp = self._client.send("GET", f"{self._base}/snapshots")
        return [SnapshotInfo.model_validate(x) for x in resp.json()]

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""
        self._need()
        self._client.call("DELETE", f"{self._base}/snapshots/{snapshot_id}", Ok)

    def __repr__(self) -> str:
        return f"<RemoteSandbox id={self.id!r} at {self.base_url}>"


class AsyncRemoteBackgroundProcess:
    """Async handle of a background command in a remote sandbox."""

    def __init__(self, sandbox: AsyncRemoteSandbox, handle: ProcessHandle) -> None:
        self._sandbox = sandbox
        self._handle = handle
        self.id = handle.id
        self.pid = handle.pid
        self.command = handle.command
        self._base = f"{sandbox._base}/processes/{handle.id}"

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout``."""
        http_timeout = None if timeout is None else timeout + 30.0
        self._handle = await self._sandbox._client.call(
            "POST", f"{self._base}/wait", ProcessHandle, body=ProcessWaitRequest(timeout=timeout), timeout=http_timeout
        )
        return self._handle.exit_code

    async def output(self) -> str:
        """The output so far."""
        return (await self._sandbox._client.call("GET", f"{self._base}/output", ProcessOutput)).output

    async def kill(self) -> None:
        """SIGKILL the process and its descendants."""
        self._handle = await self._sandbox._client.call("DELETE", self._base, ProcessHandle)

    async def info(self) -> ProcessInfo:
        """Describe the process."""
        h = await self._sandbox._client.call("GET", self._base, ProcessHandle)
        return ProcessInfo(pid=h.pid, command=h.command, running=h.running, exit_code=h.exit_code)


class AsyncRemoteSandbox:
    """A sandbox on a rock-env server, with the SDK's async API (``await sb.arun(cmd)``)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        **fields: Any,
    ) -> None:
        base = config.model_dump() if config is not None else {}
        self.config = SandboxConfig.model_validate({**base, **fields})
        self._client = AsyncApiClient(base_url, token, timeout=timeout)
        self.id: str | None = None
        self.placement: SandboxPlacement | None = None
        self._base = ""
        self._stopped = False

    def _need(self) -> None:
        if self.id is None:
            raise SandboxClosed("the remote sandbox is not started: await start() or use `async with`.")
        if self._stopped:
            raise SandboxClosed(f"sandbox {self.id} was stopped; create a new AsyncSandbox")

    async def start(self, cmd: str | list[str] | None = None) -> Any:
        """Create the sandbox on the server (returns it); with a command, start that in the background."""
        if cmd is not None:
            return await self.spawn(cmd)
        if self._stopped:
            raise SandboxClosed(f"sandbox {self.id} was stopped; create a new AsyncSandbox")
        if self.id is None:
            body = SandboxCreateRequest(config=self.config.model_dump(mode="json", exclude_defaults=True))
            self.placement = await self._client.call(
                "POST", "/api/v1/sandboxes", SandboxPlacement, body=body, idempotent=False
            )
            self.id = self.placement.id
            self._base = f"/api/v1/sandboxes/{self.id}"
        return self

    async def stop(self) -> None:
        """Stop the sandbox on the server (idempotent)."""
        if self.id is not None and not self._stopped:
            self._stopped = True
            try:
                await self._client.call("DELETE", self._base, Ok)
            except (SandboxNotFound, WorkerLost) as exc:
                logger.debug("stopping remote sandbox %s: %s", self.id, exc)
        await self._client.aclose()

    async def __aenter__(self) -> AsyncRemoteSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def status(self) -> SandboxInfo:
        """The SDK's status of the sandbox."""
        self._need()
        return await self._client.call("GET", self._base, SandboxInfo)

    async def arun(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session."""
        self._need()
        check_run(cmd, session, timeout)
        body = RunRequest(cmd=cmd, session=session, timeout=timeout)
        return await self._client.call("POST", f"{self._base}/run", CommandResult, body=body, idempotent=False)

    run = arun

    async def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""
        self._need()
        check_exec(cmd, cwd, env, timeout)
        text = stdin.decode() if isinstance(stdin, bytes) else stdin
        body = ExecRequest(cmd=cmd, cwd=cwd, env=env, timeout=timeout, stdin=text)
        return await self._client.call("POST", f"{self._base}/exec", CommandResult, body=body, idempotent=False)

    async def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to a session."""
        self._need()
        check_session_name(session, allow_none=True)
        await self._client.call("POST", f"{self._base}/interrupt", Ok, body=InterruptRequest(session=session))

    async def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named bash session."""
        self._need()
        check_session(name, env, cwd)
        body = SessionCreateRequest(name=name, env=env, cwd=cwd)
        return await self._client.call("POST", f"{self._base}/sessions", SessionInfo, body=body, idempotent=False)

    async def close_session(self, name: str) -> None:
        """Close a session."""
        self._need()
        check_session_name(name)
        await self._client.send("DELETE", f"{self._base}/sessions/{name}")

    async def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> AsyncRemoteBackgroundProcess:
        """Start a command in the background."""
        self._need()
        check_exec(cmd, cwd, env)
        body = SpawnRequest(cmd=cmd, cwd=cwd, env=env)
        handle = await self._client.call("POST", f"{self._base}/processes", ProcessHandle, body=body, idempotent=False)
        return AsyncRemoteBackgroundProcess(self, handle)

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
        self._need()
        check_exec(cmd, cwd, env, timeout)
        _check_transport(transport)
        body = StreamRequest(cmd=cmd, cwd=cwd, env=env, timeout=timeout)
        if transport == "ws":
            from rock_env.remote.ws_stream import aiter_ws_output

            async for chunk in aiter_ws_output(
                self._client.base_url, f"{self._base}/stream/ws", self._client.token, body
            ):
                yield chunk
            return
        async with self._client._http.stream(
            "POST",
            f"{self._base}/stream",
            content=body.model_dump_json(),
            headers={"content-type": "application/json"},
            timeout=httpx.Timeout(None, connect=10.0),
        ) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise error_from_response(resp)
            event, data = "message", list[str]()
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    payload = json.loads("\n".join(data))
                    event_name, event, data = event, "message", []
                    if event_name == "output":
                        yield str(payload["text"])
                    elif event_name == "error":
                        raise exception_from_body(payload)
                    else:
                        return

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file."""
        self._need()
        check_paths(path)
        data = content.encode() if isinstance(content, str) else content
        await self._client.send("PUT", f"{self._base}/file", content=data, params={"path": path})

    async def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""
        self._need()
        check_paths(path)
        data = (await self._client.send("GET", f"{self._base}/file", params={"path": path})).content
        return data if binary else data.decode("utf-8", errors="replace")

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""
        self._need()
        check_paths(path)
        resp = await self._client.send("GET", f"{self._base}/dir", params={"path": path})
        return [FileInfo.model_validate(x) for x in resp.json()]

    async def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory into the sandbox (a streamed tar)."""
        self._need()
        check_paths(remote)
        archive = _tar_of(Path(local), _remote_name(remote))
        try:

            async def chunks() -> AsyncIterator[bytes]:
                with archive.open("rb") as fh:
                    while data := fh.read(_CHUNK):
                        yield data

            await self._client.send("PUT", f"{self._base}/archive", content=chunks(), params={"path": remote})
        finally:
            archive.unlink(missing_ok=True)

    async def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory out of the sandbox (a streamed tar)."""
        self._need()
        check_paths(remote)
        fd, tmp = tempfile.mkstemp(prefix="rock-env-download-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as fh:
                async with self._client._http.stream("GET", f"{self._base}/archive", params={"path": remote}) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        raise error_from_response(resp)
                    async for chunk in resp.aiter_raw():
                        fh.write(chunk)
            _extract_to(Path(tmp), Path(local))
        finally:
            Path(tmp).unlink(missing_ok=True)

    async def snapshot(self) -> str:
        """Save the workspace."""
        self._need()
        answer = await self._client.call("POST", f"{self._base}/snapshots", SnapshotResponse, idempotent=False)
        return answer.snapshot_id

    async def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""
        self._need()
        await self._client.call("POST", f"{self._base}/restore", Ok, body=RestoreRequest(snapshot_id=snapshot_id))

    def __repr__(self) -> str:
        return f"<AsyncRemoteSandbox id={self.id!r} at {self._client.base_url}>"
