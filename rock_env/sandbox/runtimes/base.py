"""The runtime interface: what every isolation backend (local, namespace, docker) provides.

The split follows SWE-ReX: a :class:`Runtime` knows *where* a sandbox lives (a host
directory and subprocesses, a bubblewrap namespace, a Docker container) and offers a few
primitives; the SDK (:mod:`rock_env.sandbox.sdk`) builds *what a sandbox does* on top of
them, the same way for every runtime:

* :meth:`Runtime.open_process` starts a process inside the sandbox with pipes: the SDK runs
  its persistent bash sessions (a marker protocol over the pipe, see
  :mod:`rock_env.sandbox.session`), one-shot commands, background processes and streams over it.
* :meth:`Runtime.put_archive` / :meth:`Runtime.get_archive` move files as tar streams.
* :meth:`Runtime.snapshot` / :meth:`Runtime.restore` save and bring back the writable layer.
* :meth:`Runtime.start` / :meth:`Runtime.stop` with the limits of the :class:`SandboxConfig`.

Paths given to a runtime are absolute paths inside the sandbox, already normalised by the SDK
(no ``..``); the runtime still rejects paths it cannot confine (symlinks pointing out) with
:class:`~rock_env.errors.PathOutsideSandbox`.

Exit codes follow the shell: a process killed by signal ``N`` reports ``128 + N``.
"""

from __future__ import annotations

import io
import posixpath
import signal
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

from rock_env.errors import SandboxFileNotFound
from rock_env.sandbox.bridge import BridgeMount
from rock_env.sandbox.models import FileInfo, SandboxConfig


class ProcessPipe(ABC):
    """A process running inside a sandbox, with a pipe to its stdin and one from its output.

    Output is stdout and stderr merged in the order written (what a terminal shows), unless
    the runtime documents otherwise. The process is the leader of its own process group.
    """

    #: host pid of the process (or of the local end of the attach, e.g. ``docker exec``), if any
    pid: int | None = None

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Write all of ``data`` to the process's stdin (raises ``BrokenPipeError`` if it is gone)."""

    @abstractmethod
    def close_stdin(self) -> None:
        """Close the process's stdin (it reads EOF)."""

    @abstractmethod
    def read(self, timeout: float | None = None) -> bytes | None:
        """Return the next chunk of output as soon as there is one.

        Returns ``b""`` at end of output and ``None`` if ``timeout`` seconds passed without
        output. Never sleeps in a polling loop: it blocks on the pipe (select/poll).
        """

    @abstractmethod
    def poll(self) -> int | None:
        """Return the exit code if the process has ended, else ``None``."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end; return its exit code, or ``None`` on timeout."""

    @abstractmethod
    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process's whole process group."""

    @abstractmethod
    def signal_descendants(self, sig: int) -> None:
        """Send ``sig`` to every descendant of the process (and their process groups), not to the process.

        Used to stop the command a bash session is running without killing the session.
        """

    def mark_command_start(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """A session is about to send a new command (see :meth:`signal_command`). Default: nothing."""

    def signal_command(self, sig: int) -> None:
        """Signal what the current session command started (timeouts, Ctrl-C).

        Runtimes that can tell processes apart by start time spare the background jobs of
        earlier commands; the default signals every descendant.
        """
        self.signal_descendants(sig)

    def kill(self) -> None:
        """Kill the process group with SIGKILL and reap it."""
        self.signal_group(signal.SIGKILL)
        self.wait(timeout=5)
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the pipes (does not signal the process)."""


class Runtime(ABC):
    """Where a sandbox lives: the runtime-specific half of a sandbox.

    A runtime is created for one sandbox with its config, id and a private state directory
    on the host (recorded so that ``rock-env sandbox gc`` finds what is left after a crash).
    """

    #: the name used in ``SandboxConfig.runtime`` and the runtime registry
    name: ClassVar[str] = ""

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        self.config = config
        self.sandbox_id = sandbox_id
        self.state_dir = state_dir
        #: host directories bound read-only into the sandbox by a bridge (set before :meth:`start`;
        #: see :mod:`rock_env.sandbox.bridge`); runtimes without isolation ignore them
        self.bridge_mounts: list[BridgeMount] = []

    # --- availability and reaping ----------------------------------------------------------

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """True if this runtime can start sandboxes on this host (checked by ``runtime="auto"``)."""

    @classmethod
    def gc(cls, *, dry_run: bool = False) -> list[str]:
        """Reap what sandboxes of this runtime left behind outside the state dir (e.g. containers by label).

        Must only reap objects whose owner process is gone or whose ttl passed (other processes'
        live sandboxes share the host). Returns one line per reaped (or, with ``dry_run``,
        reapable) object. The default has nothing to reap.
        """
        return []

    # --- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    def start(self) -> None:
        """Create the sandbox with the config's image and limits. Raises SandboxStartError, ImageNotFound, ..."""

    @abstractmethod
    def stop(self) -> None:
        """Destroy the sandbox and everything it created (processes, mounts, cgroups). Idempotent."""

    @abstractmethod
    def alive(self) -> bool:
        """True while the sandbox is running."""

    def oom_kills(self) -> int:
        """How many processes the memory limit has killed so far (0 if unknown)."""
        return 0

    @property
    def host_pids(self) -> list[int]:
        """Host pids to record for reaping (e.g. the namespace's init); empty if none."""
        return []

    # --- processes -------------------------------------------------------------------------

    def default_env(self) -> dict[str, str]:
        """The base environment of every process (the SDK adds the config's and the call's env on top)."""
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.config.workdir,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
        }

    def initial_shell(self) -> ProcessPipe | None:
        """A ``bash --norc --noprofile`` the runtime started together with the sandbox, or ``None``.

        Optional fast path: the SDK uses it (once) for the default session instead of
        :meth:`open_process`, saving a process start on the first command. Its environment is
        :meth:`default_env` plus ``config.env`` and its cwd the workdir.
        """
        return None

    @abstractmethod
    def open_process(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = True,
    ) -> ProcessPipe:
        """Start ``argv`` inside the sandbox in its own process group and return its pipes.

        ``env`` is the complete environment of the process (the SDK merges the config's env,
        session env and defaults such as PATH and HOME); ``cwd`` an absolute path inside.
        """

    def session_argv(self, argv: list[str]) -> list[str]:
        """The argv that starts a session's shell ``argv`` (default: as given).

        Runtimes wrap it to keep the shell out of the sandbox's reach (non-dumpable), so that the
        commands it is sent and their end markers cannot be read from inside.
        """
        return argv

    def open_session(
        self,
        argv: list[str],
        *,
        name: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ProcessPipe:
        """Start the shell of the bash session ``name`` (default: :meth:`open_process` of :meth:`session_argv`).

        Runtimes that can group processes give each session a group of its own, so that what a
        session's commands leave behind (orphans of a fork bomb) can be killed without touching
        other sessions or the sandbox itself.
        """
        return self._start_session(self.session_argv(argv), name, cwd, env)

    def _start_session(self, argv: list[str], name: str, cwd: str | None, env: dict[str, str] | None) -> ProcessPipe:
        """Start the (wrapped) shell of session ``name``: :meth:`open_process` unless the runtime groups sessions."""
        return self.open_process(argv, cwd=cwd, env=env)

    # --- files -----------------------------------------------------------------------------

    @abstractmethod
    def put_archive(self, dest_dir: str, stream: BinaryIO) -> None:
        """Extract the tar ``stream`` into the directory ``dest_dir`` (created if missing).

        Members with absolute names, ``..`` or links pointing out must be refused with
        :class:`~rock_env.errors.PathOutsideSandbox` (see :func:`rock_env.sandbox.files.check_member`).
        """

    @abstractmethod
    def get_archive(self, path: str) -> Iterator[bytes]:
        """Yield a tar stream of the file or directory ``path`` (its basename is the top member)."""

    def read_file(self, path: str) -> bytes:
        """Return the content of a file (default: through :meth:`get_archive`)."""
        buffer = io.BytesIO(b"".join(self.get_archive(path)))
        with tarfile.open(fileobj=buffer, mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read()
        raise SandboxFileNotFound(f"{path!r} is not a regular file in the sandbox")

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file, creating parent directories (default: through :meth:`put_archive`)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(path))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        self.put_archive(posixpath.dirname(path) or "/", buffer)

    @abstractmethod
    def list_dir(self, path: str) -> list[FileInfo]:
        """List a directory inside the sandbox (sorted by name)."""

    # --- snapshots -------------------------------------------------------------------------

    @abstractmethod
    def snapshot(self, snapshot_id: str) -> int:
        """Save the writable layer (the workspace) under ``snapshot_id``; return its size in bytes."""

    @abstractmethod
    def restore(self, snapshot_id: str) -> None:
        """Bring the writable layer back to the snapshot (raises SnapshotNotFound)."""

    @abstractmethod
    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot (idempotent)."""
