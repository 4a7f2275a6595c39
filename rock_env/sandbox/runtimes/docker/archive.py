"""Files through the Docker archive API, for a daemon that cannot see this process's mounts.

When the daemon shares this host's mounts, the runtime reaches the sandbox's writable
directories on its own tmpfs with :class:`~rock_env.sandbox.confined.ConfinedRoots`. Otherwise
(a remote daemon, or rock-env in a container given the host's Docker socket) files go through
the archive API, with the same rules as every other runtime:

- a path must lie in the workdir or ``/tmp`` (:func:`check_inside`); symlinks on the way are
  resolved as the container sees them (:class:`ApiPathResolver`, one ``HEAD`` of the archive
  endpoint per component) and a path that leads out is refused with
  :class:`~rock_env.errors.PathOutsideSandbox`;
- a tar written into the sandbox is checked member by member (:func:`checked_tar`,
  :func:`rock_env.sandbox.files.check_member`) *before* anything is sent: the daemon extracts
  archives with every capability, so a device member would become a real device node;
- a tar read from the sandbox keeps regular files, directories and links (fifos, sockets and
  devices are left out, as the host-side tar of the other runtimes does) and names its top member
  after the path asked for (:func:`renamed_tar`).
"""

from __future__ import annotations

import base64
import json
import posixpath
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from rock_env.errors import PathOutsideSandbox, SandboxFileNotFound
from rock_env.sandbox.files import check_member, reader_of, threaded_tar

#: symlinks followed while resolving one path (the kernel's limit)
MAX_LINKS = 40
#: bytes of a checked archive kept in memory before it spills to a file in the state dir
SPOOL_MEMORY = 8 << 20
_GO_SYMLINK = 1 << 27  # os.ModeSymlink of the Go FileMode in the daemon's stat header


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _under(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def outside_error(path: str, roots: list[str]) -> PathOutsideSandbox:
    """The error for a path outside the writable directories ``roots``, naming the fix."""
    return PathOutsideSandbox(
        f"{path!r} is outside the sandbox's writable directories ({', '.join(roots)}); "
        "use a path relative to the workdir or under one of them"
    )


def check_inside(path: str, roots: list[str]) -> str:
    """``path`` normalised (``..`` applied textually), if it lies in one of ``roots``; else PathOutsideSandbox."""
    normal = "/" + "/".join(_parts(posixpath.normpath("/" + path.lstrip("/"))))
    if not any(_under(normal, root) for root in roots):
        raise outside_error(path, roots)
    return normal


class ApiPathResolver:
    """Resolves sandbox paths as the container sees them, through the archive API's stat (``HEAD``).

    ``stat(path)`` returns the daemon's stat of a container path (``linkTarget``: the fully
    resolved target of a final symlink) or None if it does not exist.
    """

    def __init__(self, stat: Callable[[str], dict[str, Any] | None], roots: list[str]) -> None:
        self._stat = stat
        self.roots = roots

    def resolve(self, path: str, *, follow: bool = True) -> str:
        """The path with every symlink on the way resolved (the last one only with ``follow``).

        Raises PathOutsideSandbox if the path, or a symlink on the way, leads out of the roots.
        Components that do not exist are kept as given (a file about to be written).
        """
        check_inside(path, self.roots)
        done: list[str] = []
        todo = _parts(path)
        links = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/" + "/".join([*done, part])
            info = self._stat(current)
            if info is None:  # missing: nothing below it can be a link
                done.append(part)
                for rest in todo:
                    if rest != "..":
                        done.append(rest)
                    elif done:
                        done.pop()
                break
            target = info.get("linkTarget") or ""
            is_link = bool(int(info.get("mode") or 0) & _GO_SYMLINK)
            if is_link and target and (todo or follow):
                links += 1
                if links > MAX_LINKS:
                    raise SandboxFileNotFound(f"{path!r}: too many levels of symbolic links")
                if not any(_under(target, root) for root in self.roots):
                    raise PathOutsideSandbox(
                        f"{path!r} leads out of the sandbox's writable directories through the symlink "
                        f"{current!r} -> {target!r}; refused (use the link's target inside the sandbox instead)"
                    )
                done = _parts(target)
                continue
            done.append(part)
        return check_inside("/" + "/".join(done), self.roots)


def stat_header(response: Any) -> dict[str, Any] | None:
    """The decoded ``X-Docker-Container-Path-Stat`` header of an archive response (None if absent)."""
    raw = response.headers.get("X-Docker-Container-Path-Stat")
    if not raw:
        return None
    try:
        value = json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def checked_tar(stream: BinaryIO, spool_dir: str | None) -> BinaryIO:
    """Read the whole tar ``stream``, refusing a bad member (PathOutsideSandbox) before any byte is sent on.

    Returns the checked archive, rewound (in memory up to :data:`SPOOL_MEMORY`, then in a
    temporary file in ``spool_dir``); the caller closes it.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=spool_dir)  # noqa: SIM115 - returned open
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as source, tarfile.open(fileobj=spool, mode="w|") as out:
            for member in source:
                check_member(member)
                if member.isfile():
                    out.addfile(member, source.extractfile(member))
                else:
                    out.addfile(member)
    except tarfile.TarError as exc:
        spool.close()
        raise PathOutsideSandbox(f"the archive is not a valid tar stream ({exc}); refused") from exc
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool  # type: ignore[return-value]


def renamed_tar(chunks: Iterator[bytes], top: str) -> Iterator[bytes]:
    """A tar from the daemon with its top member renamed ``top`` and special files left out, in chunks."""

    def add_members(out: tarfile.TarFile, cancelled: threading.Event) -> None:
        with tarfile.open(fileobj=reader_of(chunks), mode="r|*") as source:
            for member in source:
                if cancelled.is_set():
                    return
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    continue
                _, _, rest = member.name.partition("/")
                member.name = top + ("/" + rest if rest else "")
                if member.islnk():
                    _, _, link_rest = member.linkname.partition("/")
                    member.linkname = top + ("/" + link_rest if link_rest else "")
                if member.isfile():
                    data = source.extractfile(member)
                    out.addfile(member, data)
                else:
                    out.addfile(member)

    return threaded_tar(add_members)


__all__ = [
    "MAX_LINKS",
    "ApiPathResolver",
    "check_inside",
    "checked_tar",
    "outside_error",
    "renamed_tar",
    "stat_header",
]
