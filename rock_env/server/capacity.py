"""What a worker offers: its CPUs, memory, slots and the sandbox runtimes that really work on its host."""

from __future__ import annotations

import logging
import os

from rock_env.protocol import WorkerCapacity

logger = logging.getLogger(__name__)


def detect_runtimes(allow_local: bool = False) -> list[str]:
    """Sandbox runtimes this worker offers: each of ``runtime="auto"``'s candidates (namespace, docker)
    whose own probe passes here (``runtime_class(name).available()``: bubblewrap really builds a user
    namespace, the Docker daemon really answers), and ``local`` (no isolation: clients get host
    access) only when ``allow_local`` (``worker.allow_local_runtime``)."""
    from rock_env.sandbox.runtimes import AUTO_ORDER, runtime_class

    runtimes = []
    for name in AUTO_ORDER:
        try:
            available = runtime_class(name).available()
        except Exception as exc:  # a broken runtime is one this worker does not offer
            logger.info("sandbox runtime %s is not offered: %s", name, exc)
            available = False
        if available:
            runtimes.append(name)
    if allow_local:
        runtimes.append("local")
    return runtimes


def default_capacity(slots: int = 4096, allow_local: bool = False) -> WorkerCapacity:
    """This host's CPUs, memory and the runtimes it offers (``local`` only if ``allow_local``)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return WorkerCapacity(
        cpus=float(os.cpu_count() or 1), memory=memory, slots=slots, runtimes=detect_runtimes(allow_local)
    )
