"""The namespace runtime: bubblewrap in an unprivileged user namespace, with new pid, ipc, uts, mount (and network) namespaces.

Who runs what: root inside a sandbox is an unprivileged uid outside. As root, rock-env gives each
sandbox a host uid of its own (:mod:`rock_env.sandbox.uids`) and runs bubblewrap under it
(``setpriv --reuid``); bubblewrap makes a user namespace that maps uid 0 inside to that uid and
nothing else, and forbids nested user namespaces. Every process inside has no capabilities (an
empty bounding set, ``no_new_privs``), so root inside owns nothing of the host: global ``/proc``
knobs (``/proc/sys``, ``/proc/sysrq-trigger``) are read-only to it, and it cannot mount, load
modules, ptrace or signal anything outside.

Layout of a sandbox: a read-only root made of the host's system directories (``/usr``,
``/bin``, ``/lib*``, ``/sbin``, ``/etc`` with secrets masked) or of a rootfs (``config.image``:
an image built by ``rock-env image build-base``, or a rootfs directory or tarball under a
configured image root, see :func:`resolve_rootfs`); ``/proc``; a minimal read-only ``/dev``
(null, zero, full, random, urandom, tty, pts); and the writable places, each a size-limited
tmpfs made inside the sandbox's mount namespace (the host's mount table does not grow with
every sandbox): ``/workspace`` and ``/tmp`` of ``disk`` each, ``/dev/shm`` of at most
:data:`SHM_SIZE` (and never more than ``disk``), and ``/var/tmp`` as a link into ``/tmp``. The host
reaches them through ``/proc/<init pid>/root`` with directory fds and confined, symlink-safe
resolution (see :mod:`rock_env.sandbox.confined`); files the SDK writes there are owned by the
sandbox's uid. No network unless ``network=True`` (then the host's).

Processes: the namespace's pid 1 is a tiny keeper shell (``--as-pid-1``) that reaps orphans and
never exits: no process inside can kill it (the kernel ignores signals to a pid namespace's
init from inside it), so ``kill -9 -1`` or a fork bomb never takes the sandbox down. Sessions and
one-shot commands enter the namespaces with ``nsenter`` (as uid 0 inside) and drop every
capability with ``setpriv``; each session runs in a child pids cgroup of its own, so that what a
command left behind (a fork bomb's orphans) can be killed through the cgroup. bwrap's init is
moved into the sandbox's cgroups while bwrap sets up the mounts, and :meth:`NamespaceRuntime.start`
returns once the keeper reports that the mounts are up. Stopping kills pid 1, which kills
everything inside; reaping bwrap and removing the cgroups finish in the background
(:mod:`rock_env.sandbox.teardown`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, lru_cache
from pathlib import Path

from rock_env.errors import (
    ConfigError,
    ImageNotFound,
    RuntimeUnavailable,
    SandboxClosed,
    SandboxError,
    SandboxStartError,
)
from rock_env.paths import home_dir
from rock_env.sandbox import teardown, uids
from rock_env.sandbox.cgroups import CgroupSet
from rock_env.sandbox.confined import open_root
from rock_env.sandbox.hostproc import HostProcessPipe, command_mark, command_tree, descendants
from rock_env.sandbox.models import SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.runtimes.hostdir import HostDirRuntime
from rock_env.sandbox.state import ProcessRef, is_sandbox_dir

logger = logging.getLogger(__name__)

START_TIMEOUT = 20.0
#: while a sandbox is near its pids limit, a command's output wait wakes this often to look for a fork bomb
GUARD_TICK = 0.25
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
#: files under /etc that hold secrets: replaced by an empty file inside the sandbox
SECRET_FILES = ("shadow", "shadow-", "gshadow", "gshadow-", "security/opasswd", "ssh/ssh_host_*_key", "sudoers")
#: directories under /etc that hold secrets: replaced by an empty read-only tmpfs
SECRET_DIRS = ("ssl/private", "sudoers.d")
#: entries of a rootfs that are never bound from the image (the sandbox provides its own; var: see _var_args)
ROOTFS_SKIP = {"proc", "dev", "sys", "tmp", "run", "workspace", "root", "home", "mnt", "media", "lost+found", "var"}
NSENTER_NAMESPACES = ["-U", "-m", "-u", "-i", "-n", "-p", "-r", "-w"]
SETPRIV = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
#: largest /dev/shm (POSIX shared memory, semaphores), like Docker's default; never more than ``disk``
SHM_SIZE = 64 << 20
#: colon-separated directories under which ``image=`` may name a rootfs directory or tarball
IMAGE_ROOTS_ENV = "ROCK_ENV_IMAGE_ROOTS"
#: where a session's shell (an execute-only copy of the sandbox's bash) is bound inside
SHELL_PATH = "/.rock-env-bash"
#: what the keeper prints once bwrap has built the sandbox (not a secret: nothing else runs yet)
READY = b"rock-env: sandbox ready\n"
#: pid 1 of the sandbox: says the mounts are up, then reaps orphans forever
KEEPER = "printf 'rock-env: sandbox ready\\n'; exec </dev/null >/dev/null 2>&1; while :; do sleep 86400; done"

# bwrap's --die-with-parent follows the *thread* that forked it: from a thread other than the
# main one, fork from one long-lived thread so that sandboxes survive short-lived worker threads.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rock-env-bwrap")


def _uid_prefix(uid: int) -> list[str]:
    """The command prefix that runs bubblewrap as the sandbox's host uid (none when that is our own uid)."""
    if uid == os.geteuid():
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


@cache
def _probe() -> bool:
    """True if bubblewrap can build the sandboxes this runtime builds (an unprivileged user namespace)."""
    if not (shutil.which("bwrap") and shutil.which("nsenter") and shutil.which("setpriv")):
        return False
    try:
        uid = uids.uid_range().start if uids.maps_other_uid() else os.geteuid()
    except ConfigError as exc:
        logger.warning("namespace runtime unavailable: %s", exc)
        return False
    argv = [
        *_uid_prefix(uid),
        "bwrap",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        "0",
        "--gid",
        "0",
        "--as-pid-1",
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "true",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if done.returncode != 0:
        logger.info("namespace runtime unavailable: bubblewrap said %s", done.stderr.decode(errors="replace").strip())
    return done.returncode == 0


def _extract_rootfs(tarball: Path) -> Path:
    """Extract a rootfs tarball once into a cache dir (keyed by path, size and mtime)."""
    st = tarball.stat()
    key = hashlib.sha256(f"{tarball.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache_dir = home_dir() / "rootfs"
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o755)  # the sandbox's unprivileged uid mounts from here
    target = cache_dir / key
    if target.is_dir():
        return target
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        partial = cache_dir / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o755)
        done = subprocess.run(["tar", "-C", str(partial), "-xf", str(tarball)], capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise ImageNotFound(f"cannot extract rootfs tarball {tarball}: {done.stderr.strip()[-500:]}")
        partial.rename(target)
    return target


def exec_only_shell(rootfs: Path | None) -> Path | None:
    """An execute-only (mode 0111, root-owned) copy of the sandbox's bash, made once per bash binary.

    A process that executes a file it cannot read is made non-dumpable by the kernel, which keeps
    every other process of the same uid from ptracing it or opening its ``/proc`` files. ``None``
    if the image has no bash (sessions then fail to start with a clear error of their own).
    """
    base = Path("/") if rootfs is None else rootfs
    source = None
    for rel in ("usr/bin/bash", "bin/bash"):
        candidate = base / rel
        if candidate.is_file() and not candidate.is_symlink():
            source = candidate
            break
    if source is None:
        return None
    st = source.stat()
    key = hashlib.sha256(f"{source}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()).hexdigest()[:16]
    cache_dir = home_dir() / "shells"
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o755)  # bwrap binds from here as the sandbox's uid: it must reach the file
    target = cache_dir / f"bash-{key}"
    if not target.exists():
        partial = cache_dir / f".bash-{key}.{os.getpid()}.{threading.get_ident()}"
        shutil.copyfile(source, partial)
        os.chmod(partial, 0o111)
        os.replace(partial, target)
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


def image_roots() -> list[Path]:
    """Directories under which ``image=`` may name a rootfs directory or tarball.

    The images rock-env builds (``<data dir>/images``) and the colon-separated list in
    ``$ROCK_ENV_IMAGE_ROOTS``. A sandbox never gets the host's ``/`` (or any directory of the
    host outside these roots) as its root.
    """
    from rock_env.sandbox.image import images_dir

    roots = [images_dir()]
    roots += [Path(p) for p in os.environ.get(IMAGE_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(r)) for r in roots]


def _check_image_path(path: Path, image: str) -> Path:
    """``path`` resolved, if it lies strictly under an image root; a ConfigError naming the setting if not."""
    real = Path(os.path.realpath(path))
    roots = image_roots()
    if real == Path("/") or not any(real != root and real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ConfigError(
            f"image={image!r} is not allowed: a rootfs directory or tarball must lie under an image root "
            f"({allowed}); add its parent directory to ${IMAGE_ROOTS_ENV} (colon-separated), or build one "
            "with 'rock-env image build-base' and give its name"
        )
    return real


def _check_reachable(rootfs: Path, uid: int) -> None:
    """The sandbox's uid mounts the rootfs: every directory above it must be searchable by others."""
    if uid == os.geteuid():
        return
    for parent in [rootfs, *rootfs.parents]:
        with contextlib.suppress(OSError):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                raise ImageNotFound(
                    f"rootfs {rootfs} cannot be mounted: {parent} is not searchable by other users (mode "
                    f"{stat.S_IMODE(os.stat(parent).st_mode):o}) and namespace sandboxes mount their root as an "
                    "unprivileged uid; keep images under a directory others can search (e.g. /var/lib/rock-env, "
                    "set $ROCK_ENV_DATA_DIR or $ROCK_ENV_IMAGE_ROOTS)"
                )


def resolve_rootfs(image: str | None) -> Path | None:
    """The rootfs directory for ``config.image`` (``None``: the host's system directories).

    ``image`` is the name of an image rock-env built (``rock-env image build-base``), or a rootfs
    directory or tarball under one of :func:`image_roots`; anything else raises
    :class:`~rock_env.errors.ConfigError` (outside the roots) or :class:`~rock_env.errors.ImageNotFound`.
    """
    if image is None:
        return None
    if not isinstance(image, str) or not image.strip() or "\0" in image:
        raise ConfigError(f"image={image!r} is not an image name or a rootfs path")
    path = Path(image)
    looks_like_path = image.startswith(("/", "./", "../", "~")) or path.exists()
    if looks_like_path:
        path = path.expanduser()
        if not path.exists():
            raise ImageNotFound(f"rootfs {image!r} does not exist; give a rootfs directory or tarball")
        real = _check_image_path(path, image)
        if real.is_dir():
            if not any((real / name).exists() for name in ("usr", "bin")):
                raise ImageNotFound(f"{image!r} is not a rootfs: it has neither usr/ nor bin/")
            return real
        if real.is_file():
            return _extract_rootfs(real)
        raise ImageNotFound(f"rootfs {image!r} is neither a directory nor a tarball")
    from rock_env.sandbox.image import base_rootfs

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


class PidsGuard:
    """Frees a sandbox that a fork bomb (or any runaway job) holds at its pids limit.

    The sandbox is *wedged* when it is at its pids limit, or near it and a fork failed at the limit
    since the last look: then no command could start (nor a session's shell fork), so every command
    process is killed (a session's own shell, or a running command's processes, can be spared).
    Checking costs one file read while the sandbox is far from its limit.
    """

    def __init__(self, cgroups: CgroupSet) -> None:
        self.cgroups = cgroups
        self._seen = 0
        self._lock = threading.Lock()

    def relieve(self, spare: Callable[[], frozenset[int]] = frozenset) -> bool:
        """Kill every command process but those ``spare()`` names if the sandbox is wedged; True if it was."""
        if not self.cgroups.near_limit():
            return False
        with self._lock:
            hits = self.cgroups.limit_hits()
            current, limit = self.cgroups.pids_in_use()
            wedged = hits > self._seen or (limit is not None and current >= limit)
            if wedged:
                logger.info(
                    "sandbox cgroup %s is held at its pids limit: killing its command processes", self.cgroups.name
                )
                self.cgroups.kill_children(spare=spare)
            self._seen = self.cgroups.limit_hits()
            return wedged

    def kill_if_full(self) -> bool:
        """After a command was killed: if the sandbox is (still) near its limit, kill every command process."""
        if not self.cgroups.near_limit():
            return False
        logger.info("sandbox cgroup %s is at its pids limit: killing every command process", self.cgroups.name)
        self.cgroups.kill_children()
        with self._lock:
            self._seen = self.cgroups.limit_hits()
        return True


class GroupPipe(HostProcessPipe):
    """A process that runs in a child pids cgroup of the sandbox: what it started can always be killed.

    On a kill (a timeout, closing the session) the processes of its group that started since the
    command began are killed too, including those no longer below it in the process tree (orphans
    reparented to the sandbox's init, e.g. a fork bomb's). If the sandbox is at its pids limit
    then, every command process of the sandbox is killed: it is full, and nothing else could start.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        guard: PidsGuard,
        group: str,
        env: dict[str, str] | None,
        stdin: bool,
        stdin_socket: bool = False,
        pipe_owner: tuple[int, int] | None = None,
    ) -> None:
        self._guard = guard
        self._group = group
        super().__init__(
            argv, cwd=None, env=env, stdin=stdin, wrapper_depth=1, stdin_socket=stdin_socket, pipe_owner=pipe_owner
        )
        self._command_start = command_mark()

    def _own_shell(self) -> frozenset[int]:
        """The process and its wrapper (``nsenter`` joins the group too: killing it would orphan the shell)."""
        shell = self._tree_root()
        return frozenset({self._proc.pid} if shell is None else {self._proc.pid, shell})

    def _current_processes(self) -> frozenset[int]:
        """The process, its wrapper and what it started since the current command began (host pids)."""
        return frozenset({self._proc.pid}) | command_tree(self._tree_root(), self._command_start)

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next chunk of output (see :meth:`HostProcessPipe.read`), freeing the sandbox if a fork bomb holds it.

        A command whose fork fails at the pids limit (an earlier command's fork bomb refilled the
        sandbox) would wait in bash's fork retry for up to 15 s: each chunk of output (bash says
        "fork: retry") and, while the sandbox is near its limit, every :data:`GUARD_TICK` seconds
        without output, the guard looks, and kills every command process but this command's own.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            armed = self._guard.cgroups.near_limit()
            if armed:
                wait = GUARD_TICK if wait is None else min(wait, GUARD_TICK)
            chunk = super().read(wait)
            if armed or chunk:
                self._guard.relieve(spare=self._current_processes)
            if chunk is not None or (deadline is not None and time.monotonic() >= deadline):
                return chunk

    def mark_command_start(self) -> None:
        """Remember when the session's current command started; free the sandbox first if it is wedged."""
        self._guard.relieve(spare=self._own_shell)
        super().mark_command_start()

    def _kill_group(self, since: tuple[int, int] | None) -> None:
        if not self._guard.kill_if_full():
            self._guard.cgroups.kill_child(self._group, since=since)

    def signal_command(self, sig: int) -> None:
        """Signal what the current command started; with SIGKILL also its orphans, through the cgroup."""
        super().signal_command(sig)
        if sig == signal.SIGKILL:
            self._kill_group(self._command_start)

    def signal_descendants(self, sig: int) -> None:
        """Signal everything the process started; with SIGKILL also its orphans, through the cgroup."""
        super().signal_descendants(sig)
        if sig == signal.SIGKILL:
            self._kill_group(self._command_start)

    def kill(self) -> None:
        """Kill the process, everything it started and (for a session's group) everything left in the group."""
        super().kill()
        self._kill_group(None if self._group.startswith("s-") else self._command_start)


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
        return _probe()

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

    def _root_args(self, rootfs: Path | None, null_fds: list[int]) -> list[str]:
        """Read-only binds of the system directories (or the image's entries), secrets masked."""
        args: list[str] = []
        names: tuple[str, ...]
        if rootfs is None:
            base, names = Path("/"), SYSTEM_DIRS
        else:
            base, names = rootfs, tuple(sorted(e for e in os.listdir(rootfs) if e not in ROOTFS_SKIP))
        for name in names:
            args += self._bind_entry(base / name, f"/{name}", image=rootfs is not None)
        args += self._var_args(rootfs)
        etc = base / "etc"
        if etc.is_dir():
            stamp = _secret_stamp(etc)
            # timestamps are coarse (a clock tick): trust the cache only for directories unchanged for a second
            fresh = time.time_ns() - max(stamp) < 1_000_000_000
            files, dirs = (_secrets_in.__wrapped__ if fresh else _secrets_in)(str(etc), stamp)
            for rel in files:  # an empty, read-only file (bwrap reads, then closes, a /dev/null fd for each)
                null_fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                args += ["--ro-bind-data", str(null_fds[-1]), f"/etc/{rel}"]
            for rel in dirs:
                args += ["--size", "4096", "--tmpfs", f"/etc/{rel}", "--remount-ro", f"/etc/{rel}"]
        return args

    @staticmethod
    def _bind_entry(src: Path, dest: str, *, image: bool) -> list[str]:
        if src.is_symlink():
            return ["--symlink", os.readlink(src), dest]
        if src.is_dir() or (image and src.is_file()):
            return ["--ro-bind", str(src), dest]
        return []

    def _var_args(self, rootfs: Path | None) -> list[str]:
        """``/var`` of the image (read-only, entry by entry) with ``/var/tmp`` a link into the writable ``/tmp``."""
        args = ["--dir", "/var"]
        var = None if rootfs is None else rootfs / "var"
        if var is not None and var.is_dir() and not var.is_symlink():
            for name in sorted(os.listdir(var)):
                if name != "tmp":
                    args += self._bind_entry(var / name, f"/var/{name}", image=True)
        return [*args, "--symlink", "../tmp", "/var/tmp"]

    def _bwrap_argv(self, *, info_fd: int, block_fd: int, null_fds: list[int]) -> list[str]:
        assert self._uid is not None
        rootfs = resolve_rootfs(self.config.image)
        if rootfs is not None:
            _check_reachable(rootfs, self._uid)
        argv = [
            *_uid_prefix(self._uid),
            "bwrap",
            "--unshare-user",
            "--disable-userns",
            "--uid",
            "0",
            "--gid",
            "0",
            "--as-pid-1",
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
        argv += self._root_args(rootfs, null_fds)
        shell = exec_only_shell(rootfs)
        if shell is not None:
            argv += ["--ro-bind", str(shell), SHELL_PATH]
            self._shell_bound = True
        # bwrap mounts /proc with /proc/sys, /proc/sysrq-trigger, /proc/irq and /proc/bus read-only
        # in a user namespace; /dev is its minimal device set, made read-only below
        argv += ["--proc", "/proc", "--dev", "/dev"]
        # the writable places: tmpfs mounts in the sandbox's own mount namespace (none on the host)
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
        shm = str(min(size, SHM_SIZE))
        argv += ["--perms", "1777", "--size", shm, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        argv += ["--size", disk, "--tmpfs", self.config.workdir, "--perms", "1777", "--size", disk, "--tmpfs", "/tmp"]
        # the root itself (a tmpfs holding the mount points and symlinks such as /bin -> usr/bin) is
        # read-only, so `rm -rf /` inside cannot break the sandbox's own system directories
        argv += ["--remount-ro", "/"]
        argv += ["--chdir", self.config.workdir]
        argv += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        argv += ["sh", "-c", KEEPER]
        return argv

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
        null_fds: list[int] = []  # filled by _bwrap_argv, also when it fails half-way
        child_fds = [info_w, block_r, *null_fds]  # the child's ends: closed here once bwrap has them
        try:
            argv = self._bwrap_argv(info_fd=info_w, block_fd=block_r, null_fds=null_fds)
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
        full = [*self.launcher(group), "nsenter", "-t", str(self._init_pid), *NSENTER_NAMESPACES, "--", *SETPRIV]
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

    def open_session(
        self,
        argv: list[str],
        *,
        name: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ProcessPipe:
        """A session's shell: in a child pids cgroup of its own (``s-<hash of the name>``), out of the sandbox's reach.

        The shell is the sandbox's bash run from an execute-only copy (:data:`SHELL_PATH`), which
        the kernel makes non-dumpable: no process of the sandbox, though it runs as the same uid,
        can ptrace it or open its ``/proc/PID/{mem,fd,environ}``; and its stdin is a socket, which
        cannot be reopened through ``/proc``. So the commands it is sent, and the end markers in
        them, cannot be read (or injected) from inside.
        """
        group = "s-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        if self._shell_bound and argv and argv[0] == "bash":
            argv = [SHELL_PATH, *argv[1:]]
        return self.open_process(argv, cwd=cwd, env=env, group=group, stdin_socket=True)
