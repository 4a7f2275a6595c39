"""Where ``Sandbox(..., base_url=URL)`` finds its remote class: a registration, never an import.

The sandbox layer sits below the remote client, so it cannot import it. The layer above
(``rock_env.remote.sandbox`` at import, and the public API module) registers the remote classes
with :func:`register_remote_factory`; ``Sandbox.__new__``/``AsyncSandbox.__new__`` ask
:func:`remote_classes` for them when a ``base_url`` is given.
"""

from __future__ import annotations

from typing import Any

from rock_env.errors import RockEnvError

_REMOTE: tuple[type[Any], type[Any]] | None = None


def register_remote_factory(sync_factory: type[Any], async_factory: type[Any]) -> None:
    """Register the classes that ``Sandbox(base_url=...)`` and ``AsyncSandbox(base_url=...)`` return.

    ``sync_factory`` must subclass ``Sandbox`` and ``async_factory`` ``AsyncSandbox`` (so the
    object is a ``Sandbox`` and its own ``__init__`` runs with the caller's arguments); that is
    checked when one is built.
    Registering again replaces the earlier classes.
    """
    if not (isinstance(sync_factory, type) and isinstance(async_factory, type)):
        raise TypeError(f"the remote factories must be classes, got {sync_factory!r} and {async_factory!r}")
    global _REMOTE
    _REMOTE = (sync_factory, async_factory)


def remote_classes() -> tuple[type[Any], type[Any]]:
    """The registered (sync, async) remote sandbox classes."""
    if _REMOTE is None:
        raise RockEnvError(
            "the remote client is not available: import rock_env.remote.sandbox (or use rock_env.Sandbox) "
            "before creating a sandbox with base_url."
        )
    return _REMOTE


def remote_class(cls: type[Any], front: type[Any], index: int) -> type[Any]:
    """The class to build for ``cls(..., base_url=...)``: the registered remote one if ``cls`` is the ``front`` class."""
    if cls is not front:
        return cls
    remote = remote_classes()[index]
    if not issubclass(remote, front):
        raise TypeError(f"the registered remote class {remote!r} must subclass {front.__name__}")
    return remote


__all__ = ["register_remote_factory", "remote_class", "remote_classes"]
