"""``gem.make`` and ``gem.make_vec`` with rock_env's ids (for ROLL and other GEM users).

After ``import rock_env``, GEM's own functions build our envs for the ids our registry
resolves (built-in ``game:``/``tool:``/``code:``/``agent:`` ids, ``rock.register`` ids, plugin
ids, ``hub:`` ids), so code written for GEM, such as ROLL's env managers
(``gem.make(env_id=env_type, **env_config)``), uses them unchanged::

    import gem, rock_env
    env = gem.make("tool:Bash-v0")                         # rock_env's BashEnv
    env = gem.make(env_id="game:Sokoban-v0-easy", seed=3)  # rock_env's SokobanEnv
    env = gem.make("tool:Bash-v0", backend="remote", base_url="http://127.0.0.1:8080")
    vec = gem.make_vec(["tool:Bash-v0"] * 4)               # GEM's vector env over our envs
    env = gem.make("game:Sudoku-v0-easy")                  # still GEM's own env

How: GEM looks every id up in the dict ``gem.envs.registration.ENV_REGISTRY`` when ``make`` is
called. Once GEM has registered its own envs (the import of ``gem.envs`` has finished), that
dict is replaced by a :class:`BridgedRegistry` with the same entries, which also answers for our
ids with an entry whose entry point is rock_env's ``make`` (the keyword arguments, including
``backend`` and ``base_url``, go to it). Our ids win where both have one (GEM's
``game:Sokoban-v0-*``: ours give the same transcripts); GEM's other ids stay GEM's. Iterating the
dict (``gem.print_envs()``) lists GEM's entries only.

``import rock_env`` imports nothing of GEM: a finder on ``sys.meta_path`` does the replacement
when ``gem.envs`` is imported (right away if it is already). The function that makes an env
lives in a layer above the registry, so the package passes it to :func:`install_gem_bridge`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from rock_env.errors import RockEnvError
from rock_env.protocol.hub import HUB_NAMESPACE

logger = logging.getLogger(__name__)

#: GEM's module whose import registers GEM's envs; the bridge goes in when it has run.
GEM_ENVS_MODULE = "gem.envs"
#: The module holding GEM's ``ENV_REGISTRY`` dict.
GEM_REGISTRATION_MODULE = "gem.envs.registration"

#: ``(env_id, **kwargs) -> env``: rock_env's ``make`` (set by :func:`install_gem_bridge`).
EnvMaker = Callable[..., Any]

_lock = threading.Lock()
_maker: EnvMaker | None = None


def is_rock_env_id(env_id: object) -> bool:
    """Whether our registry (not GEM's) resolves ``env_id``: own, user, plugin and ``hub:`` ids.

    Never raises: a malformed id or an unknown one is simply not ours.
    """
    if not isinstance(env_id, str):
        return False
    from rock_env.registry import registry
    from rock_env.registry.ids import parse_id

    try:
        parsed = parse_id(env_id)
    except RockEnvError:
        return False
    if parsed.namespace == HUB_NAMESPACE:
        return True  # resolved by the hub when made (its errors are the ones to show then)
    try:
        spec = registry.spec(env_id)
    except RockEnvError:
        return False
    return spec.source != "gem"


class RockEnvEntryPoint:
    """The entry point of a bridged id: ``rock_env.make(env_id, **kwargs)``."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id

    def __call__(self, **kwargs: Any) -> Any:
        """Make the env with rock_env's ``make`` (``backend``/``base_url`` work as there)."""
        maker = _maker
        if maker is None:  # pragma: no cover - the package installs it at import
            raise RuntimeError("rock_env's GEM bridge has no make function: import rock_env first.")
        return maker(self.env_id, **kwargs)

    def __repr__(self) -> str:
        return f"rock_env.make({self.env_id!r})"


class BridgedRegistry(dict):  # type: ignore[type-arg]
    """GEM's ``ENV_REGISTRY`` with rock_env's ids on top (see the module docstring).

    Lookups (``in``, ``[]``, ``get``) answer for our ids first; everything else (iteration,
    ``len``, GEM's ``register``) is the plain dict of GEM's entries.
    """

    def __init__(self, entries: dict[str, Any], spec_class: type) -> None:
        super().__init__(entries)
        self._spec_class = spec_class

    def __contains__(self, env_id: object) -> bool:
        return is_rock_env_id(env_id) or dict.__contains__(self, env_id)

    def __getitem__(self, env_id: str) -> Any:
        if is_rock_env_id(env_id):
            return self._spec_class(id=env_id, entry_point=RockEnvEntryPoint(env_id), kwargs={})
        return dict.__getitem__(self, env_id)

    def get(self, env_id: str, default: Any = None) -> Any:  # type: ignore[override]
        """``self[env_id]``, or ``default`` when neither registry has it."""
        if env_id not in self:
            return default
        return self[env_id]


def bridge_registration_module(module: ModuleType) -> bool:
    """Replace ``module.ENV_REGISTRY`` (GEM's) by a :class:`BridgedRegistry`; False if it is one already."""
    with _lock:
        current = module.ENV_REGISTRY
        if isinstance(current, BridgedRegistry):
            return False
        module.ENV_REGISTRY = BridgedRegistry(current, module.EnvSpec)  # type: ignore[attr-defined]
        logger.debug("gem.make now resolves rock_env ids (%d GEM ids kept)", len(current))
        return True


def _bridge_loaded_gem() -> None:
    """Bridge GEM's registry now (``gem.envs`` has been imported)."""
    module = sys.modules.get(GEM_REGISTRATION_MODULE)
    if module is not None and hasattr(module, "ENV_REGISTRY"):
        bridge_registration_module(module)


class _AfterExecLoader:
    """A loader that runs the real loader, then a callback (a post-import hook)."""

    def __init__(self, loader: Any, callback: Callable[[], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name: str) -> Any:  # get_data, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)


class _GemEnvsFinder:
    """A ``sys.meta_path`` finder that hooks the import of ``gem.envs`` once, then removes itself."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != GEM_ENVS_MODULE:
            return None
        from importlib.machinery import PathFinder

        _remove_finder()
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterExecLoader(spec.loader, _bridge_loaded_gem)  # type: ignore[assignment]
        return spec


_finder = _GemEnvsFinder()


def _remove_finder() -> None:
    with _lock:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


def install_gem_bridge(maker: EnvMaker) -> None:
    """Make ``gem.make`` resolve our ids with ``maker`` (rock_env's ``make``); idempotent and cheap.

    If ``gem.envs`` is imported already its registry is bridged now, else when it is imported.
    """
    global _maker
    _maker = maker
    if GEM_ENVS_MODULE in sys.modules:
        _bridge_loaded_gem()
        return
    with _lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


__all__ = [
    "BridgedRegistry",
    "RockEnvEntryPoint",
    "bridge_registration_module",
    "install_gem_bridge",
    "is_rock_env_id",
]
