"""The state directory: one record per sandbox so that crashes leave nothing unreapable.

Every sandbox gets ``<state root>/<id>/`` holding ``record.json`` (owner pid and start
time, host pids, cgroups, mounts, container ids, deadlines), its workspace mount and its
snapshots. ``rock-env sandbox gc`` and the per-sandbox reaper read these records.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from pydantic import BaseModel, Field

from rock_env.paths import home_dir
from rock_env.sandbox.models import SandboxConfig

RECORD_FILE = "record.json"
ACTIVITY_FILE = "activity"
#: what a sandbox id (and so the name of its state dir) looks like
SANDBOX_ID_RE = re.compile(r"^sb-[0-9a-f]{12}$")


def state_root() -> Path:
    """The directory that holds one subdirectory per sandbox (created on demand).

    ``$ROCK_ENV_SANDBOX_STATE`` if set, else ``$ROCK_ENV_HOME/sandboxes``, else
    ``/dev/shm/rock-env-<uid>/sandboxes`` (a tmpfs: creating and removing the small state
    files there costs microseconds instead of journal writes), else ``/tmp/rock-env-<uid>/sandboxes``.
    """
    explicit = os.environ.get("ROCK_ENV_SANDBOX_STATE")
    if explicit:
        return Path(explicit)
    if os.environ.get("ROCK_ENV_HOME"):
        return home_dir() / "sandboxes"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"rock-env-{os.getuid()}" / "sandboxes"
    return home_dir() / "sandboxes"


def is_sandbox_dir(directory: Path) -> bool:
    """True if ``directory`` looks like a sandbox state dir (named ``sb-<12 hex>``, not a symlink)."""
    return bool(SANDBOX_ID_RE.match(directory.name)) and not directory.is_symlink()


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None if ``pid`` is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``None`` if it does not exist or is a zombie)."""
    fields = stat_fields(pid)
    if not fields or fields[0] == b"Z":
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def started_after(pid: int, since: tuple[int, int] | None) -> bool:
    """True if ``pid`` runs and started after the command mark ``since`` (every running pid with ``None``).

    A mark is ``(clock ticks since boot, last pid handed out)`` (see
    :func:`rock_env.sandbox.hostproc.command_mark`): start times have clock-tick resolution, so a
    process is newer if it started in a later tick, or in the same tick with a higher pid.
    """
    started = process_start_time(pid)
    if started is None:
        return False
    return since is None or started > since[0] or (started == since[0] and pid > since[1])


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """True if ``pid`` runs (not a zombie) and is the same process (same start time) as recorded."""
    if pid is None:
        return False
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


class ProcessRef(BaseModel):
    """A host process recorded with its start time (so pid reuse is not mistaken for it)."""

    pid: int
    start_time: int | None = None
    role: str = ""

    @classmethod
    def of(cls, pid: int, role: str = "") -> ProcessRef:
        """Reference a running process."""
        return cls(pid=pid, start_time=process_start_time(pid), role=role)

    def alive(self) -> bool:
        """True while the very same process runs."""
        return process_alive(self.pid, self.start_time)


class SandboxRecord(BaseModel):
    """What a sandbox created on the host, written before it is created."""

    id: str
    runtime: str
    created_at: float = Field(default_factory=time.time)
    owner: ProcessRef | None = None
    processes: list[ProcessRef] = Field(default_factory=list)
    cgroups: list[str] = Field(default_factory=list)
    mounts: list[str] = Field(default_factory=list)
    containers: list[str] = Field(default_factory=list)
    #: the host uid that root inside the sandbox is (namespace runtime), freed when it is reaped
    uid: int | None = None
    config: SandboxConfig | None = None
    expires_at: float | None = None
    idle_ttl: float | None = None

    def save(self, directory: Path) -> None:
        """Write the record atomically to ``directory/record.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{RECORD_FILE}.{os.getpid()}"
        tmp.write_text(self.model_dump_json())
        os.replace(tmp, directory / RECORD_FILE)

    @classmethod
    def load(cls, directory: Path) -> SandboxRecord | None:
        """Read a record (``None`` if missing or unreadable)."""
        try:
            return cls.model_validate(json.loads((directory / RECORD_FILE).read_text()))
        except (OSError, ValueError):
            return None

    def owner_alive(self) -> bool:
        """True while the process that created the sandbox runs."""
        return self.owner is not None and self.owner.alive()

    def expired(self, directory: Path, now: float | None = None) -> bool:
        """True once the absolute or idle TTL has passed."""
        now = time.time() if now is None else now
        if self.expires_at is not None and now >= self.expires_at:
            return True
        if self.idle_ttl is not None:
            return now >= last_activity(directory, self.created_at) + self.idle_ttl
        return False


def touch_activity(directory: Path) -> None:
    """Record that the sandbox was used now (for the idle TTL)."""
    path = directory / ACTIVITY_FILE
    try:
        os.utime(path)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            path.touch()
    except OSError:
        pass


def last_activity(directory: Path, default: float) -> float:
    """When the sandbox was last used (``default`` if never)."""
    try:
        return (directory / ACTIVITY_FILE).stat().st_mtime
    except OSError:
        return default
