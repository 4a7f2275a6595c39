"""The namespace runtime: bubblewrap with new pid, ipc, uts, mount (and network) namespaces.

Layout of a sandbox: a read-only root made of the host's system directories (``/usr``,
``/bin``, ``/lib*``, ``/sbin``, ``/etc`` with secrets masked) or of a rootfs directory or
tarball (``config.image``); ``/proc``, a minimal ``/dev``, and the writable ``/workspace``
and ``/tmp``: size-limited tmpfs mounts made by bwrap inside the sandbox's mount namespace, so
that the host's mount table does not grow with every sandbox (each new bwrap copies that table).
The host reaches them through ``/proc/<keeper pid>/root`` with directory fds and confined,
symlink-safe resolution (see :mod:`rock_env.sandbox.confined`). No network unless
``network=True`` (then the host's). All capabilities are dropped; ``--new-session`` and
``--die-with-parent`` are set. The disk limit applies to ``/workspace`` and ``/tmp`` each.

Start-up is one bubblewrap process: its command is a small ``sh`` that runs the default
session's bash in the foreground (on bwrap's stdio pipes), reports the bash's exit code
with a marker, and then stays as the namespace's keeper (``sleep``), so the sandbox outlives
its sessions. bwrap's init is moved into the sandbox's cgroups while bwrap sets up the mounts
(a cgroup-v1 move waits for an RCU grace period, so the two overlap), and whatever it forked
before the move landed is moved after; :meth:`NamespaceRuntime.start` returns only when every
process is inside, before any command is sent, so nothing runs unlimited. Further sessions and one-shot commands enter
the namespaces with ``nsenter`` (which forks into the pid namespace) and drop every
capability with ``setpriv``. Stopping kills the namespace's pid 1, which kills everything inside;
reaping bwrap and removing the cgroups finish in the background (:mod:`rock_env.sandbox.teardown`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache, lru_cache
from pathlib import Path

from rock_env.errors import ImageNotFound, RuntimeUnavailable, SandboxClosed, SandboxError, SandboxStartError
from rock_env.sandbox import teardown
from rock_env.sandbox.confined import open_root
from rock_env.sandbox.hostproc import HostProcessPipe, HostTreePipe, children, descendants, signal_tree
from rock_env.sandbox.models import SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.runtimes.hostdir import HostDirRuntime
from rock_env.sandbox.state import ProcessRef, home_dir, is_sandbox_dir

logger = logging.getLogger(__name__)

EXIT_MARKER = "__ROCK_SHELL_EXIT_"
START_TIMEOUT = 20.0
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
#: files under /etc that hold secrets: replaced by an empty file inside the sandbox
SECRET_FILES = ("shadow", "shadow-", "gshadow", "gshadow-", "security/opasswd", "ssh/ssh_host_*_key", "sudoers")
#: directories under /etc that hold secrets: replaced by an empty tmpfs
SECRET_DIRS = ("ssl/private", "sudoers.d")
#: entries of a rootfs that are never bound from the image (the sandbox provides its own)
ROOTFS_SKIP = {"proc", "dev", "sys", "tmp", "run", "workspace", "root", "home", "mnt", "media", "lost+found"}
NSENTER_NAMESPACES = ["-m", "-u", "-i", "-n", "-p", "-r", "-w"]
SETPRIV = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]

# bwrap's --die-with-parent follows the *thread* that forked it: from a thread other than the
# main one, fork from one long-lived thread so that sandboxes survive short-lived worker threads.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rock-env-bwrap")


@cache
def _probe() -> bool:
    if not (shutil.which("bwrap") and shutil.which("nsenter")):
        return False
    try:
        done = subprocess.run(
            ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _extract_rootfs(tarball: Path) -> Path:
    """Extract a rootfs tarball once into a cache dir (keyed by path, size and mtime)."""
    st = tarball.stat()
    key = hashlib.sha256(f"{tarball.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache_dir = home_dir() / "rootfs"
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / key
    if target.is_dir():
        return target
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        partial = cache_dir / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        done = subprocess.run(["tar", "-C", str(partial), "-xf", str(tarball)], capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise ImageNotFound(f"cannot extract rootfs tarball {tarball}: {done.stderr.strip()[-500:]}")
        partial.rename(target)
    return target


def _secret_stamp(etc: Path) -> tuple[int, ...]:
    """Modification times of the directories that hold secrets: they change when a secret appears or goes."""
    stamp = []
    for sub in ("", "ssh", "security", "ssl"):
        try:
            stamp.append(os.stat(etc / sub).st_mtime_ns)
        except OSError:
            stamp.append(0)
    return tuple(stamp)


@lru_cache(maxsize=64)
def _secrets_in(etc: str, stamp: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Secret files and directories under ``etc`` (relative paths), cached until ``stamp`` changes."""
    files = []
    for pattern in SECRET_FILES:
        for found in sorted(glob.glob(os.path.join(etc, pattern))):
            if os.path.isfile(found) and not os.path.islink(found):
                files.append(os.path.relpath(found, etc))
    dirs = [name for name in SECRET_DIRS if os.path.isdir(os.path.join(etc, name))]
    return tuple(files), tuple(dirs)


def resolve_rootfs(image: str | None) -> Path | None:
    """The rootfs directory for ``config.image`` (``None``: the host's system directories)."""
    if image is None:
        return None
    path = Path(image)
    if path.is_dir():
        return path.resolve()
    if path.is_file():
        return _extract_rootfs(path)
    if image.startswith(("/", "./", "~")):
        raise ImageNotFound(f"rootfs {image!r} does not exist; give a rootfs directory or tarball")
    try:
        from rock_env.sandbox.image import base_rootfs
    except ImportError as exc:  # the image builder is optional
        raise ImageNotFound(f"image {image!r} is not a rootfs path and the image builder is unavailable") from exc
    return base_rootfs(image)


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


def _prefix_suffix(data: bytes, marker: bytes) -> int:
    """Length of the longest end of ``data`` that is a (proper) start of ``marker``."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


class MainShellPipe(HostTreePipe):
    """The pipe to the bash that bwrap starts with the sandbox (the default session).

    bwrap's own stdio is this pipe, so the end of the bash is not an EOF: the keeper shell
    prints an exit marker with the code, which :meth:`read` turns into EOF. Signals go to the
    bash and its descendants only (never to bwrap's process group, which is the sandbox).
    """

    def __init__(self, proc: subprocess.Popen[bytes], token: str) -> None:
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        self._poller = select.poll()
        self._poller.register(self._out, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._marker = f"{EXIT_MARKER}{token}_".encode()
        self._tail = b""
        self._code: int | None = None
        self._eof = False
        self._bash: int | None = None
        self.pid = proc.pid

    def _bash_pid(self) -> int | None:
        if self._bash is None:
            pid: int | None = self._proc.pid
            for _ in range(3):  # bwrap -> bwrap (pid 1) -> sh -> bash
                kids = children(pid) if pid is not None else []
                pid = kids[0] if kids else None
            self._bash = pid
        return self._bash

    def _tree_root(self) -> int | None:
        """The bash (signals for its commands go to its descendants)."""
        return self._bash_pid()

    def write(self, data: bytes) -> None:
        """Write to the bash's stdin."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._in, view) :]

    def close_stdin(self) -> None:
        """Nothing to do: closing would end the session, use kill."""

    def read(self, timeout: float | None = None) -> bytes | None:
        """Next chunk of output; ``b""`` once the bash has exited (marker seen) or the sandbox is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._eof:
                return b""
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._poller.poll(None if remaining is None else int(remaining * 1000 + 0.999)):
                return None
            try:
                chunk = os.read(self._out, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
                if self._code is None:
                    self._code = 137
                tail, self._tail = self._tail, b""
                return tail
            data = self._tail + chunk
            index = data.find(self._marker)
            if index >= 0:
                end = data.find(b"\n", index + len(self._marker))
                if end >= 0:
                    self._code = int(data[index + len(self._marker) : end])
                    self._eof = True
                    self._tail = b""
                    return data[:index]
                self._tail, out = data[index:], data[:index]
            else:
                hold = _prefix_suffix(data, self._marker)  # maybe the start of the exit marker
                self._tail, out = (data[-hold:], data[:-hold]) if hold else (b"", data)
            if out:
                return out

    def poll(self) -> int | None:
        """The bash's exit code once it has ended."""
        if self._code is None and self._proc.poll() is not None:
            self._code = 137
        return self._code

    def wait(self, timeout: float | None = None) -> int | None:
        """Read until the bash has ended; its exit code (None on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._code is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.read(remaining)
        return self._code

    def signal_group(self, sig: int) -> None:
        """Signal the bash and everything it started."""
        pid = self._bash_pid()
        if pid is not None:
            signal_tree(pid, sig, include_root=True)

    def kill(self) -> None:
        """Kill the bash (the sandbox keeps running)."""
        self.signal_group(signal.SIGKILL)
        self.wait(timeout=2)

    def close(self) -> None:
        """Nothing to release: bwrap's pipes close with the sandbox."""


class NamespaceRuntime(HostDirRuntime):
    """Sandboxes as bubblewrap namespaces on this host (see the module docstring)."""

    name = "namespace"
    host_tmpfs = False

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self._bwrap: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._main: MainShellPipe | None = None
        self._keeper_pid: int | None = None
        self._exit_token = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._done: threading.Event | None = None

    @classmethod
    def available(cls) -> bool:
        """True if bubblewrap and nsenter work here."""
        return _probe()

    @property
    def host_pids(self) -> list[int]:
        """The bwrap monitor and the namespace's init."""
        return [p for p in (self._bwrap.pid if self._bwrap else None, self._init_pid) if p is not None]

    # --- lifecycle -------------------------------------------------------------------------

    def _root_args(self) -> list[str]:
        rootfs = resolve_rootfs(self.config.image)
        args: list[str] = []
        names: tuple[str, ...]
        if rootfs is None:
            base, names = Path("/"), SYSTEM_DIRS
        else:
            base, names = rootfs, tuple(sorted(e for e in os.listdir(rootfs) if e not in ROOTFS_SKIP))
        for name in names:
            src = base / name
            if src.is_symlink():
                args += ["--symlink", os.readlink(src), f"/{name}"]
            elif src.is_dir() or (rootfs is not None and src.is_file()):
                args += ["--ro-bind", str(src), f"/{name}"]
        etc = base / "etc"
        if etc.is_dir():
            stamp = _secret_stamp(etc)
            # timestamps are coarse (a clock tick): trust the cache only for directories unchanged for a second
            fresh = time.time_ns() - max(stamp) < 1_000_000_000
            files, dirs = (_secrets_in.__wrapped__ if fresh else _secrets_in)(str(etc), stamp)
            if files:
                empty = self.state_dir / "empty"
                empty.touch()
                for rel in files:
                    args += ["--ro-bind", str(empty), f"/etc/{rel}"]
            for rel in dirs:
                args += ["--tmpfs", f"/etc/{rel}"]
        return args

    def _bwrap_argv(self, *, info_fd: int, block_fd: int) -> list[str]:
        argv = [
            "bwrap",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
        ]
        if not self.config.network:
            argv.append("--unshare-net")
        argv += self._root_args()
        argv += ["--proc", "/proc", "--dev", "/dev"]
        # the writable layer: tmpfs mounts in the sandbox's own mount namespace (none on the host)
        size, capped = self.config.tmpfs_size(mounts=2)
        if capped and self.config.disk is not None:
            logger.warning(
                "sandbox %s: 2 x disk=%s is more than half of memory=%s; %s and /tmp (tmpfs, which counts "
                "against the memory limit) get %d bytes each",
                self.sandbox_id,
                self.config.disk,
                self.config.memory,
                self.config.workdir,
                size,
            )
        disk = str(size)
        argv += ["--size", disk, "--tmpfs", self.config.workdir, "--perms", "1777", "--size", disk, "--tmpfs", "/tmp"]
        # the root itself (a tmpfs holding the mount points and symlinks such as /bin -> usr/bin) is
        # read-only, so `rm -rf /` inside cannot break the sandbox's own system directories
        argv += ["--remount-ro", "/"]
        argv += ["--chdir", self.config.workdir]
        argv += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        # sh runs the default session's bash in the foreground, reports its exit code with a marker,
        # then stays as the namespace's keeper (sleep) so that the sandbox outlives its sessions.
        keeper = (
            f"bash --norc --noprofile; printf '{EXIT_MARKER}%s_%d\\n' {self._exit_token} \"$?\"; "
            "exec sleep infinity </dev/null >/dev/null 2>&1"
        )
        argv += ["sh", "-c", keeper]
        return argv

    def start(self) -> None:
        """Prepare the writable layer and cgroups, then start bwrap with the default session's bash.

        bwrap is unblocked (``--block-fd``) at once and its processes are moved into the sandbox's
        cgroups while it builds the mounts (see :meth:`_move_into_cgroups`); nothing but our own
        shells runs before this returns. Readiness is the first answer of the session's bash.
        """
        self._prepare()
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        try:
            argv = self._bwrap_argv(info_fd=info_w, block_fd=block_r)
            if self.cgroups is None:
                argv = [*self.launcher(), *argv]
            env = {**self.default_env(), **self.config.env}

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=(info_w, block_r),
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
                os.close(info_w)
                os.close(block_r)
            self._bwrap = proc
            info = _read_all(info_r, START_TIMEOUT)
            try:
                child = int(json.loads(info)["child-pid"])
            except (ValueError, KeyError):
                self._start_failed(proc)
            self._init_pid = child
            if self.cgroups is not None:
                self._move_into_cgroups(proc.pid, child, block_w)
            else:
                os.write(block_w, b"1")
        finally:
            os.close(info_r)
            os.close(block_w)
        self._remember(processes=[ProcessRef.of(proc.pid, "bwrap"), ProcessRef.of(child, "init")])
        self._main = MainShellPipe(proc, self._exit_token)
        self._started = True

    def _move_into_cgroups(self, bwrap_pid: int, init_pid: int, block_w: int) -> None:
        """Move the sandbox's processes (not bwrap's monitor) into its cgroups, overlapping bwrap's set-up.

        A cgroup-v1 migration waits for an RCU grace period (about 10 ms here). bwrap's init is
        unblocked first, so that it builds the sandbox's mounts meanwhile; what it forks before its
        own move lands is moved in the next rounds. That is safe because nothing but our own keeper
        shell and the session's bash (waiting for its first command) runs before :meth:`start`
        returns, and a process forked by a moved one is born in the cgroups.
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

    def _start_failed(self, proc: subprocess.Popen[bytes]) -> None:
        output = b""
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                output = _read_all(proc.stdout.fileno(), 2.0)
        code = proc.wait()
        self.stop()
        message = output.decode(errors="replace").strip()[-800:]
        raise SandboxStartError(f"bubblewrap exited with {code} before starting the sandbox: {message}")

    def initial_shell(self) -> ProcessPipe | None:
        """The bash started with the sandbox (used once, for the default session)."""
        main, self._main = self._main, None
        return main

    def stop(self) -> None:
        """Kill the namespace (its pid 1 takes every process with it); the host state goes in the background.

        On return the sandbox is unusable, every process in it has been sent SIGKILL and its state
        dir is gone; reaping bwrap and removing the cgroups (busy until the kernel has torn the
        namespace down) finish on the teardown pool (see :mod:`rock_env.sandbox.teardown`;
        :meth:`wait_stopped` waits for it).
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
        """Reap bwrap (it exits once its init is gone), then remove cgroups and the state dir."""
        try:
            proc = self._bwrap
            if proc is not None:
                if not teardown.wait_exit(proc, 2.0):
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGKILL)
                    teardown.wait_exit(proc, 5.0)
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError):
                            pipe.close()
            self._teardown()
        finally:
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
        """Open ``/workspace`` and ``/tmp`` through ``/proc/<keeper>/root`` (the mounts exist only in there).

        The keeper runs once bwrap has set the mounts up; its root is the sandbox's root, and
        each path is opened one component at a time without following symlinks. The roots must
        be mount points of their own (not the root's file system), or the sandbox moved them.
        """
        if not self.alive():
            raise SandboxClosed(f"sandbox {self.sandbox_id} is not running; start a new one")
        base = f"/proc/{self._keeper()}/root"
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

    def _keeper(self) -> int:
        """Host pid of the keeper shell (pid 2 inside): the nsenter target, its cwd is the workdir.

        bwrap's own init keeps a cwd outside the new root, so entering with its cwd would start
        commands in a directory they cannot see.
        """
        if self._keeper_pid is None:
            assert self._init_pid is not None
            deadline = time.monotonic() + START_TIMEOUT
            while not (kids := children(self._init_pid)):
                if time.monotonic() > deadline or not self.alive():
                    raise SandboxClosed(f"sandbox {self.sandbox_id} has no running keeper process")
                time.sleep(0.001)  # only right after start: bwrap forks the keeper once unblocked
            self._keeper_pid = kids[0]
        return self._keeper_pid

    def open_process(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = True,
    ) -> ProcessPipe:
        """Run ``argv`` inside the namespaces, with no capabilities, in the sandbox's cgroups."""
        if not self.alive() or self._init_pid is None:
            raise SandboxClosed(f"sandbox {self.sandbox_id} is not running; start a new one")
        target = self._keeper()
        full = [*self.launcher(), "nsenter", "-t", str(target), *NSENTER_NAMESPACES, "--", *SETPRIV]
        if cwd is not None and cwd != self.config.workdir:
            full += ["env", "-C", cwd, "--"]
        full += argv
        return HostProcessPipe(full, cwd=None, env=env, stdin=stdin, wrapper_depth=1)
