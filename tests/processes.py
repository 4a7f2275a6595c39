"""Looking up host processes by their command line (for tests that check nothing is left running)."""

from __future__ import annotations

import os
from pathlib import Path


def pids_with_cmdline(marker: str, *, skip: str | None = None) -> list[int]:
    """PIDs of running processes whose command line contains ``marker`` (and not ``skip``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and (skip is None or skip not in cmdline):
                pids.append(int(entry))
    return pids
