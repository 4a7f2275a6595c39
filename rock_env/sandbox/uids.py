"""Host uids for namespace sandboxes: root inside a sandbox is an unprivileged uid outside.

When rock-env runs as root, each namespace sandbox gets a host uid of its own from a range that
no account uses (default ``1_500_000_000`` + 0..65535, ``$ROCK_ENV_SANDBOX_UID_BASE`` and
``$ROCK_ENV_SANDBOX_UID_COUNT`` to move it). The sandbox's user namespace maps its uid 0 to that
uid and nothing else, so root inside owns nothing on the host, and two sandboxes never share a
uid (nor its per-user kernel counters: inotify instances, keyrings, user namespaces).

A uid is held by a lock file ``<state root>/../uids/<uid>`` created with ``O_EXCL`` that names the
sandbox, so concurrent processes on one host never hand out the same uid. Run as a non-root user,
bubblewrap can only map the caller's own uid: that uid is used (it is unprivileged already).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from functools import cache
from pathlib import Path

from rock_env.errors import ConfigError, SandboxStartError
from rock_env.sandbox.state import state_root

DEFAULT_BASE = 1_500_000_000
DEFAULT_COUNT = 65_536
#: a lock file whose sandbox state dir is gone is stale after this many seconds
STALE_AFTER = 60.0


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"${name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ConfigError(f"${name}={raw!r} must be positive")
    return value


@cache
def uid_range() -> range:
    """The host uids handed to sandboxes (checked once against the host's accounts and subuid ranges)."""
    base = _int_env("ROCK_ENV_SANDBOX_UID_BASE", DEFAULT_BASE)
    count = _int_env("ROCK_ENV_SANDBOX_UID_COUNT", DEFAULT_COUNT)
    if base < 65_536 or base + count >= 4_294_967_295:
        raise ConfigError(
            f"sandbox uid range {base}..{base + count - 1} is invalid: it must lie between 65536 and 4294967294; "
            "set $ROCK_ENV_SANDBOX_UID_BASE / $ROCK_ENV_SANDBOX_UID_COUNT"
        )
    wanted = range(base, base + count)
    for used in _host_ranges():
        if used.start < wanted.stop and wanted.start < used.stop:
            raise ConfigError(
                f"sandbox uid range {base}..{base + count - 1} overlaps host uids {used.start}..{used.stop - 1} "
                "(/etc/passwd or /etc/subuid); move it with $ROCK_ENV_SANDBOX_UID_BASE"
            )
    return wanted


def _host_ranges() -> list[range]:
    out: list[range] = []
    with contextlib.suppress(OSError), open("/etc/passwd", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                uid = int(fields[2])
                out.append(range(uid, uid + 1))
    for name in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError), open(name, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    out.append(range(int(fields[1]), int(fields[1]) + int(fields[2])))
    return out


def pool_dir() -> Path:
    """Where the lock files of handed-out uids live."""
    return state_root().parent / "uids"


def maps_other_uid() -> bool:
    """True when sandboxes run under a uid of their own (this process is root)."""
    return os.geteuid() == 0


def allocate(sandbox_id: str) -> int:
    """A host uid for ``sandbox_id``: a fresh one from :func:`uid_range` as root, else this process's uid."""
    if not maps_other_uid():
        return os.geteuid()
    uids = uid_range()
    directory = pool_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = random.randrange(len(uids))
    for attempt in range(2):
        for offset in range(len(uids)):
            uid = uids[(start + offset) % len(uids)]
            try:
                fd = os.open(directory / str(uid), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(sandbox_id)
            return uid
        if attempt == 0:
            reclaim_stale()
    raise SandboxStartError(
        f"all {len(uids)} sandbox uids are in use; stop sandboxes, run 'rock-env sandbox gc', or widen "
        "$ROCK_ENV_SANDBOX_UID_COUNT"
    )


def release(uid: int, sandbox_id: str) -> None:
    """Give ``uid`` back (only if it is still held by ``sandbox_id``)."""
    if not maps_other_uid():
        return
    path = pool_dir() / str(uid)
    with contextlib.suppress(OSError):
        if path.read_text() == sandbox_id:
            path.unlink()


def reclaim_stale(*, dry_run: bool = False) -> list[str]:
    """Free the uids of sandboxes whose state dir is gone (a crashed owner); one line per uid."""
    directory = pool_dir()
    if not directory.is_dir():
        return []
    root = state_root()
    now = time.time()
    lines = []
    for entry in directory.iterdir():
        try:
            owner = entry.read_text().strip()
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if (root / owner).is_dir() or age < STALE_AFTER:
            continue
        if not dry_run:
            with contextlib.suppress(OSError):
                entry.unlink()
        lines.append(f"{'would free' if dry_run else 'freed'} sandbox uid {entry.name} (sandbox {owner} is gone)")
    return lines


__all__ = ["allocate", "maps_other_uid", "pool_dir", "reclaim_stale", "release", "uid_range"]
