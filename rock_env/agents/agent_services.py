"""The model service that agent envs share inside one process.

An agent env hides its :class:`~rock_env.agents.model_service.ModelService`: the env's actions are
the answers. Envs of one process share one service per ``model_timeout`` (one I/O thread for
them all, however many envs a vector env or a server worker holds); it is closed when the last
env that uses it is closed. An env given ``model_service=`` uses that one and never closes it.
"""

from __future__ import annotations

import threading

from rock_env.agents.model_service import ModelService

_LOCK = threading.Lock()
_SHARED: dict[float, tuple[ModelService, int]] = {}


def acquire(timeout: float) -> ModelService:
    """The shared service whose harness calls time out after ``timeout`` seconds (made on first use)."""
    key = float(timeout)
    with _LOCK:
        entry = _SHARED.get(key)
        if entry is None or entry[0]._closed:
            service = ModelService(timeout=key)
            _SHARED[key] = (service, 1)
            return service
        _SHARED[key] = (entry[0], entry[1] + 1)
        return entry[0]


def release(service: ModelService) -> None:
    """Give back a service from :func:`acquire`; the last user closes it."""
    closing = None
    with _LOCK:
        for key, (shared, users) in list(_SHARED.items()):
            if shared is service:
                if users <= 1:
                    del _SHARED[key]
                    closing = shared
                else:
                    _SHARED[key] = (shared, users - 1)
                break
    if closing is not None:
        closing.close()


def shared_count() -> int:
    """How many shared services are open (for tests)."""
    with _LOCK:
        return len(_SHARED)


__all__ = ["acquire", "release", "shared_count"]
