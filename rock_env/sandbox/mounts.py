"""Size-limited tmpfs mounts for sandbox workspaces (mount(2)/umount2(2) through libc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

MNT_DETACH = 2
MS_NOSUID = 2
MS_NODEV = 4


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount_tmpfs(path: Path, size: int) -> bool:
    """Mount a tmpfs of at most ``size`` bytes on ``path``; False (and a debug log) if not permitted."""
    options = f"size={size},mode=0755".encode()
    rc = _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options)
    if rc != 0:
        logger.debug("tmpfs mount on %s failed: %s", path, os.strerror(ctypes.get_errno()))
        return False
    return True


def unmount(path: Path | str) -> bool:
    """Lazily unmount ``path`` (MNT_DETACH); True if something was unmounted."""
    return int(_libc().umount2(str(path).encode(), MNT_DETACH)) == 0


def mounted_below(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(root).rstrip("/")
    out: list[str] = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    out.append(point)
    except OSError:
        return out
    return sorted(out, key=len, reverse=True)


def unmount_below(root: Path) -> list[str]:
    """Lazily unmount everything at or below ``root`` (deepest first); the mount points that were unmounted."""
    return [point for point in mounted_below(root) if unmount(point)]
