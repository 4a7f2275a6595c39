"""The server's state and rules, one :class:`Service` per server process.

In the admin (``role="admin"``) it places objects on workers (its embedded
:class:`~rock_env.server.worker.Worker` or remote ones, both reached through a
:class:`~rock_env.server.hosts.Host`) and keeps the records in SQLite. In a worker process
(``role="worker"``) it hosts objects under the ids the admin chose and reports them in
heartbeats. The HTTP routes (:mod:`rock_env.server.routes`) are thin wrappers around it.

Its parts, one job each: :mod:`~rock_env.server.objects` (records), :mod:`~rock_env.server.quotas`
(tokens and quotas), :mod:`~rock_env.server.placement` (the one placement path),
:mod:`~rock_env.server.reconcile` (workers joining and getting lost) and
:mod:`~rock_env.server.reaper` (idle objects, recovery). This module starts and stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import anyio

from rock_env.errors import RockEnvError
from rock_env.server.capacity import default_capacity
from rock_env.server.gc_policy import GcPolicy, freeze_heap
from rock_env.server.hosts import EmbeddedHost
from rock_env.server.metrics import Labels, Metrics
from rock_env.server.objects import Kind, WorkerEntry, new_id
from rock_env.server.policy import ServerPolicy
from rock_env.server.quotas import ANONYMOUS
from rock_env.server.reaper import Reaper
from rock_env.server.sandbox_ops import local_events
from rock_env.server.settings import ServerSettings
from rock_env.server.store import Store
from rock_env.server.worker import Worker

logger = logging.getLogger(__name__)

__all__ = ["ANONYMOUS", "Kind", "Service", "WorkerEntry", "freeze_heap", "new_id"]


class Service(Reaper):
    """State and rules of one server process (see the module docstring)."""

    def __init__(self, settings: ServerSettings, role: Literal["admin", "worker"] = "admin") -> None:
        self.settings = settings
        self.role = role
        self.metrics = Metrics()
        self._tokens = settings.all_tokens()
        self.records = {}
        self.workers = {}
        self.retired_workers = set()
        self.local_workers = 0
        self.local_workers_starting = lambda: False
        self.started_at = time.monotonic()
        self._pending = set()
        self._dirty = {}
        self._held = {}
        self._limiter = None
        self._tasks = []
        self.store = None
        self.worker = None
        #: Coroutine factories started as background tasks at startup (e.g. a worker's heartbeat link).
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        #: The collector policy of a server that owns its process (set by ``rock-env admin|worker start``;
        #: an in-process server only freezes its startup heap once).
        self.gc_policy: GcPolicy | None = None
        #: What this server hands out to clients (runtimes, host paths, code): one policy for every route.
        self.policy = ServerPolicy.from_settings(settings)
        if settings.embedded_worker or role == "worker":
            capacity = default_capacity(slots=settings.slots, allow_local=settings.allow_local_runtime)
            self.worker = Worker(settings.worker_id, capacity)
            self.workers[settings.worker_id] = WorkerEntry(
                id=settings.worker_id,
                url="embedded",
                embedded=True,
                capacity=capacity,
                status="alive",
                last_heartbeat=time.time(),
                host=EmbeddedHost(self.worker, self.blocking, local_events),
            )
        self._register_gauges()

    # -- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store, recover state and start the background loops."""
        self._limiter = anyio.CapacityLimiter(64)
        if self.role == "admin":
            self.store = Store(self.settings.data_path() / "state.sqlite3")
            await self.recover()
            self.add_task(self.reaper_loop(), "rock-env-reaper")
        for factory in self.background:
            self.add_task(factory(), "rock-env-background")
        self.add_task(self._warm_registry(), "rock-env-warm-registry")

    async def shutdown(self) -> None:
        """Stop the loops, close hosted objects and peers, flush the store."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.worker is not None:
            ids = self.worker.object_ids()
            await self.blocking(self.worker.close_all)
            if self.store is not None:
                self.store.delete_objects([i for i in ids if i in self.records])
            for i in ids:
                self.records.pop(i, None)
        for entry in self.workers.values():
            await entry.host.aclose()
        if self.store is not None:
            self.store.touch(self._dirty)
            self.store.close()
        if self.gc_policy is not None:
            self.gc_policy.stop()

    async def _warm_registry(self) -> None:
        """Load the env registry (GEM's too) in a thread so that the first make is fast."""
        from rock_env.api import list_envs

        try:
            await self.blocking(list_envs)
        except Exception:
            logger.exception("loading the env registry failed")
        if self.settings.gc_freeze:
            if self.gc_policy is not None:
                self.gc_policy.start()
                self.add_task(self.gc_policy.run(), "rock-env-gc")
            else:
                freeze_heap()

    # -- metrics -------------------------------------------------------------------------

    def _register_gauges(self) -> None:
        def live(kind: str) -> Callable[[], list[tuple[Labels, float]]]:
            def read() -> list[tuple[Labels, float]]:
                n = sum(r.size for r in self.records.values() if r.kind == kind and r.status == "live")
                return [((), float(n))]

            return read

        self.metrics.gauge("live_envs", "Live single envs.", live("env"))
        self.metrics.gauge("live_vec_sub_envs", "Live sub-envs of vector envs.", live("vec"))
        self.metrics.gauge("live_sandboxes", "Live sandboxes.", live("sandbox"))

        def workers() -> list[tuple[Labels, float]]:
            alive = sum(1 for w in self.workers.values() if w.status == "alive")
            return [((("status", "alive"),), float(alive)), ((("status", "lost"),), float(len(self.workers) - alive))]

        self.metrics.gauge("workers", "Workers by status.", workers)

    def observe(self, op: str, seconds: float) -> None:
        """Record the latency of one operation."""
        self.metrics.observe("op_seconds", "Latency of server operations.", seconds, op=op)

    def count_error(self, exc: RockEnvError) -> None:
        """Count an error by type."""
        self.metrics.inc("errors_total", "Errors returned, by type.", type=type(exc).__name__)
