"""Path confinement and tar streams for moving files in and out of sandboxes.

Paths inside a sandbox are relative to its workdir or absolute; ``..`` is refused outright.
Tar members with absolute names, ``..``, links that leave the extraction directory, or
device nodes are refused with :class:`~rock_env.errors.PathOutsideSandbox`. Tar streams are
produced and consumed in chunks (a writer thread and a bounded queue), never buffered whole.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import queue
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

from rock_env.errors import InvalidArgument, PathOutsideSandbox

CHUNK = 1 << 16
_END = object()


def normalize_path(path: str, workdir: str) -> str:
    """Return the absolute sandbox path for ``path`` (relative to ``workdir``); refuse ``..``."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidArgument(f"invalid sandbox path {path!r}: give a non-empty string without NUL bytes")
    if ".." in path.split("/"):
        raise PathOutsideSandbox(f"path {path!r} contains '..'; give a path inside the sandbox without '..'")
    return posixpath.normpath(posixpath.join(workdir, path))


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse a tar member that would land or point outside the extraction directory."""
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        raise PathOutsideSandbox(f"tar member {name!r} has an absolute path or '..'; such archives are refused")
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise PathOutsideSandbox(f"tar member {name!r} is a symlink pointing outside ({target!r}); refused")
    elif member.islnk():
        target = member.linkname
        if target.startswith("/") or ".." in target.split("/"):
            raise PathOutsideSandbox(f"tar member {name!r} is a hard link to {target!r} outside the archive; refused")
    elif not (member.isfile() or member.isdir()):
        raise PathOutsideSandbox(f"tar member {name!r} is a device, fifo or other special file; refused")


def extract_tar(stream: BinaryIO, dest: Path) -> None:
    """Extract a tar stream into ``dest`` member by member, checking each one first."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            check_member(member)
            try:
                tar.extract(member, dest, filter="data")
            except tarfile.FilterError as exc:
                raise PathOutsideSandbox(f"tar member {member.name!r} refused: {exc}") from exc


class _QueueWriter(io.RawIOBase):
    def __init__(self, out: queue.Queue[object]) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if data:
            self._out.put(bytes(data))
        return len(data)


def threaded_tar(
    add_members: Callable[[tarfile.TarFile, threading.Event], None], cleanup: Callable[[], None] | None = None
) -> Iterator[bytes]:
    """Yield, in chunks, the tar that ``add_members(tar, cancelled)`` writes in a producer thread.

    The producer writes through a bounded queue, so the stream is never buffered whole;
    ``cancelled`` is set when the consumer stops early (``add_members`` should then return).
    ``cleanup`` runs in the producer thread once it is done, before the end of the stream.
    The first error of the producer is raised after the last chunk.
    """
    chunks: queue.Queue[object] = queue.Queue(maxsize=16)
    errors: list[BaseException] = []
    cancelled = threading.Event()

    def produce() -> None:
        try:
            writer = io.BufferedWriter(_QueueWriter(chunks), buffer_size=CHUNK)  # type: ignore[type-var]
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add_members(tar, cancelled)
            writer.flush()
        except BaseException as exc:
            errors.append(exc)
        finally:
            if cleanup is not None:
                cleanup()
            chunks.put(_END)

    thread = threading.Thread(target=produce, name="rock-env-tar", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is _END:
                break
            assert isinstance(item, bytes)
            yield item
    finally:
        cancelled.set()
        while thread.is_alive():  # unblock the producer if the consumer stopped early
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
        thread.join()
    if errors:
        raise errors[0]


def tar_stream(path: Path, arcname: str) -> Iterator[bytes]:
    """Yield a tar of ``path`` (file or directory, symlinks kept as links) in chunks."""

    def add_members(tar: tarfile.TarFile, cancelled: threading.Event) -> None:
        tar.add(path, arcname=arcname, recursive=False)
        if path.is_dir() and not path.is_symlink():
            for root, dirs, files in os.walk(path):
                if cancelled.is_set():
                    return
                dirs.sort()
                rel = os.path.relpath(root, path)
                for name in dirs + sorted(files):
                    member = posixpath.normpath(posixpath.join(arcname, rel, name))
                    tar.add(os.path.join(root, name), arcname=member, recursive=False)

    return threaded_tar(add_members)


class IterReader(io.RawIOBase):
    """A readable file object over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def reader_of(chunks: Iterable[bytes]) -> BinaryIO:
    """Wrap byte chunks as a buffered binary file object."""
    return io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)  # type: ignore[return-value]


def chunks(stream: IO[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    """Read a binary stream in chunks of ``size`` (a body sent with chunked transfer encoding, never buffered whole)."""
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block
