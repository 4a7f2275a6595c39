"""Processes of a local sandbox: background commands, streamed output, and collecting a command's output.

:class:`BackgroundProcess` is what ``Sandbox.spawn`` returns, :class:`OutputStream` what
``Sandbox.stream`` returns; :class:`AsyncProcess` wraps any synchronous process handle for the
async sandboxes. All satisfy the contract's ``ProcessAPI``/``AsyncProcessAPI``/``OutputStreamAPI``.
"""

from __future__ import annotations

import asyncio
import codecs
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from rock_env.errors import InvalidArgument
from rock_env.sandbox.contract import ProcessAPI
from rock_env.sandbox.models import CommandResult, ProcessInfo
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.session import BASH_ARGV, OutputBuffer

#: One shared pool for the async sandboxes, so that many concurrent long commands do not starve asyncio's own.
ASYNC_POOL = ThreadPoolExecutor(max_workers=256, thread_name_prefix="rock-env-sandbox")


async def in_pool(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call in :data:`ASYNC_POOL`."""
    return await asyncio.get_running_loop().run_in_executor(ASYNC_POOL, partial(fn, *args, **kwargs))


def argv_of(cmd: str | list[str]) -> list[str]:
    if isinstance(cmd, str):
        return [*BASH_ARGV, "-c", cmd]
    if isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd):
        return list(cmd)
    raise InvalidArgument(f"command must be a string (run by bash) or a non-empty list of strings, got {cmd!r}")


def collect_output(
    pipe: ProcessPipe, *, timeout: float | None, limit: int, started: float | None = None
) -> CommandResult:
    """Read a process's output until it ends (or the timeout kills it) into a :class:`CommandResult`."""
    started = time.monotonic() if started is None else started
    deadline = None if timeout is None else started + timeout
    out = OutputBuffer(limit)
    timed_out = False
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            timed_out = True
            pipe.signal_descendants(signal.SIGKILL)
            pipe.signal_group(signal.SIGKILL)
            deadline = remaining = None
        chunk = pipe.read(remaining)
        if chunk is None:
            continue
        if not chunk:
            break
        out.add(chunk)
    code = pipe.wait(timeout=5)
    pipe.close()
    return out.result(None if timed_out else code, started, timed_out=timed_out)


class BackgroundProcess:
    """A command running in the background of a sandbox (``spawn``/``start(cmd)``).

    A reader thread keeps the first ``output_limit`` bytes of its output. ``wait`` returns
    the real exit code (128 + N if killed by signal N).
    """

    def __init__(self, pipe: ProcessPipe, command: str, limit: int, proc_id: str = "") -> None:
        self._pipe = pipe
        self.id = proc_id or f"proc-{pipe.pid}"
        self.command = command
        self.pid = pipe.pid
        self._out = OutputBuffer(limit)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._done = threading.Event()
        self._code: int | None = None
        self._reader = threading.Thread(target=self._read, name=f"rock-env-bg-{pipe.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            chunk = self._pipe.read(None)
            if not chunk:
                break
            with self._lock:
                self._out.add(chunk)
        self._code = self._pipe.wait(None)
        self._pipe.close()
        self._done.set()

    @property
    def running(self) -> bool:
        """True until the process has ended and its output is read."""
        return not self._done.is_set()

    @property
    def exit_code(self) -> int | None:
        """The exit code once ended, else ``None``."""
        return self._code if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout`` seconds."""
        self._done.wait(timeout)
        return self.exit_code

    def output(self) -> str:
        """The output so far (first ``output_limit`` bytes, with a marker if truncated)."""
        with self._lock:
            return self._out.text()

    def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult` (``timed_out`` if still running after ``timeout``)."""
        code = self.wait(timeout)
        with self._lock:
            return self._out.result(code, self._started, timed_out=code is None)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to the process, its group and its descendants."""
        if self._done.is_set():
            return
        self._pipe.signal_descendants(sig)
        self._pipe.signal_group(sig)

    def info(self) -> ProcessInfo:
        """Describe the process."""
        return ProcessInfo(pid=self.pid, command=self.command, running=self.running, exit_code=self.exit_code)


class OutputStream:
    """Iterate over a command's output as it comes (text chunks); ``exit_code`` after the end."""

    def __init__(self, pipe: ProcessPipe, timeout: float | None) -> None:
        self._pipe = pipe
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.exit_code: int | None = None
        self.timed_out = False
        self._finished = False

    def __iter__(self) -> OutputStream:
        return self

    def __next__(self) -> str:
        while not self._finished:
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.timed_out = True
                self.close()
                break
            chunk = self._pipe.read(remaining)
            if chunk is None:
                continue
            if not chunk:
                self._finish()
                tail = self._decoder.decode(b"", final=True)
                if tail:
                    return tail
                break
            text = self._decoder.decode(chunk)
            if text:
                return text
        raise StopIteration

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            code = self._pipe.wait(timeout=5)
            self.exit_code = None if self.timed_out else code
            self._pipe.close()

    def close(self) -> None:
        """Stop the command (if still running) and release it."""
        if not self._finished:
            self._pipe.signal_descendants(signal.SIGKILL)
            self._pipe.signal_group(signal.SIGKILL)
            self._finish()

    def __enter__(self) -> OutputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcessTable:
    """The background processes of one sandbox by handle id (the newest 256 ended ones are kept)."""

    KEEP_ENDED = 256

    def __init__(self) -> None:
        self._procs: dict[str, BackgroundProcess] = {}
        self._count = 0
        self._lock = threading.Lock()

    def add(self, pipe: ProcessPipe, command: str, limit: int) -> BackgroundProcess:
        """Start reading a new background process; its handle (with a fresh id)."""
        with self._lock:
            self._count += 1
            proc = BackgroundProcess(pipe, command, limit, f"proc-{self._count}-{pipe.pid}")
            ended = [k for k, p in self._procs.items() if not p.running]
            for key in ended[: max(0, len(ended) - self.KEEP_ENDED)]:
                del self._procs[key]
            self._procs[proc.id] = proc
            return proc

    def get(self, proc_id: str, sandbox_id: str | None) -> BackgroundProcess:
        """The process with handle ``proc_id``."""
        proc = self._procs.get(proc_id)
        if proc is None:
            raise InvalidArgument(f"no background process {proc_id!r} in sandbox {sandbox_id!r}.")
        return proc

    def kill_all(self) -> None:
        """SIGKILL every process (the sandbox stops)."""
        for proc in list(self._procs.values()):
            proc.kill()


class AsyncProcess:
    """The async handle of a synchronous process handle: each blocking call runs in :data:`ASYNC_POOL`."""

    def __init__(self, proc: ProcessAPI) -> None:
        self._proc = proc

    @property
    def id(self) -> str:
        """The handle id."""
        return self._proc.id

    @property
    def pid(self) -> int | None:
        """The process id inside the sandbox's runtime."""
        return self._proc.pid

    @property
    def command(self) -> str:
        """The command line."""
        return self._proc.command

    @property
    def sync(self) -> ProcessAPI:
        """The synchronous handle."""
        return self._proc

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end; the exit code, or ``None`` if still running after ``timeout``."""
        code: int | None = await in_pool(self._proc.wait, timeout)
        return code

    async def output(self) -> str:
        """The output so far."""
        text: str = await in_pool(self._proc.output)
        return text

    async def result(self, timeout: float | None = None) -> CommandResult:
        """Wait and return a :class:`CommandResult`."""
        result: CommandResult = await in_pool(self._proc.result, timeout)
        return result

    async def kill(self) -> None:
        """SIGKILL the process and its descendants."""
        await in_pool(self._proc.kill)

    async def info(self) -> ProcessInfo:
        """Describe the process."""
        info: ProcessInfo = await in_pool(self._proc.info)
        return info

    def __repr__(self) -> str:
        return f"AsyncProcess({self._proc!r})"


__all__ = [
    "ASYNC_POOL",
    "AsyncProcess",
    "BackgroundProcess",
    "OutputStream",
    "ProcessTable",
    "argv_of",
    "collect_output",
    "in_pool",
]
