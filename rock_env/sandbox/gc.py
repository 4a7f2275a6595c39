"""Finding and reaping sandboxes: ``rock-env sandbox list`` / ``gc`` and the reaper's last step.

A sandbox is *orphaned* when the process that created it is gone, and *expired* when its
absolute or idle TTL has passed. Reaping kills its recorded processes and cgroups, unmounts
its mounts and removes its state directory; runtimes with objects outside the state dir
(docker containers) reap them through :meth:`Runtime.gc`. Model-service socket dirs
(``$TMPDIR/rock-env-ms-<owner pid>-*``) of dead processes are removed too.

Only directories that look like sandbox state dirs (``sb-<12 hex digits>``) are ever
removed: :func:`reap_dir` refuses anything else, whatever path it is given.

``python -m rock_env.sandbox.gc --reap DIR`` reaps one sandbox (used by the reaper).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from rock_env.errors import InvalidArgument
from rock_env.sandbox import cgroups, mounts, uids
from rock_env.sandbox.bridge import BRIDGE_DIR_PREFIX, bridge_roots
from rock_env.sandbox.models import SandboxInfo
from rock_env.sandbox.runtimes import RUNTIMES, runtime_class
from rock_env.sandbox.state import SandboxRecord, is_sandbox_dir, process_alive, process_start_time, state_root

logger = logging.getLogger(__name__)

#: a state dir without a record is a sandbox being created; leave it alone this long
HALF_CREATED_GRACE = 60.0
#: an empty rock-env cgroup unknown to the state root is removed after this age
ORPHAN_CGROUP_AGE = 600.0


def sandbox_dirs(root: Path | None = None) -> list[Path]:
    """Every sandbox state directory under the state root."""
    root = state_root() if root is None else root
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_sandbox_dir(p))


def describe(directory: Path, record: SandboxRecord) -> SandboxInfo:
    """A :class:`SandboxInfo` for a recorded sandbox (status from its processes and owner)."""
    if record.runtime in {"local", "docker"}:
        alive = record.owner_alive()
    else:
        alive = any(p.alive() for p in record.processes if p.role != "reaper")
    return SandboxInfo(
        id=record.id,
        runtime=record.runtime,
        status="running" if alive else "dead",
        image=record.config.image if record.config else None,
        created_at=record.created_at,
        owner_pid=record.owner.pid if record.owner else None,
        state_dir=str(directory),
        expires_at=record.expires_at,
        config=record.config,
    )


def list_sandboxes(root: Path | None = None) -> list[SandboxInfo]:
    """Describe every recorded sandbox."""
    out = []
    for directory in sandbox_dirs(root):
        record = SandboxRecord.load(directory)
        if record is not None:
            out.append(describe(directory, record))
    return out


def reap_dir(directory: Path) -> list[str]:
    """Destroy one sandbox from its record: processes, cgroups, mounts, containers, state dir.

    Raises :class:`InvalidArgument` if ``directory`` is not a sandbox state dir (``sb-<id>``).
    """
    directory = Path(os.path.abspath(directory))
    if not is_sandbox_dir(directory):
        raise InvalidArgument(f"{str(directory)!r} is not a sandbox state directory (sb-<12 hex>); refusing to reap it")
    done: list[str] = []
    record = SandboxRecord.load(directory)
    if record is not None:
        for proc in record.processes:
            if proc.pid != os.getpid() and process_alive(proc.pid, proc.start_time):
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
                done.append(f"killed {proc.role or 'process'} {proc.pid}")
        for path in record.cgroups:
            cg = Path(path)
            if cg.exists() and cg.name.startswith(cgroups.PREFIX):
                cgroups.remove_cgroup_dir(cg)
                done.append(f"removed cgroup {cg}")
        if record.containers and record.runtime in RUNTIMES:
            try:
                reap = getattr(runtime_class(record.runtime), "reap_containers", None)
                if reap is not None:
                    done += reap(record.containers)
            except Exception as exc:
                logger.warning("cannot reap containers of %s: %s", record.id, exc)
    done += [f"unmounted {point}" for point in mounts.unmount_below(directory)]
    if mounts.mounted_below(directory):
        done.append(f"kept {directory}: something is still mounted below it")
        return done
    shutil.rmtree(directory, ignore_errors=True)
    done.append(f"removed {directory}")
    if record is not None and record.uid is not None:
        uids.release(record.uid, record.id)
        done.append(f"freed sandbox uid {record.uid}")
    return done


def collect(*, force: bool = False, dry_run: bool = False, root: Path | None = None) -> list[str]:
    """Reap orphaned and expired sandboxes (every sandbox with ``force``); return what was done.

    Also removes empty rock-env cgroups unknown to the state root (older than
    :data:`ORPHAN_CGROUP_AGE`) and asks each importable runtime to reap its own leftovers.
    """
    lines: list[str] = []
    known: set[str] = set()
    now = time.time()
    for directory in sandbox_dirs(root):
        record = SandboxRecord.load(directory)
        known.add(directory.name)
        if record is None:
            try:
                age = now - directory.stat().st_mtime
            except OSError:
                continue
            reason = "no record" if age > HALF_CREATED_GRACE else ""
        elif force:
            reason = "forced"
        elif not record.owner_alive():
            reason = "owner gone"
        elif record.expired(directory, now):
            reason = "ttl expired"
        else:
            reason = ""
        if not reason:
            continue
        if dry_run:
            lines.append(f"would reap {directory.name} ({reason})")
            continue
        lines.append(f"reaping {directory.name} ({reason})")
        lines += ["  " + line for line in reap_dir(directory)]
    for path in cgroups.CgroupSet.existing():
        if path.name[len(cgroups.PREFIX) :] in known:
            continue
        try:
            empty = not (path / "cgroup.procs").read_text().strip()
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if empty and (force or age > ORPHAN_CGROUP_AGE):
            if dry_run:
                lines.append(f"would remove orphan cgroup {path}")
            else:
                cgroups.remove_cgroup_dir(path)
                lines.append(f"removed orphan cgroup {path}")
    lines += uids.reclaim_stale(dry_run=dry_run)
    if root is None:  # the host's state: also the model-service socket dirs of dead processes
        lines += reap_bridge_dirs(force=force, dry_run=dry_run)
    for name in RUNTIMES:
        if name in {"local", "namespace"}:
            continue
        try:
            lines += runtime_class(name).gc(dry_run=dry_run)
        except Exception as exc:
            logger.info("runtime %s: nothing reaped (%s)", name, exc)
    return lines


def _owner_of_bridge_dir(directory: Path) -> int | None:
    """The owner pid in a bridge dir's name (``rock-env-ms-<pid>-<random>``), or ``None``."""
    head = directory.name[len(BRIDGE_DIR_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _boot_time() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def bridge_owner_alive(directory: Path) -> bool:
    """Whether the process named in a bridge dir's name runs and is older than the dir (not a reused pid)."""
    pid = _owner_of_bridge_dir(directory)
    if pid is None:
        return True  # not ours to judge
    ticks = process_start_time(pid)
    if ticks is None:
        return False
    try:
        made = directory.stat().st_mtime
    except OSError:
        return False
    started = _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    return started <= made + 2.0  # a process that started after the dir was made cannot have made it


def reap_bridge_dirs(*, force: bool = False, dry_run: bool = False, root: Path | None = None) -> list[str]:
    """Remove the model-service socket dirs (``$TMPDIR/rock-env-ms-<pid>-*``) whose owner process is gone.

    With ``force`` also those whose owner runs (its sandboxes lose their model endpoint) and
    unlabelled ones. Only directories with the bridge prefix are ever touched.
    """
    roots = bridge_roots() if root is None else [root]
    lines: list[str] = []
    candidates = []
    for where in roots:
        with contextlib.suppress(OSError):
            candidates += sorted(p for p in where.iterdir() if p.name.startswith(BRIDGE_DIR_PREFIX) and p.is_dir())
    for directory in candidates:
        if directory.is_symlink():
            continue
        if force:
            reason = "forced"
        elif _owner_of_bridge_dir(directory) is not None and not bridge_owner_alive(directory):
            reason = "owner gone"
        else:
            continue
        if dry_run:
            lines.append(f"would remove model-service dir {directory} ({reason})")
            continue
        shutil.rmtree(directory, ignore_errors=True)
        lines.append(f"removed model-service dir {directory} ({reason})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m rock_env.sandbox.gc --reap DIR``: reap one sandbox (the reaper's last step)."""
    parser = argparse.ArgumentParser(prog="python -m rock_env.sandbox.gc")
    parser.add_argument("--reap", metavar="DIR", required=True, help="state directory of the sandbox to destroy")
    args = parser.parse_args(argv)
    directory = Path(args.reap)
    if directory.is_dir():
        for line in reap_dir(directory):
            logger.info("%s", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
