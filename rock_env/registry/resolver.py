"""The registry: resolves env ids to specs from three sources, in order of precedence.

1. our own specs (built-in families and ``rock.register`` calls),
2. third-party plugins (entry-point group ``rock_env.envs``), loaded on a lookup miss,
3. GEM's own registry, loaded on a lookup miss (importing gem costs about a second).

Listing loads all three. Unknown ids raise :class:`EnvNotFound` with close matches.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rock_env.errors import AlreadyRegistered, EnvNotFound, InvalidArgument, NamespaceNotFound
from rock_env.registry.ids import check_id_type, parse_id
from rock_env.registry.plugins import PluginLoader
from rock_env.registry.spec import EnvSpec, Source

logger = logging.getLogger(__name__)


class Registry:
    """A set of :class:`EnvSpec` keyed by id, with lazy plugin and GEM sources.

    ``builtin_loader`` returns the built-in specs (called once, on first use).
    """

    def __init__(
        self,
        builtin_loader: Callable[[], list[EnvSpec]] | None = None,
        *,
        plugin_group: str = "rock_env.envs",
        include_gem: bool = True,
    ) -> None:
        self._lock = threading.RLock()
        self._own: dict[str, EnvSpec] = {}
        self._gem: dict[str, EnvSpec] = {}
        self._builtin_loader = builtin_loader
        self._builtins_loaded = builtin_loader is None
        self._gem_loaded = not include_gem
        self.plugins = PluginLoader(plugin_group)
        #: Namespaces resolved by a source of their own (e.g. ``hub``: the env hub), after our own specs.
        self._sources: dict[str, Callable[[str], EnvSpec]] = {}

    def add_source(self, namespace: str, resolve: Callable[[str], EnvSpec]) -> None:
        """Resolve ids of ``namespace`` with ``resolve(id) -> EnvSpec`` (not plugins or GEM); not listed."""
        with self._lock:
            self._sources[namespace] = resolve

    # -- registration --------------------------------------------------------------------

    def register(self, spec: EnvSpec, *, override: bool = False) -> EnvSpec:
        """Add ``spec``; an existing id is an error unless ``override`` is true."""
        with self._lock:
            self._ensure_builtins()
            if self.plugins.loading is not None and spec.source == "user":
                spec.source = "plugin"
                spec.plugin = self.plugins.loading
            if spec.id in self._own and not override:
                existing = self._own[spec.id]
                raise AlreadyRegistered(
                    f"env id {spec.id!r} is registered already (source {existing.source!r}, entry point "
                    f"{existing.to_dict()['entry_point']!r}); pass override=True to replace it or pick another id."
                )
            self._own[spec.id] = spec
            return spec

    def unregister(self, env_id: str) -> EnvSpec:
        """Remove and return our spec for ``env_id`` (GEM's ids cannot be removed)."""
        with self._lock:
            self._ensure_builtins()
            if env_id not in self._own:
                raise self._not_found(env_id)
            return self._own.pop(env_id)

    # -- lookup --------------------------------------------------------------------------

    def spec(self, env_id: object) -> EnvSpec:
        """Return the spec for ``env_id``; raise :class:`InvalidEnvId` or :class:`EnvNotFound`."""
        text = check_id_type(env_id)
        with self._lock:
            self._ensure_builtins()
            found = self._own.get(text)
            if found is not None:
                return found
            parsed = parse_id(text)  # malformed ids get a grammar error, not a "not found"
            source = self._sources.get(parsed.namespace or "")
        if source is not None:
            return source(text)  # outside the lock: a source may do I/O
        with self._lock:
            self.plugins.load_all()
            found = self._own.get(text)
            if found is not None:
                return found
            self._ensure_gem()
            found = self._gem.get(text)
            if found is not None:
                return found
            raise self._not_found(text)

    def __contains__(self, env_id: object) -> bool:
        try:
            self.spec(env_id)
        except (EnvNotFound, InvalidArgument):
            return False
        return True

    def list(self, namespace: str | None = None, source: Source | None = None) -> builtins.list[EnvSpec]:
        """All specs (ours first, then GEM's not shadowed by ours), sorted by id within a source."""
        with self._lock:
            self._ensure_builtins()
            self.plugins.load_all()
            self._ensure_gem()
            specs = sorted(self._own.values(), key=lambda s: s.id)
            specs += sorted((s for i, s in self._gem.items() if i not in self._own), key=lambda s: s.id)
        if namespace is not None:
            specs = [s for s in specs if s.namespace == namespace]
        if source is not None:
            specs = [s for s in specs if s.source == source]
        return specs

    def __iter__(self) -> Iterator[EnvSpec]:
        return iter(self.list())

    def namespaces(self) -> builtins.list[str]:
        """The namespaces in use."""
        return sorted({s.namespace for s in self.list() if s.namespace})

    # -- internals -----------------------------------------------------------------------

    def _ensure_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        assert self._builtin_loader is not None
        for spec in self._builtin_loader():
            self._own.setdefault(spec.id, spec)

    def _ensure_gem(self) -> None:
        if self._gem_loaded:
            return
        self._gem_loaded = True
        from rock_env.registry.gem_source import gem_specs

        try:
            self._gem = {s.id: s for s in gem_specs()}
        except Exception as exc:  # gem is optional at lookup time: report, do not break our ids
            logger.warning(
                "GEM's registry could not be loaded (%s: %s); GEM ids are unavailable.", type(exc).__name__, exc
            )

    def all_ids(self) -> builtins.list[str]:
        """Every id known, for suggestions."""
        with self._lock:
            return sorted(set(self._own) | set(self._gem))

    def _not_found(self, env_id: str) -> EnvNotFound:
        parsed = parse_id(env_id)
        ids = self.all_ids()
        lowered = {i.lower(): i for i in ids}
        close = difflib.get_close_matches(env_id.lower(), list(lowered), n=5, cutoff=0.6)
        suggestions = [lowered[c] for c in close]
        if not suggestions:
            same_name = [i for i in ids if parse_id(i).name.lower() == parsed.name.lower()]
            suggestions = same_name[:5]
        namespaces = sorted({n for n in (parse_id(i).namespace for i in ids) if n})
        hint = f" Did you mean: {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        broken = self.plugins.error_summary()
        if broken:
            hint += f" Note: {broken}"
        if parsed.namespace is not None and parsed.namespace not in namespaces:
            return NamespaceNotFound(
                f"no env namespace {parsed.namespace!r} (id {env_id!r}); known namespaces: {', '.join(namespaces)}."
                f"{hint} A plugin package may provide it: install it, then retry."
            )
        return EnvNotFound(f"no env registered with id {env_id!r}.{hint} Run rock.list_envs() to see all ids.")


def spec_from_fields(env_id: str, entry_point: str | Callable[..., Any], **fields: Any) -> EnvSpec:
    """Build an :class:`EnvSpec` from ``register``-style keyword fields, naming unknown ones."""
    known = set(EnvSpec.__dataclass_fields__) - {"id", "entry_point"}
    unknown = set(fields) - known
    if unknown:
        raise InvalidArgument(
            f"register() got unknown spec fields {sorted(unknown)}; valid fields: {sorted(known)} "
            "(env constructor arguments go in kwargs={...})."
        )
    return EnvSpec(id=env_id, entry_point=entry_point, **fields)
