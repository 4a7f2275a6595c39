"""What a worker offers: its CPUs, memory, slots and the sandbox runtimes that really work on its host.

Capacity is by resources, not a fixed count: ``slots`` bound sandboxes (and envs that own one);
light envs (games, no sandbox) cost no slot and are bounded by memory: a :class:`MemoryMeter`
measures what one costs in the worker process and ``max_envs`` is the memory budget over that.
"""

from __future__ import annotations

import logging
import os
import time

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


#: What one light env is assumed to cost before enough of them were measured (bytes).
DEFAULT_ENV_MEMORY = 64 * 1024
#: The share of the host's (or cgroup's) memory a worker fills with light envs.
MEMORY_FRACTION = 0.5
#: Light envs hosted before the measured cost replaces :data:`DEFAULT_ENV_MEMORY`.
MEASURE_AFTER = 64


def host_memory() -> int:
    """Bytes of memory this process may use: the host's, or its cgroup's limit when lower."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            raw = fh.read().strip()
        if raw.isdigit() and (memory == 0 or int(raw) < memory):
            memory = int(raw)
    except OSError:
        pass
    return memory


def process_rss() -> int:
    """This process's resident memory in bytes (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MemoryMeter:
    """Measures what one light env costs in this process: resident memory above the baseline
    (taken when the worker started) over the most light envs hosted at once (memory that
    Python keeps after envs close is counted against that peak, not against fewer envs)."""

    def __init__(self, memory: int, fraction: float = MEMORY_FRACTION) -> None:
        self.memory = memory
        self.fraction = fraction
        self.baseline = process_rss()
        self.peak = 0
        self._at = 0.0
        self._rss = self.baseline

    def rss(self, max_age: float = 1.0) -> int:
        """The resident memory, read at most every ``max_age`` seconds."""
        now = time.monotonic()
        if now - self._at > max_age:
            self._rss, self._at = process_rss(), now
        return self._rss

    def env_memory(self, light_envs: int) -> int:
        """Bytes per light env: measured once :data:`MEASURE_AFTER` were hosted, else the default."""
        self.peak = max(self.peak, light_envs)
        if self.peak < MEASURE_AFTER:
            return DEFAULT_ENV_MEMORY
        return max(1024, (self.rss() - self.baseline) // self.peak)

    def update(self, capacity: WorkerCapacity, light_envs: int) -> WorkerCapacity:
        """``capacity`` with ``env_memory``, ``max_envs`` and ``rss`` measured now (updated in place)."""
        per_env = self.env_memory(light_envs)
        budget = max(0, int(self.memory * self.fraction) - self.baseline)
        capacity.env_memory = per_env
        capacity.max_envs = budget // per_env if self.memory else 1 << 20
        capacity.rss = self.rss()
        return capacity


def default_capacity(slots: int = 4096, allow_local: bool = False) -> WorkerCapacity:
    """This host's CPUs, memory and the runtimes it offers (``local`` only if ``allow_local``)."""
    memory = host_memory()
    capacity = WorkerCapacity(
        cpus=float(os.cpu_count() or 1), memory=memory, slots=slots, runtimes=detect_runtimes(allow_local)
    )
    return MemoryMeter(memory).update(capacity, 0)
