"""The service's records: which object lives on which worker, whose it is, and whether it is still live.

:class:`ServiceState` declares the state every part of the :class:`~rock_env.server.service.Service`
shares; :class:`Objects` keeps the records (lookup, add, drop, mark lost) and finds the
:class:`~rock_env.server.hosts.Host` of a record.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread

from rock_env.errors import EnvInstanceNotFound, SandboxNotFound, WorkerLost
from rock_env.protocol import WorkerCapacity, WorkerInfo
from rock_env.server.hosts import Host
from rock_env.server.metrics import Metrics
from rock_env.server.policy import ServerPolicy
from rock_env.server.settings import ServerSettings, TokenSpec
from rock_env.server.store import ObjectRecord, Store
from rock_env.server.worker import Worker

logger = logging.getLogger(__name__)

T = TypeVar("T")
Kind = Literal["env", "vec", "sandbox"]
#: How each kind is named in messages.
KIND_NAMES = {"env": "env", "vec": "vector env", "sandbox": "sandbox"}


@dataclass
class WorkerEntry:
    """A worker known to this service, and the :class:`Host` that reaches it."""

    id: str
    url: str
    embedded: bool
    capacity: WorkerCapacity
    status: str
    last_heartbeat: float
    host: Host

    def info(self, used_slots: int) -> WorkerInfo:
        """The wire form."""
        return WorkerInfo(
            id=self.id,
            url=self.url,
            embedded=self.embedded,
            status="alive" if self.status == "alive" else "lost",
            capacity=self.capacity,
            used_slots=used_slots,
            last_heartbeat=self.last_heartbeat,
        )


def new_id(kind: str) -> str:
    """A fresh object id such as ``env-3f2a...``."""
    return f"{kind}-{uuid.uuid4().hex}"


def describe(rec: ObjectRecord) -> str:
    """``env 'env-...' (game:X) on worker 'w'``: how messages name an object."""
    name = rec.request.get("env_id")
    return (
        f"{KIND_NAMES.get(rec.kind, rec.kind)} {rec.id!r}"
        + (f" ({name})" if name else "")
        + (f" on worker {rec.worker_id!r}")
    )


class ServiceState:
    """The state the parts of a service share (set by :class:`~rock_env.server.service.Service`)."""

    settings: ServerSettings
    role: Literal["admin", "worker"]
    metrics: Metrics
    policy: ServerPolicy
    store: Store | None
    worker: Worker | None
    records: dict[str, ObjectRecord]
    workers: dict[str, WorkerEntry]
    _tokens: list[TokenSpec]
    _pending: set[str]
    _dirty: dict[str, float]
    _limiter: anyio.CapacityLimiter | None
    _tasks: list[asyncio.Task[Any]]
    #: Workers lost for good (e.g. a dead Ray actor's): their heartbeats and registrations are refused.
    retired_workers: set[str]

    def add_task(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a background coroutine until shutdown."""
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call in the thread pool."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)


class Objects(ServiceState):
    """Records of the objects placed on workers."""

    def lookup(self, obj_id: str, kinds: tuple[Kind, ...], owner: str) -> ObjectRecord:
        """The live record of ``obj_id``; raise not-found or WorkerLost naming it."""
        rec = self.records.get(obj_id)
        if rec is None or rec.kind not in kinds or (self.role == "admin" and rec.owner != owner):
            what = "sandbox" if kinds == ("sandbox",) else ("vector env" if kinds == ("vec",) else "env")
            cls = SandboxNotFound if kinds == ("sandbox",) else EnvInstanceNotFound
            raise cls(f"no {what} with id {obj_id!r} on this server: it was closed, reaped or never made.")
        if rec.status != "live":
            raise WorkerLost(
                f"{describe(rec)} is gone: {rec.reason or 'its worker was lost'}. Make a new one (and close this handle)."
            )
        now = time.time()
        rec.last_used = now
        self._dirty[obj_id] = now
        return rec

    def host_of(self, rec: ObjectRecord) -> Host:
        """The host of ``rec``'s worker; WorkerLost if that worker is gone."""
        entry = self.workers.get(rec.worker_id)
        if entry is None or entry.status != "alive":
            self.mark_lost([rec.id], f"worker {rec.worker_id!r} is lost")
            raise WorkerLost(f"{describe(rec)} is gone: its worker {rec.worker_id!r} is lost. Make a new one.")
        return entry.host

    def add_record(
        self,
        obj_id: str,
        kind: Kind,
        entry: WorkerEntry,
        owner: str,
        size: int,
        request: dict[str, Any],
        info: dict[str, Any],
        idle_ttl: float | None,
    ) -> ObjectRecord:
        """Remember a new object (and persist it before answering)."""
        now = time.time()
        rec = ObjectRecord(obj_id, kind, entry.id, owner, size, request, info, now, now, idle_ttl)
        self.records[obj_id] = rec
        if self.store is not None:
            self.store.put_object(rec)
        self.metrics.inc("objects_created_total", "Objects created.", kind=kind)
        return rec

    def forget_lost(self, obj_id: str, kind: Kind, owner: str) -> bool:
        """Drop the record of a lost object of ``owner`` (closing it is then a no-op); whether it was one."""
        rec = self.records.get(obj_id)
        if rec is None or rec.kind != kind or rec.status == "live" or (self.role == "admin" and rec.owner != owner):
            return False
        self.drop_record(obj_id)
        return True

    def drop_record(self, obj_id: str) -> None:
        """Forget a closed object."""
        rec = self.records.pop(obj_id, None)
        self._dirty.pop(obj_id, None)
        if rec is not None and self.store is not None:
            self.store.delete_objects([obj_id])

    def mark_lost(self, ids: list[str], reason: str) -> None:
        """Mark live records lost (their worker is gone or no longer has them)."""
        ids = [i for i in ids if i in self.records and self.records[i].status == "live"]
        if not ids:
            return
        for i in ids:
            self.records[i].status = "lost"
            self.records[i].reason = reason
            self.records[i].last_used = time.time()
        if self.store is not None:
            self.store.mark_lost(ids, reason)
        self.metrics.inc("objects_lost_total", "Objects lost with their worker.", amount=len(ids))
        logger.warning("marked %d objects lost: %s", len(ids), reason)

    def vanished(self, worker_id: str, obj_id: str) -> None:
        """A worker answered that it no longer has ``obj_id``: it restarted; the record is lost."""
        self.mark_lost([obj_id], f"worker {worker_id!r} no longer has it (the worker restarted)")

    def records_of(self, owner: str, kind: Kind) -> list[ObjectRecord]:
        """Records of ``owner`` (all owners in a worker process)."""
        return [r for r in self.records.values() if r.kind == kind and (self.role != "admin" or r.owner == owner)]

    def reserve(self, obj_id: str) -> None:
        """Mark an id as being created (reconciliation leaves it alone)."""
        self._pending.add(obj_id)

    def release(self, obj_id: str) -> None:
        """Creation of ``obj_id`` finished (or failed)."""
        self._pending.discard(obj_id)

    def used_slots(self, worker_id: str) -> int:
        """Slots used on a worker according to the records."""
        return sum(r.size for r in self.records.values() if r.worker_id == worker_id and r.status == "live")

    def mark_worker_lost(self, worker_id: str, reason: str, *, retire: bool = False) -> int:
        """Mark a remote worker lost now, and its live objects with it; how many objects that was.

        With ``retire`` the loss is final: a late heartbeat or registration from that worker id
        (e.g. from a Ray actor that is still being killed) cannot bring it back.
        """
        entry = self.workers.get(worker_id)
        if entry is None or entry.embedded:
            return 0
        if retire:
            self.retired_workers.add(worker_id)
        if entry.status == "alive":
            entry.status = "lost"
            if self.store is not None:
                self.store.set_worker_status(worker_id, "lost")
        ids = [r.id for r in self.records.values() if r.worker_id == worker_id and r.status == "live"]
        self.mark_lost(ids, f"worker {worker_id!r} is lost: {reason}")
        return len(ids)
