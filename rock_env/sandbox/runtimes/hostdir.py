"""The shared half of the local and namespace runtimes: a writable layer reached through directory fds.

The local runtime's writable layer lives in ``<state dir>/fs`` (a size-limited tmpfs when the
process may mount one, else a plain directory) with ``workspace/`` (the sandbox's workdir) and
``tmp/``. The namespace runtime's ``/workspace`` and ``/tmp`` are tmpfs mounts that exist only
inside the sandbox's mount namespace (``host_tmpfs = False``), so that the host's mount table does
not grow with every sandbox. Either way, file operations and snapshots go through
:class:`~rock_env.sandbox.confined.ConfinedRoots`: directory fds walked one component at a time,
never following a symlink on the host's behalf. Snapshots are copies under
``<state dir>/snapshots`` restored incrementally (see :mod:`rock_env.sandbox.snapshots`). Limits
use per-sandbox cgroups (v1) where available and rlimits otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

from rock_env.errors import (
    PathOutsideSandbox,
    SandboxClosed,
    SandboxFileNotFound,
    SandboxStartError,
    SnapshotNotFound,
)
from rock_env.sandbox import cgroups, mounts
from rock_env.sandbox.confined import ConfinedRoots, open_root
from rock_env.sandbox.models import DEFAULT_DISK, DEFAULT_PIDS, FileInfo, SandboxConfig
from rock_env.sandbox.runtimes.base import Runtime
from rock_env.sandbox.snapshots import SnapshotStore
from rock_env.sandbox.state import ProcessRef, SandboxRecord, is_sandbox_dir

logger = logging.getLogger(__name__)


class HostDirRuntime(Runtime):
    """Base of runtimes whose writable layer the host reaches directly (local, namespace)."""

    #: True: the writable layer is ``<state dir>/fs`` on the host (a tmpfs mounted there when possible);
    #: False: the runtime mounts its own and opens it in :meth:`_open_roots`
    host_tmpfs: ClassVar[bool] = True

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self.fs = state_dir / "fs"
        self.workspace = self.fs / "workspace"
        self.tmp = self.fs / "tmp"
        self.snapshots = SnapshotStore(self._workspace_fd, state_dir / "snapshots", owner=self.file_owner)
        self._files: ConfinedRoots | None = None
        self._files_lock = threading.Lock()
        self.cgroups: cgroups.CgroupSet | None = None
        self.tmpfs = False
        self._started = False
        self._stopped = False

    # --- record ----------------------------------------------------------------------------

    def _remember(
        self,
        *,
        cgroup_paths: list[str] | None = None,
        mount_points: list[str] | None = None,
        processes: list[ProcessRef] | None = None,
        uid: int | None = None,
    ) -> None:
        record = SandboxRecord.load(self.state_dir) or SandboxRecord(id=self.sandbox_id, runtime=self.name)
        record.cgroups.extend(cgroup_paths or [])
        record.mounts.extend(mount_points or [])
        record.processes.extend(processes or [])
        if uid is not None:
            record.uid = uid
        record.save(self.state_dir)

    # --- lifecycle -------------------------------------------------------------------------

    def _limits(self) -> tuple[int | None, int, int]:
        return (
            self.config.memory_bytes,
            self.config.pids or DEFAULT_PIDS,
            self.config.disk_bytes or DEFAULT_DISK,
        )

    def _prepare(self) -> None:
        """Create the writable layer and the cgroups (recorded before they exist)."""
        memory, pids, disk = self._limits()
        if cgroups.available():
            wanted = ("memory",) * (memory is not None) + ("cpu",) * (self.config.cpus is not None)
            self.cgroups = cgroups.CgroupSet(self.sandbox_id, ("pids", *wanted))
        elif self.config.memory is not None or self.config.pids is not None or self.config.cpus is not None:
            logger.warning(
                "sandbox %s: cgroup v1 is not writable here; memory/pids use rlimits (per process), cpus is ignored",
                self.sandbox_id,
            )
        cgroup_paths = [] if self.cgroups is None else [str(p) for p in self.cgroups.paths.values()]
        if self.host_tmpfs:
            self.fs.mkdir(parents=True, exist_ok=True)
            self._remember(mount_points=[str(self.fs)], cgroup_paths=cgroup_paths)
            self.tmpfs = mounts.mount_tmpfs(self.fs, disk)
            if not self.tmpfs and self.config.disk is not None:
                logger.warning(
                    "sandbox %s: cannot mount a tmpfs (not root?), so disk=%s is enforced per file only (RLIMIT_FSIZE)",
                    self.sandbox_id,
                    self.config.disk,
                )
            self.workspace.mkdir(exist_ok=True)
            self.tmp.mkdir(exist_ok=True)
            os.chmod(self.tmp, 0o1777)
        else:
            self._remember(cgroup_paths=cgroup_paths)
        if self.cgroups is not None:
            try:
                self.cgroups.create(memory=memory, pids=pids, cpus=self.config.cpus)
            except OSError as exc:
                raise SandboxStartError(f"cannot set up cgroups for sandbox {self.sandbox_id}: {exc}") from exc

    def launcher(self, group: str | None = None) -> list[str]:
        """The command prefix of every sandbox process: join the cgroups, or set rlimits without them.

        ``group`` puts the process in that child pids cgroup (see :meth:`CgroupSet.join_argv`).
        """
        if self.cgroups is not None:
            return self.cgroups.join_argv(group)
        memory, _, disk = self._limits()
        return cgroups.rlimit_argv(memory=memory, pids=self.config.pids, disk=disk)

    def _teardown(self) -> None:
        """Kill every process, remove cgroups, unmount and delete the state dir (idempotent)."""
        self._close_files()
        if self.cgroups is not None:
            self.cgroups.remove()
        mounts.unmount_below(self.state_dir)
        if is_sandbox_dir(self.state_dir):
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def oom_kills(self) -> int:
        """OOM kills counted by the memory cgroup."""
        return 0 if self.cgroups is None else self.cgroups.oom_kills()

    # --- paths -----------------------------------------------------------------------------

    def _roots(self) -> list[tuple[str, Path]]:
        return [(self.config.workdir, self.workspace), ("/tmp", self.tmp)]

    def host_path(self, path: str, *, must_exist: bool = False) -> Path:
        """Map an absolute sandbox path to the host, refusing anything that resolves outside.

        Only for runtimes whose writable layer is a host directory (``host_tmpfs``: the local
        runtime's working directory); file operations use :meth:`files` instead.
        """
        for root, host_root in self._roots():
            if path == root or path.startswith(root.rstrip("/") + "/"):
                rel = path[len(root) :].lstrip("/")
                candidate = host_root / rel if rel else host_root
                break
        else:
            raise PathOutsideSandbox(
                f"{path!r} is outside the sandbox's writable directories ({self.config.workdir}, /tmp); "
                "use a path relative to the workdir or under one of them"
            )
        real_root = os.path.realpath(host_root)
        resolved = os.path.realpath(candidate)  # symlinks resolved, a dangling final one too
        if resolved != real_root and not resolved.startswith(real_root + os.sep):
            raise PathOutsideSandbox(f"{path!r} resolves outside the sandbox (through a symlink); refused")
        if must_exist and not os.path.lexists(resolved):
            raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox")
        return Path(resolved)

    # --- files -----------------------------------------------------------------------------

    def _open_roots(self) -> dict[str, int]:
        """Open the writable directories as directory fds: sandbox path -> fd (host directories here)."""
        return {root: open_root("/", str(host_root)) for root, host_root in self._roots()}

    def files(self) -> ConfinedRoots:
        """The confined view of the writable directories (opened on first use, closed on stop)."""
        with self._files_lock:
            if self._files is None:
                if self._stopped:
                    raise SandboxClosed(f"sandbox {self.sandbox_id} was stopped; its files are gone")
                self._files = ConfinedRoots(self._open_roots(), owner=self.file_owner())
            return self._files

    def _close_files(self) -> None:
        with self._files_lock:
            files, self._files = self._files, None
        if files is not None:
            files.close()

    def file_owner(self) -> tuple[int, int] | None:
        """(uid, gid) that files written by the SDK get; ``None``: this process's (the default)."""
        return None

    def _workspace_fd(self) -> int:
        return self.files().root_fd(self.config.workdir)

    def read_file(self, path: str) -> bytes:
        """Read a file of the writable layer."""
        return self.files().read_file(path)

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file, creating parent directories."""
        self.files().write_file(path, data)

    def list_dir(self, path: str) -> list[FileInfo]:
        """List a directory of the writable layer."""
        return self.files().list_dir(path)

    def put_archive(self, dest_dir: str, stream: BinaryIO) -> None:
        """Extract a tar stream into a directory of the writable layer."""
        self.files().extract(dest_dir, stream)

    def get_archive(self, path: str) -> Iterator[bytes]:
        """Stream a tar of a file or directory of the writable layer."""
        return self.files().tar(path, os.path.basename(path.rstrip("/")) or "workspace")

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self, snapshot_id: str) -> int:
        """Copy the workspace to ``snapshots/<id>`` (symlinks kept as links)."""
        return self.snapshots.take(snapshot_id)

    def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to the snapshot, copying only what changed since."""
        if not self.snapshots.exists(snapshot_id):
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id!r} in sandbox {self.sandbox_id}; take one with snapshot()"
            )
        self.snapshots.restore(snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot (idempotent)."""
        self.snapshots.delete(snapshot_id)
