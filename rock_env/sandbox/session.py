"""Persistent bash sessions over a pipe, with an end-marker protocol.

A session is ``bash --norc --noprofile`` (no rc files, no prompt hooks) reading commands from
a pipe. Each command is sent as one line::

    printf '%s\\n' '<begin>'; eval $'<command>' </dev/null; printf '%s%d\\n' '<marker>' "$?"

and its output is read from the begin marker (so a shell that dies before it runs the command is
told apart from a command that killed its shell: the command is then run in a fresh shell) until
the end marker, which carries the exit code. Each command gets a
fresh random marker (128 bits) that appears nowhere but in that one command line written to the
shell's stdin: no argv, environment or file in the sandbox holds it, so a program that prints
marker-like text (even a marker it saw earlier) cannot end the output early or fake an exit
code. A call that fails validation never reaches the shell, and if reading a command's output
fails half-way (an error on this side), the shell is replaced before the next command, so a
session can never answer with an earlier command's output. Nothing polls: reads block on the pipe until output or
the deadline. Because the command is ``eval``'d in the session's shell, ``cd``, exported
variables and functions persist; stdin is ``/dev/null`` so a command that reads input cannot
swallow the protocol. A timeout kills every process the command started (the shell's
descendants started since the command began, found by walking the process tree repeatedly so
a forking command cannot outrun it; background jobs of earlier commands are spared) and the
session stays usable; Ctrl-C (:meth:`BashSession.interrupt`) sends SIGINT the same way. If the
shell itself is stuck (a ``while :; do :; done`` builtin loop) the session is restarted and
the result says so.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

from rock_env.errors import SandboxClosed
from rock_env.sandbox.models import CommandResult, SessionInfo
from rock_env.sandbox.runtimes.base import ProcessPipe

logger = logging.getLogger(__name__)

#: bash command line of a session (no rc files: root's rc files here run a slow prompt hook)
BASH_ARGV = ["bash", "--norc", "--noprofile"]
#: how long to wait for the marker after killing a timed-out command before restarting the shell
KILL_GRACE = 0.5
#: how many finished commands a session remembers for watchers (:attr:`BashSession.recent`)
RECENT_COMMANDS = 50

#: A watcher of a session: called as ``(kind, payload)`` from the thread that runs the command, with
#: kind ``command`` (``{"cmd", "started"}``), ``output`` (``{"data": bytes}``) or ``exit`` (a recent-command dict).
Watcher = Callable[[str, dict[str, Any]], None]

# No job control (set -m): with it, a non-interactive bash treats a foreground job killed by
# SIGINT as its own SIGINT and dies (or, with a trap, drops the rest of the line and the marker).
_INIT = "set +m +H; unset PROMPT_COMMAND PS1\n"


def ansi_c_quote(text: str) -> str:
    """Quote ``text`` as a bash ``$'...'`` string (safe for any text without NUL)."""
    escaped = (
        text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f"$'{escaped}'"


def truncation_note(total: int, limit: int) -> str:
    """The visible marker appended to truncated output."""
    return f"\n[rock-env: output truncated: the command wrote {total} bytes, only the first {limit} are shown]\n"


def marker_prefix_tail(data: bytes | bytearray, marker: bytes) -> int:
    """The length of the longest end of ``data`` that is a beginning of ``marker`` (0 if none)."""
    first = marker[:1]
    start = max(0, len(data) - len(marker) + 1)
    at = data.find(first, start)
    while at >= 0:
        if marker.startswith(bytes(data[at:])):
            return len(data) - at
        at = data.find(first, at + 1)
    return 0


class OutputBuffer:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int, tap: Callable[[bytes], None] | None = None) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0
        self._tap = tap

    def add(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a chunk (beyond the limit only the byte count grows); the kept bytes go to the tap too."""
        self.total += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            if self._tap is None:  # the common case: no watcher, no extra copy
                self.data += chunk[:room]
                return
            kept = bytes(chunk[:room])
            self.data += kept
            if kept:
                self._tap(kept)

    @property
    def truncated(self) -> bool:
        """True if bytes were dropped."""
        return self.total > self.limit

    def text(self) -> str:
        """The kept bytes as text (invalid UTF-8 replaced), plus the truncation marker if needed."""
        text = bytes(self.data).decode("utf-8", errors="replace")
        if self.truncated:
            text += truncation_note(self.total, self.limit)
        return text

    def result(
        self,
        exit_code: int | None,
        started: float,
        *,
        timed_out: bool = False,
        interrupted: bool = False,
        session_restarted: bool = False,
    ) -> CommandResult:
        """The :class:`CommandResult` of this output, for a command started at ``started`` (``time.monotonic()``)."""
        return CommandResult(
            output=self.text(),
            exit_code=exit_code,
            duration=time.monotonic() - started,
            truncated=self.truncated,
            timed_out=timed_out,
            interrupted=interrupted,
            session_restarted=session_restarted,
            output_bytes=self.total,
        )


class BashSession:
    """One persistent bash process inside a sandbox, driven over a :class:`ProcessPipe`.

    ``opener`` starts a fresh bash (used again to restart the session). Thread-safe: commands
    on one session run one at a time.
    """

    def __init__(
        self,
        name: str,
        opener: Callable[[], ProcessPipe],
        *,
        output_limit: int,
        lazy_start: bool = False,
    ) -> None:
        self.name = name
        self._opener = opener
        self._lazy_start = lazy_start
        self._handshake: bytes | None = None
        self.output_limit = output_limit
        self._lock = threading.Lock()
        self._broken = False
        self._commands = 0
        self._restarted = False
        self._interrupted = False
        self._pipe: ProcessPipe | None = None
        self._closed = False
        self.created_at = time.time()
        self._watchers: list[Watcher] = []
        self._tap: Callable[[bytes], None] | None = None
        #: the last finished commands, oldest first: ``{"cmd", "exit_code", "started", "duration", "timed_out"}``
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_COMMANDS)
        #: the command running now (``{"cmd", "started"}``), if any
        self.current: dict[str, Any] | None = None
        self._start()

    # --- lifecycle -------------------------------------------------------------------------

    def _start(self) -> None:
        self._pipe = self._opener()
        self._broken = False
        if self._lazy_start:
            # the first start of a shell the runtime launched with the sandbox: send the set-up and its
            # check now, and read the check's answer together with the first command's (one round trip less)
            self._lazy_start = False
            marker = self._marker()
            self._handshake = marker
            with contextlib.suppress(OSError):  # a shell that is gone already is reported by the check's read
                self._pipe.write((_INIT + self._line("true", marker)).encode())
            return
        try:
            self._pipe.write(_INIT.encode())
        except OSError:  # the shell is gone already (e.g. it could not enter its cwd): say what it printed
            self._failed_start(self._pipe.wait(timeout=5), self._drain(self._pipe))
        self._broken = True
        result = self._run_locked("true", timeout=30.0, restart_on_hang=False)
        self._broken = False
        if result.exit_code != 0:
            self._failed_start(result.exit_code, result.output)

    @staticmethod
    def _drain(pipe: ProcessPipe, timeout: float = 1.0) -> str:
        """What a shell that ended printed (up to its EOF, at most ``timeout`` seconds)."""
        data = bytearray()
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0 and len(data) < 65536:
            chunk = pipe.read(remaining)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")

    def _failed_start(self, code: int | None, output: str) -> NoReturn:
        assert self._pipe is not None
        self._pipe.kill()
        raise SandboxClosed(f"bash session {self.name!r} did not start (exit {code}): {output.strip()}")

    @staticmethod
    def _marker() -> bytes:
        """A fresh end marker for one command (never reused, never seen before it is printed)."""
        return f"__ROCK_END_{secrets.token_hex(16)}__:".encode()

    @staticmethod
    def _line(command: str, marker: bytes, begin: bytes | None = None) -> str:
        head = "" if begin is None else f"printf '%s\\n' '{begin.decode()}'; "
        return f"{head}eval {ansi_c_quote(command)} </dev/null; printf '%s%d\\n' '{marker.decode()}' \"$?\"\n"

    def _await_handshake(self, pipe: ProcessPipe, marker: bytes) -> bytearray:
        """Read up to the start check's marker (sent by a lazy start); the bytes after it belong to the command."""
        deadline = time.monotonic() + 30.0
        data = bytearray()
        while True:
            index = data.find(marker)
            if index >= 0:
                end = data.find(b"\n", index + len(marker))
                if end >= 0:
                    code = int(data[index + len(marker) : end])
                    if code != 0 or index:
                        self._failed_start(code, data[:index].decode(errors="replace"))
                    return data[end + 1 :]
            remaining = deadline - time.monotonic()
            chunk = pipe.read(remaining) if remaining > 0 else None
            if chunk is None or not chunk:  # no answer in time, or EOF: the shell did not start
                self._failed_start(pipe.poll(), data.decode(errors="replace"))
            data += chunk

    def _restart(self) -> None:
        if self._pipe is not None:
            self._pipe.kill()
        self._restarted = True
        self._start()

    @property
    def pid(self) -> int | None:
        """Host pid of the process behind the session (if the runtime has one)."""
        return None if self._pipe is None else self._pipe.pid

    @property
    def alive(self) -> bool:
        """True while the bash process runs."""
        return not self._closed and self._pipe is not None and self._pipe.poll() is None

    def info(self) -> SessionInfo:
        """Describe the session."""
        return SessionInfo(
            name=self.name, pid=self.pid, alive=self.alive, commands=self._commands, created_at=self.created_at
        )

    def abandon(self) -> None:
        """Mark the session closed without signalling (its sandbox was destroyed with it)."""
        self._closed = True
        if self._pipe is not None:
            self._pipe.close()

    def close(self) -> None:
        """Kill the session's bash and everything it started."""
        self._closed = True
        if self._pipe is not None:
            self._pipe.kill()

    # --- watchers (live attach) -------------------------------------------------------------

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher`` for every command, output chunk and exit from now on; returns the unsubscribe.

        Watchers see the commands of every client of the session (output as it is read, before the
        command ends). They run on the command's thread: they must be quick and must not raise.
        """
        self._watchers = [*self._watchers, watcher]

        def unsubscribe() -> None:
            self._watchers = [w for w in self._watchers if w is not watcher]

        return unsubscribe

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        for watcher in self._watchers:
            try:
                watcher(kind, payload)
            except Exception:  # a watcher's bug must not break the command
                logger.exception("a watcher of session %r failed", self.name)

    def _emit_output(self, data: bytes) -> None:
        if self._watchers:
            self._emit("output", {"data": data})

    # --- commands --------------------------------------------------------------------------

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run ``command`` in the session; see :class:`CommandResult` for how it ended."""
        if self._closed:
            raise SandboxClosed(f"bash session {self.name!r} was closed; create a new one")
        with self._lock:
            restarted = self._restarted
            if self._broken or (self._handshake is None and (self._pipe is None or self._pipe.poll() is not None)):
                # the shell exited (e.g. the previous command was `exit`), or an earlier call broke off
                # while reading (its output may still be on the way): start a fresh one
                self._restart()
                restarted = True
            self._restarted = False
            self._interrupted = False
            self._broken = True  # until the marker is read: an exception half-way leaves the stream out of step
            self.current = {"cmd": command, "started": time.time()}
            self._emit("command", dict(self.current))
            self._tap = self._emit_output
            try:
                result = self._run_locked(command, timeout=timeout, restart_on_hang=True)
            except BaseException:
                self._finished(exit_code=None, timed_out=False)
                raise
            self._finished(exit_code=result.exit_code, timed_out=result.timed_out)
            self._broken = False
            self._commands += 1
            if restarted and not result.session_restarted:
                result = result.model_copy(update={"session_restarted": True})
            return result

    def _finished(self, *, exit_code: int | None, timed_out: bool) -> None:
        """Record the running command as finished and tell the watchers."""
        self._tap = None
        current, self.current = self.current or {"cmd": "", "started": time.time()}, None
        done = {**current, "exit_code": exit_code, "timed_out": timed_out, "duration": time.time() - current["started"]}
        self.recent.append(done)
        self._emit("exit", dict(done))

    def interrupt(self) -> None:
        """Send SIGINT (Ctrl-C) to the running command (every process the shell started)."""
        if self._pipe is not None:
            self._interrupted = True
            self._pipe.signal_command(signal.SIGINT)

    def _run_locked(self, command: str, *, timeout: float | None, restart_on_hang: bool) -> CommandResult:
        assert self._pipe is not None
        pipe = self._pipe
        marker = self._marker()
        begin = self._marker().replace(b"_END_", b"_BEGIN_")  # the shell has read the line and runs it
        line = self._line(command, marker, begin)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        out = OutputBuffer(self.output_limit, self._tap)
        pending = bytearray()
        timed_out = False
        pipe.mark_command_start()
        try:
            pipe.write(line.encode())
        except OSError:
            if self._handshake is None:
                if restart_on_hang:  # the shell is gone (killed from elsewhere): the command never reached it
                    return self._rerun(command, timeout, started)
                return self._ended(out, started, pipe)
        handshake, self._handshake = self._handshake, None
        carried = False
        if handshake is not None:
            pending = self._await_handshake(pipe, handshake)
            carried = bool(pending)
        keep = len(marker) + 12
        begun = False
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if timed_out:  # the grace after the kill passed too: the shell itself is stuck
                    out.add(pending)
                    if restart_on_hang:
                        self._restart()
                    return out.result(None, started, timed_out=True, session_restarted=restart_on_hang)
                timed_out = True
                pipe.signal_command(signal.SIGKILL)
                deadline = time.monotonic() + KILL_GRACE
                continue
            if carried:  # bytes read together with the start check's answer: look at them first
                carried = False
            else:
                chunk = pipe.read(remaining)
                if chunk is None:
                    continue
                if not chunk:
                    if restart_on_hang and not begun:
                        # the shell died before it started the command (killed from elsewhere just before):
                        # the command never ran, so run it in a fresh shell
                        out.add(pending)  # what earlier background jobs printed meanwhile
                        return self._rerun(command, timeout, started, earlier=out)
                    return self._ended(out, started, pipe, pending=pending, timed_out=timed_out)
                pending += chunk
            if not begun:
                at = pending.find(begin)
                if at < 0 or pending.find(b"\n", at) < 0:
                    if len(pending) > keep:  # output of earlier background jobs, before the command began
                        out.add(memoryview(pending)[: len(pending) - keep])
                        del pending[: len(pending) - keep]
                    continue
                out.add(pending[:at])
                del pending[: pending.find(b"\n", at) + 1]
                begun = True
            index = pending.find(marker)
            if index >= 0:
                end = pending.find(b"\n", index + len(marker))
                if end < 0:
                    continue  # the exit code is still on its way
                out.add(pending[:index])
                code = int(pending[index + len(marker) : end])
                return out.result(
                    None if timed_out else code,
                    started,
                    timed_out=timed_out,
                    interrupted=self._interrupted and not timed_out,
                )
            # the marker is not in ``pending``: only a tail that could be its beginning must wait for more bytes
            # (so that watchers see output as it comes, not a marker's length later)
            safe = len(pending) - marker_prefix_tail(pending, marker)
            if safe > 0:
                out.add(memoryview(pending)[:safe])
                del pending[:safe]

    def _rerun(
        self, command: str, timeout: float | None, started: float, earlier: OutputBuffer | None = None
    ) -> CommandResult:
        """Run ``command`` once more in a fresh shell (the first one died before it began the command)."""
        self._restart()
        left = None if timeout is None else max(0.001, timeout - (time.monotonic() - started))
        result = self._run_locked(command, timeout=left, restart_on_hang=False)
        if earlier is not None and earlier.total:
            result = result.model_copy(update={"output": earlier.text() + result.output})
        return result.model_copy(update={"session_restarted": True})

    def _ended(
        self,
        out: OutputBuffer,
        started: float,
        pipe: ProcessPipe,
        *,
        pending: bytearray | None = None,
        timed_out: bool = False,
    ) -> CommandResult:
        """The shell exited during the command (``exit N``, killed, sandbox stopped)."""
        if pending:
            out.add(pending)
        code = pipe.wait(timeout=5)
        return out.result(None if timed_out else code, started, timed_out=timed_out)
