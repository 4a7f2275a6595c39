"""The env hub as a registry source: ``hub:NAME-vN`` ids resolve through the admin's hub.

Where an id resolves:

* **In the admin** (a process whose server registered its store with :func:`register_local_hub`),
  from that store: the spec is the one the hub stored, built by this process (``make`` with
  ``backend="remote"`` from any client, and every hub env placed on a worker).
* **In a client**, over HTTP from the server named by ``$ROCK_ENV_URL`` (token ``$ROCK_ENV_TOKEN``):
  ``GET /api/v1/hub/{name}/versions/{N}``. If the spec says ``local: true`` the env is built in the
  client's process from the entry point and kwargs the server resolved; otherwise the spec's
  entry point makes a remote env on that server (so ``rock.make("hub:...")``, ``make_vec``, Hydra
  configs and rollouts run it there). Making that remote env is a layer above the registry: the
  API layer registers the function with :func:`set_remote_factory`.

Hub versions are immutable, so a fetched version is cached per server URL.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from rock_env.errors import (
    HubSpecInvalid,
    HubSpecNotFound,
    InvalidEnvId,
    RemoteError,
    RockEnvError,
    ServerUnavailable,
)
from rock_env.protocol.errors import exception_from_body
from rock_env.protocol.hub import HUB_NAMESPACE, HubResolved, HubVersion, hub_env_id
from rock_env.registry.ids import parse_id
from rock_env.registry.spec import EnvSpec

logger = logging.getLogger(__name__)

#: Environment variables a client reads (the same as the remote clients').
URL_ENV_VAR = "ROCK_ENV_URL"
TOKEN_ENV_VAR = "ROCK_ENV_TOKEN"
FETCH_TIMEOUT = 30.0
#: Keyword arguments of the remote env itself (not of the env on the server).
CLIENT_ARGUMENTS = ("token", "timeout", "idle_ttl")

#: ``(env_id, base_url=..., **kwargs) -> env``: makes an env on a server (registered by the API layer).
RemoteFactory = Callable[..., Any]
#: ``(name, version) -> EnvSpec``, or ``None`` when that hub is not serving (e.g. its store is closed).
#: Raises :class:`~rock_env.errors.HubSpecNotFound` when it has no such version.
LocalHub = Callable[[str, int], "EnvSpec | None"]

_lock = threading.Lock()
_remote_factory: RemoteFactory | None = None
_local_hubs: dict[object, LocalHub] = {}
_cache: dict[tuple[str, str, int], HubVersion] = {}


def set_remote_factory(factory: RemoteFactory | None) -> None:
    """Register the function that makes an env on a server (``rock_env.api`` registers ``make_remote``)."""
    global _remote_factory
    _remote_factory = factory


def register_local_hub(key: object, lookup: LocalHub) -> None:
    """Resolve hub ids in this process from ``lookup`` (an admin registers its store), instead of over HTTP."""
    with _lock:
        _local_hubs[key] = lookup


def unregister_local_hub(key: object) -> None:
    """Stop resolving from the local hub registered under ``key`` (no error if there is none)."""
    with _lock:
        _local_hubs.pop(key, None)


def clear_cache() -> None:
    """Forget the versions fetched from servers."""
    with _lock:
        _cache.clear()


class HubRemoteEntry:
    """The entry point of a hub env that runs on a server: calling it makes the env there.

    Picklable (the processes of an async vector env make their own). Its ``__qualname__`` is
    set on the instance so that :meth:`EnvSpec.to_dict` can name it.
    """

    def __init__(self, env_id: str, base_url: str, arguments: list[str] | None = None) -> None:
        self.env_id = env_id
        self.base_url = base_url
        self.arguments = arguments
        self.__qualname__ = type(self).__qualname__

    @property
    def __signature__(self) -> inspect.Signature:
        """The keyword arguments the env on the server takes, so that ``make`` checks them here first."""
        if self.arguments is None:
            return inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
        kind = inspect.Parameter.KEYWORD_ONLY
        names = sorted({*self.arguments, *CLIENT_ARGUMENTS})
        return inspect.Signature([inspect.Parameter(name, kind, default=None) for name in names])

    def __call__(self, **kwargs: Any) -> Any:
        """Make the env on the server (``kwargs`` go to it; it checks them against the hub spec's env)."""
        if _remote_factory is None:
            raise RemoteError(
                f"{self.env_id!r} runs on the server {self.base_url}, but no remote env factory is registered in this "
                "process: import rock_env (its API layer registers it) before building hub envs."
            )
        return _remote_factory(self.env_id, base_url=self.base_url, **kwargs)

    def __repr__(self) -> str:
        return f"HubRemoteEntry({self.env_id!r}, {self.base_url!r})"


def resolved_spec(env_id: str, resolved: HubResolved, description: str = "") -> EnvSpec:
    """The registry spec that builds a hub version in this process (what the server builds, too)."""
    return EnvSpec(
        id=env_id,
        entry_point=resolved.entry_point,
        kwargs=dict(resolved.kwargs),
        max_episode_steps=resolved.max_episode_steps,
        requirements=tuple(resolved.requirements),
        description=description,
        source=resolved.source,  # type: ignore[arg-type]
    )


def client_spec(version: HubVersion, base_url: str) -> EnvSpec:
    """The spec a client uses for ``version`` fetched from ``base_url``: local build or remote proxy."""
    description = version.spec.description
    if version.resolved is None:
        raise HubSpecInvalid(
            f"{version.id!r} cannot be built on the server {base_url} now: {version.problem}. "
            "Ask its admin to install what it needs, or use another version."
        )
    if version.spec.local:
        return resolved_spec(version.id, version.resolved, description)
    return EnvSpec(
        id=version.id,
        entry_point=HubRemoteEntry(version.id, base_url, version.resolved.arguments),
        requirements=tuple(version.resolved.requirements),
        description=f"{description} (env hub; runs on {base_url})".strip(),
        source="user",
    )


def split_hub_id(env_id: str) -> tuple[str, int]:
    """``("NAME", N)`` of ``hub:NAME-vN``; :class:`InvalidEnvId` for another form."""
    parsed = parse_id(env_id)
    if parsed.namespace != HUB_NAMESPACE:
        raise InvalidEnvId(f"{env_id!r} is not a hub id: hub ids look like 'hub:NAME-vN', e.g. 'hub:sokoban-tiny-v1'.")
    if parsed.version is None or parsed.variant is not None:
        raise InvalidEnvId(
            f"hub id {env_id!r} must name one version and no variant: 'hub:{parsed.name}-vN' "
            "(rock-env hub show NAME lists the versions)."
        )
    return parsed.name, parsed.version


def resolve(env_id: str) -> EnvSpec:
    """The spec of ``hub:NAME-vN``: from this process's hub (an admin), else from ``$ROCK_ENV_URL``'s."""
    name, version = split_hub_id(env_id)
    with _lock:
        hubs = list(_local_hubs.values())
    missing: HubSpecNotFound | None = None
    for lookup in hubs:
        try:
            found = lookup(name, version)
        except HubSpecNotFound as exc:
            missing = exc
            continue
        if found is not None:
            return found
    if missing is not None:
        raise missing
    base_url = os.environ.get(URL_ENV_VAR, "").strip()
    if not base_url:
        raise HubSpecNotFound(
            f"{env_id!r} is an env hub id, and hub ids resolve through a server: set ${URL_ENV_VAR} to the admin's URL "
            f"(e.g. http://127.0.0.1:8080) and ${TOKEN_ENV_VAR} if it has a token, or make it there with "
            f"rock.make({env_id!r}, backend='remote', base_url=...)."
        )
    base_url = base_url.rstrip("/")
    return client_spec(fetch_version(base_url, name, version), base_url)


def fetch_version(base_url: str, name: str, version: int, token: str | None = None) -> HubVersion:
    """``GET /api/v1/hub/{name}/versions/{version}`` from ``base_url`` (cached: versions are immutable)."""
    import httpx  # imported on first use: a client that never names a hub id does not load it here

    key = (base_url, name, version)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    token = token if token is not None else (os.environ.get(TOKEN_ENV_VAR) or None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = f"/api/v1/hub/{name}/versions/{version}"
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=FETCH_TIMEOUT, trust_env=False) as client:
            response = client.get(path)
    except httpx.HTTPError as exc:
        raise ServerUnavailable(
            f"cannot reach the env hub at {base_url} to resolve {hub_env_id(name, version)!r} "
            f"({type(exc).__name__}: {exc}). Is `rock-env admin start` running there? Check ${URL_ENV_VAR}."
        ) from None
    if response.status_code >= 400:
        raise _error_of(response, base_url)
    try:
        found = HubVersion.model_validate_json(response.content)
    except ValidationError as exc:
        raise RemoteError(
            f"the server at {base_url} answered {path} with something that is not a HubVersion: {exc}"
        ) from None
    with _lock:
        _cache[key] = found
    return found


def _error_of(response: Any, base_url: str) -> RockEnvError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return exception_from_body(body)
    return RemoteError(f"the env hub at {base_url} answered HTTP {response.status_code}: {response.text[:200]}")


__all__ = [
    "HubRemoteEntry",
    "LocalHub",
    "RemoteFactory",
    "clear_cache",
    "client_spec",
    "fetch_version",
    "register_local_hub",
    "resolve",
    "resolved_spec",
    "set_remote_factory",
    "split_hub_id",
    "unregister_local_hub",
]
