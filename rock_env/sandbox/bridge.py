"""The bridge hook: how a service above the sandbox layer reaches into a sandbox with its network off.

The sandbox layer knows nothing about what is bridged (the model service of :mod:`rock_env.agents`
is the one user); a :class:`SandboxBridge` given to ``Sandbox(..., model_service=bridge)`` is asked
for a :class:`BridgePlan` before the runtime starts:

* ``env``: variables every process of the sandbox gets (sessions, exec, spawn, stream);
* ``mount``: a host directory bound read-only into the sandbox (namespace and docker runtimes), in
  which the bridge listens on a unix socket: a file-system socket crosses the network namespace,
  so the sandbox reaches it with its network off and gets no other egress;
* ``forwarder``: a command run inside the sandbox, as the sandbox's user, that listens on the
  sandbox's own loopback and relays each connection to that socket; it prints one line once it
  listens. The sandbox restarts it when it has died (e.g. killed from inside) on the next command.

On the ``local`` runtime (no isolation) the bridge is asked with ``loopback=True`` and listens on a
host loopback port instead (no mount, no forwarder). :meth:`SandboxBridge.close` is called when the
sandbox stops (also when its start failed) and must release what :meth:`SandboxBridge.open` made.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

#: where a bridge's host directory appears inside namespace and docker sandboxes
BRIDGE_DIR = "/run/rock-env-bridge"
#: host directories of bridges are ``<bridge_root()>/<prefix><owner pid>-<random>``: ``rock-env sandbox gc``
#: removes those whose owner died (:func:`rock_env.sandbox.gc.reap_bridge_dirs`)
BRIDGE_DIR_PREFIX = "rock-env-ms-"
#: the longest temp dir a bridge dir goes in: its sockets' paths (``<dir>/<sandbox id>/model.sock``)
#: must fit a unix socket address (107 bytes)
MAX_ROOT_LENGTH = 40


def bridge_roots() -> list[Path]:
    """Where bridge dirs may be: ``$TMPDIR`` when its path is short enough for socket paths, and ``/tmp``."""
    temp = Path(tempfile.gettempdir())
    roots = [temp] if len(str(temp)) <= MAX_ROOT_LENGTH else []
    return roots if Path("/tmp") in roots else [*roots, Path("/tmp")]


def bridge_root() -> Path:
    """The directory new bridge dirs go in (the first of :func:`bridge_roots`)."""
    return bridge_roots()[0]


@dataclass(frozen=True)
class BridgeMount:
    """A host directory bound read-only at ``inside`` (default :data:`BRIDGE_DIR`)."""

    host_dir: Path
    inside: str = BRIDGE_DIR


@dataclass(frozen=True)
class BridgePlan:
    """What a bridge needs from one sandbox (see the module docstring)."""

    env: dict[str, str] = field(default_factory=dict)
    mount: BridgeMount | None = None
    forwarder: list[str] | None = None


@runtime_checkable
class SandboxBridge(Protocol):
    """A service bridged into sandboxes (implemented above the sandbox layer, e.g. the ModelService)."""

    def open_bridge(self, sandbox_id: str, *, loopback: bool) -> BridgePlan:
        """Prepare the bridge of one sandbox; ``loopback``: the sandbox shares the host's network (local runtime)."""
        ...

    def close_bridge(self, sandbox_id: str) -> None:
        """Release what :meth:`open_bridge` made for the sandbox (idempotent)."""
        ...


__all__ = [
    "BRIDGE_DIR",
    "BRIDGE_DIR_PREFIX",
    "BridgeMount",
    "BridgePlan",
    "SandboxBridge",
    "bridge_root",
    "bridge_roots",
]
