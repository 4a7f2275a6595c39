"""The bubblewrap command line of a namespace sandbox: its namespaces, its mounts and its pid 1.

:func:`bwrap_argv` plans one sandbox: an unprivileged user namespace (uid 0 inside is the
sandbox's host uid, nested user namespaces forbidden), new pid, ipc, uts (and network)
namespaces, every capability dropped; a read-only root made of the host's system directories or
of a rootfs, with secrets masked; ``/proc``, a minimal read-only ``/dev``; the writable places as
size-limited tmpfs mounts inside the sandbox's mount namespace; and the keeper
(:data:`KEEPER`) as pid 1. :func:`probe` runs the same kind of namespace once to see that this
host can build it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from rock_env.errors import ConfigError
from rock_env.sandbox import uids
from rock_env.sandbox.models import SandboxConfig
from rock_env.sandbox.runtimes.namespace.rootfs import check_reachable, exec_only_shell, resolve_rootfs, secret_entries

logger = logging.getLogger(__name__)

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
#: entries of a rootfs that are never bound from the image (the sandbox provides its own; var: see _var_args)
ROOTFS_SKIP = {"proc", "dev", "sys", "tmp", "run", "workspace", "root", "home", "mnt", "media", "lost+found", "var"}
#: largest /dev/shm (POSIX shared memory, semaphores), like Docker's default; never more than ``disk``
SHM_SIZE = 64 << 20
#: where a session's shell (an execute-only copy of the sandbox's bash) is bound inside
SHELL_PATH = "/.rock-env-bash"
#: what the keeper prints once bwrap has built the sandbox (not a secret: nothing else runs yet)
READY = b"rock-env: sandbox ready\n"
#: pid 1 of the sandbox: says the mounts are up, then reaps orphans forever
KEEPER = "printf 'rock-env: sandbox ready\\n'; exec </dev/null >/dev/null 2>&1; while :; do sleep 86400; done"


def uid_prefix(uid: int) -> list[str]:
    """The command prefix that runs bubblewrap as the sandbox's host uid (none when that is our own uid)."""
    if uid == os.geteuid():
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _userns_argv(uid: int) -> list[str]:
    """bubblewrap as ``uid`` in a user namespace of its own (uid and gid 0 inside, no nested ones), as pid 1."""
    return [
        *uid_prefix(uid),
        "bwrap",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        "0",
        "--gid",
        "0",
        "--as-pid-1",
    ]


@cache
def probe() -> bool:
    """True if bubblewrap can build the sandboxes this runtime builds (an unprivileged user namespace)."""
    if not (shutil.which("bwrap") and shutil.which("nsenter") and shutil.which("setpriv")):
        return False
    try:
        uid = uids.uid_range().start if uids.maps_other_uid() else os.geteuid()
    except ConfigError as exc:
        logger.warning("namespace runtime unavailable: %s", exc)
        return False
    argv = [
        *_userns_argv(uid),
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


def _bind_entry(src: Path, dest: str, *, image: bool) -> list[str]:
    if src.is_symlink():
        return ["--symlink", os.readlink(src), dest]
    if src.is_dir() or (image and src.is_file()):
        return ["--ro-bind", str(src), dest]
    return []


def _var_args(rootfs: Path | None) -> list[str]:
    """``/var`` of the image (read-only, entry by entry) with ``/var/tmp`` a link into the writable ``/tmp``."""
    args = ["--dir", "/var"]
    var = None if rootfs is None else rootfs / "var"
    if var is not None and var.is_dir() and not var.is_symlink():
        for name in sorted(os.listdir(var)):
            if name != "tmp":
                args += _bind_entry(var / name, f"/var/{name}", image=True)
    return [*args, "--symlink", "../tmp", "/var/tmp"]


def _root_args(rootfs: Path | None, null_fds: list[int]) -> list[str]:
    """Read-only binds of the system directories (or the image's entries), secrets masked."""
    args: list[str] = []
    names: tuple[str, ...]
    if rootfs is None:
        base, names = Path("/"), SYSTEM_DIRS
    else:
        base, names = rootfs, tuple(sorted(e for e in os.listdir(rootfs) if e not in ROOTFS_SKIP))
    for name in names:
        args += _bind_entry(base / name, f"/{name}", image=rootfs is not None)
    args += _var_args(rootfs)
    etc = base / "etc"
    if etc.is_dir():
        files, dirs = secret_entries(etc)
        for rel in files:  # an empty, read-only file (bwrap reads, then closes, a /dev/null fd for each)
            null_fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            args += ["--ro-bind-data", str(null_fds[-1]), f"/etc/{rel}"]
        for rel in dirs:
            args += ["--size", "4096", "--tmpfs", f"/etc/{rel}", "--remount-ro", f"/etc/{rel}"]
    return args


def bwrap_argv(
    config: SandboxConfig,
    sandbox_id: str,
    *,
    uid: int,
    info_fd: int,
    block_fd: int,
    null_fds: list[int],
    ro_binds: Sequence[tuple[str, str]] = (),
) -> tuple[list[str], bool]:
    """bubblewrap's argv for one sandbox run as host ``uid``, and whether a session shell is bound at :data:`SHELL_PATH`.

    ``null_fds`` gets the ``/dev/null`` fds that mask secret files (bwrap must inherit them; the
    caller closes them, also when this raises half-way). ``ro_binds`` are ``(host dir, inside)``
    pairs bound read-only (a bridge's socket directory, see :mod:`rock_env.sandbox.bridge`).
    """
    rootfs = resolve_rootfs(config.image)
    if rootfs is not None:
        check_reachable(rootfs, uid)
    argv = [
        *_userns_argv(uid),
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
    if not config.network:
        argv.append("--unshare-net")
    argv += _root_args(rootfs, null_fds)
    shell = exec_only_shell(rootfs)
    if shell is not None:
        argv += ["--ro-bind", str(shell), SHELL_PATH]
    # bwrap mounts /proc with /proc/sys, /proc/sysrq-trigger, /proc/irq and /proc/bus read-only
    # in a user namespace; /dev is its minimal device set, made read-only below
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # the writable places: tmpfs mounts in the sandbox's own mount namespace (none on the host)
    size, capped = config.tmpfs_size(mounts=2)
    if capped and config.disk is not None:
        logger.warning(
            "sandbox %s: 2 x disk=%s is more than half of memory=%s; %s and /tmp (tmpfs, which counts "
            "against the memory limit) get %d bytes each",
            sandbox_id,
            config.disk,
            config.memory,
            config.workdir,
            size,
        )
    disk = str(size)
    shm = str(min(size, SHM_SIZE))
    argv += ["--perms", "1777", "--size", shm, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    argv += ["--size", disk, "--tmpfs", config.workdir, "--perms", "1777", "--size", disk, "--tmpfs", "/tmp"]
    for host_dir, inside in ro_binds:
        argv += ["--ro-bind", host_dir, inside]
    # the root itself (a tmpfs holding the mount points and symlinks such as /bin -> usr/bin) is
    # read-only, so `rm -rf /` inside cannot break the sandbox's own system directories
    argv += ["--remount-ro", "/"]
    argv += ["--chdir", config.workdir]
    argv += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
    argv += ["sh", "-c", KEEPER]
    return argv, shell is not None


__all__ = ["KEEPER", "READY", "SHELL_PATH", "SHM_SIZE", "bwrap_argv", "probe", "uid_prefix"]
