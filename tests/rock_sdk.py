"""ROCK's own SDK (rl-rock from PyPI) in a venv of its own, for tests that drive rock-env with the real client.

rl-rock pins versions that conflict with ours, so it never goes into the project's venv: it is
installed once into ``~/.cache/rock-env/rl-rock-<version>/`` (``$ROCK_ENV_CACHE`` overrides the
root) and reused by later runs. Building is serialised with a file lock, so parallel test
workers (pytest-xdist) build it once; a half-built venv is never used (it is built next to the
final path and renamed into place).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The rl-rock release the tests run (its README examples are the ones in tests/server/rock_scripts).
RL_ROCK_VERSION = "1.11.0"
#: How long building the venv may take (pip resolves and installs ~150 packages).
BUILD_TIMEOUT = 900


def cache_root() -> Path:
    """Where test tooling is cached between runs."""
    return Path(os.environ.get("ROCK_ENV_CACHE") or Path.home() / ".cache" / "rock-env")


def rock_sdk_python(version: str = RL_ROCK_VERSION) -> Path:
    """The python of a venv with ``rl-rock==version`` (built on first use, then cached)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"rl-rock-{version}"
    python = final / "bin" / "python"
    if (final / ".complete").exists():
        return python
    with (root / f"rl-rock-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            return python
        building = root / f"rl-rock-{version}.building"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(building)], check=True, timeout=120)
        log = root / f"rl-rock-{version}.log"
        with log.open("w") as out:
            done = subprocess.run(
                [str(building / "bin" / "pip"), "install", "--disable-pip-version-check", f"rl-rock=={version}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"pip install rl-rock=={version} failed; see {log}")
        building.rename(final)  # the venv's scripts name their own directory; python -m works wherever
        (final / ".complete").write_text(version)
    return python
