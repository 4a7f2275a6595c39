"""Sandboxes: where the commands of agents run.

``Sandbox`` (sync) and ``AsyncSandbox`` (async) are one SDK over three runtimes (``local``,
``namespace`` with bubblewrap, ``docker``), picked by ``SandboxConfig.runtime``. With
``base_url`` set they talk to a rock-env server instead, with the same methods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    from rock_env.sandbox.sdk import AsyncSandbox, BackgroundProcess, Sandbox

_LAZY = {
    "Sandbox": "rock_env.sandbox.sdk",
    "AsyncSandbox": "rock_env.sandbox.sdk",
    "BackgroundProcess": "rock_env.sandbox.sdk",
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
    "runtime_class",
    "select_runtime",
]
