"""Lazy access to gem-llm.

``import gem`` costs about a second because its ``__init__`` imports every GEM env and
reasoning_gym eagerly. rock_env only needs ``gem.core.Env`` at import time (our env base
class subclasses it), so this module loads ``gem.core`` without running gem's package
``__init__``. The package module is completed on first access to any other attribute
(PEP 562 module ``__getattr__``), so ``import gem; gem.make(...)`` keeps working for users.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

from rock_env.errors import DependencyMissing

_lock = threading.RLock()
_completed = False


def _install_partial_package() -> ModuleType:
    spec = importlib.util.find_spec("gem")
    if spec is None or spec.loader is None:
        raise DependencyMissing("gem-llm is not installed: run `pip install gem-llm==0.1.0`.")
    module = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 hook
        if name.startswith("__"):
            raise AttributeError(name)
        full_gem()
        return module.__dict__[name] if name in module.__dict__ else _missing(name)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules["gem"] = module
    return module


def _missing(name: str) -> Any:
    raise AttributeError(f"module 'gem' has no attribute {name!r}")


def gem_core() -> ModuleType:
    """Return ``gem.core`` without importing all of gem."""
    with _lock:
        if "gem" not in sys.modules:
            _install_partial_package()
        return importlib.import_module("gem.core")


def full_gem() -> ModuleType:
    """Return the fully initialised ``gem`` package (runs its ``__init__`` once)."""
    global _completed
    with _lock:
        if "gem" not in sys.modules:
            return importlib.import_module("gem")
        module = sys.modules["gem"]
        if not _completed and "make" not in module.__dict__:
            module.__dict__.pop("__getattr__", None)
            spec = module.__spec__
            assert spec is not None and spec.loader is not None
            try:
                spec.loader.exec_module(module)
            except Exception:
                module.__dict__["__getattr__"] = lambda name: _missing(name)
                raise
        _completed = True
        return module


def gem_registry() -> dict[str, Any]:
    """Return gem's own env registry (``gem.envs.registration.ENV_REGISTRY``)."""
    full_gem()
    return importlib.import_module("gem.envs.registration").ENV_REGISTRY  # type: ignore[no-any-return]
