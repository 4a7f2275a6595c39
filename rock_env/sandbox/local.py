"""The local sandbox: :class:`Sandbox`, which talks to its runtime directly.

>>> from rock_env.sandbox import Sandbox
>>> with Sandbox(runtime="local") as sb:
...     sb.run("export X=1; cd /tmp").exit_code, sb.run("echo $X").output
(0, '1\\n')

A sandbox picks its runtime (``auto``: namespace, else docker, else local with a warning),
records itself under the state dir, and (with a ``ttl`` or ``idle_ttl``) starts a reaper that
destroys it when the deadline passes or its owner dies. Sessions are persistent bash
processes; ``exec`` runs one command outside sessions; ``spawn``/``start(cmd)`` runs one in
the background; ``stream`` yields output as it comes. With ``base_url`` the same class returns
the registered remote subclass (see :mod:`rock_env.sandbox.backends`), which talks to a server.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import tarfile
import threading
import time
import weakref
from functools import partial
from pathlib import Path
from typing import Any, overload

from rock_env.errors import (
    InvalidArgument,
    PathOutsideSandbox,
    SandboxClosed,
    SandboxStartError,
    SessionExists,
    SessionNotFound,
    SnapshotNotFound,
)
from rock_env.sandbox.backends import remote_class
from rock_env.sandbox.bridge import BridgeMount, SandboxBridge
from rock_env.sandbox.contract import OutputStreamAPI, ProcessAPI, StreamTransport, check_transport
from rock_env.sandbox.files import check_member, normalize_path, reader_of, tar_stream
from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    SandboxConfig,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
)
from rock_env.sandbox.processes import OutputStream, ProcessTable, argv_of, collect_output
from rock_env.sandbox.runtimes import runtime_class, select_runtime
from rock_env.sandbox.runtimes.base import ProcessPipe, Runtime
from rock_env.sandbox.session import BASH_ARGV, BashSession
from rock_env.sandbox.state import ProcessRef, SandboxRecord, state_root, touch_activity
from rock_env.sandbox.watchdog import Watchdog
from rock_env.validation import check_exec, check_paths, check_run, check_session, check_session_name

logger = logging.getLogger(__name__)

DEFAULT_SESSION = "default"
#: seconds a bridge's forwarder has to say that it listens
FORWARDER_START_TIMEOUT = 20.0
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


def merge_config(config: SandboxConfig | None, fields: dict[str, Any]) -> SandboxConfig:
    if config is None:
        return SandboxConfig(**fields)
    if not isinstance(config, SandboxConfig):
        raise InvalidArgument(f"config must be a SandboxConfig, got {type(config).__name__}")
    if fields:
        return SandboxConfig(**{**config.model_dump(), **fields})
    return config


class Sandbox:
    """A sandbox: sessions, one-shot and background commands, files and snapshots.

    ``Sandbox(config=None, *, base_url=None, token=None, **config_fields)``; fields such as
    ``runtime="namespace"``, ``memory="512m"`` override the config. A context manager: enter
    starts it, exit stops it. With ``base_url`` set, returns an instance of the registered
    remote subclass (``rock_env.remote.RemoteSandbox``), which has the same API
    (:class:`~rock_env.sandbox.contract.SandboxAPI`).
    """

    #: The sandbox id; a local one has it from construction, a remote one once created.
    id: str | None

    def __new__(cls, *args: Any, base_url: str | None = None, **kwargs: Any) -> Sandbox:
        # the front class with a base_url builds the registered remote subclass (whose __init__ then runs)
        return super().__new__(remote_class(cls, Sandbox, 0) if base_url is not None else cls)  # type: ignore[no-any-return]

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        model_service: SandboxBridge | None = None,
        **fields: Any,
    ) -> None:
        if model_service is not None and not isinstance(model_service, SandboxBridge):
            raise InvalidArgument(
                f"model_service must be a rock_env.agents.ModelService (a SandboxBridge), got {type(model_service).__name__}"
            )
        self.config = merge_config(config, fields)
        self._bridge = model_service
        self._forwarder: ProcessPipe | None = None
        self._forwarder_argv: list[str] | None = None
        self.id = self._sid = new_sandbox_id()
        self.state_dir = state_root() / self._sid
        self._runtime: Runtime | None = None
        self._runtime_name: str | None = None
        self._sessions: dict[str, BashSession] = {}
        self._processes = ProcessTable()
        self._snapshots: dict[str, SnapshotInfo] = {}
        self._lock = threading.RLock()
        self._reaper: Watchdog | None = None
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
    def start(self, cmd: str | list[str]) -> ProcessAPI: ...

    def start(self, cmd: str | list[str] | None = None) -> Sandbox | ProcessAPI:
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
                id=self._sid,
                runtime=name,
                owner=ProcessRef.of(os.getpid(), "owner"),
                config=self.config,
                expires_at=expires_at,
                idle_ttl=self.config.idle_ttl,
            )
            record.save(self.state_dir)
            touch_activity(self.state_dir)
            mounts = self._open_bridge(name)
            runtime = cls(self.config, self._sid, self.state_dir)
            runtime.bridge_mounts = mounts
            try:
                runtime.start()
                if self._forwarder_argv is not None:
                    self._start_forwarder(runtime)
            except BaseException:
                with contextlib.suppress(Exception):
                    runtime.stop()
                if self._bridge is not None:
                    with contextlib.suppress(Exception):
                        self._bridge.close_bridge(self._sid)
                from rock_env.sandbox.gc import reap_dir

                reap_dir(self.state_dir)
                raise
            self._runtime, self._runtime_name = runtime, name
            _LIVE.add(self)
            if self.config.ttl is not None or self.config.idle_ttl is not None:
                self._reaper = Watchdog(self.state_dir, expires_at, self.config.idle_ttl)
            logger.debug("sandbox %s started (%s)", self.id, name)
            return self

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
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is not None:
            with contextlib.suppress(Exception):
                forwarder.close()
        if self._bridge is not None:
            with contextlib.suppress(Exception):
                self._bridge.close_bridge(self._sid)
        self._processes.kill_all()
        for session in sessions:
            session.abandon()
        if self._reaper is not None:
            self._reaper.stop()

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        # closing the reaper's pipe makes it reap the sandbox if the owner dropped it without stop()
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:
            reaper.release()

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
            id=self._sid,
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

    # --- bridge (model service) -------------------------------------------------------------

    def _open_bridge(self, runtime_name: str) -> list[BridgeMount]:
        """Ask the bridge for its plan: its env joins the config's, its mount goes to the runtime."""
        if self._bridge is None:
            return []
        plan = self._bridge.open_bridge(self._sid, loopback=runtime_name == "local")
        if plan.env:
            self.config = self.config.model_copy(update={"env": {**self.config.env, **plan.env}})
        self._forwarder_argv = list(plan.forwarder) if plan.forwarder and runtime_name != "local" else None
        return [plan.mount] if plan.mount is not None and runtime_name != "local" else []

    def _start_forwarder(self, runtime: Runtime) -> None:
        """Start the bridge's forwarder inside and wait for its ready line."""
        assert self._forwarder_argv is not None
        pipe = runtime.open_process(
            self._forwarder_argv, cwd=self.config.workdir, env=self._env(runtime, None), stdin=False
        )
        deadline = time.monotonic() + FORWARDER_START_TIMEOUT
        data = b""
        while b"\n" not in data:
            chunk = pipe.read(timeout=max(0.0, deadline - time.monotonic()))
            if not chunk:  # None: timed out; b"": it exited
                with contextlib.suppress(Exception):
                    pipe.kill()
                text = data.decode(errors="replace").strip()[-400:]
                raise SandboxStartError(
                    f"sandbox {self._sid}: the model-service forwarder did not start "
                    f"({'timed out' if chunk is None else 'exited'}): {text or 'no output'}; "
                    "the image needs python3 for it"
                )
            data += chunk
        self._forwarder = pipe

    def _ensure_forwarder(self, runtime: Runtime) -> None:
        """Restart the forwarder if it died (killed from inside, or by a limit's recovery)."""
        forwarder = self._forwarder
        if forwarder is None or forwarder.poll() is None:
            return
        with self._lock:
            if self._forwarder is forwarder and not self._stopped:
                self._forwarder = None
                with contextlib.suppress(Exception):
                    forwarder.close()
                logger.info("sandbox %s: restarting the model-service forwarder", self._sid)
                self._start_forwarder(runtime)

    # --- environment -----------------------------------------------------------------------

    def _env(self, runtime: Runtime, extra: dict[str, str] | None) -> dict[str, str]:
        if self._forwarder is not None:
            self._ensure_forwarder(runtime)
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
        argv = argv_of(cmd)
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

    def spawn(self, cmd: str | list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> ProcessAPI:
        """Start a command in the background; the handle has ``id``, ``pid``, ``wait``, ``output``, ``kill``."""
        check_exec(cmd, cwd, env)
        _, pipe = self._open(cmd, cwd, env, stdin=False)
        return self._processes.add(pipe, cmd if isinstance(cmd, str) else " ".join(cmd), self.config.output_limit)

    def process(self, proc_id: str) -> ProcessAPI:
        """A background process by its handle id (``InvalidArgument`` if unknown)."""
        return self._processes.get(proc_id, self.id)

    def stream(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        *,
        transport: StreamTransport = "sse",
    ) -> OutputStreamAPI:
        """Run a command and iterate over its output as it is written (``transport`` matters only remotely)."""
        check_exec(cmd, cwd, env, timeout)
        check_transport(transport)
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


__all__ = ["DEFAULT_SESSION", "Sandbox", "merge_config", "new_sandbox_id"]
