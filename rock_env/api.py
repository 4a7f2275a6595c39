"""Backend dispatch: ``make``, ``make_vec`` and ``Sandbox`` pick local or remote here, and only here.

This module sits above the registry, the vector envs, the sandbox SDK and the remote clients,
so those never import each other to choose a backend:

* ``make(id, backend="local")`` resolves the id in this process's registry and builds the env;
  ``backend="remote"`` sends the id and keyword arguments to the server, which resolves the id
  itself (an id known only to the server works, and GEM's registry is never loaded here).
* ``make_vec`` does the same for vector envs.
* ``Sandbox``/``AsyncSandbox`` are the SDK's classes; reading them from here (or from
  ``rock_env``) registers the remote sandbox classes with the SDK first, so that
  ``Sandbox(..., base_url=URL)`` returns a remote sandbox that is a ``Sandbox``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rock_env.errors import InvalidArgument
from rock_env.registry import list_envs, registry
from rock_env.registry.builtin import register_family
from rock_env.registry.factory import check_backend, make_from_spec
from rock_env.registry.hub_source import set_remote_factory
from rock_env.registry.ids import check_id_type, parse_id

if TYPE_CHECKING:
    from rock_env.remote.aio import AsyncRemoteEnv
    from rock_env.remote.env import RemoteEnv
    from rock_env.remote.vector import RemoteVecEnv
    from rock_env.sandbox import AsyncSandbox, Sandbox
    from rock_env.vector import VectorEnv

#: The built-in families of the layers above the registry (the registry imports only its own layer).
register_family("rock_env.tools.specs")
register_family("rock_env.agents.agent_specs")


def make(env_id: str, *, backend: str = "local", base_url: str | None = None, **kwargs: Any) -> Any:
    """Build the env registered as ``env_id``.

    ``backend="local"`` builds it in this process; ``backend="remote"`` returns a
    :class:`~rock_env.remote.env.RemoteEnv` served by the admin at ``base_url`` (or
    ``$ROCK_ENV_URL``): the id and ``kwargs`` are sent as they are and the server resolves the
    id. ``kwargs`` override the spec's defaults; a keyword the env does not accept is an
    :class:`~rock_env.errors.InvalidEnvKwargs` error naming the accepted ones.
    """
    check_backend(backend)
    if backend == "remote":
        return make_remote(env_id, base_url=base_url, **kwargs)
    _no_base_url(base_url)
    return make_from_spec(registry.spec(env_id), **kwargs)


def make_remote(env_id: str, *, base_url: str | None = None, **kwargs: Any) -> RemoteEnv:
    """``make(env_id, backend="remote")``: the id is checked for its grammar only, never looked up here."""
    from rock_env.remote.env import make_remote_env

    parse_id(check_id_type(env_id))
    return make_remote_env(env_id, base_url=base_url, **kwargs)


async def amake(env_id: str, *, base_url: str | None = None, coalesce: bool = False, **kwargs: Any) -> AsyncRemoteEnv:
    """The async make: an :class:`~rock_env.remote.aio.AsyncRemoteEnv` on the server at ``base_url``.

    ``await env.areset()`` / ``await env.astep(action)``; all envs of one event loop share one
    bounded connection pool per server. ``coalesce=True`` batches the steps of one loop turn into
    one request per server. ``kwargs`` are the env's (and ``token``, ``timeout``, ``idle_ttl``).
    """
    from rock_env.remote.aio import AsyncRemoteEnv

    parse_id(check_id_type(env_id))
    return await AsyncRemoteEnv.create(env_id, base_url=base_url, coalesce=coalesce, **kwargs)


#: ``hub:NAME-vN`` envs that run on their server are made there with make_remote (the registry cannot import it).
set_remote_factory(make_remote)


def make_vec(
    env_id: str | Sequence[str | Callable[[], Any]] | Callable[[], Any],
    num_envs: int = 1,
    *,
    backend: str = "local",
    base_url: str | None = None,
    **kwargs: Any,
) -> VectorEnv | RemoteVecEnv:
    """A vector env of ``num_envs`` copies of ``env_id`` (see :mod:`rock_env.vector`).

    Locally ``env_id`` may also be an env factory or a list of ids and factories (one per
    sub-env). ``kwargs`` go to :func:`rock_env.vector.make_vec` (``mode``, ``autoreset_mode``,
    ``seed``, ``env_kwargs``, ...) or to the remote vector env, whose server resolves the id.
    """
    check_backend(backend)
    if backend == "remote":
        from rock_env.remote.vector import make_remote_vec

        parse_id(check_id_type(env_id))
        return make_remote_vec(env_id, num_envs, base_url=base_url, **kwargs)  # type: ignore[arg-type]
    _no_base_url(base_url)
    from rock_env.vector import make_vec as make_local_vec

    return make_local_vec(env_id, num_envs, **kwargs)


def _no_base_url(base_url: str | None) -> None:
    """``base_url`` only makes sense with ``backend="remote"``."""
    if base_url is not None:
        raise InvalidArgument("base_url is only used with backend='remote'; pass backend='remote' or drop base_url.")


def sandbox_classes() -> tuple[type[Sandbox], type[AsyncSandbox]]:
    """The SDK's ``Sandbox`` and ``AsyncSandbox``, with the remote classes registered for ``base_url``."""
    from rock_env.remote.sandbox import AsyncRemoteSandbox, RemoteSandbox
    from rock_env.sandbox import AsyncSandbox, Sandbox
    from rock_env.sandbox.backends import register_remote_factory

    register_remote_factory(RemoteSandbox, AsyncRemoteSandbox)
    return Sandbox, AsyncSandbox


def __getattr__(name: str) -> Any:
    """``Sandbox`` and ``AsyncSandbox``, ready for both backends (imported on first use)."""
    if name in ("Sandbox", "AsyncSandbox"):
        sync_cls, async_cls = sandbox_classes()
        globals().update(Sandbox=sync_cls, AsyncSandbox=async_cls)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AsyncSandbox", "Sandbox", "amake", "list_envs", "make", "make_remote", "make_vec", "sandbox_classes"]
