"""The runtime registry: runtime name -> ``"module:Class"``, imported lazily.

Lazy import keeps ``import rock_env.sandbox`` cheap and means the Docker SDK is only
imported when a docker sandbox is used (or when ``gc`` asks docker to reap containers).
"""

from __future__ import annotations

import importlib
import logging
import shutil
from typing import TYPE_CHECKING

from rock_env.errors import ConfigError, PolicyViolation, RuntimeUnavailable

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


#: why this process may not start ``local`` sandboxes (None: it may); see :func:`deny_local_runtime`
_LOCAL_DENIED: str | None = None


def deny_local_runtime(reason: str | None) -> None:
    """Forbid (``reason``: the message to give) or allow again (``None``) ``local`` sandboxes in this process.

    A server that does not hand out host access calls this at start-up, so that no path (an env
    that makes its own sandbox, a plugin, ``runtime="auto"`` on a host without bubblewrap or
    Docker) falls back to an unisolated sandbox: they get :class:`~rock_env.errors.PolicyViolation`.
    """
    global _LOCAL_DENIED
    _LOCAL_DENIED = reason


def select_runtime(name: str) -> str:
    """Resolve ``"auto"`` to a concrete runtime name (namespace, else docker, else local with a warning).

    Raises :class:`~rock_env.errors.PolicyViolation` for ``local`` (asked for, or the only one
    left for ``auto``) where :func:`deny_local_runtime` forbade it.
    """
    if name != "auto":
        runtime_class(name)  # validates the name
        if name == "local" and _LOCAL_DENIED is not None:
            raise PolicyViolation(_LOCAL_DENIED)
        return name
    for candidate in AUTO_ORDER:
        if _probe(candidate):
            return candidate
    if _LOCAL_DENIED is not None:
        raise PolicyViolation(f"runtime='auto': neither bubblewrap nor Docker works on this host; {_LOCAL_DENIED}")
    logger.warning(
        "runtime='auto': neither bubblewrap nor a Docker daemon works here; using runtime='local', "
        "which runs commands on the host WITHOUT isolation. Install bubblewrap or Docker to isolate sandboxes."
    )
    return "local"


__all__ = ["AUTO_ORDER", "RUNTIMES", "deny_local_runtime", "runtime_class", "select_runtime"]
