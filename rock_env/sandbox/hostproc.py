"""Host processes with pipes: the :class:`ProcessPipe` of the local and namespace runtimes.

Reading blocks on the pipe with ``poll`` (no sleep loops). Process trees are walked with
``/proc/PID/task/TID/children`` so that a session's running command can be signalled
without touching the session's bash.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from abc import abstractmethod

from rock_env.sandbox.fsuser import creating_as
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.state import started_after, stat_fields

_READ_SIZE = 1 << 16
#: the longest single wait in poll(): longer (or infinite) timeouts wait in slices of this many ms
MAX_POLL_MS = 86_400_000


def poll_ms(timeout: float | None) -> int | None:
    """A ``timeout`` in seconds as poll()'s milliseconds, rounded up and capped at :data:`MAX_POLL_MS`.

    ``None`` (wait forever) stays ``None``; huge, infinite or negative values never overflow.
    """
    if timeout is None:
        return None
    if not timeout > 0:  # negative, zero or NaN
        return 0
    return int(min(timeout * 1000 + 0.999, MAX_POLL_MS))


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    """Pids of the host's processes whose command name (``/proc/PID/comm``) is ``name``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as fh:
                if fh.read().strip() == name:
                    pids.append(int(entry))
    return pids


def children(pid: int) -> list[int]:
    """Return the direct children of ``pid`` (empty if it is gone)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Return every descendant of ``pid`` (children first, then theirs)."""
    out: list[int] = []
    stack = [pid]
    seen = {pid}
    while stack:
        for child in children(stack.pop()):
            if child not in seen:
                seen.add(child)
                out.append(child)
                stack.append(child)
    return out


def command_tree(root: int | None, since: tuple[int, int] | None) -> frozenset[int]:
    """``root`` and its descendants that started after the command mark ``since`` (a running command's processes)."""
    if root is None:
        return frozenset()
    return frozenset({root, *(pid for pid in descendants(root) if started_after(pid, since))})


@functools.cache
def host_executable(name: str) -> str:
    """``name`` found on this process's ``PATH`` (a path as it is): never on the ``PATH`` of the env a process gets.

    ``Popen(argv, env=env)`` looks ``argv[0]`` up on ``env["PATH"]``, and a sandbox's env is the
    caller's to choose (``PATH=""`` would make the host's own launcher fail to start).
    """
    if "/" in name:
        return name
    return shutil.which(name) or name


def exit_code_of(returncode: int) -> int:
    """Map a Popen returncode (negative for signals) to the shell convention (128 + signal)."""
    return 128 - returncode if returncode < 0 else returncode


def command_mark() -> tuple[int, int]:
    """(now in clock ticks since boot, the last pid handed out): what is new after this moment.

    Start times in ``/proc/PID/stat`` only have clock-tick resolution (10 ms), so a process is
    new if it started in a later tick, or in the same tick with a higher pid.
    """
    ticks = int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK)
    try:
        with open("/proc/sys/kernel/ns_last_pid") as fh:
            last_pid = int(fh.read())
    except (OSError, ValueError):
        last_pid = 0
    return ticks, last_pid


def sigkill_pending(pid: int | None) -> bool:
    """True if host process ``pid`` has a SIGKILL pending (it is about to die; a pidfd does not show it yet)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"ShdPnd:", b"SigPnd:")) and int(line.split()[1], 16) & (1 << (signal.SIGKILL - 1)):
                    return True
    except (OSError, ValueError, IndexError):
        return False
    return False


def signal_tree(root: int, sig: int, *, include_root: bool, since: tuple[int, int] | None = None) -> None:
    """Send ``sig`` to ``root``'s descendants (and their own process groups), and to ``root`` if asked.

    With ``since`` (a :func:`command_mark`) only descendants started after it are signalled. For SIGKILL the walk repeats until none is left (bounded), so that
    a command that keeps forking cannot leave children behind.
    """
    root_group = None
    with contextlib.suppress(OSError):
        root_group = os.getpgid(root)
    rounds = 50 if sig == signal.SIGKILL else 1
    for _ in range(rounds):
        pids = [pid for pid in descendants(root) if started_after(pid, since)]
        if not pids:
            break
        groups: set[int] = set()
        for pid in pids:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        for group in groups:
            if group != root_group:
                with contextlib.suppress(OSError):
                    os.killpg(group, sig)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
    if include_root:
        with contextlib.suppress(OSError):
            os.kill(root, sig)


class HostTreePipe(ProcessPipe):
    """A :class:`ProcessPipe` whose commands run below a host process found by :meth:`_tree_root`.

    A session's command is signalled through that process's descendants (walked in ``/proc``),
    never the process itself; after :meth:`mark_command_start`, :meth:`signal_command` spares
    the background jobs of earlier commands.
    """

    _command_start: tuple[int, int] | None = None

    @abstractmethod
    def _tree_root(self) -> int | None:
        """Host pid of the process that runs the commands (e.g. the bash), or ``None`` if it is not there."""

    def signal_descendants(self, sig: int) -> None:
        """Signal everything the root process started, not the root itself."""
        root = self._tree_root()
        if root is not None:
            signal_tree(root, sig, include_root=False)

    def mark_command_start(self) -> None:
        """Remember when the session's current command started."""
        self._command_start = command_mark()

    def signal_command(self, sig: int) -> None:
        """Signal what the root process started since the current command began (not older jobs)."""
        root = self._tree_root()
        if root is not None:
            signal_tree(root, sig, include_root=False, since=self._command_start)


class _PipeEnd:
    """One end of an os.pipe() with the few socket methods :class:`HostProcessPipe` uses."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def pair(cls) -> tuple[_PipeEnd, _PipeEnd]:
        """(write end, read end)."""
        read, write = os.pipe()
        return cls(write), cls(read)

    def fileno(self) -> int:
        """The fd (-1 once closed)."""
        return self._fd

    def sendall(self, data: bytes) -> None:
        """Write all of ``data``."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        """Close the fd (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class HostProcessPipe(HostTreePipe):
    """A :class:`ProcessPipe` over a host ``subprocess.Popen`` started in a new session.

    ``wrapper_depth`` is the number of wrapper processes that fork before the real process
    (``nsenter --pid`` forks once): signals meant for "the command's children" skip them.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str] | None,
        stdin: bool = True,
        wrapper_depth: int = 0,
        stdin_socket: bool = False,
        pipe_owner: tuple[int, int] | None = None,
    ) -> None:
        # With ``stdin_socket`` stdin is a socket, not a pipe: a process of the sandbox can reopen another's
        # pipe through /proc/PID/fd (and read the commands a session's shell is sent), never a socket; but
        # a command that opens /dev/stdin needs a pipe, so one-shot commands keep one. The pipes belong to
        # ``pipe_owner`` (the sandbox's uid), or a sandbox's root could not open /dev/stdout or /dev/stdin.
        ours: socket.socket | _PipeEnd | None = None
        theirs: socket.socket | _PipeEnd | None = None
        with creating_as(pipe_owner):
            out_r, out_w = os.pipe()
            if stdin:
                ours, theirs = socket.socketpair() if stdin_socket else _PipeEnd.pair()
        try:
            self._proc = subprocess.Popen(
                [host_executable(argv[0]), *argv[1:]],
                cwd=cwd,
                env=env,
                stdin=theirs.fileno() if theirs is not None else subprocess.DEVNULL,
                stdout=out_w,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                bufsize=0,
            )
        except BaseException:
            os.close(out_r)
            if ours is not None:
                ours.close()
            raise
        finally:
            os.close(out_w)
            if theirs is not None:
                theirs.close()
        if isinstance(ours, socket.socket):
            ours.shutdown(socket.SHUT_RD)
        self._stdin = ours
        self.pid = self._proc.pid
        self._wrapper_depth = wrapper_depth
        self._inner: int | None = None
        self._fd = out_r
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._eof = False

    def _tree_root(self) -> int | None:
        """The real process below ``wrapper_depth`` wrappers."""
        pid = self._proc.pid
        for _ in range(self._wrapper_depth):
            kids = children(pid)
            if not kids:
                return None
            pid = kids[0]
        return pid

    def write(self, data: bytes) -> None:
        """Write all of ``data`` to stdin."""
        if self._stdin is None or self._stdin.fileno() < 0:
            raise BrokenPipeError("the process has no stdin (or it was closed)")
        self._stdin.sendall(data)

    def close_stdin(self) -> None:
        """Close stdin so that the process reads EOF."""
        if self._stdin is not None:
            with contextlib.suppress(OSError):
                self._stdin.close()

    def read(self, timeout: float | None = None) -> bytes | None:
        """Return the next chunk of output, ``b""`` at EOF, ``None`` on timeout."""
        if self._eof or self._fd < 0:
            return b""
        events = self._poller.poll(poll_ms(timeout))
        if not events:
            return None
        try:
            data = os.read(self._fd, _READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self._eof = True
        return data

    def poll(self) -> int | None:
        """Return the exit code if the process ended.

        Behind wrappers (``nsenter`` forks the real process and waits for it), the real process may
        be gone while its wrapper has not exited yet: then this waits for the wrapper briefly, so
        that a shell killed from elsewhere (``kill -9 -1`` in the sandbox) is never taken for alive.
        """
        code = self._proc.poll()
        if code is None and self._wrapper_depth and not self._inner_alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=2)
        return None if code is None else exit_code_of(code)

    def mark_command_start(self) -> None:
        """Remember when the command started, and which process is the real one behind the wrappers."""
        super().mark_command_start()
        if self._inner is None and self._wrapper_depth:
            self._inner = self._tree_root()

    def _inner_alive(self) -> bool:
        """False once the real process (below the wrappers), seen running before, is gone or a zombie."""
        if self._inner is None:
            self._inner = self._tree_root()
            if self._inner is None:
                return True  # not forked yet
        fields = stat_fields(self._inner)
        if not fields:
            return False
        return fields[0] not in (b"Z", b"X")

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit code (``None`` on timeout)."""
        try:
            return exit_code_of(self._proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def signal_group(self, sig: int) -> None:
        """Signal the process group of the process (it is a session and group leader)."""
        with contextlib.suppress(OSError):
            os.killpg(self._proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole tree and reap the process."""
        inner = self._tree_root()
        if inner is not None:
            signal_tree(inner, signal.SIGKILL, include_root=True)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(self._proc.pid, signal.SIGKILL)
        self.wait(timeout=5)
        self.close()

    def close(self) -> None:
        """Close both pipes."""
        self.close_stdin()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError, ValueError):
                self._poller.unregister(fd)
            os.close(fd)
        self._eof = True
