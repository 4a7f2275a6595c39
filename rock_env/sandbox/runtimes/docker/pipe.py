"""Processes in a container, read and written through hijacked Docker API sockets.

Two kinds: a ``docker exec`` process (its output ends at the socket's EOF, its exit code comes
from the API: nothing inside can fake either), and the container's *spare shell*, the default
session's bash: its output comes on the container's attach socket, its input is written straight
into the keeper's fifo (``/proc/<init>/fd/5``, see :meth:`DockerProcessPipe.open_fifo`). The spare shell's end is
reported in band by the keeper (the container's init) as ``\\036<token>:exit:<code>``; the token
never appears in the container's command lines, environment or files (the keeper reads it from
its stdin), and a marker is only believed once the shell process is really gone, seen from the
host through a pidfd: while the shell runs, marker-like bytes are ordinary output, whoever printed
them. If the shell dies and no marker follows within :data:`EXIT_GRACE` seconds (the keeper's
helper was killed too), the end is reported with exit code 137.

Signals go to host pids (the daemon is local), with the same tree walk as the host runtimes;
a command's SIGKILL also kills, through the container's cgroup, the orphans it left and, if
the sandbox hit its pids limit, every command process (see :mod:`.cgroup`).

One cohesive module of about 500 lines: both kinds are one class that shares the socket reads,
the exit-marker scan, the pids-limit watch and the signals; the keeper's side of the spare shell
(its fifo) is in :mod:`.keeper`, the stream framing in :mod:`.engine`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from rock_env.errors import SandboxStartError
from rock_env.sandbox.hostproc import command_mark, command_tree, sigkill_pending, signal_tree
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.runtimes.docker.engine import close_socket, decode_frames, errors
from rock_env.sandbox.runtimes.docker.keeper import open_keeper_fifo, write_fifo

_READ_SIZE = 1 << 18
#: bytes ``wait`` keeps while draining output nobody reads (beyond: dropped)
_WAIT_BUFFER = 64 << 20
#: seconds to wait for the keeper's exit marker after the spare shell died
EXIT_GRACE = 0.5
#: least seconds between two looks at the pids limit while output comes
PIDS_CHECK_INTERVAL = 0.1
#: longest ``poll`` waits for the output of a session's shell that is being killed to end
_DYING_WAIT = 5.0


class Container(Protocol):
    """What a pipe needs of the sandbox whose container it runs in (:class:`~.runtime.DockerRuntime` is one)."""

    container_name: str

    @property
    def api(self) -> Any:
        """The Docker API client."""

    def init_pid(self) -> int | None:
        """Host pid of the container's init."""

    def host_pid_of(self, ns_pid: int) -> int | None:
        """Host pid of the container's process ``ns_pid``."""

    def ns_pid_of(self, host_pid: int) -> int | None:
        """The container's pid of host process ``host_pid``."""

    def pids_limit_hits(self) -> int:
        """How many forks failed at the container's pids limit so far."""

    def free_pids(self, spare: Collection[int] = ()) -> int:
        """Kill every command process but ``spare`` if the container is full; the limit hits so far."""

    def kill_command_processes(self, spare: Collection[int] | Callable[[], Collection[int]] = ()) -> None:
        """Kill every command process but ``spare``."""

    def kill_orphans_since(self, since: tuple[int, int]) -> None:
        """Kill the orphans a command left (started after ``since``)."""


class DockerProcessPipe(ProcessPipe):
    """A process in a container, read and written through a hijacked Docker API socket.

    ``exec_id`` set: a ``docker exec`` process (end of output = socket EOF, exit code from the
    API). ``token`` set: the container's spare shell (end = the keeper's exit marker, believed only
    after the shell's death; ``ready`` is the nonce of its status lines); its socket is the
    container's attach socket, which :meth:`close` leaves open (the runtime closes it when the
    sandbox stops: closing it ends the container).
    """

    def __init__(
        self,
        runtime: Container,
        sock: Any,
        *,
        exec_id: str | None = None,
        token: str | None = None,
        ready: str | None = None,
    ) -> None:
        self._runtime = runtime
        self._sockio = sock
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._exec_id = exec_id
        self._marker = None if token is None else b"\x1e" + token.encode() + b":exit:"
        self._nonce = None if ready is None else b"\x1e" + ready.encode()
        self._raw = bytearray()  # undecoded multiplexed frames
        self._out = bytearray()  # decoded output not yet returned
        self._scan = 0  # the exit marker is searched from here on (before: output, forged markers included)
        self._sock_eof = False
        self._ended = False  # all output has been decoded (EOF or exit marker)
        self._code: int | None = None
        self._ns_pid: int | None = None
        self._host_pid: int | None = None
        self._pidfd: int | None = None  # the spare shell's process, to believe its exit marker only once it is gone
        self._exit_fd: int | None = None  # a docker exec session shell's process, to see its death at once
        self._fifo: int | None = None  # the spare shell's input: the keeper's fifo, written from the host
        self._dead_at: float | None = None
        self._closed = False
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        self._lock = threading.Lock()
        self._command_start: tuple[int, int] | None = None if token is not None else command_mark()
        self._hits = 0 if token is not None else runtime.pids_limit_hits()  # the spare: set at each command
        self._next_pids_check = 0.0
        self._in_session = False  # a session's shell (mark_command_start was called): watch the pids limit

    # --- pid -------------------------------------------------------------------------------

    @property  # type: ignore[override]
    def pid(self) -> int | None:
        """Host pid of the process (resolved on first use; ``None`` if it is already gone)."""
        if self._host_pid is None and not self._ended:
            self._host_pid = self._resolve_host_pid()
        return self._host_pid

    @pid.setter
    def pid(self, value: int | None) -> None:
        self._host_pid = value

    def _resolve_host_pid(self) -> int | None:
        api = self._runtime.api
        deadline = time.monotonic() + 10.0
        delay = 0.002
        while time.monotonic() < deadline:
            if self._exec_id is not None:
                with contextlib.suppress(errors().APIError):
                    info = api.exec_inspect(self._exec_id)
                    if info.get("Pid"):
                        return int(info["Pid"])
                    if not info.get("Running") and info.get("ExitCode") is not None:
                        return None
            elif self._ns_pid is not None:
                host = self._runtime.host_pid_of(self._ns_pid)
                if host is not None:
                    return host
            time.sleep(delay)  # the process is being started by runc: wait for it to appear
            delay = min(delay * 2, 0.05)
        return None

    def watch_exit(self) -> bool:
        """Spare shell: open a pidfd on it, so that only its real end makes an exit marker count.

        False if that is impossible (no host pid, no pidfd support): the shell is then not used.
        """
        pid = self.pid
        if pid is None or not hasattr(os, "pidfd_open"):
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        if self._runtime.ns_pid_of(pid) != self._ns_pid:  # the pid was reused before the pidfd was opened
            os.close(fd)
            return False
        self._pidfd = fd
        self._poller.register(fd, select.POLLIN)
        return True

    def open_fifo(self, init_pid: int) -> bool:
        """Spare shell: write its input straight into the keeper's fifo (fd 5 of the container's init).

        Nothing in the container relays it then: a relay process killed from inside (``kill -9 -1``)
        could still take a command line off a pipe before it dies, and the line would be lost. The fd
        is checked to be the fifo the shell reads. False if it cannot be opened.
        """
        shell = self._host_pid
        if shell is None:
            return False
        self._fifo = open_keeper_fifo(init_pid, shell)
        return self._fifo is not None

    def _shell_gone(self) -> bool:
        """True if the spare shell has ended (or its end cannot be watched)."""
        if self._pidfd is None or self._dead_at is not None:
            return True
        if select.select([self._pidfd], [], [], 0)[0]:
            self._shell_died()
            return True
        return False

    def _shell_died(self) -> None:
        self._dead_at = time.monotonic()
        if self._pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(self._pidfd)

    # --- I/O -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write all of ``data`` to the process's stdin."""
        if self._closed:
            raise BrokenPipeError("the process pipe is closed")
        if self._fifo is not None:  # the spare shell (BrokenPipeError once it is gone)
            write_fifo(self._fifo, data, self._pidfd)
        else:
            self._sock.sendall(data)

    def close_stdin(self) -> None:
        """Half-close the socket: the process reads EOF."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def _consume(self, size: int) -> None:
        """Drop the first ``size`` decoded bytes (returned to the reader)."""
        del self._out[:size]
        self._scan = max(0, self._scan - size)

    def _decode(self) -> None:
        self._out += decode_frames(self._raw)
        self._find_marker()

    def _find_marker(self) -> None:
        """End the output at the exit marker, if there is a complete one and the shell is gone."""
        marker = self._marker
        if marker is None or self._ended:
            return
        while True:
            index = self._out.find(marker, self._scan)
            if index < 0:
                return
            end = self._out.find(b"\n", index)
            if end < 0:
                return
            if not self._shell_gone():
                # the shell still runs: a program printed this (the keeper prints only after its end)
                self._scan = end + 1
                continue
            with contextlib.suppress(ValueError):
                self._code = int(self._out[index + len(marker) : end])
            del self._out[index:]
            self._ended = True
            return

    def _fill(self, timeout: float | None) -> bool:
        """Receive what the socket has (waiting up to ``timeout``); False if nothing came."""
        if self._sock_eof or self._closed:
            return False
        if self._dead_at is not None:
            left = self._dead_at + EXIT_GRACE - time.monotonic()
            if left <= 0:
                self._ended = True  # the shell died and the keeper said nothing: its helper was killed too
                return True
            timeout = left if timeout is None else min(timeout, left)
        events = self._poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        if not events:
            return False
        if self._pidfd is not None and any(fd == self._pidfd for fd, _ in events):
            self._shell_died()
            self._find_marker()  # a marker that came before the pidfd was looked at
            if not any(fd == self._sock.fileno() for fd, _ in events):
                return True
        try:
            data = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._sock_eof = True
            self._ended = True
            return True
        self._raw += data
        self._decode()
        self._check_pids()
        return True

    def _ready_bytes(self) -> int:
        """How many decoded bytes can be returned (a possible start of the exit marker is held back)."""
        if self._marker is None or self._ended:
            return len(self._out)
        tail_start = max(self._scan, len(self._out) - len(self._marker) - 12)
        hold = self._out.find(b"\x1e", tail_start)
        if hold < 0:
            return len(self._out)
        tail = bytes(self._out[hold:])
        if self._marker.startswith(tail[: len(self._marker)]):
            return hold
        return len(self._out)

    def read(self, timeout: float | None = None) -> bytes | None:
        """Return the next chunk of output, ``b""`` at the end, ``None`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                ready = self._ready_bytes()
                if ready:
                    chunk = bytes(self._out[:ready])
                    self._consume(ready)
                    return chunk
                if self._ended:
                    return b""
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._fill(remaining)

    def _exit_code(self) -> int | None:
        if self._exec_id is None:
            # the spare shell: the marker carries the code; without it the shell was killed
            return self._code if self._code is not None else 128 + signal.SIGKILL
        if self._code is not None:
            return self._code
        api = self._runtime.api
        delay = 0.001
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                info = api.exec_inspect(self._exec_id)
            except errors().APIError:
                return 128 + signal.SIGKILL  # the container is gone
            if not info.get("Running") and info.get("ExitCode") is not None:
                self._code = int(info["ExitCode"])
                return self._code
            # output ended a moment before the daemon recorded the exit
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return None

    def poll(self) -> int | None:
        """The exit code if the process has ended, else ``None``.

        Never blocks, but for a session's shell that is gone or being killed (SIGKILL pending): then
        it waits (about :data:`EXIT_GRACE` s) for the end of its output, so that a shell killed a
        moment ago (``kill -9 -1`` from a command) is not reported alive and sent the next command.
        """
        with self._lock:
            while not self._ended and self._fill(0):
                if len(self._out) > _WAIT_BUFFER:
                    break
            if not self._ended and self._in_session and (self._process_gone() or sigkill_pending(self._host_pid)):
                deadline = time.monotonic() + _DYING_WAIT
                while not self._ended and (remaining := deadline - time.monotonic()) > 0:
                    if self._dead_at is None and not self._process_gone():
                        remaining = min(remaining, 0.01)  # still dying: look again in a moment
                    self._fill(remaining)  # once it is gone, bounded by the grace
                    if len(self._out) > _WAIT_BUFFER:
                        self._consume(len(self._out) - _WAIT_BUFFER)
            if not self._ended:
                return None
        return self._exit_code()

    def _process_gone(self) -> bool:
        """True if the process is known to have ended (pidfd); starts the grace for the end of its output."""
        if self._dead_at is not None:
            return True
        fd = self._pidfd if self._pidfd is not None else self._exit_fd
        if fd is None or not select.select([fd], [], [], 0)[0]:
            return False
        self._shell_died()
        return True

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end (keeping unread output for :meth:`read`); the exit code or ``None`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._fill(remaining)
                if len(self._out) > _WAIT_BUFFER:
                    self._consume(len(self._out) - _WAIT_BUFFER)
        return self._exit_code()

    def wait_line(self, kind: str, timeout: float) -> tuple[bytes, bytes] | None:
        """Spare shell only: wait for its ``\\036<nonce>:<kind>:<value>`` line; (output before it, value).

        None if the shell ended first (or :class:`SandboxStartError` after ``timeout`` seconds).
        """
        assert self._nonce is not None
        prefix = self._nonce + b":" + kind.encode() + b":"
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                index = self._out.find(prefix)
                if index >= 0:
                    end = self._out.find(b"\n", index)
                    if end >= 0:
                        before = bytes(self._out[:index])
                        value = bytes(self._out[index + len(prefix) : end])
                        self._consume(end + 1)
                        return before, value
                if self._ended:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxStartError(
                        f"the spare shell of container {self._runtime.container_name} did not answer"
                    )
                self._fill(remaining)

    def wait_spare(self, timeout: float) -> bool:
        """Spare shell only: learn its pid from the line it prints at start and watch its end (False if it is gone)."""
        found = self.wait_line("spare", timeout)
        if found is None or not found[1].isdigit():
            return False
        self._ns_pid = int(found[1])
        init = self._runtime.init_pid()
        if not self.watch_exit() or init is None or not self.open_fifo(init):
            return False
        return not self._shell_gone()

    # --- signals ---------------------------------------------------------------------------

    def signal_group(self, sig: int) -> None:
        """Signal the process group of the process (it is a session leader)."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)

    def signal_descendants(self, sig: int) -> None:
        """Signal everything the process started, not the process itself (with SIGKILL: its orphans too)."""
        pid = self.pid
        if pid is not None:
            signal_tree(pid, sig, include_root=False)
        if sig == signal.SIGKILL:
            self._kill_leftovers(None)

    def _check_pids(self) -> None:
        """A session's shell, while output comes (at most every :data:`PIDS_CHECK_INTERVAL` s): free a full sandbox.

        If forks failed at the pids limit since the command began (a fork bomb an earlier command
        left, growing while this one runs: bash then prints "fork: retry"), every command process
        but this one's (the shell and what it started since) is killed, so the command can go on.
        """
        now = time.monotonic()
        if not self._in_session or now < self._next_pids_check or self._closed:
            return
        self._next_pids_check = now + PIDS_CHECK_INTERVAL
        hits = self._runtime.pids_limit_hits()
        if hits <= self._hits:
            return
        self._runtime.kill_command_processes(spare=self._current_processes)
        self._hits = self._runtime.pids_limit_hits()

    def _current_processes(self) -> frozenset[int]:
        """This process and what it started since the current command began (host pids)."""
        return command_tree(self._host_pid, self._command_start)

    def mark_command_start(self) -> None:
        """A session command starts: remember when; free the sandbox first if a fork bomb filled it.

        If the container is at its pids limit (or near it after a failed fork) nothing could start,
        so every command process but this session's shell is killed first.
        """
        self._in_session = True
        shell = self.pid
        if self._exit_fd is None and self._exec_id is not None and shell is not None and hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self._exit_fd = os.pidfd_open(shell)  # the shell runs (it is about to get a command): no reuse
        self._hits = self._runtime.free_pids(spare=() if shell is None else (shell,))
        self._command_start = command_mark()

    def signal_command(self, sig: int) -> None:
        """Signal what the current command started (not older jobs); with SIGKILL also its orphans."""
        pid = self.pid
        if pid is not None:
            signal_tree(pid, sig, include_root=False, since=self._command_start)
        if sig == signal.SIGKILL:
            self._kill_leftovers(self._command_start)

    def _kill_leftovers(self, since: tuple[int, int] | None) -> None:
        """After a SIGKILL of a command: its orphans, or every command process if it hit the pids limit."""
        shell = self._host_pid
        spare = () if shell is None else (shell,)
        if self._runtime.pids_limit_hits() > self._hits:
            self._runtime.kill_command_processes(spare=spare)
            self._hits = self._runtime.pids_limit_hits()
        elif since is not None:
            self._runtime.kill_orphans_since(since)

    def kill(self) -> None:
        """SIGKILL the process and everything it started, wait for the end and close."""
        pid = self.pid
        if pid is not None:
            signal_tree(pid, signal.SIGKILL, include_root=True)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        self.wait(timeout=5)
        self.close()

    def close(self) -> None:
        """Close the socket (does not signal the process); the spare shell's attach socket stays open."""
        if self._closed:
            return
        self._closed = True
        self._ended = True
        with contextlib.suppress(Exception):
            self._poller.unregister(self._sock.fileno())
        for fd in (self._pidfd, self._exit_fd, self._fifo):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pidfd = self._exit_fd = self._fifo = None
        if self._marker is None:
            close_socket(self._sockio)
