"""Sandboxes: where the commands of agents run.

``Sandbox`` (sync) and ``AsyncSandbox`` (async) are one SDK over three runtimes (``local``,
``namespace`` with bubblewrap, ``docker``), picked by ``SandboxConfig.runtime``. With
``base_url`` set they return the remote subclasses registered with
:func:`register_remote_factory`, which talk to a rock-env server with the same methods.
The API of all four classes is stated once in :mod:`rock_env.sandbox.contract`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rock_env.sandbox.backends import register_remote_factory
from rock_env.sandbox.models import (
    CommandResult,
    FileInfo,
    ProcessInfo,
    SandboxConfig,
    SandboxInfo,
    SessionInfo,
    SnapshotInfo,
    parse_size,
)
from rock_env.sandbox.runtimes import RUNTIMES, runtime_class, select_runtime

if TYPE_CHECKING:
    from rock_env.sandbox.aio import AsyncSandbox
    from rock_env.sandbox.local import Sandbox
    from rock_env.sandbox.processes import BackgroundProcess

_LAZY = {
    "Sandbox": "rock_env.sandbox.local",
    "AsyncSandbox": "rock_env.sandbox.aio",
    "BackgroundProcess": "rock_env.sandbox.processes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rock_env.sandbox' has no attribute {name!r}")


__all__ = [
    "RUNTIMES",
    "AsyncSandbox",
    "BackgroundProcess",
    "CommandResult",
    "FileInfo",
    "ProcessInfo",
    "Sandbox",
    "SandboxConfig",
    "SandboxInfo",
    "SessionInfo",
    "SnapshotInfo",
    "parse_size",
    "register_remote_factory",
    "runtime_class",
    "select_runtime",
]
