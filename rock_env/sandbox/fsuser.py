"""Create files in a sandbox as the sandbox's own user: the per-thread file-system uid (``setfsuid``).

A namespace sandbox's writable places are tmpfs mounts owned by its user namespace, in which
only the sandbox's host uid is mapped: the host's root cannot create an inode there (the kernel
answers EOVERFLOW, an owner it cannot represent), and should not, since root inside must own
what the SDK writes for it. :func:`creating_as` switches the calling *thread's* file-system uid
and gid (a per-thread credential; other threads keep theirs) around the system calls that create
entries (``mkdir``, ``open(O_CREAT)``, ``symlink``, ``link``), so new entries belong to the
sandbox's uid. Reading, listing, removing and ``chmod`` stay with the caller's credentials.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from functools import cache


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


_state = threading.local()


@contextlib.contextmanager
def creating_as(owner: tuple[int, int] | None) -> Iterator[None]:
    """Within the block, entries this thread creates belong to ``owner`` (uid, gid); ``None``: no change."""
    if owner is None or getattr(_state, "owner", None) == owner:
        yield
        return
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    # gid first: with the fs uid switched away from root, changing the fs gid needs no privilege either way
    libc.setfsgid(owner[1])
    libc.setfsuid(owner[0])
    _state.owner = owner
    try:
        yield
    finally:
        _state.owner = None
        libc.setfsuid(uid)
        libc.setfsgid(gid)


__all__ = ["creating_as"]
