"""Counting what sandboxes leave on the host: processes, containers, mounts, cgroups, state and temp dirs.

A :class:`Scope` says what belongs to this test run (this xdist worker): the sandbox ids it created
(``sb-<12 hex>``, local and server-side), the state roots and temp dirs it gave its SDK and its
servers, the host pids of its own processes (the test process, its servers, its driver children)
and the tag it puts into every sandbox's environment. :func:`snapshot` lists every host object
that looks like a sandbox's and is attributable to the scope, so that two workers (or another
engineer's tests on the same host) never count each other's sandboxes:

- processes: those in a ``rock-env-sb-*`` cgroup, reapers and ``gc --reap`` runs, and ``bwrap``,
  ``nsenter``, ``setpriv`` or sandbox-uid processes; ours if their sandbox id is known, their
  environment carries the tag, or one of their ancestors is one of our processes;
- docker containers labelled ``rock_env.sandbox`` (ours by sandbox id or by the owner label's pid);
- mounts (``/proc/self/mountinfo`` lines naming one of our roots or a known sandbox id);
- cgroups named ``rock-env-sb-*`` under every hierarchy of ``/sys/fs/cgroup`` (ours by id);
- entries of our state roots and their uid pools, and ``rock-env-*`` entries of our temp dirs.

:func:`leaks` compares two snapshots; :func:`wait_for_no_leaks` polls (background teardown takes
a moment) until nothing new is left or the settle time is over.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_ID = re.compile(r"sb-[0-9a-f]{12}")
CGROUP_ID = re.compile(r"rock-env-(sb-[0-9a-f]{12})")
#: commands that only ever run on behalf of a sandbox
SANDBOX_COMMS = {"bwrap", "nsenter", "setpriv"}
#: the environment variable every sandbox of the suite carries (its value: the run's tag)
TAG_VAR = "ROCK_ENV_ABUSE_TAG"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SETTLE = 10.0


@dataclass
class Scope:
    """What belongs to this test run."""

    tag: str
    #: the run's private directory (state roots, servers' data and temp dirs live below it)
    base: Path = field(default_factory=Path)
    #: the value of $ROCK_ENV_ABUSE_SECRET in the test process (no sandbox may see it)
    secret: str = ""
    state_roots: list[Path] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)
    #: sandbox ids created by this run (``sb-...``)
    ids: set[str] = field(default_factory=set)
    #: sandbox ids that must stay (the canaries): never counted as left over
    keep: set[str] = field(default_factory=set)
    #: host pids of our own processes (the test process, servers, drivers)
    pids: set[int] = field(default_factory=set)

    def add_root(self, root: Path) -> None:
        if root not in self.state_roots:
            self.state_roots.append(root)

    def add_temp(self, path: Path) -> None:
        if path not in self.temp_dirs:
            self.temp_dirs.append(path)

    def refresh_ids(self) -> None:
        """Learn the ids of sandboxes that exist now in our state roots."""
        for root in self.state_roots:
            with contextlib.suppress(OSError):
                for entry in os.listdir(root):
                    if SANDBOX_ID.fullmatch(entry):
                        self.ids.add(entry)


# --- processes ---------------------------------------------------------------------------------


def _read(path: str, limit: int = 1 << 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return b""


@dataclass
class Proc:
    pid: int
    ppid: int
    comm: str
    uid: int
    start: str
    cgroup: str
    cmdline: str

    @property
    def key(self) -> str:
        return f"{self.pid}@{self.start}"


def processes() -> dict[int, Proc]:
    """Every process on the host (pid -> Proc)."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = _read(f"/proc/{pid}/stat", 4096)
        status = _read(f"/proc/{pid}/status", 8192)
        if not stat or not status:
            continue
        close = stat.rfind(b")")
        fields = stat[close + 2 :].split()
        if not fields or fields[0] == b"Z":
            continue
        comm = stat[stat.find(b"(") + 1 : close].decode(errors="replace")
        uid = -1
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                uid = int(line.split()[1])
                break
        out[pid] = Proc(
            pid=pid,
            ppid=int(fields[1]),
            comm=comm,
            uid=uid,
            start=fields[19].decode() if len(fields) > 19 else "?",
            cgroup=_read(f"/proc/{pid}/cgroup").decode(errors="replace"),
            cmdline=_read(f"/proc/{pid}/cmdline", 4096).replace(b"\0", b" ").decode(errors="replace").strip(),
        )
    return out


def _sandbox_uid_range() -> range:
    try:
        from rock_env.sandbox import uids

        return uids.uid_range()
    except Exception:
        return range(0)


def _sandbox_id_of(proc: Proc) -> str | None:
    match = CGROUP_ID.search(proc.cgroup)
    if match:
        return match.group(1)
    if "reaper.sh" in proc.cmdline or "rock_env.sandbox.gc" in proc.cmdline:
        found = SANDBOX_ID.search(proc.cmdline)
        if found:
            return found.group(0)
    return None


def _has_tag(pid: int, tag: str) -> bool:
    return f"{TAG_VAR}={tag}".encode() in _read(f"/proc/{pid}/environ", 1 << 20).split(b"\0")


def sandbox_processes(scope: Scope, procs: dict[int, Proc] | None = None) -> dict[str, str]:
    """Our sandbox-related host processes: key -> description."""
    procs = processes() if procs is None else procs
    uid_range = _sandbox_uid_range()
    own = os.getpid()
    candidates: dict[int, str | None] = {}
    for pid, proc in procs.items():
        if pid == own:
            continue
        sid = _sandbox_id_of(proc)
        if sid is not None or proc.comm in SANDBOX_COMMS or proc.uid in uid_range or "reaper.sh" in proc.cmdline:
            candidates[pid] = sid

    def ours_by_ancestry(pid: int) -> bool:
        seen = 0
        current = procs.get(pid)
        while current is not None and current.ppid > 1 and seen < 64:
            if current.ppid in scope.pids:
                return True
            current = procs.get(current.ppid)
            seen += 1
        return False

    out: dict[str, str] = {}
    for pid, sid in candidates.items():
        if sid is not None and sid in scope.keep:
            continue
        if sid is not None and sid not in scope.ids and not _has_tag(pid, scope.tag):
            continue  # another run's sandbox
        if sid is None and not (_has_tag(pid, scope.tag) or ours_by_ancestry(pid)):
            continue
        proc = procs[pid]
        out[proc.key] = f"process {pid} ({proc.comm}, uid {proc.uid}, sandbox {sid or '?'}): {proc.cmdline[:120]}"
    return out


def find_pids(needle: str) -> list[int]:
    """Host pids whose command line contains ``needle``."""
    return [pid for pid, proc in processes().items() if needle in proc.cmdline and pid != os.getpid()]


def uids_of(pid: int) -> list[int]:
    """The real, effective, saved and fs uids of a host process."""
    for line in _read(f"/proc/{pid}/status", 8192).splitlines():
        if line.startswith(b"Uid:"):
            return [int(x) for x in line.split()[1:]]
    return []


# --- containers, mounts, cgroups, dirs ---------------------------------------------------------


def docker_containers(scope: Scope) -> dict[str, str]:
    """Our containers labelled ``rock_env.sandbox`` (running or not)."""
    if shutil.which("docker") is None:
        return {}
    fmt = '{{.ID}}\t{{.Names}}\t{{.Label "rock_env.sandbox"}}\t{{.Label "rock_env.owner"}}\t{{.Status}}'
    try:
        done = subprocess.run(
            ["docker", "ps", "-a", "--no-trunc", "--filter", "label=rock_env.sandbox", "--format", fmt],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 5:
            continue
        cid, name, sid, owner, status = parts[:5]
        if sid in scope.keep:
            continue
        owner_pid = owner.split("/")[1] if owner.count("/") >= 2 else ""
        if sid in scope.ids or (owner_pid.isdigit() and int(owner_pid) in scope.pids):
            out[cid] = f"container {name} (sandbox {sid}, {status})"
    return out


def mounts(scope: Scope) -> dict[str, str]:
    """Mounts (of this mount namespace) under our roots or naming one of our sandboxes."""
    prefixes = [str(r) + "/" for r in scope.state_roots] + [str(t) + "/rock-env" for t in scope.temp_dirs]
    out: dict[str, str] = {}
    for line in _read("/proc/self/mountinfo", 1 << 22).decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4]
        ids = set(SANDBOX_ID.findall(line))
        if ids & scope.keep:
            continue
        if any(point.startswith(prefix) for prefix in prefixes) or ids & scope.ids:
            out[point] = f"mount {point}"
    return out


def cgroup_dirs(scope: Scope) -> dict[str, str]:
    """``rock-env-sb-*`` cgroups of our sandboxes, in every hierarchy under /sys/fs/cgroup."""
    out: dict[str, str] = {}
    if not CGROUP_ROOT.is_dir():
        return out
    for hierarchy in sorted(os.listdir(CGROUP_ROOT)):
        base = CGROUP_ROOT / hierarchy
        if not base.is_dir() or base.is_symlink():
            continue
        for dirpath, dirnames, _ in os.walk(base):
            for name in list(dirnames):
                if name.startswith("rock-env-"):
                    dirnames.remove(name)
                    match = CGROUP_ID.fullmatch(name)
                    sid = match.group(1) if match else None
                    if sid is not None and sid in scope.ids and sid not in scope.keep:
                        path = os.path.join(dirpath, name)
                        out[path] = f"cgroup {path}"
    return out


def state_entries(scope: Scope) -> dict[str, str]:
    """Entries of our state roots (sandbox state dirs) and of their uid pools (held sandbox uids)."""
    out: dict[str, str] = {}
    for root in scope.state_roots:
        for directory, kind in ((root, "state dir"), (root.parent / "uids", "sandbox uid lock")):
            with contextlib.suppress(OSError):
                for entry in os.listdir(directory):
                    path = directory / entry
                    if kind == "sandbox uid lock":
                        owner = _read(str(path), 256).decode(errors="replace").strip()
                        if owner in scope.keep:
                            continue
                    elif entry in scope.keep:
                        continue
                    out[str(path)] = f"{kind} {path}"
    return out


def temp_entries(scope: Scope) -> dict[str, str]:
    """``rock-env-*`` entries of our temp dirs.

    A model service's socket dir (``rock-env-ms-<owner pid>-*``) counts when its owner is this run's
    or is gone (a leak); one of another live process (e.g. the other xdist worker's test) does not.
    """
    out: dict[str, str] = {}
    for directory in scope.temp_dirs:
        with contextlib.suppress(OSError):
            for entry in os.listdir(directory):
                if entry.startswith("rock-env") and not _owned_by_another_live_process(entry, scope):
                    out[str(directory / entry)] = f"temp {directory / entry}"
    return out


def _owned_by_another_live_process(entry: str, scope: Scope) -> bool:
    owner = entry.removeprefix("rock-env-ms-").partition("-")[0]
    if not entry.startswith("rock-env-ms-") or not owner.isdigit():
        return False
    pid = int(owner)
    return pid not in scope.pids and os.path.exists(f"/proc/{pid}")


KINDS = ("processes", "containers", "mounts", "cgroups", "state", "temp")


def snapshot(scope: Scope) -> dict[str, dict[str, str]]:
    """Everything of ours that a sandbox leaves on the host, by kind."""
    scope.refresh_ids()
    return {
        "processes": sandbox_processes(scope),
        "containers": docker_containers(scope),
        "mounts": mounts(scope),
        "cgroups": cgroup_dirs(scope),
        "state": state_entries(scope),
        "temp": temp_entries(scope),
    }


def counts(snap: dict[str, dict[str, str]]) -> dict[str, int]:
    return {kind: len(items) for kind, items in snap.items()}


def leaks(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """What is in ``after`` but was not in ``before``."""
    out = []
    for kind in KINDS:
        for key, text in sorted(after.get(kind, {}).items()):
            if key not in before.get(kind, {}):
                out.append(text)
    return out


def wait_for_no_leaks(
    scope: Scope, before: dict[str, dict[str, str]], settle: float = SETTLE
) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Poll until nothing new is left (or ``settle`` seconds); (what is left, the last snapshot)."""
    deadline = time.monotonic() + settle
    while True:
        after = snapshot(scope)
        left = leaks(before, after)
        if not left or time.monotonic() > deadline:
            return left, after
        time.sleep(0.2)


def reap_leftovers(scope: Scope) -> list[str]:
    """After a failed check: reap what our sandboxes left (state dirs in our roots, by their records, and our
    containers), so that a failing case does not leave mounts or containers on the host. What was done."""
    from rock_env.sandbox.gc import reap_dir

    done: list[str] = []
    for root in scope.state_roots:
        with contextlib.suppress(OSError):
            for entry in os.listdir(root):
                if SANDBOX_ID.fullmatch(entry) and entry not in scope.keep:
                    with contextlib.suppress(Exception):
                        done += reap_dir(root / entry)
    for cid in docker_containers(scope):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)
            done.append(f"removed container {cid[:12]}")
    return done


def mem_available() -> int:
    """The host's MemAvailable in bytes."""
    for line in _read("/proc/meminfo").decode().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


def stat_id(path: str) -> str | None:
    """``dev:ino`` of ``path`` on the host (following links), or None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def describe(items: Iterable[str], limit: int = 30) -> str:
    items = list(items)
    text = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {text}{more}"
