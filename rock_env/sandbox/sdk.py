"""The sandbox SDK: :class:`Sandbox` (sync) and :class:`AsyncSandbox` (async, ROCK-style ``arun``).

>>> from rock_env.sandbox import Sandbox
>>> with Sandbox(runtime="local") as sb:
...     sb.run("export X=1; cd /tmp").exit_code, sb.run("echo $X").output
(0, '1\\n')

A sandbox picks its runtime (``auto``: namespace, else docker, else local with a warning),
records itself under the state dir, and (with a ``ttl`` or ``idle_ttl``) starts a reaper that
destroys it when the deadline passes or its owner dies. Sessions are persistent bash
processes; ``exec`` runs one command outside sessions; ``spawn``/``start(cmd)`` runs one in
the background; ``stream`` yields output as it comes. With ``base_url`` the same class talks
to a rock-env server.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import logging
import math
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import threading
import time
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, overload

from rock_env.errors import (
    InvalidArgument,
    PathOutsideSandbox,
    SandboxClosed,
    SessionExists,
    SessionNotFound,
    SnapshotNotFound,
)
from rock_env.sandbox.files import check_member, normalize_path, reader_of, tar_stream
from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    ProcessInfo,
    SandboxConfig,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
)
from rock_env.sandbox.runtimes import runtime_class, select_runtime
from rock_env.sandbox.runtimes.base import ProcessPipe, Runtime
from rock_env.sandbox.session import BASH_ARGV, BashSession, OutputBuffer
from rock_env.sandbox.state import ProcessRef, SandboxRecord, state_root, touch_activity
from rock_env.validation import check_exec, check_paths, check_run, check_session, check_session_name

logger = logging.getLogger(__name__)

DEFAULT_SESSION = "default"
_REAPER = Path(__file__).with_name("reaper.sh")
#: sandboxes started by this process and not stopped yet (stopped at interpreter exit)
_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _stop_live_sandboxes() -> None:
    for sandbox in list(_LIVE):
        with contextlib.suppress(Exception):
            sandbox.stop()


def new_sandbox_id() -> str:
    """A fresh sandbox id (``sb-`` and 12 hex digits)."""
    return "sb-" + secrets.token_hex(6)


def _merge_config(config: SandboxConfig | None, fields: dict[str, Any]) -> SandboxConfig:
    if config is None:
        return SandboxConfig(**fields)
    if not isinstance(config, SandboxConfig):
        raise InvalidArgument(f"config must be a SandboxConfig, got {type(config).__name__}")
    if fields:
        return SandboxConfig(**{**config.model_dump(), **fields})
    return config


def _argv_of(cmd: str | list[str]) -> list[str]:
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

    def __init__(self, pipe: ProcessPipe, command: str, limit: int) -> None:
        self._pipe = pipe
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


class Sandbox:
    """A sandbox: sessions, one-shot and background commands, files and snapshots.

    ``Sandbox(config=None, *, base_url=None, token=None, **config_fields)``; fields such as
    ``runtime="namespace"``, ``memory="512m"`` override the config. A context manager: enter
    starts it, exit stops it. With ``base_url`` set, returns the remote client
    (``rock_env.remote.sandbox.RemoteSandbox``) with the same methods.
    """

    def __new__(
        cls,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> Any:
        if base_url is not None:
            from rock_env.remote import sandbox as remote  # type: ignore[attr-defined]

            return remote.RemoteSandbox(_merge_config(config, fields), base_url=base_url, token=token)
        return super().__new__(cls)

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> None:
        self.config = _merge_config(config, fields)
        self.id = new_sandbox_id()
        self.state_dir = state_root() / self.id
        self._runtime: Runtime | None = None
        self._runtime_name: str | None = None
        self._sessions: dict[str, BashSession] = {}
        self._processes: list[BackgroundProcess] = []
        self._snapshots: dict[str, SnapshotInfo] = {}
        self._lock = threading.RLock()
        self._reaper: subprocess.Popen[bytes] | None = None
        self._reaper_fd: int | None = None
        self._created_at = time.time()
        self._stopped = False

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def runtime(self) -> str | None:
        """The concrete runtime name once started (``auto`` resolved)."""
        return self._runtime_name

    @overload
    def start(self, cmd: None = None) -> Sandbox: ...

    @overload
    def start(self, cmd: str | list[str]) -> BackgroundProcess: ...

    def start(self, cmd: str | list[str] | None = None) -> Sandbox | BackgroundProcess:
        """Start the sandbox (returns it); with a command, start that in the background (see :meth:`spawn`)."""
        if cmd is not None:
            return self.spawn(cmd)
        with self._lock:
            if self._stopped:
                raise SandboxClosed(f"sandbox {self.id} was stopped; create a new Sandbox")
            if self._runtime is not None:
                return self
            name = select_runtime(self.config.runtime)
            cls = runtime_class(name)
            expires_at = None if self.config.ttl is None else time.time() + self.config.ttl
            record = SandboxRecord(
                id=self.id,
                runtime=name,
                owner=ProcessRef.of(os.getpid(), "owner"),
                config=self.config,
                expires_at=expires_at,
                idle_ttl=self.config.idle_ttl,
            )
            record.save(self.state_dir)
            touch_activity(self.state_dir)
            runtime = cls(self.config, self.id, self.state_dir)
            try:
                runtime.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    runtime.stop()
                from rock_env.sandbox.gc import reap_dir

                reap_dir(self.state_dir)
                raise
            self._runtime, self._runtime_name = runtime, name
            _LIVE.add(self)
            if self.config.ttl is not None or self.config.idle_ttl is not None:
                self._start_reaper(expires_at)
            logger.debug("sandbox %s started (%s)", self.id, name)
            return self

    def _start_reaper(self, expires_at: float | None) -> None:
        read_fd, write_fd = os.pipe()
        idle = self.config.idle_ttl
        try:
            self._reaper = subprocess.Popen(
                [
                    "bash",
                    "--norc",
                    "--noprofile",
                    str(_REAPER),
                    str(self.state_dir),
                    str(0 if expires_at is None else math.ceil(expires_at)),
                    str(0 if idle is None else max(1, math.ceil(idle))),
                    sys.executable,
                ],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
        finally:
            os.close(read_fd)
        self._reaper_fd = write_fd
        record = SandboxRecord.load(self.state_dir)
        if record is not None:
            record.processes.append(ProcessRef.of(self._reaper.pid, "reaper"))
            record.save(self.state_dir)

    def stop(self) -> None:
        """Destroy the sandbox: sessions, processes, the runtime's resources, the state dir. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            _LIVE.discard(self)
            sessions, self._sessions = list(self._sessions.values()), {}
            runtime = self._runtime
        if runtime is not None:
            runtime.stop()  # kills every process of the sandbox, sessions included
        for proc in self._processes:
            proc.kill()
        for session in sessions:
            session.abandon()
        if self._reaper is not None:
            with contextlib.suppress(OSError):
                self._reaper.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(timeout=5)
        if self._reaper_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._reaper_fd)
            self._reaper_fd = None

    close = stop

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        # closing the reaper's pipe makes it reap the sandbox if the owner dropped it without stop()
        fd = getattr(self, "_reaper_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _rt(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            if self._stopped:
                raise SandboxClosed(f"sandbox {self.id} was stopped; create a new Sandbox")
            self.start()
            runtime = self._runtime
            assert runtime is not None
        if self._stopped or not runtime.alive():
            raise SandboxClosed(
                f"sandbox {self.id} is not running (stopped, or reaped after its ttl/idle_ttl); create a new Sandbox"
            )
        return runtime

    def alive(self) -> bool:
        """True while the sandbox runs."""
        return self._runtime is not None and not self._stopped and self._runtime.alive()

    def status(self) -> SandboxInfo:
        """Describe the sandbox."""
        if self._runtime is None:
            state = "stopped" if self._stopped else "created"
        else:
            state = "running" if self.alive() else ("stopped" if self._stopped else "dead")
        return SandboxInfo(
            id=self.id,
            runtime=self._runtime_name or self.config.runtime,
            status=state,  # type: ignore[arg-type]
            image=self.config.image,
            created_at=self._created_at,
            owner_pid=os.getpid(),
            state_dir=str(self.state_dir),
            sessions=sorted(self._sessions),
            expires_at=None if self.config.ttl is None else self._created_at + self.config.ttl,
            config=self.config,
        )

    # --- environment -----------------------------------------------------------------------

    def _env(self, runtime: Runtime, extra: dict[str, str] | None) -> dict[str, str]:
        env = runtime.default_env()
        env.update(self.config.env)
        if extra:
            env.update(extra)
        return env

    def _touch(self) -> None:
        if self.config.idle_ttl is not None:
            touch_activity(self.state_dir)

    def _check_oom(self, runtime: Runtime, result: CommandResult, before: int) -> CommandResult:
        """Set ``oom_killed`` if the memory limit killed any process while the command ran (not only its last)."""
        count = runtime.oom_kills()
        if count > before:
            return result.model_copy(update={"oom_killed": True})
        return result

    # --- sessions --------------------------------------------------------------------------

    def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Start a persistent bash session called ``name`` (cwd, variables and functions persist)."""
        check_session(name, env, cwd)
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"session name must be a non-empty string, got {name!r}")
        runtime = self._rt()
        with self._lock:
            if name in self._sessions:
                raise SessionExists(f"session {name!r} exists already in sandbox {self.id}; close it first")
            workdir = normalize_path(cwd, self.config.workdir) if cwd else self.config.workdir
            fresh = partial(runtime.open_session, list(BASH_ARGV), name=name, cwd=workdir, env=self._env(runtime, env))
            initial = runtime.initial_shell() if name == DEFAULT_SESSION and not env and not cwd else None
            first = [initial] if initial is not None else []

            def opener() -> ProcessPipe:
                return first.pop() if first else fresh()

            # the runtime's own shell answers its start check together with the first command
            session = BashSession(name, opener, output_limit=self.config.output_limit, lazy_start=bool(first))
            self._sessions[name] = session
            return session.info()

    def close_session(self, name: str) -> None:
        """Kill a session and everything it runs."""
        check_session_name(name)
        with self._lock:
            session = self._sessions.pop(name, None)
        if session is None:
            raise SessionNotFound(f"no session {name!r} in sandbox {self.id}; open ones: {sorted(self._sessions)}")
        session.close()

    def sessions(self) -> list[SessionInfo]:
        """The open sessions."""
        return [s.info() for s in list(self._sessions.values())]

    def _session(self, name: str | None) -> BashSession:
        key = DEFAULT_SESSION if name is None else name
        session = self._sessions.get(key)
        if session is None:
            if name is not None:
                raise SessionNotFound(
                    f"no session {name!r} in sandbox {self.id}; create it with create_session({name!r})"
                )
            with self._lock:
                if key not in self._sessions:
                    self.create_session(key)
                session = self._sessions[key]
        return session

    def run(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session (the default one if ``session`` is None)."""
        check_run(cmd, session, timeout)
        if not isinstance(cmd, str):
            raise InvalidArgument(f"run() takes a command string, got {type(cmd).__name__}; use exec() for argv lists")
        runtime = self._rt()
        self._touch()
        target = self._session(session)
        before = runtime.oom_kills()
        result = target.run(cmd, timeout=timeout)
        if not runtime.alive():
            raise SandboxClosed(f"sandbox {self.id} stopped while running {cmd!r} (ttl, idle_ttl or stop())")
        return self._check_oom(runtime, result, before)

    def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C (SIGINT) to the command running in a session."""
        check_session_name(session, allow_none=True)
        self._session(session).interrupt()

    # --- one-shot, background, streaming ---------------------------------------------------

    def _open(
        self, cmd: str | list[str], cwd: str | None, env: dict[str, str] | None, stdin: bool
    ) -> tuple[Runtime, ProcessPipe]:
        argv = _argv_of(cmd)
        runtime = self._rt()
        self._touch()
        workdir = normalize_path(cwd, self.config.workdir) if cwd else self.config.workdir
        return runtime, runtime.open_process(argv, cwd=workdir, env=self._env(runtime, env), stdin=stdin)

    def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside any session (a string runs with ``bash -c``, a list directly)."""
        check_exec(cmd, cwd, env, timeout)
        started = time.monotonic()
        before = self._rt().oom_kills()
        runtime, pipe = self._open(cmd, cwd, env, stdin=stdin is not None)
        if stdin is not None:
            data = stdin.encode() if isinstance(stdin, str) else stdin
            threading.Thread(target=self._feed, args=(pipe, data), daemon=True).start()
        result = collect_output(pipe, timeout=timeout, limit=self.config.output_limit, started=started)
        return self._check_oom(runtime, result, before)

    @staticmethod
    def _feed(pipe: ProcessPipe, data: bytes) -> None:
        with contextlib.suppress(OSError):
            pipe.write(data)
        pipe.close_stdin()

    def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> BackgroundProcess:
        """Start a command in the background; the handle has ``pid``, ``wait``, ``output``, ``kill``."""
        check_exec(cmd, cwd, env)
        _, pipe = self._open(cmd, cwd, env, stdin=False)
        proc = BackgroundProcess(pipe, cmd if isinstance(cmd, str) else " ".join(cmd), self.config.output_limit)
        self._processes = [p for p in self._processes if p.running] + [proc]
        return proc

    def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> OutputStream:
        """Run a command and iterate over its output as it is written."""
        check_exec(cmd, cwd, env, timeout)
        _, pipe = self._open(cmd, cwd, env, stdin=False)
        return OutputStream(pipe, timeout)

    # --- files -----------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        return normalize_path(path, self.config.workdir)

    def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (parents created); ``str`` content is written as UTF-8."""
        check_paths(path)
        if not isinstance(content, str | bytes):
            raise InvalidArgument(f"content must be str or bytes, got {type(content).__name__}")
        data = content.encode() if isinstance(content, str) else content
        target = self._path(path)
        self._touch()
        self._rt().write_file(target, data)

    def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file; text (UTF-8, invalid bytes replaced) unless ``binary=True`` (then bytes)."""
        check_paths(path)
        target = self._path(path)
        self._touch()
        data = self._rt().read_file(target)
        return data if binary else data.decode("utf-8", errors="replace")

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory (sorted by name)."""
        check_paths(path)
        return self._rt().list_dir(self._path(path))

    def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file or directory to ``remote`` inside the sandbox (as a tar stream)."""
        check_paths(remote)
        source = Path(local)
        if not source.exists():
            raise InvalidArgument(f"local path {str(source)!r} does not exist")
        target = self._path(remote)
        parent, name = os.path.split(target)
        self._touch()
        self._rt().put_archive(parent or "/", reader_of(tar_stream(source, name)))

    def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file or directory from the sandbox to ``local`` (streamed; members checked)."""
        check_paths(remote)
        target = Path(local)
        source = self._path(remote)
        self._touch()
        stream = reader_of(self._rt().get_archive(source))
        base = os.path.basename(source.rstrip("/")) or "workspace"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                check_member(member)
                first, _, rest = member.name.partition("/")
                if first != base:
                    raise PathOutsideSandbox(f"unexpected tar member {member.name!r} while downloading {remote!r}")
                member.name = target.name + ("/" + rest if rest else "")
                tar.extract(member, target.parent, filter="data")

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> str:
        """Save the workspace; return the snapshot id for :meth:`restore`."""
        snapshot_id = "snap-" + secrets.token_hex(4)
        size = self._rt().snapshot(snapshot_id)
        self._snapshots[snapshot_id] = SnapshotInfo(id=snapshot_id, created_at=time.time(), size=size)
        return snapshot_id

    def restore(self, snapshot_id: str) -> None:
        """Bring the workspace back to a snapshot (running processes keep running)."""
        if snapshot_id not in self._snapshots:
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id!r} in sandbox {self.id}; known: {sorted(self._snapshots)}"
            )
        self._touch()
        self._rt().restore(snapshot_id)

    def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots taken so far."""
        return list(self._snapshots.values())

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot."""
        if self._snapshots.pop(snapshot_id, None) is None:
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} in sandbox {self.id}")
        self._rt().delete_snapshot(snapshot_id)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, runtime={self._runtime_name or self.config.runtime!r})"


# One shared pool for AsyncSandbox so that many concurrent long commands do not starve asyncio's default pool.
_ASYNC_POOL = ThreadPoolExecutor(max_workers=256, thread_name_prefix="rock-env-sandbox")


class AsyncSandbox:
    """The async twin of :class:`Sandbox`: the same methods as coroutines, ``await sb.arun(cmd)``.

    Blocking work runs in a shared thread pool, so many sandboxes can run commands at once.
    """

    def __new__(
        cls,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> Any:
        if base_url is not None:
            from rock_env.remote import sandbox as remote  # type: ignore[attr-defined]

            return remote.AsyncRemoteSandbox(_merge_config(config, fields), base_url=base_url, token=token)
        return super().__new__(cls)

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> None:
        self._sync = Sandbox(config, **fields)
        self.config = self._sync.config
        self.id = self._sync.id

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(_ASYNC_POOL, partial(fn, *args))

    @property
    def sync(self) -> Sandbox:
        """The underlying synchronous sandbox."""
        return self._sync

    async def start(self, cmd: str | list[str] | None = None) -> Any:
        """Start the sandbox (returns it), or with a command start that in the background."""
        if cmd is not None:
            return await self._call(self._sync.spawn, cmd)
        await self._call(self._sync.start)
        return self

    async def stop(self) -> None:
        """Destroy the sandbox."""
        await self._call(self._sync.stop)

    close = stop

    async def __aenter__(self) -> AsyncSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def status(self) -> SandboxInfo:
        """Describe the sandbox."""
        return self._sync.status()

    async def arun(self, cmd: str, session: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run ``cmd`` in a persistent bash session (ROCK's ``arun``)."""
        result: CommandResult = await self._call(self._sync.run, cmd, session, timeout)
        return result

    run = arun

    async def create_session(self, name: str, env: dict[str, str] | None = None, cwd: str | None = None) -> SessionInfo:
        """Start a persistent bash session."""
        info: SessionInfo = await self._call(self._sync.create_session, name, env, cwd)
        return info

    async def close_session(self, name: str) -> None:
        """Kill a session."""
        await self._call(self._sync.close_session, name)

    async def interrupt(self, session: str | None = None) -> None:
        """Send Ctrl-C to a session's running command."""
        await self._call(self._sync.interrupt, session)

    async def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandResult:
        """Run one command outside sessions."""
        result: CommandResult = await self._call(self._sync.exec, cmd, cwd, env, timeout, stdin)
        return result

    async def spawn(
        self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> BackgroundProcess:
        """Start a command in the background."""
        proc: BackgroundProcess = await self._call(self._sync.spawn, cmd, cwd, env)
        return proc

    async def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[str]:
        """Async-iterate over a command's output as it comes."""
        stream: OutputStream = await self._call(self._sync.stream, cmd, cwd, env, timeout)
        sentinel = object()
        try:
            while True:
                chunk = await self._call(next, stream, sentinel)
                if chunk is sentinel:
                    return
                yield chunk
        finally:
            stream.close()

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file."""
        await self._call(self._sync.write_file, path, content)

    async def read_file(self, path: str, binary: bool = False) -> Any:
        """Read a file."""
        return await self._call(self._sync.read_file, path, binary)

    async def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List a directory."""
        entries: list[FileInfo] = await self._call(self._sync.list_dir, path)
        return entries

    async def upload(self, local: str | os.PathLike[str], remote: str) -> None:
        """Upload a file or directory."""
        await self._call(self._sync.upload, local, remote)

    async def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Download a file or directory."""
        await self._call(self._sync.download, remote, local)

    async def snapshot(self) -> str:
        """Save the workspace."""
        snapshot_id: str = await self._call(self._sync.snapshot)
        return snapshot_id

    async def restore(self, snapshot_id: str) -> None:
        """Restore the workspace."""
        await self._call(self._sync.restore, snapshot_id)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r})"


__all__ = ["AsyncSandbox", "BackgroundProcess", "OutputStream", "Sandbox", "collect_output", "new_sandbox_id"]
