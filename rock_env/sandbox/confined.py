"""Confined file access: the host reaches a sandbox's writable directories through directory fds only.

A sandbox's writable directories (``/workspace``, ``/tmp``) are open directory file descriptors
on the host: for the namespace runtime the roots of tmpfs mounts that exist only in the
sandbox's mount namespace (reached once through ``/proc/<pid>/root``), for the local runtime
host directories. Every path is resolved one component at a time with ``openat`` and
``O_NOFOLLOW`` from one of these roots, so the kernel never follows a symlink on the host's
behalf (a symlink's absolute target would otherwise be resolved against the *host's* root).
Symlinks are expanded here, as the sandbox would see them (absolute targets from the sandbox's
root, ``..`` textually), and a path that leaves the writable directories is refused with
:class:`~rock_env.errors.PathOutsideSandbox`. Special files (fifos, devices, sockets) are never
opened, so a sandbox cannot make the host block on a fifo.

This module offers the primitives (:class:`ConfinedRoots`, :meth:`ConfinedRoots.at`) and the
file operations built on them: read, write, list, tar extraction and tar streams.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

from rock_env.errors import PathOutsideSandbox, SandboxError, SandboxFileNotFound
from rock_env.sandbox.files import CHUNK, check_member, threaded_tar
from rock_env.sandbox.fsuser import creating_as
from rock_env.sandbox.models import FileInfo

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: symlinks followed while resolving one path (the kernel's limit)
MAX_LINKS = 40


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def open_dir_at(dir_fd: int, name: str) -> int:
    """Open the directory ``name`` in ``dir_fd`` without following a symlink (raises OSError)."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def open_root(base: str, path: str) -> int:
    """Open the directory ``path`` below the trusted ``base`` one component at a time, no symlinks."""
    fd = os.open(base, DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in _parts(path):
            nxt = open_dir_at(fd, part)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


class ConfinedRoots:
    """The writable directories of one sandbox as open directory fds, and path resolution within them.

    ``roots`` maps an absolute sandbox path (e.g. ``/workspace``) to an open directory fd; the
    object owns the fds and closes them in :meth:`close`. Writes (files, directories, tar members)
    create entries as ``owner`` (uid, gid; see :func:`~rock_env.sandbox.fsuser.creating_as`): a
    namespace sandbox's root is an unprivileged host uid that owns its writable places, and with
    its permissions; ``None`` writes with this process's.
    """

    def __init__(self, roots: dict[str, int], owner: tuple[int, int] | None = None) -> None:
        self._roots = {tuple(_parts(path)): fd for path, fd in roots.items()}
        self._names = ", ".join(sorted(roots))
        self.owner = owner

    def close(self) -> None:
        """Close the root fds (idempotent)."""
        roots, self._roots = self._roots, {}
        for fd in roots.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def root_fd(self, path: str) -> int:
        """The fd of the root directory ``path`` (one of the roots given)."""
        try:
            return self._roots[tuple(_parts(path))]
        except KeyError:
            raise PathOutsideSandbox(f"{path!r} is not one of the sandbox's writable directories") from None

    def _outside(self, path: str) -> PathOutsideSandbox:
        return PathOutsideSandbox(
            f"{path!r} is outside the sandbox's writable directories ({self._names}); "
            "use a path relative to the workdir or under one of them"
        )

    @contextlib.contextmanager
    def at(self, path: str, *, follow: bool = True, create: bool = False) -> Iterator[tuple[int, str]]:
        """Resolve ``path`` to ``(fd of its parent directory, last component)`` inside the roots.

        The last component is ``"."`` when ``path`` is a root itself. Symlinks in the middle are
        followed (refused if they lead out), the last one only with ``follow``. With ``create``,
        missing parent directories are created. The fds are closed when the block ends.
        """
        if not self._roots:
            raise SandboxError("the sandbox's file system is closed (the sandbox was stopped)")
        todo = _parts(path)
        comps: list[str] = []
        fds: list[int | None] = []  # one per component; None for a directory above the roots ("/")
        owned: list[int] = []
        links = 0
        try:
            while todo:
                part = todo.pop(0)
                if part == "..":
                    if comps:
                        comps.pop()
                        fds.pop()
                    continue
                last = not todo
                new = (*comps, part)
                root = self._roots.get(new)
                if root is not None:
                    comps.append(part)
                    fds.append(root)
                    continue
                parent = fds[-1] if fds else None
                if parent is None:
                    if any(r[: len(new)] == new for r in self._roots):
                        comps.append(part)
                        fds.append(None)
                        continue
                    raise self._outside(path)
                try:
                    st = os.stat(part, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode) and (follow or not last):
                    links += 1
                    if links > MAX_LINKS:
                        raise SandboxFileNotFound(f"{path!r}: too many levels of symbolic links")
                    target = os.readlink(part, dir_fd=parent)
                    if target.startswith("/"):
                        comps, fds = [], []
                    todo = _parts(target) + todo
                    continue
                if last:
                    yield parent, part
                    return
                if st is None:
                    if not create:
                        raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox")
                    _mkdir(part, parent, 0o777, self.owner)
                elif not stat.S_ISDIR(st.st_mode):
                    raise SandboxFileNotFound(f"{path!r}: {'/' + '/'.join(new)} is not a directory")
                try:
                    fd = open_dir_at(parent, part)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a link while we looked
                        raise PathOutsideSandbox(f"{path!r} changed while it was resolved; try again") from exc
                    raise SandboxFileNotFound(f"{path!r}: cannot open {'/' + '/'.join(new)}: {exc.strerror}") from exc
                owned.append(fd)
                comps.append(part)
                fds.append(fd)
            top = fds[-1] if fds else None
            if top is None:
                raise self._outside(path)
            yield top, "."
        finally:
            for fd in owned:
                os.close(fd)

    # --- files -----------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        """The content of a regular file."""
        with self.at(path) as (parent, name):
            fd = _open_existing(parent, name, os.O_RDONLY, path)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise SandboxFileNotFound(f"{path!r} is a directory, not a file; use list_dir or download")
            if not stat.S_ISREG(st.st_mode):
                raise SandboxFileNotFound(f"{path!r} is not a regular file (a fifo, socket or device)")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write_file(self, path: str, data: bytes) -> None:
        """Write a regular file, creating parent directories."""
        with self.at(path, create=True) as (parent, name):
            if name == ".":
                raise SandboxFileNotFound(f"{path!r} is a directory; give a file path")
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                with creating_as(self.owner):
                    fd = os.open(name, flags, 0o666, dir_fd=parent)
            except IsADirectoryError:
                raise SandboxFileNotFound(f"{path!r} is a directory; give a file path") from None
            except OSError as exc:
                raise _open_error(exc, path, "written", "write") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SandboxFileNotFound(f"{path!r} is not a regular file (a fifo, socket or device)")
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def list_dir(self, path: str) -> list[FileInfo]:
        """The entries of a directory, sorted by name."""
        with self.at(path) as (parent, name):
            try:
                fd = open_dir_at(parent, name)
            except FileNotFoundError:
                raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox") from None
            except OSError:
                raise SandboxFileNotFound(f"{path!r} is not a directory") from None
        out = []
        try:
            with os.scandir(fd) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    out.append(
                        FileInfo(
                            name=entry.name,
                            path=path.rstrip("/") + "/" + entry.name,
                            type=_kind(st.st_mode),  # type: ignore[arg-type]
                            size=st.st_size,
                            mode=stat.S_IMODE(st.st_mode),
                            mtime=st.st_mtime,
                        )
                    )
        finally:
            os.close(fd)
        return out

    # --- tar streams -----------------------------------------------------------------------

    def extract(self, dest_dir: str, stream: BinaryIO) -> None:
        """Extract a tar stream into ``dest_dir`` (created); members are checked and never go through links."""
        with self.at(dest_dir, create=True) as (parent, name):
            if name != ".":
                _mkdir(name, parent, 0o777, self.owner)
            try:
                dest = open_dir_at(parent, name)
            except OSError as exc:
                raise SandboxFileNotFound(f"{dest_dir!r} is not a directory in the sandbox") from exc
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    check_member(member)
                    _extract_member(tar, member, dest, self.owner)
        finally:
            os.close(dest)

    def tar(self, path: str, arcname: str) -> Iterator[bytes]:
        """Yield a tar of the file or directory ``path`` (symlinks kept as links) in chunks."""
        with self.at(path) as (parent, name):
            try:
                os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox") from None
            # keep the parent open for the producer thread: dup it out of the resolver's hands
            top = open_dir_at(parent, ".")
        return _tar_chunks(top, name, arcname)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _open_existing(parent: int, name: str, flags: int, path: str) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    except FileNotFoundError:
        raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox") from None
    except OSError as exc:
        raise _open_error(exc, path, "opened", "open") from exc


def _open_error(exc: OSError, path: str, done: str, verb: str) -> PathOutsideSandbox | SandboxFileNotFound:
    """The error for a failed open of ``path``: a symlink swapped in on the way (ELOOP) is an escape attempt."""
    if exc.errno == errno.ELOOP:
        return PathOutsideSandbox(f"{path!r} changed to a symlink while it was {done}; refused")
    return SandboxFileNotFound(f"cannot {verb} {path!r}: {exc.strerror}")


def _mkdir(name: str, parent: int, mode: int, owner: tuple[int, int] | None) -> None:
    """mkdir ``name`` in ``parent`` (as ``owner``) unless it exists."""
    with contextlib.suppress(FileExistsError), creating_as(owner):
        os.mkdir(name, mode, dir_fd=parent)


def _member_parent(dest: int, parts: list[str], owned: list[int], owner: tuple[int, int] | None) -> int:
    """The directory fd for the parent of a member (directories created as ``owner``, links refused)."""
    fd = dest
    for part in parts:
        _mkdir(part, fd, 0o755, owner)
        try:
            fd = open_dir_at(fd, part)
        except OSError as exc:
            raise PathOutsideSandbox(f"tar member path goes through {part!r}, which is not a directory") from exc
        owned.append(fd)
    return fd


def _remove_existing(parent: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise SandboxFileNotFound(f"cannot replace the directory {name!r} with a file")
    os.unlink(name, dir_fd=parent)


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, dest: int, owner: tuple[int, int] | None = None
) -> None:
    """Extract one checked member below the directory fd ``dest``, creating entries as ``owner``."""
    parts = _parts(member.name)
    if not parts:
        return
    owned: list[int] = []
    try:
        parent = _member_parent(dest, parts[:-1], owned, owner)
        name = parts[-1]
        mtime = int(member.mtime * 1e9)
        if member.isdir():
            _mkdir(name, parent, 0o755, owner)
            fd = open_dir_at(parent, name)
            try:
                os.fchmod(fd, (member.mode & 0o755) | 0o700)
            finally:
                os.close(fd)
        elif member.isfile():
            _remove_existing(parent, name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with creating_as(owner):
                fd = os.open(name, flags, 0o600, dir_fd=parent)
            try:
                source = tar.extractfile(member)
                if source is not None:
                    while chunk := source.read(CHUNK):
                        os.write(fd, chunk)
                os.fchmod(fd, (member.mode & 0o755) | 0o600)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
            return
        elif member.issym():
            _remove_existing(parent, name)
            with creating_as(owner):
                os.symlink(member.linkname, name, dir_fd=parent)
        elif member.islnk():
            target = _parts(member.linkname)
            source_parent = _member_parent(dest, target[:-1], owned, owner) if target else dest
            _remove_existing(parent, name)
            with creating_as(owner):
                os.link(target[-1], name, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False)
        else:  # check_member refused everything else
            raise PathOutsideSandbox(f"tar member {member.name!r} has an unsupported type")
        os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
    finally:
        for fd in owned:
            os.close(fd)


def _add_member(tar: tarfile.TarFile, parent: int, name: str, arcname: str, cancelled: threading.Event) -> None:
    """Add one entry (and for a directory its tree) to ``tar``, opening nothing through a link."""
    if cancelled.is_set():
        return
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=parent)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as fh:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return
            info.size = now.st_size
            tar.addfile(info, fh)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        fd = open_dir_at(parent, name)
        try:
            for child in sorted(os.listdir(fd)):
                _add_member(tar, fd, child, f"{arcname}/{child}", cancelled)
        finally:
            os.close(fd)
    # fifos, sockets and devices are left out


def _tar_chunks(parent: int, name: str, arcname: str) -> Iterator[bytes]:
    """The tar stream of ``name`` in the directory ``parent`` (closed at the end), made in a thread."""
    return threaded_tar(
        lambda tar, cancelled: _add_member(tar, parent, name, arcname, cancelled), cleanup=lambda: os.close(parent)
    )
