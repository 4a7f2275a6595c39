"""Where rock-env keeps its files on this host."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """The library's scratch directory for caches: ``$ROCK_ENV_HOME`` or ``/tmp/rock-env-<uid>``."""
    home = os.environ.get("ROCK_ENV_HOME")
    return Path(home) if home else Path(f"/tmp/rock-env-{os.getuid()}")
