"""Per-sandbox cgroups (v1: pids, and memory/cpu when limited) with limits, kill-all and removal.

A sandbox's cgroups are created below the cgroup of the creating process in each
hierarchy, named ``rock-env-<sandbox id>`` so that ``gc`` recognises them, and removed on
stop. In the pids hierarchy each group of commands (a session, one-shot commands) gets a child
cgroup of its own (:meth:`CgroupSet.child_argv`): the sandbox's limit still counts them all, and
everything a session started, orphans of a fork bomb included, can be listed and killed without
touching the sandbox's own processes (its init) or other sessions. Where no writable cgroup v1 hierarchy exists, :func:`rlimit_argv` gives rlimits as a
fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from rock_env.sandbox.state import started_after

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "rock-env-"
CPU_PERIOD_US = 100_000
#: names of child pids cgroups (sessions, one-shot commands)
CHILD_RE = re.compile(r"^[a-z]-[0-9a-f]{1,32}$")


@cache
def _own_path(controller: str) -> str:
    """This process's cgroup path in the v1 hierarchy of ``controller`` ("/" if unknown)."""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, names, path = line.rstrip("\n").split(":", 2)
                if controller in names.split(","):
                    return path
    except OSError:
        pass
    return "/"


@cache
def available() -> bool:
    """True if this process can create v1 cgroups for every controller used."""
    for controller in CONTROLLERS:
        base = CGROUP_ROOT / controller
        if not (base / "cgroup.procs").exists():
            return False
        if not os.access(base / _own_path(controller).lstrip("/"), os.W_OK):
            return False
    return True


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


class CgroupSet:
    """The cgroups of one sandbox: pids always, memory and cpu when they are limited."""

    def __init__(self, sandbox_id: str, controllers: tuple[str, ...] = CONTROLLERS) -> None:
        self.name = PREFIX + sandbox_id
        # pids always (it also lists and kills every process); memory and cpu only when limited:
        # each hierarchy costs a mkdir, a migration and an rmdir per sandbox.
        wanted = tuple(c for c in CONTROLLERS if c in controllers or c == "pids")
        self.paths = {c: CGROUP_ROOT / c / _own_path(c).lstrip("/") / self.name for c in wanted}
        self._pids_limit: int | None = None
        self._current_fd: int | None = None

    def create(self, *, memory: int | None, pids: int | None, cpus: float | None) -> None:
        """Create the cgroups and set the limits (``None`` leaves a limit unset)."""
        for path in self.paths.values():
            path.mkdir(exist_ok=True)
        mem = self.paths.get("memory")
        if mem is not None:
            if memory is not None:
                _write(mem / "memory.limit_in_bytes", str(memory))
                swap = mem / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    with contextlib.suppress(OSError):
                        _write(swap, str(memory))
            with contextlib.suppress(OSError):
                _write(mem / "memory.swappiness", "0")
        if pids is not None:
            _write(self.paths["pids"] / "pids.max", str(pids))
            self._pids_limit = pids
        if cpus is not None and "cpu" in self.paths:
            _write(self.paths["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.paths["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(cpus * CPU_PERIOD_US))))

    def procs_files(self, child: str | None = None) -> list[str]:
        """The ``cgroup.procs`` files a new process must be written to (``child``: a child pids cgroup)."""
        return [
            str((p / child if child is not None and c == "pids" else p) / "cgroup.procs") for c, p in self.paths.items()
        ]

    def ensure_child(self, child: str) -> None:
        """Create the child pids cgroup ``child`` (idempotent); it has no limit of its own."""
        if not CHILD_RE.match(child):
            raise ValueError(f"bad child cgroup name {child!r}")
        (self.paths["pids"] / child).mkdir(exist_ok=True)

    def child_pids(self, child: str) -> list[int]:
        """Pids of every process in the child pids cgroup ``child``."""
        return _read_pids(self.paths["pids"] / child / "cgroup.procs")

    def kill_child(self, child: str, *, since: tuple[int, int] | None = None, timeout: float = 2.0) -> int:
        """SIGKILL the processes of a child cgroup (only those started after ``since``, a command mark).

        Repeats until none is left (a fork bomb keeps forking until its last process is gone);
        returns how many kill signals were sent.
        """
        return kill_until_gone(
            lambda: [pid for pid in self.child_pids(child) if started_after(pid, since)],
            timeout,
            f"cgroup {self.name}/{child}",
        )

    def children(self) -> list[str]:
        """Names of the child pids cgroups."""
        with contextlib.suppress(OSError):
            return sorted(e.name for e in os.scandir(self.paths["pids"]) if e.is_dir(follow_symlinks=False))
        return []

    def kill_children(self, timeout: float = 2.0, spare: Callable[[], frozenset[int]] = frozenset) -> int:
        """SIGKILL every process of every child cgroup but ``spare()``: all but the sandbox's own (its init); kills sent.

        ``spare`` is asked again in every round (a running command's process tree grows meanwhile).
        """

        def victims() -> list[int]:
            pids = [pid for child in self.children() for pid in self.child_pids(child)]
            keep = spare()  # after the listing: a process listed and forked by the command is in it
            return [pid for pid in pids if pid not in keep]

        return kill_until_gone(victims, timeout, self.name)

    def near_limit(self, margin: int | None = None) -> bool:
        """True if the sandbox is within ``margin`` processes (default a quarter of the limit, at least 4) of it."""
        current, limit = self.pids_in_use()
        if limit is None:
            return False
        return current >= limit - (max(4, limit // 4) if margin is None else margin)

    def limit_hits(self) -> int:
        """How many forks failed at the sandbox's pids limit so far (``pids.events`` of it and its children).

        cgroup v1 counts a failed fork in the cgroup of the task that forked (a child), not in the
        cgroup whose limit was hit, so the children are summed.
        """
        base = self.paths["pids"]
        return _max_events(base) + sum(_max_events(base / child) for child in self.children())

    def pids_in_use(self) -> tuple[int, int | None]:
        """(processes in the sandbox now, its pids limit or None); one pread of a kept-open file."""
        try:
            if self._current_fd is None:
                self._current_fd = os.open(self.paths["pids"] / "pids.current", os.O_RDONLY | os.O_CLOEXEC)
            current = int(os.pread(self._current_fd, 32, 0))
        except (OSError, ValueError):
            current = 0
        return current, self._pids_limit

    def join(self, pids: list[int]) -> None:
        """Move running processes into the cgroups (their later children follow)."""
        for name in self.procs_files():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    _write(Path(name), str(pid))

    def join_argv(self, child: str | None = None) -> list[str]:
        """A command prefix that moves itself into the cgroups (``child``: that child pids cgroup) and execs the rest.

        A tiny ``sh`` does the join instead of a Python ``preexec_fn``: the latter forces a
        full fork of the Python process (tens of ms here) where ``sh`` costs about 1 ms.
        """
        if child is not None:
            self.ensure_child(child)
        files = self.procs_files(child)
        script = "; ".join(f'echo $$ > "${i + 1}"' for i in range(len(files)))
        return ["sh", "-c", f'{script}; shift {len(files)}; exec "$@"', "rock-env-join", *files]

    def pids(self) -> list[int]:
        """Pids of every process in the sandbox's pids cgroup and its children."""
        base = self.paths["pids"]
        out = _read_pids(base / "cgroup.procs")
        with contextlib.suppress(OSError):
            for entry in os.scandir(base):
                if entry.is_dir(follow_symlinks=False):
                    out += _read_pids(Path(entry.path) / "cgroup.procs")
        return out

    def oom_kills(self) -> int:
        """How many processes the memory limit killed."""
        if "memory" not in self.paths:
            return 0
        return _read_counter(self.paths["memory"] / "memory.oom_control", "oom_kill")

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL every process in the sandbox until none is left (a fork bomb included)."""
        kill_until_gone(self.pids, timeout, f"cgroup {self.name}")

    def remove(self) -> None:
        """Kill what is left and remove the cgroups (idempotent)."""
        fd, self._current_fd = self._current_fd, None
        if fd is not None:
            os.close(fd)
        if not any(p.exists() for p in self.paths.values()):
            return
        self.kill_all()
        for path in self.paths.values():
            remove_cgroup_dir(path)

    @staticmethod
    def existing(prefix: str = PREFIX) -> list[Path]:
        """Every rock-env cgroup directory under each controller (for gc)."""
        out: list[Path] = []
        for controller in CONTROLLERS:
            base = CGROUP_ROOT / controller
            if not base.is_dir():
                continue
            for dirpath, dirnames, _ in os.walk(base):
                for name in list(dirnames):
                    if name.startswith(prefix):
                        out.append(Path(dirpath) / name)
                        dirnames.remove(name)
        return out


def counter(text: str, key: str) -> int:
    """The value of ``key`` in the ``key value`` lines of a cgroup file (0 if missing)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _read_counter(path: Path, key: str) -> int:
    """:func:`counter` ``key`` of the file ``path`` (0 if it cannot be read)."""
    try:
        return counter(path.read_text(), key)
    except OSError:
        return 0


def _max_events(path: Path) -> int:
    """The ``max`` counter of a pids cgroup's ``pids.events`` (0 if unreadable)."""
    return _read_counter(path / "pids.events", "max")


def _read_pids(procs: Path) -> list[int]:
    try:
        return [int(x) for x in procs.read_text().split()]
    except (OSError, ValueError):
        return []


def kill_until_gone(list_pids: Callable[[], list[int]], timeout: float, what: str) -> int:
    """SIGKILL what ``list_pids`` returns until it returns nothing (or ``timeout``); the number of kills sent."""
    deadline = time.monotonic() + timeout
    sent = 0
    first = True
    while True:
        pids = list_pids()
        if not pids:
            return sent
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                sent += 1
        if time.monotonic() > deadline:
            logger.warning("%s still has processes %s after %.1fs of SIGKILL", what, pids[:5], timeout)
            return sent
        if not first:
            time.sleep(0.0005)  # killed processes take a moment to leave the cgroup
        first = False


def remove_cgroup_dir(path: Path, timeout: float = 2.0) -> None:
    """rmdir a cgroup and its child cgroups, killing their processes and retrying while exiting tasks hold them busy."""
    if not path.name.startswith(PREFIX):
        raise ValueError(f"refusing to remove {path}: not a rock-env cgroup")
    _remove_tree(path, time.monotonic() + timeout)


def _remove_tree(path: Path, deadline: float) -> None:
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(Path(entry.path), deadline)
    while path.exists():
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            for pid in _read_pids(path / "cgroup.procs"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                logger.warning("could not remove cgroup %s (still busy); 'rock-env sandbox gc' will retry", path)
                return
            time.sleep(0.0005)


def rlimit_argv(*, memory: int | None, pids: int | None, disk: int | None) -> list[str]:
    """A command prefix setting rlimits (address space, processes, file size) where cgroups are missing."""
    limits = []
    if memory is not None:
        limits.append(f"ulimit -v {max(1, memory // 1024)}")
    if pids is not None:
        limits.append(f"ulimit -u {pids}")
    if disk is not None:
        limits.append(f"ulimit -f {max(1, disk // 512)}")
    if not limits:
        return []
    return ["bash", "--norc", "--noprofile", "-c", "; ".join(limits) + '; exec "$@"', "rock-env-limits"]
