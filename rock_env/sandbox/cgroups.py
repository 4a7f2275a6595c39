"""Per-sandbox cgroups (v1: pids, and memory/cpu when limited) with limits, kill-all and removal.

A sandbox's cgroups are created below the cgroup of the creating process in each
hierarchy, named ``rock-env-<sandbox id>`` so that ``gc`` recognises them, and removed on
stop. Where no writable cgroup v1 hierarchy exists, :func:`rlimit_argv` gives rlimits as a
fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "rock-env-"
CPU_PERIOD_US = 100_000


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
        if cpus is not None and "cpu" in self.paths:
            _write(self.paths["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.paths["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(cpus * CPU_PERIOD_US))))

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process must be written to."""
        return [str(p / "cgroup.procs") for p in self.paths.values()]

    def join(self, pids: list[int]) -> None:
        """Move running processes into the cgroups (their later children follow)."""
        for name in self.procs_files():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    _write(Path(name), str(pid))

    def join_argv(self) -> list[str]:
        """A command prefix that moves itself into the cgroups and execs the rest of the argv.

        A tiny ``sh`` does the join instead of a Python ``preexec_fn``: the latter forces a
        full fork of the Python process (tens of ms here) where ``sh`` costs about 1 ms.
        """
        files = self.procs_files()
        script = "; ".join(f'echo $$ > "${i + 1}"' for i in range(len(files)))
        return ["sh", "-c", f'{script}; shift {len(files)}; exec "$@"', "rock-env-join", *files]

    def pids(self) -> list[int]:
        """Pids of every process in the sandbox's pids cgroup."""
        try:
            text = (self.paths["pids"] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def oom_kills(self) -> int:
        """How many processes the memory limit killed."""
        if "memory" not in self.paths:
            return 0
        try:
            for line in (self.paths["memory"] / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL every process in the sandbox until none is left (a fork bomb included)."""
        deadline = time.monotonic() + timeout
        first = True
        while True:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                logger.warning("cgroup %s still has processes %s after %.1fs", self.name, pids[:5], timeout)
                return
            if not first:
                time.sleep(0.0005)  # killed processes take a moment to leave the cgroup
            first = False

    def remove(self) -> None:
        """Kill what is left and remove the cgroups (idempotent)."""
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


def remove_cgroup_dir(path: Path, timeout: float = 2.0) -> None:
    """rmdir a cgroup, killing its processes and retrying while exiting tasks hold it busy."""
    if not path.name.startswith(PREFIX):
        raise ValueError(f"refusing to remove {path}: not a rock-env cgroup")
    deadline = time.monotonic() + timeout
    while path.exists():
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            try:
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
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
