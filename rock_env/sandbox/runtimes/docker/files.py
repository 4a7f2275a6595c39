"""The writable layer of a docker sandbox: its tmpfs, its files and its snapshots.

One tmpfs of ``disk`` bytes, mounted in the state dir and bound into the container, holds every
writable place a program uses for scratch data (:meth:`ContainerFiles._mount_fs`). With it (the
daemon shares this host's mounts), files go through directory fds on it and confined,
symlink-safe resolution (:class:`~rock_env.sandbox.confined.ConfinedRoots`), exactly as on the
namespace and local runtimes. Otherwise: the archive API with the same rules (see
:mod:`.archive`). Snapshots are tars of the workdir kept in the state dir; restore empties the
workdir and has the daemon extract the tar.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rock_env.errors import SandboxClosed, SandboxError, SandboxFileNotFound, SnapshotNotFound
from rock_env.sandbox import mounts
from rock_env.sandbox.confined import ConfinedRoots, open_root
from rock_env.sandbox.files import chunks, reader_of
from rock_env.sandbox.models import FileInfo, SandboxConfig
from rock_env.sandbox.runtimes.base import Runtime
from rock_env.sandbox.runtimes.docker import archive
from rock_env.sandbox.runtimes.docker.engine import errors, is_not_found
from rock_env.sandbox.runtimes.docker.pipe import DockerProcessPipe

logger = logging.getLogger(__name__)


class ContainerFiles(Runtime):
    """The writable-layer half of :class:`~rock_env.sandbox.runtimes.docker.DockerRuntime`: tmpfs, files, snapshots."""

    _stopped: bool

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self.snapshots = state_dir / "snapshots"
        #: the host tmpfs (size = the disk limit) that holds every writable place, if mounted
        self.fs = state_dir / "fs"
        self._tmpfs = False
        #: (path inside, host directory) of the tmpfs bind mounts, longest path first
        self._binds: list[tuple[str, Path]] = []
        #: the file API's roots: the workdir and /tmp (paths elsewhere are refused, as on every runtime)
        self.roots = [config.workdir] if config.workdir == "/tmp" else [config.workdir, "/tmp"]
        self._files: ConfinedRoots | None = None
        self._files_lock = threading.Lock()

    @property
    @abstractmethod
    def api(self) -> Any:
        """The Docker API client."""

    @abstractmethod
    def init_pid(self) -> int | None:
        """Host pid of the container's init, or None if it is not running."""

    @abstractmethod
    def _container(self) -> str:
        """The container's id (SandboxError if it is not running)."""

    @abstractmethod
    def _docker_exec(self, argv: list[str], *, cwd: str, pairs: list[str], stdin: bool) -> DockerProcessPipe:
        """Run ``argv`` in the container with ``docker exec`` (``pairs``: its whole environment)."""

    def _close_files(self) -> None:
        with self._files_lock:
            files, self._files = self._files, None
        if files is not None:
            files.close()

    # --- the tmpfs ---------------------------------------------------------------------------

    def _mount_fs(self) -> None:
        """Mount a tmpfs of ``disk`` bytes in the state dir and plan its binds into the container.

        One tmpfs holds every writable place but the image's own directories: the workdir, ``/tmp``
        and ``/var/tmp`` (one directory, as on the namespace runtime) and ``/dev/shm``, so their
        *total* is capped (overlay2 on ext4 cannot cap a container's disk). ``HOME`` is the workdir.
        Without it (remote daemon, no CAP_SYS_ADMIN) only RLIMIT_FSIZE applies (and /dev/shm is
        Docker's, of at most ``disk``).
        """
        workdir = self.config.workdir
        if not self.fs.is_absolute() or workdir == "/":
            return
        self.fs.mkdir(parents=True, exist_ok=True)
        if not mounts.mount_tmpfs(self.fs, self.workspace_size()):
            if self.config.disk is not None:
                logger.warning(
                    "sandbox %s: cannot mount a tmpfs, so disk=%s caps each file only (RLIMIT_FSIZE), not the total",
                    self.sandbox_id,
                    self.config.disk,
                )
            return
        self._tmpfs = True
        workspace, tmp, shm = self.fs / "workspace", self.fs / "tmp", self.fs / "shm"
        binds = [(workdir, workspace)]
        if workdir != "/tmp":
            binds.append(("/tmp", tmp))
        for inside, host in (("/var/tmp", workspace if workdir == "/tmp" else tmp), ("/dev/shm", shm)):
            if not any(inside == used or inside.startswith(used + "/") for used, _ in binds):
                binds.append((inside, host))
        for host in {host for _, host in binds}:
            host.mkdir()
            if host != workspace:
                os.chmod(host, 0o1777)
        self._binds = sorted(binds, key=lambda item: len(item[0]), reverse=True)

    def workspace_size(self) -> int:
        """Size of the sandbox's tmpfs: ``disk``, but at most half the memory limit.

        tmpfs pages count against the container's memory limit and cannot be reclaimed: a
        workspace as large as the limit would let a full disk OOM-kill every process, including
        any new one, leaving a sandbox nothing can run in. Capped, a full disk is ENOSPC and the
        other half of the memory stays for processes.
        """
        size, capped = self.config.tmpfs_size(mounts=1)
        if capped and self.config.disk is not None:
            logger.warning(
                "sandbox %s: disk=%s is more than half of memory=%s; the workdir and /tmp (a tmpfs, "
                "which counts against the memory limit) get %d bytes",
                self.sandbox_id,
                self.config.disk,
                self.config.memory,
                size,
            )
        return size

    def _unmount_fs(self) -> None:
        if self._tmpfs:
            mounts.unmount(self.fs)
            self._tmpfs = False

    # --- files -----------------------------------------------------------------------------

    def files(self) -> ConfinedRoots | None:
        """The confined view of the workdir and /tmp on the sandbox's tmpfs, or None without the tmpfs."""
        if not self._tmpfs:
            return None
        with self._files_lock:
            if self._files is None:
                if self._stopped:
                    raise SandboxClosed(f"sandbox {self.sandbox_id} was stopped; its files are gone")
                hosts = dict(self._binds)
                fds: dict[str, int] = {}
                try:
                    for root in self.roots:
                        fds[root] = open_root("/", str(hosts[root]))
                except BaseException:
                    for fd in fds.values():
                        os.close(fd)
                    raise
                self._files = ConfinedRoots(fds, owner=self._file_owner())
            return self._files

    def _file_owner(self) -> tuple[int, int] | None:
        """(uid, gid) on the host of root in the container (a daemon with userns-remap), else None."""
        pid = self.init_pid()
        if pid is None:
            return None
        ids = []
        for name in ("uid_map", "gid_map"):
            try:
                first = Path(f"/proc/{pid}/{name}").read_text().split()
                ids.append(int(first[1]) if first and first[0] == "0" else 0)
            except (OSError, ValueError, IndexError):
                return None
        return None if ids == [0, 0] else (ids[0], ids[1])

    def _resolver(self) -> archive.ApiPathResolver:
        return archive.ApiPathResolver(self._head_stat, self.roots)

    def _head_stat(self, path: str) -> dict[str, Any] | None:
        """The daemon's stat of a container path (HEAD of the archive endpoint), None if it does not exist."""
        api = self.api
        response = api.head(api._url("/containers/{0}/archive", self._container()), params={"path": path})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return archive.stat_header(response) or {}

    def _make_dirs(self, path: str) -> None:
        """Create ``path`` and its missing parents with a small tar at the nearest existing ancestor."""
        missing: list[str] = []
        current = path
        while current not in {"", "/"} and self._head_stat(current) is None:
            missing.append(posixpath.basename(current))
            current = posixpath.dirname(current)
        if not missing:
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            name = ""
            for part in reversed(missing):
                name = posixpath.join(name, part) if name else part
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = int(time.time())
                tar.addfile(info)
        self.api.put_archive(self._container(), current or "/", buffer.getvalue())

    def put_archive(self, dest_dir: str, stream: BinaryIO) -> None:
        """Extract a tar stream into ``dest_dir`` (created if missing).

        Members with absolute names or ``..``, symlinks or hard links pointing out, devices,
        fifos and other special files are refused with PathOutsideSandbox, as on every runtime.
        """
        files = self.files()
        if files is not None:
            files.extract(dest_dir, stream)
            return
        target = self._resolver().resolve(dest_dir)
        checked = archive.checked_tar(stream, str(self.state_dir) if self.state_dir.is_dir() else None)
        try:
            if self._head_stat(target) is None:
                self._make_dirs(target)
            self.api.put_archive(self._container(), target, chunks(checked))
        except errors().APIError as exc:
            if is_not_found(exc):
                raise SandboxFileNotFound(f"{dest_dir!r} does not exist in the sandbox") from exc
            raise SandboxFileNotFound(f"cannot write into {dest_dir!r}: {exc.explanation or exc}") from exc
        finally:
            checked.close()

    def get_archive(self, path: str) -> Iterator[bytes]:
        """Stream a tar of ``path`` (its basename is the top member; special files are left out)."""
        top = posixpath.basename(path.rstrip("/")) or "workspace"
        files = self.files()
        if files is not None:
            return files.tar(path, top)
        target = self._resolver().resolve(path)
        try:
            stream, _stat = self.api.get_archive(self._container(), target, chunk_size=1 << 16)
        except errors().APIError as exc:
            if is_not_found(exc):
                raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox") from exc
            raise SandboxError(f"cannot read {path!r}: {exc.explanation or exc}") from exc
        return archive.renamed_tar(iter(stream), top)

    def read_file(self, path: str) -> bytes:
        """The content of a regular file of the workdir or /tmp."""
        files = self.files()
        if files is not None:
            return files.read_file(path)
        with tarfile.open(fileobj=reader_of(self.get_archive(path)), mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    kind = "a directory" if member.isdir() else "not a regular file"
                    raise SandboxFileNotFound(f"{path!r} is {kind}; read_file reads regular files")
                extracted = tar.extractfile(member)
                return b"" if extracted is None else extracted.read()
        raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox")

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file of the workdir or /tmp (parents created)."""
        files = self.files()
        if files is not None:
            files.write_file(path, data)
            return
        target = self._resolver().resolve(path)
        if target in self.roots:
            raise SandboxFileNotFound(f"{path!r} is a directory; give a file path")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(target))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        self.put_archive(posixpath.dirname(target), buffer)

    def list_dir(self, path: str) -> list[FileInfo]:
        """List a directory of the workdir or /tmp (sorted by name); symlinks are listed, not followed."""
        files = self.files()
        if files is not None:
            return files.list_dir(path)
        return self._list_dir_exec(path, self._resolver().resolve(path))

    def _list_dir_exec(self, path: str, target: str) -> list[FileInfo]:
        script = 'cd -- "$1" 2>/dev/null || exit 3; find . -mindepth 1 -maxdepth 1 -printf "%f\\0%y\\0%s\\0%m\\0%T@\\0"'
        pipe = self._docker_exec(["/bin/sh", "-c", script, "sh", target], cwd="/", pairs=[], stdin=False)
        data = bytearray()
        while chunk := pipe.read(60):
            data += chunk
        code = pipe.wait(10)
        pipe.close()
        if code != 0:
            raise SandboxFileNotFound(f"{path!r} is not a directory in the sandbox")
        fields = bytes(data).split(b"\0")
        kinds = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK}
        out = []
        for i in range(0, len(fields) - 4, 5):
            name = fields[i].decode(errors="replace")
            mode = kinds.get(fields[i + 1].decode(), 0) | int(fields[i + 3] or b"0", 8)
            out.append(_file_info(path, name, mode, int(fields[i + 2] or 0), float(fields[i + 4] or 0)))
        return sorted(out, key=lambda f: f.name)

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self, snapshot_id: str) -> int:
        """Save a tar of the workdir to the state dir; return its size in bytes."""
        self.snapshots.mkdir(parents=True, exist_ok=True)
        target = self.snapshots / f"{snapshot_id}.tar"
        partial = target.with_suffix(".partial")
        size = 0
        with open(partial, "wb") as fh:
            for chunk in self.get_archive(self.config.workdir):
                fh.write(chunk)
                size += len(chunk)
        partial.replace(target)
        return size

    def _clear_workdir(self) -> None:
        workdir = self.config.workdir
        files = self.files()
        if files is None:
            pipe = self._docker_exec(
                ["find", workdir, "-mindepth", "1", "-delete"], cwd="/", pairs=["PATH=/usr/bin:/bin"], stdin=False
            )
            while pipe.read(60):
                pass
            pipe.wait(30)
            pipe.close()
            return
        fd = files.root_fd(workdir)
        for name in os.listdir(fd):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)

    def restore(self, snapshot_id: str) -> None:
        """Empty the workdir and extract the snapshot's tar into it (the daemon extracts it: the tar is ours)."""
        source = self.snapshots / f"{snapshot_id}.tar"
        if not source.is_file():
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id!r} in sandbox {self.sandbox_id}; take one with snapshot()"
            )
        self._clear_workdir()
        parent = posixpath.dirname(self.config.workdir.rstrip("/")) or "/"
        with open(source, "rb") as fh:
            self.api.put_archive(self._container(), parent, chunks(fh))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot's tar (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            (self.snapshots / f"{snapshot_id}.tar").unlink()


def _file_info(parent: str, name: str, mode: int, size: int, mtime: float) -> FileInfo:
    if stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    return FileInfo(
        name=name,
        path=parent.rstrip("/") + "/" + name,
        type=kind,  # type: ignore[arg-type]
        size=size,
        mode=stat.S_IMODE(mode),
        mtime=mtime,
    )


__all__ = ["ContainerFiles"]
