"""The namespace runtime's sandbox: bubblewrap started with the keeper as pid 1, entered with nsenter, torn down.

:meth:`NamespaceRuntime.start` prepares the cgroups and a host uid, starts bubblewrap with the
command line of :mod:`.bwrap`, moves bwrap's init into the sandbox's cgroups while bwrap sets up
the mounts, and returns once the keeper reports that they are up. Processes enter the namespaces
as :mod:`.processes` describes. :meth:`NamespaceRuntime.stop` kills pid 1, which kills everything
inside; reaping bwrap and removing the cgroups finish in the background
(:mod:`rock_env.sandbox.teardown`). Files are reached through ``/proc/<init pid>/root``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rock_env.errors import RuntimeUnavailable, SandboxClosed, SandboxError, SandboxStartError
from rock_env.sandbox import teardown, uids
from rock_env.sandbox.confined import open_root
from rock_env.sandbox.hostproc import HostProcessPipe, descendants, host_executable
from rock_env.sandbox.models import SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.runtimes.hostdir import HostDirRuntime
from rock_env.sandbox.runtimes.namespace.bwrap import READY, SHELL_PATH, bwrap_argv, probe
from rock_env.sandbox.runtimes.namespace.processes import NSENTER_NAMESPACES, SETPRIV, GroupPipe, PidsGuard
from rock_env.sandbox.state import ProcessRef, is_sandbox_dir

logger = logging.getLogger(__name__)

START_TIMEOUT = 20.0

# bwrap's --die-with-parent follows the *thread* that forked it: from a thread other than the
# main one, fork from one long-lived thread so that sandboxes survive short-lived worker threads.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rock-env-bwrap")


def _read_all(fd: int, timeout: float) -> bytes:
    """Read ``fd`` until EOF (or ``timeout`` seconds), blocking in poll."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(int(remaining * 1000) + 1):
            return data
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


class NamespaceRuntime(HostDirRuntime):
    """Sandboxes as bubblewrap namespaces on this host (see the module docstring)."""

    name = "namespace"
    host_tmpfs = False

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self._bwrap: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._uid: int | None = None
        self._guard: PidsGuard | None = None
        self._shell_bound = False
        self._lock = threading.Lock()
        self._done: threading.Event | None = None

    @classmethod
    def available(cls) -> bool:
        """True if bubblewrap, nsenter and setpriv work here with an unprivileged user namespace."""
        return probe()

    @property
    def host_pids(self) -> list[int]:
        """The bwrap monitor and the namespace's init."""
        return [p for p in (self._bwrap.pid if self._bwrap else None, self._init_pid) if p is not None]

    @property
    def host_uid(self) -> int | None:
        """The host uid that root inside this sandbox is (None before start)."""
        return self._uid

    def file_owner(self) -> tuple[int, int] | None:
        """Files the SDK writes into the sandbox belong to root inside it, i.e. its host uid."""
        return None if self._uid is None or self._uid == os.geteuid() else (self._uid, self._uid)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the cgroups and a host uid, then start bwrap with the keeper as the namespace's pid 1.

        bwrap is unblocked (``--block-fd``) at once and its processes are moved into the sandbox's
        cgroups while it builds the mounts (see :meth:`_move_into_cgroups`). Returns when the keeper
        says the sandbox is built; nothing of the caller's runs inside before that.
        """
        self._prepare()
        self._uid = uids.allocate(self.sandbox_id)
        self._remember(uid=self._uid)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        null_fds: list[int] = []  # filled by bwrap_argv, also when it fails half-way
        child_fds = [info_w, block_r, *null_fds]  # the child's ends: closed here once bwrap has them
        try:
            argv, self._shell_bound = bwrap_argv(
                self.config,
                self.sandbox_id,
                uid=self._uid,
                info_fd=info_w,
                block_fd=block_r,
                null_fds=null_fds,
                ro_binds=[(str(m.host_dir), m.inside) for m in self.bridge_mounts],
            )
            child_fds += null_fds
            if self.cgroups is None:
                argv = [*self.launcher(), *argv]
            env = {**self.default_env(), **self.config.env}

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=tuple(child_fds),
                    env=env,
                    start_new_session=True,
                    bufsize=0,
                )

            try:
                on_main = threading.current_thread() is threading.main_thread()
                proc = spawn() if on_main else _SPAWNER.submit(spawn).result()
            except OSError as exc:
                raise RuntimeUnavailable(f"cannot run bubblewrap: {exc}; install the 'bubblewrap' package") from exc
            finally:
                closing, child_fds, null_fds[:] = child_fds, [], []
                for fd in closing:
                    os.close(fd)
            self._bwrap = proc
            # recorded at once: if this process dies before bwrap has set its parent-death signal,
            # `rock-env sandbox gc` still finds (and kills) it
            self._remember(processes=[ProcessRef.of(proc.pid, "bwrap")])
            info = _read_all(info_r, START_TIMEOUT)
            try:
                child = int(json.loads(info)["child-pid"])
            except (ValueError, KeyError):
                self._start_failed(proc, b"")
            self._init_pid = child
            if self.cgroups is not None:
                self._move_into_cgroups(proc.pid, child, block_w)
            else:
                os.write(block_w, b"1")
        finally:
            # each fd exactly once: a second close could hit an fd another thread has opened since
            for fd in {info_r, block_w, *child_fds, *null_fds}:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._remember(processes=[ProcessRef.of(child, "init")])
        self._await_ready(proc)
        self._started = True

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the keeper's ready line (bwrap prints its errors on the same pipe and exits)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while READY not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(int(remaining * 1000) + 1):
                self._start_failed(proc, data, timed_out=True)
            chunk = os.read(fd, 65536)
            if not chunk:
                self._start_failed(proc, data)
            data += chunk
        proc.stdout.close()

    def _move_into_cgroups(self, bwrap_pid: int, init_pid: int, block_w: int) -> None:
        """Move the sandbox's processes (not bwrap's monitor) into its cgroups, overlapping bwrap's set-up.

        A cgroup-v1 migration waits for an RCU grace period (about 10 ms here). bwrap's init is
        unblocked first, so that it builds the sandbox's mounts meanwhile; what it forks before its
        own move lands is moved in the next rounds (only the keeper's ``sleep`` runs before
        :meth:`start` returns), and a process forked by a moved one is born in the cgroups.
        """
        assert self.cgroups is not None
        os.write(block_w, b"1")
        moved = {init_pid}
        self.cgroups.join([init_pid])
        while True:  # until no descendant is new
            todo = [p for p in descendants(bwrap_pid) if p not in moved]
            if not todo:
                return
            self.cgroups.join(todo)
            moved.update(todo)

    def _start_failed(self, proc: subprocess.Popen[bytes], output: bytes, *, timed_out: bool = False) -> None:
        if proc.stdout is not None and not proc.stdout.closed:
            with contextlib.suppress(OSError):
                output += _read_all(proc.stdout.fileno(), 0 if timed_out else 2.0)
        if timed_out:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
        self.stop()
        message = output.decode(errors="replace").strip()[-800:]
        if timed_out:
            raise SandboxStartError(f"the sandbox was not ready within {START_TIMEOUT:.0f}s: {message}")
        raise SandboxStartError(f"bubblewrap exited with {code} before starting the sandbox: {message}")

    def stop(self) -> None:
        """Kill the namespace (its pid 1 takes every process with it); the host state goes in the background.

        On return the sandbox is unusable, every process in it has been sent SIGKILL and its state
        dir is gone; reaping bwrap, removing the cgroups (busy until the kernel has torn the
        namespace down) and giving back the host uid finish on the teardown pool (see
        :mod:`rock_env.sandbox.teardown`; :meth:`wait_stopped` waits for it).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._close_files()
        if self._bwrap is not None and self._init_pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._init_pid, signal.SIGKILL)
        # the state dir goes now (callers check it; nothing in the sandbox uses it): only the waiting is deferred,
        # and if this process dies meanwhile, gc removes the (empty) cgroups as orphans
        if is_sandbox_dir(self.state_dir):
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self._done = threading.Event()
        teardown.submit(self._finish_stop)

    def _finish_stop(self) -> None:
        """Reap bwrap (it exits once its init is gone), then remove cgroups and free the uid."""
        try:
            proc = self._bwrap
            if proc is not None:
                if not teardown.wait_exit(proc, 2.0):
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGKILL)
                    teardown.wait_exit(proc, 5.0)
                if proc.stdout is not None:
                    with contextlib.suppress(OSError):
                        proc.stdout.close()
            self._teardown()
        finally:
            # also when the rest of the teardown failed, as long as bwrap is gone: it exits only after
            # its init, and the kernel ends a pid namespace's other processes before its init is reaped
            if self._uid is not None and (self._bwrap is None or self._bwrap.returncode is not None):
                uids.release(self._uid, self.sandbox_id)
            if self._done is not None:
                self._done.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """After :meth:`stop`: wait until the background teardown has finished (True if it has)."""
        return self._done is None or self._done.wait(timeout)

    def alive(self) -> bool:
        """True while bwrap runs."""
        return self._bwrap is not None and not self._stopped and self._bwrap.poll() is None

    # --- files ---------------------------------------------------------------------------------

    def _open_roots(self) -> dict[str, int]:
        """Open ``/workspace`` and ``/tmp`` through ``/proc/<init>/root`` (the mounts exist only in there).

        The init (the keeper) runs once bwrap has set the mounts up; its root is the sandbox's
        root, and each path is opened one component at a time without following symlinks. The
        roots must be mount points of their own (not the root's file system), or the sandbox moved them.
        """
        if not self.alive() or self._init_pid is None:
            raise SandboxClosed(f"sandbox {self.sandbox_id} is not running; start a new one")
        base = f"/proc/{self._init_pid}/root"
        root_dev = os.stat(base).st_dev
        fds: dict[str, int] = {}
        try:
            for path in (self.config.workdir, "/tmp"):
                fd = open_root(base, path)
                fds[path] = fd
                if os.fstat(fd).st_dev == root_dev:
                    raise SandboxError(f"sandbox {self.sandbox_id}: {path} is no longer its tmpfs mount")
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        return fds

    # --- processes -------------------------------------------------------------------------

    def open_process(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = True,
        group: str | None = None,
        stdin_socket: bool = False,
    ) -> ProcessPipe:
        """Run ``argv`` inside the namespaces as root of the sandbox (no capabilities), in its cgroups.

        ``group`` names the child pids cgroup the process joins (a session's), so that everything it
        starts can be found and killed later; by default one-shot processes share the ``x-0`` group.
        """
        if not self.alive() or self._init_pid is None:
            raise SandboxClosed(f"sandbox {self.sandbox_id} is not running; start a new one")
        group = group or "x-0"
        full = [
            *self.launcher(group),
            host_executable("nsenter"),
            "-t",
            str(self._init_pid),
            *NSENTER_NAMESPACES,
            "--",
            *SETPRIV,
        ]
        if cwd is not None and cwd != self.config.workdir:
            full += ["env", "-C", cwd, "--"]
        full += argv
        if self.cgroups is None:
            return HostProcessPipe(
                full,
                cwd=None,
                env=env,
                stdin=stdin,
                wrapper_depth=1,
                stdin_socket=stdin_socket,
                pipe_owner=self.file_owner(),
            )
        if self._guard is None:
            self._guard = PidsGuard(self.cgroups)
        self._guard.relieve()  # a sandbox held at its pids limit could not start the process
        return GroupPipe(
            full,
            guard=self._guard,
            group=group,
            env=env,
            stdin=stdin,
            stdin_socket=stdin_socket,
            pipe_owner=self.file_owner(),
        )

    def session_argv(self, argv: list[str]) -> list[str]:
        """A session's bash is the execute-only copy bound at :data:`SHELL_PATH` (where the image has bash)."""
        if self._shell_bound and argv and argv[0] == "bash":
            return [SHELL_PATH, *argv[1:]]
        return argv

    def _start_session(self, argv: list[str], name: str, cwd: str | None, env: dict[str, str] | None) -> ProcessPipe:
        """A session's shell: in a child pids cgroup of its own (``s-<hash of the name>``), out of the sandbox's reach.

        The shell is the sandbox's bash run from an execute-only copy (:data:`SHELL_PATH`), which
        the kernel makes non-dumpable: no process of the sandbox, though it runs as the same uid,
        can ptrace it or open its ``/proc/PID/{mem,fd,environ}``; and its stdin is a socket, which
        cannot be reopened through ``/proc``. So the commands it is sent, and the end markers in
        them, cannot be read (or injected) from inside.
        """
        group = "s-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        return self.open_process(argv, cwd=cwd, env=env, group=group, stdin_socket=True)


__all__ = ["START_TIMEOUT", "NamespaceRuntime"]
