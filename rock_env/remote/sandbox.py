"""Remote sandboxes: :class:`RemoteSandbox`, a :class:`~rock_env.sandbox.Sandbox` whose work happens on a server.

``rock.Sandbox(config, base_url=URL)`` returns a :class:`RemoteSandbox` and
``rock.AsyncSandbox(config, base_url=URL)`` an :class:`~rock_env.remote.sandbox_async.AsyncRemoteSandbox`
(registered with the sandbox layer when this module is imported): the admin places the sandbox
on a worker, which runs a local sandbox. Names, arguments, return types, errors and the
"starts on first use" rule are the sandbox contract's (:mod:`rock_env.sandbox.contract`); every
method is one call of an op of the ops table through :mod:`rock_env.remote.sandbox_wire`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from rock_env.errors import SandboxNotFound, WorkerLost
from rock_env.protocol import Ok, ProcessHandle, StreamRequest
from rock_env.remote import sandbox_wire as wire
from rock_env.remote.client import ApiClient, error_from_response
from rock_env.remote.pool import shared_client
from rock_env.remote.sandbox_wire import Call, RemoteProcessState, RemoteState
from rock_env.sandbox.backends import register_remote_factory
from rock_env.sandbox.contract import OPS_BY_NAME, StreamTransport
from rock_env.sandbox.local import Sandbox
from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    ProcessInfo,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
)

if TYPE_CHECKING:
    from rock_env.remote.ws_stream import WsOutputStream

logger = logging.getLogger(__name__)


def _is_model(response: Any) -> bool:
    return isinstance(response, type) and issubclass(response, BaseModel)


class RemoteBackgroundProcess(RemoteProcessState):
    """A background command in a remote sandbox (the contract's ``ProcessAPI``)."""

    _sandbox: RemoteSandbox

    def _call(self, name: str, /, **args: Any) -> Any:
        return self._sandbox._call(name, proc=self.id, **args)

    def _refresh(self) -> ProcessHandle:
        self._handle = self._call("process")
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
        self._handle = self._call("process_wait", timeout=timeout, http_timeout=self._wait_timeout(timeout))
        return self._handle.exit_code

    def output(self) -> str:
        """The output so far."""
        return str(self._call("process_output").output)

    def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult`."""
        code = self.wait(timeout)
        return self._result(code, self.output())

    def kill(self) -> None:
        """SIGKILL the process and its descendants."""
        self._handle = self._call("process_kill")

    def info(self) -> ProcessInfo:
        """Describe the process."""
        return self._info(self._refresh())


class RemoteOutputStream:
    """Iterate over a remote command's output as it comes (server-sent events); ``exit_code`` after the end."""

    def __init__(self, client: ApiClient, call: Call) -> None:
        self._cm = client._http.stream(
            call.method,
            call.url,
            content=call.body.model_dump_json() if call.body is not None else None,
            headers={"content-type": "application/json"},
            timeout=httpx.Timeout(None, connect=10.0),
        )
        self._resp = self._cm.__enter__()
        if self._resp.status_code >= 400:
            self._resp.read()
            self._cm.__exit__(None, None, None)
            raise error_from_response(self._resp)
        self._lines = self._resp.iter_lines()
        self._sse = wire.SseDecoder()
        self._done = False

    @property
    def exit_code(self) -> int | None:
        """The exit code after the end (``None`` if it timed out or is still running)."""
        return self._sse.exit_code

    @property
    def timed_out(self) -> bool:
        """Whether the command's timeout killed it."""
        return self._sse.timed_out

    def __iter__(self) -> RemoteOutputStream:
        return self

    def __next__(self) -> str:
        try:
            for line in self._lines if not self._done else ():
                text = self._sse.feed(line)
                if text is not None:
                    return text
                if self._sse.done:
                    break
        except BaseException:
            self.close()
            raise
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


class RemoteSandbox(RemoteState, Sandbox):
    """A sandbox on a rock-env server: a :class:`Sandbox` with the same API, each method one op of the table."""

    @property
    def _client(self) -> ApiClient:
        """The process's shared client for this server (one bounded pool for every remote object)."""
        return shared_client(self._base_url, self._token, self._timeout)

    def _send(self, call: Call) -> Any:
        op = call.op
        if call.method == "POST" and call.body is not None and call.timeout is None and _is_model(op.response):
            # the client's low-overhead path (run, exec, spawn, ...); like any POST, never retried once sent
            answer = self._client.post_fast(call.url, call.body, op.response)
            return None if op.response is Ok else answer
        resp = self._client.send(
            call.method, call.url, body=call.body, content=call.content, params=call.params, timeout=call.timeout
        )
        return wire.parse(op, resp.content)

    def _call(self, name: str, /, **args: Any) -> Any:
        """Run op ``name`` with the method's arguments (starting the sandbox first if the contract says so)."""
        op = OPS_BY_NAME[name]
        if self._plan(op) == "answer":
            wire.check(op, args)
            return self._answer(op, args)
        return self._send(self._prepare(name, **args))

    def _prepare(self, name: str, /, **args: Any) -> Call:
        """The checked request of op ``name``, once the sandbox runs (started here if the contract says so)."""
        op = OPS_BY_NAME[name]
        wire.check(op, args)
        if self._plan(op) == "start":
            self.start()
        return wire.build(op, self.id, **args)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, cmd: str | list[str] | None = None) -> Any:
        """Create the sandbox on the server (returns it); with a command, start that in the background."""
        if cmd is not None:
            return self.spawn(cmd)
        if self._check_start():
            self._created(self._send(self._create_call()))
        return self

    def stop(self) -> None:
        """Stop the sandbox on the server (idempotent)."""
        if self._live():
            self._stopped = True
            try:
                self._send(wire.build(OPS_BY_NAME["stop"], self.id))
            except (SandboxNotFound, WorkerLost) as exc:
                logger.debug("stopping remote sandbox %s: %s", self.id, exc)
        self._stopped = True

    def alive(self) -> bool:
        """Whether the sandbox runs."""
        if not self._live():
            return False
        try:
            return self.status().status == "running"
        except (SandboxNotFound, WorkerLost):
            return False

    def status(self) -> SandboxInfo:
        """Describe the sandbox (the server's answer once created)."""
        return self._call("status")  # type: ignore[no-any-return]

    # -- commands ------------------------------------------------------------------------

    def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session (the default one if ``session`` is None)."""
        return self._call("run", cmd=cmd, session=session, timeout=timeout)  # type: ignore[no-any-return]

    def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""
        return self._call("exec", cmd=cmd, cwd=cwd, env=env, timeout=timeout, stdin=stdin)  # type: ignore[no-any-return]

    def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to the command running in a session."""
        self._call("interrupt", session=session)

    def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named bash session."""
        return self._call("create_session", name=name, env=env, cwd=cwd)  # type: ignore[no-any-return]

    def close_session(self, name: str) -> None:
        """Close a session."""
        self._call("close_session", name=name)

    def sessions(self) -> list[SessionInfo]:
        """The open sessions."""
        return self._call("sessions")  # type: ignore[no-any-return]

    def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> RemoteBackgroundProcess:
        """Start a command in the background."""
        started = time.monotonic()
        return RemoteBackgroundProcess(self, self._call("spawn", cmd=cmd, cwd=cwd, env=env), started)

    def process(self, proc_id: str) -> RemoteBackgroundProcess:
        """A background process by its handle id."""
        return RemoteBackgroundProcess(self, self._call("process", proc=proc_id))

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
        name = "stream_ws" if transport == "ws" else "stream"
        call = self._prepare(name, cmd=cmd, cwd=cwd, env=env, timeout=timeout, transport=transport)
        if transport == "ws":
            from rock_env.remote.ws_stream import WsOutputStream

            assert isinstance(call.body, StreamRequest)
            return WsOutputStream(self.base_url, call.url, self._client.token, call.body)
        return RemoteOutputStream(self._client, call)

    # -- files ---------------------------------------------------------------------------

    def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created); ``str`` is written as UTF-8."""
        data = content.encode() if isinstance(content, str) else content
        self._call("write_file", path=path, content=data)

    def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""
        data: bytes = self._call("read_file", path=path)
        return data if binary else data.decode("utf-8", errors="replace")

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""
        return self._call("list_dir", path=path)  # type: ignore[no-any-return]

    def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory to ``remote`` in the sandbox (a streamed tar)."""
        self._prepare("upload", path=remote)  # checks the arguments and starts the sandbox before the tar is made
        archive = wire.tar_of(local, remote)
        try:
            with archive.open("rb") as fh:
                self._call("upload", path=remote, content=iter(lambda: fh.read(wire.CHUNK), b""))
        finally:
            archive.unlink(missing_ok=True)

    def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory from the sandbox to ``local`` (a streamed tar)."""
        call = self._prepare("download", path=remote)
        fd, archive = wire.download_file()
        with os.fdopen(fd, "wb") as fh, self._client._http.stream(call.method, call.url, params=call.params) as resp:
            if resp.status_code >= 400:
                resp.read()
                archive.unlink(missing_ok=True)
                raise error_from_response(resp)
            for chunk in resp.iter_raw():
                fh.write(chunk)
        wire.extract_to(archive, local, remote)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> str:
        """Save the workspace; the id restores it."""
        return str(self._call("snapshot").snapshot_id)

    def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""
        return self._call("snapshots")  # type: ignore[no-any-return]

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""
        self._call("delete_snapshot", snapshot_id=snapshot_id)

    def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""
        self._call("restore", snapshot_id=snapshot_id)

    def __repr__(self) -> str:
        return f"<RemoteSandbox id={self.id!r} at {self.base_url}>"


from rock_env.remote.sandbox_async import AsyncRemoteBackgroundProcess, AsyncRemoteSandbox  # noqa: E402

register_remote_factory(RemoteSandbox, AsyncRemoteSandbox)

__all__ = [
    "AsyncRemoteBackgroundProcess",
    "AsyncRemoteSandbox",
    "RemoteBackgroundProcess",
    "RemoteOutputStream",
    "RemoteSandbox",
]
