"""The reaper process of a sandbox with a ``ttl`` or ``idle_ttl``: :class:`Watchdog`.

``reaper.sh`` runs in its own session; it destroys the sandbox when the deadline passes, when
the sandbox was idle too long, or when its owner dies (the owner holds the write end of a pipe
on the reaper's stdin, so closing it, or the owner's death, tells the reaper).
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from pathlib import Path

from rock_env.sandbox.state import ProcessRef, SandboxRecord

_REAPER = Path(__file__).with_name("reaper.sh")


class Watchdog:
    """A running ``reaper.sh`` for the sandbox whose state is in ``state_dir`` (recorded there)."""

    def __init__(self, state_dir: Path, expires_at: float | None, idle_ttl: float | None) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    "bash",
                    "--norc",
                    "--noprofile",
                    str(_REAPER),
                    str(state_dir),
                    str(0 if expires_at is None else math.ceil(expires_at)),
                    str(0 if idle_ttl is None else max(1, math.ceil(idle_ttl))),
                    sys.executable,
                ],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
        finally:
            os.close(read_fd)
        self._fd: int | None = write_fd
        record = SandboxRecord.load(state_dir)
        if record is not None:
            record.processes.append(ProcessRef.of(self._proc.pid, "reaper"))
            record.save(state_dir)

    def stop(self) -> None:
        """End the reaper (the sandbox was stopped by its owner)."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self.release()

    def release(self) -> None:
        """Close the pipe: a reaper still running then reaps the sandbox (its owner let go of it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


__all__ = ["Watchdog"]
