"""The processes of a namespace sandbox: each in a child pids cgroup, freed when a fork bomb holds the sandbox.

Every process enters the sandbox's namespaces with ``nsenter`` (:data:`NSENTER_NAMESPACES`) and
drops every capability with ``setpriv`` (:data:`SETPRIV`). With cgroups, a process runs in a child
pids cgroup of its own group (a session's, or the shared ``x-0`` of one-shot processes) as a
:class:`GroupPipe`, so that what it left behind (a fork bomb's orphans) can be killed through the
cgroup; a :class:`PidsGuard` per sandbox frees it when it is held at its pids limit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from rock_env.sandbox.cgroups import CgroupSet
from rock_env.sandbox.hostproc import HostProcessPipe, command_mark, command_tree

logger = logging.getLogger(__name__)

#: while a sandbox is near its pids limit, a command's output wait wakes this often to look for a fork bomb
GUARD_TICK = 0.25
NSENTER_NAMESPACES = ["-U", "-m", "-u", "-i", "-n", "-p", "-r", "-w"]
SETPRIV = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]


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


__all__ = ["GUARD_TICK", "NSENTER_NAMESPACES", "SETPRIV", "GroupPipe", "PidsGuard"]
