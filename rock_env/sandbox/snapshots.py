"""Workspace snapshots for host-directory runtimes: full copies, restored incrementally.

``take`` copies the workspace into the snapshot directory and records a manifest of the
workspace: for each entry its inode and ``ctime``. The ctime of a file changes on every
write, chmod, rename or link and cannot be set by the sandbox, so on ``restore`` an entry
whose (inode, ctime) is unchanged since the manifest is known to be identical and is kept;
everything else is deleted and copied back from the snapshot. A restore after an agent
touched a few files costs one ``lstat`` per entry plus the changed files, not a full copy.
Restoring a snapshot other than the last one taken/restored copies it in full.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

#: relative path -> (inode, ctime_ns, file type bits)
Manifest = dict[str, tuple[int, int, int]]


def _copy_entry(src: str, dst: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
        return
    if stat.S_ISDIR(mode):
        os.mkdir(dst)
        copy_tree_into(src, dst)
    elif stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:
        return  # sockets, fifos, devices are not part of a snapshot
    os.chmod(dst, stat.S_IMODE(mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree_into(src: str, dst: str) -> None:
    """Copy the entries of directory ``src`` into the existing directory ``dst`` (links kept)."""
    with os.scandir(src) as entries:
        for entry in entries:
            _copy_entry(entry.path, os.path.join(dst, entry.name), entry.stat(follow_symlinks=False))


def _remove(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def manifest_of(root: str) -> Manifest:
    """(inode, ctime, type) of every entry below ``root``."""
    out: Manifest = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                key = f"{rel}/{entry.name}" if rel else entry.name
                out[key] = (st.st_ino, st.st_ctime_ns, stat.S_IFMT(st.st_mode))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(key)
    return out


class SnapshotStore:
    """Snapshots of one workspace directory, kept under ``store``."""

    def __init__(self, workspace: Path, store: Path) -> None:
        self.workspace = workspace
        self.store = store
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
        copy_tree_into(str(self.workspace), str(target))
        self._baseline = (snapshot_id, manifest_of(str(self.workspace)))
        size = 0
        for dirpath, _, files in os.walk(target):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    size += st.st_size
        return size

    def restore(self, snapshot_id: str) -> None:
        """Make the workspace equal to the snapshot (incrementally when it is the baseline)."""
        source = str(self.path(snapshot_id))
        root = str(self.workspace)
        if self._baseline is None or self._baseline[0] != snapshot_id:
            with os.scandir(root) as entries:
                for entry in entries:
                    _remove(entry.path, entry.stat(follow_symlinks=False))
            copy_tree_into(source, root)
        else:
            self._restore_changed(source, root, self._baseline[1])
        self._baseline = (snapshot_id, manifest_of(root))

    def _restore_changed(self, source: str, root: str, manifest: Manifest) -> None:
        stack = [""]
        while stack:
            rel = stack.pop()
            here = os.path.join(root, rel) if rel else root
            present: set[str] = set()
            with os.scandir(here) as entries:
                for entry in entries:
                    key = f"{rel}/{entry.name}" if rel else entry.name
                    st = entry.stat(follow_symlinks=False)
                    known = manifest.get(key)
                    if known is not None and known[2] == stat.S_IFMT(st.st_mode):
                        if stat.S_ISDIR(st.st_mode):
                            present.add(entry.name)
                            stack.append(key)
                            if known[:2] != (st.st_ino, st.st_ctime_ns):  # chmod or entries changed
                                snap = os.lstat(os.path.join(source, key))
                                os.chmod(entry.path, stat.S_IMODE(snap.st_mode))
                            continue
                        if known[:2] == (st.st_ino, st.st_ctime_ns):
                            present.add(entry.name)
                            continue
                    _remove(entry.path, st)
            snap_dir = os.path.join(source, rel) if rel else source
            with os.scandir(snap_dir) as entries:
                for entry in entries:
                    if entry.name not in present:
                        _copy_entry(entry.path, os.path.join(here, entry.name), entry.stat(follow_symlinks=False))

    def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot (idempotent)."""
        if self._baseline is not None and self._baseline[0] == snapshot_id:
            self._baseline = None
        shutil.rmtree(self.path(snapshot_id), ignore_errors=True)
