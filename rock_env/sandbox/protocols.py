"""The public API of the sandbox classes, stated once as ``Protocol``s (re-exported by :mod:`rock_env.sandbox.contract`).

:class:`SandboxAPI` is what ``Sandbox`` and ``RemoteSandbox`` offer, :class:`AsyncSandboxAPI`
what ``AsyncSandbox`` and ``AsyncRemoteSandbox`` offer (the same names and signatures as
coroutines, ``stream`` as an async generator, plus ROCK's ``arun``); :class:`ProcessAPI`,
:class:`AsyncProcessAPI` and :class:`OutputStreamAPI` are the handles they return.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    ProcessInfo,
    SandboxConfig,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
)

#: How a command's output is streamed to a remote client: server-sent events or a WebSocket.
StreamTransport = Literal["sse", "ws"]


@runtime_checkable
class ProcessAPI(Protocol):
    """A background command of a sandbox (``spawn``/``start(cmd)``)."""

    @property
    def id(self) -> str:
        """The handle id (``process(id)`` finds it again)."""

    @property
    def pid(self) -> int | None:
        """The process id inside the sandbox's runtime."""

    @property
    def command(self) -> str:
        """The command line."""

    @property
    def running(self) -> bool:
        """True until the process has ended."""

    @property
    def exit_code(self) -> int | None:
        """The exit code once ended, else ``None``."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout``."""

    def output(self) -> str:
        """The output so far."""

    def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult`."""

    def kill(self) -> None:
        """SIGKILL the process and its descendants."""

    def info(self) -> ProcessInfo:
        """Describe the process."""


@runtime_checkable
class AsyncProcessAPI(Protocol):
    """The async twin of :class:`ProcessAPI` (``running``/``exit_code`` are the last known state)."""

    @property
    def id(self) -> str:
        """The handle id."""

    @property
    def pid(self) -> int | None:
        """The process id inside the sandbox's runtime."""

    @property
    def command(self) -> str:
        """The command line."""

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout``."""

    async def output(self) -> str:
        """The output so far."""

    async def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult`."""

    async def kill(self) -> None:
        """SIGKILL the process and its descendants."""

    async def info(self) -> ProcessInfo:
        """Describe the process."""


@runtime_checkable
class OutputStreamAPI(Protocol):
    """A command's output as it comes (text chunks); ``exit_code``/``timed_out`` after the end."""

    @property
    def exit_code(self) -> int | None:
        """The exit code after the end (``None`` if it timed out or is still running)."""

    @property
    def timed_out(self) -> bool:
        """Whether the command's timeout killed it."""

    def __iter__(self) -> Iterator[str]:
        """Iterate over the chunks."""

    def __next__(self) -> str:
        """The next chunk."""

    def close(self) -> None:
        """Stop (the command is killed if it still runs)."""

    def __enter__(self) -> Any:
        """Return the stream."""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the stream."""


class SandboxAPI(Protocol):
    """The synchronous sandbox API (``Sandbox`` and ``RemoteSandbox``)."""

    config: SandboxConfig

    @property
    def id(self) -> str | None:
        """The sandbox id (a remote one has it once created)."""

    @property
    def runtime(self) -> str | None:
        """The concrete runtime once started."""

    def start(self, cmd: str | list[str] | None = None) -> Any:
        """Start the sandbox (returns it); with a command, start that in the background."""

    def stop(self) -> None:
        """Destroy the sandbox (idempotent)."""

    def close(self) -> None:
        """Same as :meth:`stop`."""

    def alive(self) -> bool:
        """Whether the sandbox runs."""

    def status(self) -> SandboxInfo:
        """Describe the sandbox."""

    def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session (the default one if ``session`` is None)."""

    def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""

    def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to the command running in a session."""

    def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named persistent bash session."""

    def close_session(self, name: str) -> None:
        """Close a session."""

    def sessions(self) -> list[SessionInfo]:
        """The open sessions."""

    def spawn(self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> ProcessAPI:
        """Start a command in the background."""

    def process(self, proc_id: str) -> ProcessAPI:
        """A background process by its handle id."""

    def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        transport: StreamTransport = "sse",
    ) -> OutputStreamAPI:
        """Run a command and iterate over its output as it is written."""

    def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created)."""

    def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""

    def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory into the sandbox."""

    def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory out of the sandbox."""

    def snapshot(self) -> str:
        """Save the workspace; the id restores it."""

    def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""

    def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""

    def __enter__(self) -> Any:
        """Start the sandbox."""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the sandbox."""


class AsyncSandboxAPI(Protocol):
    """The asynchronous sandbox API (``AsyncSandbox`` and ``AsyncRemoteSandbox``): :class:`SandboxAPI` as coroutines.

    ``stream`` is an async generator; ``arun`` is ROCK's name of ``run``.
    """

    config: SandboxConfig

    @property
    def id(self) -> str | None:
        """The sandbox id (a remote one has it once created)."""

    @property
    def runtime(self) -> str | None:
        """The concrete runtime once started."""

    async def start(self, cmd: str | list[str] | None = None) -> Any:
        """Start the sandbox (returns it); with a command, start that in the background."""

    async def stop(self) -> None:
        """Destroy the sandbox (idempotent)."""

    async def close(self) -> None:
        """Same as :meth:`stop`."""

    async def alive(self) -> bool:
        """Whether the sandbox runs."""

    async def status(self) -> SandboxInfo:
        """Describe the sandbox."""

    async def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session."""

    async def arun(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """ROCK's name of :meth:`run`."""

    async def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""

    async def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to the command running in a session."""

    async def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named persistent bash session."""

    async def close_session(self, name: str) -> None:
        """Close a session."""

    async def sessions(self) -> list[SessionInfo]:
        """The open sessions."""

    async def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> AsyncProcessAPI:
        """Start a command in the background."""

    async def process(self, proc_id: str) -> AsyncProcessAPI:
        """A background process by its handle id."""

    def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        transport: StreamTransport = "sse",
    ) -> AsyncIterator[str]:
        """Async-iterate over a command's output as it is written (an async generator)."""

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created)."""

    async def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""

    async def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory into the sandbox."""

    async def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory out of the sandbox."""

    async def snapshot(self) -> str:
        """Save the workspace; the id restores it."""

    async def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""

    async def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""

    async def __aenter__(self) -> Any:
        """Start the sandbox."""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the sandbox."""


__all__ = [
    "AsyncProcessAPI",
    "AsyncSandboxAPI",
    "OutputStreamAPI",
    "ProcessAPI",
    "SandboxAPI",
    "StreamTransport",
]
