"""Reaping what a private Ray head (``cluster.address=local``) left behind after an admin crash.

Ray's own fate sharing ends most head processes with the admin, but some agents outlive a
SIGKILLed driver. The admin therefore records the Ray processes it started (PID and start
time, so that a reused PID is never mistaken for one) in ``<data_dir>/ray-head.json``; the
next admin started on that data directory kills those still running, and a clean shutdown
kills any straggler and removes the record.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from rock_env.sandbox.hostproc import descendants
from rock_env.sandbox.state import ProcessRef

logger = logging.getLogger(__name__)

RECORD_NAME = "ray-head.json"
_REFS = TypeAdapter(list[ProcessRef])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def is_ray_process(cmdline: str) -> bool:
    """Whether a command line is one of Ray's (its binaries, scripts or ``ray::`` workers)."""
    return cmdline.startswith("ray::") or "/site-packages/ray/" in cmdline or "/ray/core/src/" in cmdline


def ray_descendants(pid: int | None = None) -> list[ProcessRef]:
    """Ray processes below ``pid`` (default: this process)."""
    refs = []
    for child in descendants(pid if pid is not None else os.getpid()):
        cmdline = _cmdline(child)
        if is_ray_process(cmdline):
            ref = ProcessRef.of(child, role=cmdline[:120])
            if ref.start_time is not None:
                refs.append(ref)
    return refs


def record(data_dir: Path, root: int | None = None) -> int:
    """Add the current Ray descendants of ``root`` (default: this process) to the record; how many are recorded."""
    path = data_dir / RECORD_NAME
    known = {(r.pid, r.start_time): r for r in _load(path)}
    for ref in ray_descendants(root):
        known[(ref.pid, ref.start_time)] = ref
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(_REFS.dump_json(list(known.values())))
    os.replace(tmp, path)
    return len(known)


def reap(data_dir: Path) -> int:
    """SIGKILL the recorded processes that still run, then drop the record; how many were killed."""
    path = data_dir / RECORD_NAME
    killed = 0
    for ref in _load(path):
        if ref.pid > 1 and ref.pid != os.getpid() and ref.alive() and is_ray_process(_cmdline(ref.pid)):
            try:
                os.kill(ref.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                continue
            except PermissionError:
                logger.warning("cannot kill leftover Ray process %d (%s)", ref.pid, ref.role)
    path.unlink(missing_ok=True)
    if killed:
        logger.info("killed %d Ray process(es) left by an earlier admin in %s", killed, data_dir)
    return killed


def _load(path: Path) -> list[ProcessRef]:
    try:
        return _REFS.validate_json(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValidationError, json.JSONDecodeError) as exc:
        logger.warning("ignoring unreadable Ray process record %s: %s", path, exc)
        return []
