"""Third-party envs registered through Python entry points.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."rock_env.envs"]
    mypkg = "mypkg.envs"              # a module: importing it calls rock_env.register(...)
    other = "mypkg.envs:register_all" # a callable: called once with no arguments

After ``pip install``, ``rock.make("myns:MyEnv-v0")`` finds the env without any import.
Plugins are loaded once, lazily: on the first lookup miss and on the first listing.
A plugin that fails to load is recorded (name and error), logged, and mentioned when an
id is not found; it never breaks other ids.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from rock_env.errors import PluginError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to load."""

    name: str
    value: str
    error: str

    def describe(self) -> str:
        """One line: which plugin, what it points at, what went wrong."""
        return f"plugin {self.name!r} ({self.value}) failed to load: {self.error}"


class PluginLoader:
    """Loads the entry points of one group, once (each plugin registers its envs itself)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._lock = threading.RLock()
        self._loaded = False
        #: Name of the plugin being loaded right now (its registrations get source "plugin").
        self.loading: str | None = None
        self.failures: list[PluginFailure] = []
        self.loaded_names: list[str] = []

    def entry_points(self) -> list[EntryPoint]:
        """The group's entry points, in name order."""
        return sorted(entry_points(group=self.group), key=lambda ep: ep.name)

    def load_all(self) -> None:
        """Load every plugin of the group (only the first call does anything)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for ep in self.entry_points():
                self._load_one(ep)

    def _load_one(self, ep: EntryPoint) -> None:
        self.loading = ep.name
        try:
            target = ep.load()
            if not isinstance(target, ModuleType):
                if not callable(target):
                    raise PluginError(f"entry point value {ep.value!r} is neither a module nor a callable")
                target()
            self.loaded_names.append(ep.name)
        except Exception as exc:  # a broken plugin must not break other ids
            failure = PluginFailure(ep.name, ep.value, f"{type(exc).__name__}: {exc}")
            self.failures.append(failure)
            logger.warning("%s", failure.describe())
        finally:
            self.loading = None

    def error_summary(self) -> str:
        """A sentence naming the failed plugins, or '' when all loaded."""
        return "; ".join(f.describe() for f in self.failures)
