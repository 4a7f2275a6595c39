"""The cgroups Docker made for one container, seen from the host: OOM kills, the pids limit, killing.

Docker puts every process of a container into one cgroup per controller (cgroup v1:
``/sys/fs/cgroup/<controller>/docker/<id>`` with the cgroupfs driver,
``.../system.slice/docker-<id>.scope`` with systemd; v2: one directory). The paths are read
from ``/proc/<init pid>/cgroup`` of the container's init, so every layout is found the same way;
a path that does not name the container is not trusted (then the counters read 0 and nothing
is killed through the cgroup).

The runtime uses it to count OOM kills (``memory.oom_control``/``memory.events``: every process
the limit killed, not only a command's last one) and to free a sandbox that a fork bomb or a
runaway job filled to its pids limit: every *command process* is killed, that is every process
of the container outside the session of its init (the keeper, its stdin relay and ttl
watchdog; commands run in sessions of their own: ``docker exec`` starts one per process and the
spare shell calls ``setsid``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path

from rock_env.sandbox.cgroups import counter, kill_until_gone
from rock_env.sandbox.state import started_after, stat_fields

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: seconds a kill loop keeps going while processes are left (a fork bomb keeps forking until its last one dies)
KILL_TIMEOUT = 3.0


def _controller_paths(init_pid: int, container_id: str) -> dict[str, Path]:
    """``{"pids": dir, "memory": dir}`` of the container whose init is ``init_pid`` (missing ones left out)."""
    out: dict[str, Path] = {}
    try:
        lines = Path(f"/proc/{init_pid}/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if container_id not in path:
            continue
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2: one directory for every controller
            directory = CGROUP_ROOT / relative
            out.setdefault("pids", directory)
            out.setdefault("memory", directory)
            continue
        for name in controllers.split(","):
            if name in {"pids", "memory"}:
                directory = CGROUP_ROOT / name / relative
                if directory.is_dir():
                    out[name] = directory
    return {name: directory for name, directory in out.items() if directory.is_dir()}


def _stat_field(pid: int, index: int) -> int | None:
    """Field ``index`` (0: the state) of ``/proc/<pid>/stat`` after the command name, or None if it is gone."""
    fields = stat_fields(pid)
    try:
        return None if fields is None else int(fields[index])
    except (IndexError, ValueError):
        return None


def session_of(pid: int) -> int | None:
    """The session id of host process ``pid`` (host pid numbers), or None if it is gone."""
    return _stat_field(pid, 3)  # state, ppid, pgrp, session


def parent_of(pid: int) -> int | None:
    """The parent pid of host process ``pid``, or None if it is gone."""
    return _stat_field(pid, 1)


class ContainerCgroups:
    """The pids and memory cgroups of one running container, and the processes in them.

    ``init_pid`` is the host pid of the container's init; its session is the keeper's, which
    the kill methods never touch.
    """

    def __init__(self, init_pid: int, container_id: str) -> None:
        self.init_pid = init_pid
        self.container_id = container_id
        self.paths = _controller_paths(init_pid, container_id)
        self._keeper_session = session_of(init_pid)
        self._fds: dict[str, int] = {}  # counter files kept open: read with pread, several per command
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._seen_hits = 0  # the pids limit hits at the last look (free_if_full, kill_command_processes)
        memory = self.paths.get("memory")
        v1 = memory is None or (memory / "memory.oom_control").exists()
        self._oom_file = "memory.oom_control" if v1 else "memory.events"  # cgroup v1 or v2
        raw = self._read("pids", "pids.max").strip()
        if raw.isdigit():
            self._limit = int(raw)

    def _read(self, controller: str, name: str) -> str:
        """The content of a file of one of the container's cgroups ("" if it cannot be read)."""
        base = self.paths.get(controller)
        if base is None:
            return ""
        key = f"{controller}/{name}"
        with self._lock:
            fd = self._fds.get(key)
            if fd is None:
                try:
                    fd = os.open(base / name, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return ""
                self._fds[key] = fd
            try:
                return os.pread(fd, 4096, 0).decode(errors="replace")
            except OSError:
                return ""

    def close(self) -> None:
        """Close the counter files (idempotent)."""
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- counters --------------------------------------------------------------------------

    def oom_kills(self) -> int:
        """How many processes the memory limit killed so far (every one, not only a command's last)."""
        return counter(self._read("memory", self._oom_file), "oom_kill")

    def limit_hits(self) -> int:
        """How many forks failed at the container's pids limit so far (``pids.events``)."""
        return counter(self._read("pids", "pids.events"), "max")

    def pids_in_use(self) -> tuple[int, int | None]:
        """(tasks in the container now, its pids limit or None)."""
        raw = self._read("pids", "pids.current").strip()
        return (int(raw) if raw.isdigit() else 0), self._limit

    # --- processes -------------------------------------------------------------------------

    def procs(self) -> list[int]:
        """Host pids of every process of the container."""
        base = self.paths.get("pids") or self.paths.get("memory")
        if base is None:
            return []
        try:
            return [int(x) for x in (base / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def command_processes(self, spare: Collection[int] = ()) -> list[int]:
        """Every process of the container outside its keeper's session, but ``spare``."""
        out = []
        for pid in self.procs():
            if pid == self.init_pid or pid in spare:
                continue
            session = session_of(pid)
            if session is not None and session != self._keeper_session:
                out.append(pid)
        return out

    def orphans_since(self, since: tuple[int, int]) -> list[int]:
        """Command processes started after ``since`` whose parent is the container's init (reparented orphans)."""
        return [
            pid for pid in self.command_processes() if parent_of(pid) == self.init_pid and started_after(pid, since)
        ]

    def kill_command_processes(self, spare: Collection[int] | Callable[[], Collection[int]] = ()) -> int:
        """SIGKILL every command process but ``spare`` until none is left; the number of kills sent.

        ``spare`` may be a function, asked again in every round (e.g. a running command's process tree).
        """

        def victims() -> list[int]:
            pids = self.command_processes()
            keep = (
                spare() if callable(spare) else spare
            )  # after the listing: a process listed and forked by the command is in it
            return [pid for pid in pids if pid not in keep]

        sent = kill_until_gone(victims, KILL_TIMEOUT, f"container {self.container_id[:12]}")
        self._seen_hits = self.limit_hits()
        return sent

    def free_if_full(self, spare: Collection[int] = (), room: int = 1) -> int:
        """If the container is full of processes, kill every command process but ``spare``; the limit hits so far.

        Full: fewer than ``room`` pids left below its limit (what the caller is about to start needs),
        or near it (within a quarter) after a fork failed at the limit since the last look (a fork
        bomb whose processes wait in bash's fork retry holds the sandbox without filling it at every moment).
        """
        hits = self.limit_hits()
        current, limit = self.pids_in_use()
        if limit is not None and (
            current + room > limit or (hits > self._seen_hits and current >= limit - max(room, limit // 4))
        ):
            logger.info("container %s is at its pids limit: killing every command process", self.container_id[:12])
            self.kill_command_processes(spare)
            hits = self.limit_hits()
        self._seen_hits = hits
        return hits

    def kill_orphans_since(self, since: tuple[int, int]) -> int:
        """SIGKILL the orphans a command left (started after ``since``, reparented to init); kills sent."""
        return kill_until_gone(
            lambda: self.orphans_since(since), KILL_TIMEOUT, f"container {self.container_id[:12]} (orphans)"
        )
