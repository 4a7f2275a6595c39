"""The env registry: ``register``, ``make``, ``make_vec``, ``spec``, ``list_envs``, ``pprint_registry``.

The module-level functions use one default :class:`Registry` (built-in families, plugins
from the ``rock_env.envs`` entry-point group, and GEM's registry). Tests and embedders can
build their own ``Registry`` instances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rock_env.registry.builtin import builtin_specs
from rock_env.registry.factory import check_backend, make_from_spec
from rock_env.registry.ids import ParsedId, format_id, parse_id
from rock_env.registry.resolver import Registry, spec_from_fields
from rock_env.registry.spec import EnvSpec

#: The process-wide default registry.
registry = Registry(builtin_specs)


def register(
    id: str,
    entry_point: str | Callable[..., Any],
    *,
    override: bool = False,
    **spec_fields: Any,
) -> EnvSpec:
    """Register an env.

    ``spec_fields`` are :class:`EnvSpec` fields: ``kwargs``, ``max_episode_steps``,
    ``requirements``, ``description``, ``nondeterministic``. An existing id raises
    :class:`~rock_env.errors.AlreadyRegistered` unless ``override=True``.
    """
    spec = spec_from_fields(id, entry_point, **spec_fields)
    return registry.register(spec, override=override)


def spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` registered under ``env_id``."""
    return registry.spec(env_id)


def list_envs(namespace: str | None = None, source: str | None = None) -> list[EnvSpec]:
    """All registered specs (ours, plugins', GEM's), optionally of one namespace or source."""
    return registry.list(namespace=namespace, source=source)  # type: ignore[arg-type]


def make(env_id: str, *, backend: str = "local", base_url: str | None = None, **kwargs: Any) -> Any:
    """Build the env registered as ``env_id``.

    ``backend="local"`` builds it in this process; ``backend="remote"`` returns a
    ``RemoteEnv`` served by the admin at ``base_url`` (or ``$ROCK_ENV_URL``). ``kwargs``
    override the spec's defaults; a keyword the env does not accept is an
    :class:`~rock_env.errors.InvalidEnvKwargs` error naming the accepted ones.
    """
    check_backend(backend)
    env_spec = registry.spec(env_id)
    if backend == "remote":
        from rock_env.remote import make_remote_env

        return make_remote_env(env_spec.id, base_url=base_url, **kwargs)
    if base_url is not None:
        raise_local_base_url()
    return make_from_spec(env_spec, **kwargs)


def make_vec(
    env_id: str | Sequence[str | Callable[[], Any]] | Callable[[], Any],
    num_envs: int = 1,
    *,
    backend: str = "local",
    base_url: str | None = None,
    **kwargs: Any,
) -> Any:
    """A vector env of ``num_envs`` copies of ``env_id`` (see :mod:`rock_env.vector`).

    Locally ``env_id`` may also be an env factory or a list of ids and factories (one per
    sub-env). ``kwargs`` go to :func:`rock_env.vector.make_vec` (``mode``, ``autoreset_mode``,
    ``seed``, ``env_kwargs``, ...) or to the remote vector env.
    """
    check_backend(backend)
    if not isinstance(env_id, str) and backend == "local":
        # a list of ids and/or env factories: the vector package resolves each one
        from rock_env.vector import make_vec as _make_vec

        if base_url is not None:
            raise_local_base_url()
        return _make_vec(env_id, num_envs, **kwargs)
    env_spec = registry.spec(env_id)
    if backend == "remote":
        from rock_env.remote import make_remote_vec

        return make_remote_vec(env_spec.id, num_envs, base_url=base_url, **kwargs)
    if base_url is not None:
        raise_local_base_url()
    from rock_env.vector import make_vec as _make_vec

    return _make_vec(env_spec.id, num_envs, **kwargs)


def raise_local_base_url() -> None:
    """``base_url`` only makes sense with ``backend="remote"``."""
    from rock_env.errors import InvalidArgument

    raise InvalidArgument("base_url is only used with backend='remote'; pass backend='remote' or drop base_url.")


def pprint_registry(namespace: str | None = None, *, print_output: bool = True, columns: int = 3) -> str | None:
    """Print (or return) the registered ids grouped by namespace, like Gymnasium's."""
    groups: dict[str, list[str]] = {}
    for env_spec in list_envs(namespace):
        groups.setdefault(env_spec.namespace or "(no namespace)", []).append(env_spec.id)
    blocks = []
    for ns in sorted(groups):
        ids = groups[ns]
        width = max(len(i) for i in ids) + 2
        rows = [" ".join(i.ljust(width) for i in ids[k : k + columns]).rstrip() for k in range(0, len(ids), columns)]
        blocks.append(f"===== {ns} =====\n" + "\n".join(rows))
    text = "\n\n".join(blocks)
    if print_output:
        print(text)
        return None
    return text


__all__ = [
    "EnvSpec",
    "ParsedId",
    "Registry",
    "format_id",
    "list_envs",
    "make",
    "make_vec",
    "parse_id",
    "pprint_registry",
    "register",
    "registry",
    "spec",
]
