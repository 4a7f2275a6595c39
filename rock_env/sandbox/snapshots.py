"""Workspace snapshots for host-directory runtimes: full copies, restored incrementally.

``take`` copies the workspace into the snapshot directory and records a manifest of the
workspace: for each entry its inode and ``ctime``. The ctime of a file changes on every
write, chmod, rename or link and cannot be set by the sandbox, so on ``restore`` an entry
whose (inode, ctime) is unchanged since the manifest is known to be identical and is kept;
everything else is deleted and copied back from the snapshot. A restore after an agent
touched a few files costs one ``lstat`` per entry plus the changed files, not a full copy.
Restoring a snapshot other than the last one taken/restored copies it in full.

The workspace is reached through a directory fd (see :mod:`rock_env.sandbox.confined`) and
walked one component at a time with ``O_NOFOLLOW``: a symlink the sandbox plants (or swaps in
while a copy runs) is copied as a link and never followed on the host.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from rock_env.sandbox.confined import open_dir_at
from rock_env.sandbox.fsuser import creating_as

#: relative path -> (inode, ctime_ns, file type bits)
Manifest = dict[str, tuple[int, int, int]]


def _copy_file(src_dir: int, name: str, dst_dir: int, st: os.stat_result, owner: tuple[int, int] | None) -> None:
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
    except FileNotFoundError:
        return  # removed while we copied
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with creating_as(owner):
            dst = os.open(name, flags, 0o600, dir_fd=dst_dir)
        try:
            while os.sendfile(dst, src, None, 1 << 30) > 0:
                pass
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_entry(src_dir: int, name: str, dst_dir: int, st: os.stat_result, owner: tuple[int, int] | None) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        target = os.readlink(name, dir_fd=src_dir)
        with creating_as(owner):
            os.symlink(target, name, dir_fd=dst_dir)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)
    elif stat.S_ISDIR(mode):
        with creating_as(owner):
            os.mkdir(name, 0o700, dir_fd=dst_dir)
        src = open_dir_at(src_dir, name)
        try:
            dst = open_dir_at(dst_dir, name)
            try:
                copy_tree_into(src, dst, owner)
                os.fchmod(dst, stat.S_IMODE(mode))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
    elif stat.S_ISREG(mode):
        _copy_file(src_dir, name, dst_dir, st, owner)
    # sockets, fifos, devices are not part of a snapshot


def copy_tree_into(src_dir: int, dst_dir: int, owner: tuple[int, int] | None = None) -> None:
    """Copy the entries of the directory fd ``src_dir`` into the directory fd ``dst_dir`` (links kept).

    New entries are created as ``owner`` (see :func:`~rock_env.sandbox.fsuser.creating_as`).
    """
    with os.scandir(src_dir) as entries:
        listed = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
    for name, st in listed:
        _copy_entry(src_dir, name, dst_dir, st, owner)


def _remove(dir_fd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def manifest_of(root: int) -> Manifest:
    """(inode, ctime, type) of every entry below the directory fd ``root``."""
    out: Manifest = {}
    stack: list[tuple[str, int]] = [("", os.dup(root))]
    while stack:
        rel, fd = stack.pop()
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    key = f"{rel}/{entry.name}" if rel else entry.name
                    out[key] = (st.st_ino, st.st_ctime_ns, stat.S_IFMT(st.st_mode))
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((key, open_dir_at(fd, entry.name)))
        finally:
            os.close(fd)
    return out


class SnapshotStore:
    """Snapshots of one workspace (a directory fd given by ``workspace``), kept under ``store``."""

    def __init__(
        self, workspace: Callable[[], int], store: Path, owner: Callable[[], tuple[int, int] | None] = lambda: None
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.owner = owner
        self._baseline: tuple[str, Manifest] | None = None

    def path(self, snapshot_id: str) -> Path:
        """Directory of a snapshot."""
        return self.store / snapshot_id

    def exists(self, snapshot_id: str) -> bool:
        """True if the snapshot was taken."""
        return self.path(snapshot_id).is_dir()

    def take(self, snapshot_id: str) -> int:
        """Copy the workspace into a new snapshot; return its size in bytes."""
        target = self.path(snapshot_id)
        self.store.mkdir(parents=True, exist_ok=True)
        target.mkdir()
        root = self.workspace()
        dst = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            copy_tree_into(root, dst)
        finally:
            os.close(dst)
        self._baseline = (snapshot_id, manifest_of(root))
        size = 0
        for dirpath, _, files in os.walk(target):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
        return size

    def restore(self, snapshot_id: str) -> None:
        """Make the workspace equal to the snapshot (incrementally when it is the baseline)."""
        root = self.workspace()
        source = os.open(self.path(snapshot_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if self._baseline is None or self._baseline[0] != snapshot_id:
                with os.scandir(root) as entries:
                    listed = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
                for name, st in listed:
                    _remove(root, name, st)
                copy_tree_into(source, root, self.owner())
            else:
                self._restore_changed(source, root, self._baseline[1])
        finally:
            os.close(source)
        self._baseline = (snapshot_id, manifest_of(root))

    def _restore_changed(self, source: int, root: int, manifest: Manifest) -> None:
        stack: list[tuple[str, int, int]] = [("", os.dup(root), os.dup(source))]
        while stack:
            rel, here, snap_dir = stack.pop()
            try:
                present: set[str] = set()
                with os.scandir(here) as entries:
                    listed = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
                for name, st in listed:
                    key = f"{rel}/{name}" if rel else name
                    known = manifest.get(key)
                    if known is not None and known[2] == stat.S_IFMT(st.st_mode):
                        if stat.S_ISDIR(st.st_mode):
                            present.add(name)
                            sub = open_dir_at(here, name)
                            stack.append((key, sub, open_dir_at(snap_dir, name)))
                            if known[:2] != (st.st_ino, st.st_ctime_ns):  # chmod or entries changed
                                snap = os.stat(name, dir_fd=snap_dir, follow_symlinks=False)
                                os.fchmod(sub, stat.S_IMODE(snap.st_mode))
                            continue
                        if known[:2] == (st.st_ino, st.st_ctime_ns):
                            present.add(name)
                            continue
                    _remove(here, name, st)
                with os.scandir(snap_dir) as entries:
                    missing = [(e.name, e.stat(follow_symlinks=False)) for e in entries if e.name not in present]
                for name, st in missing:
                    _copy_entry(snap_dir, name, here, st, self.owner())
            finally:
                os.close(here)
                os.close(snap_dir)

    def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot (idempotent)."""
        if self._baseline is not None and self._baseline[0] == snapshot_id:
            self._baseline = None
        shutil.rmtree(self.path(snapshot_id), ignore_errors=True)
