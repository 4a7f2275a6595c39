"""Clients of a rock-env server: remote envs, remote vector envs and remote sandboxes.

``rock.make(id, backend="remote", base_url=...)`` calls :func:`make_remote_env`,
``rock.make_vec(id, n, backend="remote", ...)`` calls :func:`make_remote_vec`, and
``rock.Sandbox(..., base_url=...)`` delegates to :class:`RemoteSandbox`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rock_env.remote.client import ApiClient, AsyncApiClient
    from rock_env.remote.env import RemoteEnv, make_remote_env
    from rock_env.remote.sandbox import AsyncRemoteSandbox, RemoteSandbox
    from rock_env.remote.vector import RemoteVecEnv, make_remote_vec

_LAZY = {
    "ApiClient": "rock_env.remote.client",
    "AsyncApiClient": "rock_env.remote.client",
    "RemoteEnv": "rock_env.remote.env",
    "make_remote_env": "rock_env.remote.env",
    "RemoteVecEnv": "rock_env.remote.vector",
    "make_remote_vec": "rock_env.remote.vector",
    "RemoteSandbox": "rock_env.remote.sandbox",
    "AsyncRemoteSandbox": "rock_env.remote.sandbox",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rock_env.remote' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ApiClient",
    "AsyncApiClient",
    "AsyncRemoteSandbox",
    "RemoteEnv",
    "RemoteSandbox",
    "RemoteVecEnv",
    "make_remote_env",
    "make_remote_vec",
]
