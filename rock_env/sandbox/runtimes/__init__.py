"""The runtime registry: runtime name -> ``"module:Class"``, imported lazily.

Lazy import keeps ``import rock_env.sandbox`` cheap and means the Docker SDK is only
imported when a docker sandbox is used (or when ``gc`` asks docker to reap containers).
"""

from __future__ import annotations

import importlib
import logging
import shutil
from typing import TYPE_CHECKING

from rock_env.errors import ConfigError, RuntimeUnavailable

if TYPE_CHECKING:
    from rock_env.sandbox.runtimes.base import Runtime

logger = logging.getLogger(__name__)

#: runtime name -> "module:Class" (a subclass of :class:`rock_env.sandbox.runtimes.base.Runtime`)
RUNTIMES: dict[str, str] = {
    "local": "rock_env.sandbox.runtimes.local:LocalRuntime",
    "namespace": "rock_env.sandbox.runtimes.namespace:NamespaceRuntime",
    "docker": "rock_env.sandbox.runtimes.docker:DockerRuntime",
}

#: order in which ``runtime="auto"`` tries runtimes (local is the fallback, with a warning)
AUTO_ORDER = ("namespace", "docker")


def runtime_class(name: str) -> type[Runtime]:
    """Import and return the runtime class registered under ``name``."""
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"unknown sandbox runtime {name!r}; choose one of {sorted(RUNTIMES)} or 'auto'") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeUnavailable(f"runtime {name!r} cannot be imported ({exc}); is it installed?") from exc
    cls: type[Runtime] = getattr(module, attr)
    return cls


def _probe(name: str) -> bool:
    if name == "docker" and shutil.which("docker") is None:
        try:
            import docker  # noqa: F401
        except ImportError:
            return False
    try:
        return runtime_class(name).available()
    except Exception as exc:  # a broken runtime must not break auto selection
        logger.debug("runtime %s unavailable: %s", name, exc)
        return False


def select_runtime(name: str) -> str:
    """Resolve ``"auto"`` to a concrete runtime name (namespace, else docker, else local with a warning)."""
    if name != "auto":
        runtime_class(name)  # validates the name
        return name
    for candidate in AUTO_ORDER:
        if _probe(candidate):
            return candidate
    logger.warning(
        "runtime='auto': neither bubblewrap nor a Docker daemon works here; using runtime='local', "
        "which runs commands on the host WITHOUT isolation. Install bubblewrap or Docker to isolate sandboxes."
    )
    return "local"


__all__ = ["AUTO_ORDER", "RUNTIMES", "runtime_class", "select_runtime"]
