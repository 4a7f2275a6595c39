"""An env module that imports a package which is not installed (for the DependencyMissing tests)."""

from __future__ import annotations

import rock_env_no_such_package_xyz  # type: ignore[import-not-found]  # noqa: F401

from rock_env.core import Env


class NeedsMissing(Env):
    """Never built: importing this module fails."""
