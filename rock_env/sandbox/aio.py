"""The local async sandbox: :class:`AsyncSandbox`, the async twin of :class:`~rock_env.sandbox.local.Sandbox`.

Every method of the sync sandbox is here as a coroutine (``stream`` as an async generator), plus
ROCK's ``arun``. Blocking work runs in one shared thread pool, so many sandboxes can run
commands at once. With ``base_url`` the constructor returns the registered remote subclass.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from rock_env.sandbox.backends import remote_class
from rock_env.sandbox.contract import AsyncProcessAPI, StreamTransport
from rock_env.sandbox.local import Sandbox
from rock_env.sandbox.models import CommandResult, FileInfo, SandboxConfig, SandboxInfo, SessionInfo, SnapshotInfo
from rock_env.sandbox.processes import AsyncProcess, in_pool


class AsyncSandbox:
    """The async twin of :class:`Sandbox`: the same methods as coroutines, ``await sb.arun(cmd)``.

    Satisfies :class:`~rock_env.sandbox.contract.AsyncSandboxAPI`.
    """

    #: The sandbox id; a local one has it from construction, a remote one once created.
    id: str | None
    config: SandboxConfig

    def __new__(cls, *args: Any, base_url: str | None = None, **kwargs: Any) -> AsyncSandbox:
        # the front class with a base_url builds the registered remote subclass (whose __init__ then runs)
        return super().__new__(remote_class(cls, AsyncSandbox, 1) if base_url is not None else cls)  # type: ignore[no-any-return]

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> None:
        self._sync = Sandbox(config, **fields)
        self.config = self._sync.config
        self.id = self._sync.id

    @property
    def sync(self) -> Sandbox:
        """The underlying synchronous sandbox."""
        return self._sync

    @property
    def runtime(self) -> str | None:
        """The concrete runtime once started."""
        return self._sync.runtime

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, cmd: str | list[str] | None = None) -> Any:
        """Start the sandbox (returns it); with a command, start that in the background."""
        if cmd is not None:
            return await self.spawn(cmd)
        await in_pool(self._sync.start)
        return self

    async def stop(self) -> None:
        """Destroy the sandbox (idempotent)."""
        await in_pool(self._sync.stop)

    async def close(self) -> None:
        """Same as :meth:`stop`."""
        await self.stop()

    async def __aenter__(self) -> AsyncSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def alive(self) -> bool:
        """Whether the sandbox runs."""
        return self._sync.alive()

    async def status(self) -> SandboxInfo:
        """Describe the sandbox."""
        return self._sync.status()

    # --- commands --------------------------------------------------------------------------

    async def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session."""
        result: CommandResult = await in_pool(self._sync.run, cmd, session, timeout)
        return result

    async def arun(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """ROCK's name of :meth:`run`."""
        return await self.run(cmd, session, timeout)

    async def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session."""
        result: CommandResult = await in_pool(self._sync.exec, cmd, cwd, env, timeout, stdin)
        return result

    async def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to a session's running command."""
        await in_pool(self._sync.interrupt, session)

    async def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Open a named persistent bash session."""
        info: SessionInfo = await in_pool(self._sync.create_session, name, env, cwd)
        return info

    async def close_session(self, name: str) -> None:
        """Close a session."""
        await in_pool(self._sync.close_session, name)

    async def sessions(self) -> list[SessionInfo]:
        """The open sessions."""
        return self._sync.sessions()

    async def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> AsyncProcessAPI:
        """Start a command in the background."""
        return AsyncProcess(await in_pool(self._sync.spawn, cmd, cwd, env))

    async def process(self, proc_id: str) -> AsyncProcessAPI:
        """A background process by its handle id."""
        return AsyncProcess(self._sync.process(proc_id))

    async def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        transport: StreamTransport = "sse",
    ) -> AsyncIterator[str]:
        """Async-iterate over a command's output as it comes (leaving the loop early kills the command)."""
        stream = await in_pool(self._sync.stream, cmd, cwd, env, timeout, transport=transport)
        sentinel = object()
        try:
            while True:
                chunk = await in_pool(next, stream, sentinel)
                if chunk is sentinel:
                    return
                yield chunk
        finally:
            stream.close()

    # --- files -----------------------------------------------------------------------------

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created)."""
        await in_pool(self._sync.write_file, path, content)

    async def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text unless ``binary=True``."""
        return await in_pool(self._sync.read_file, path, binary)

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""
        entries: list[FileInfo] = await in_pool(self._sync.list_dir, path)
        return entries

    async def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory into the sandbox."""
        await in_pool(self._sync.upload, local, remote)

    async def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory out of the sandbox."""
        await in_pool(self._sync.download, remote, local)

    # --- snapshots -------------------------------------------------------------------------

    async def snapshot(self) -> str:
        """Save the workspace; the id restores it."""
        snapshot_id: str = await in_pool(self._sync.snapshot)
        return snapshot_id

    async def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""
        return self._sync.snapshots()

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""
        await in_pool(self._sync.delete_snapshot, snapshot_id)

    async def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot."""
        await in_pool(self._sync.restore, snapshot_id)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r})"


__all__ = ["AsyncSandbox"]
