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
#: The owner name a worker gives the bearer of an object grant: ``grant:<object id>`` (that object only).
GRANT_OWNER = "grant:"
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

    def info(self, used_slots: int, light_envs: int = 0) -> WorkerInfo:
        """The wire form."""
        return WorkerInfo(
            id=self.id,
            url=self.url,
            embedded=self.embedded,
            status="alive" if self.status == "alive" else "lost",
            capacity=self.capacity,
            used_slots=used_slots,
            last_heartbeat=self.last_heartbeat,
            light_envs=light_envs,
        )


def is_heavy(rec: ObjectRecord) -> bool:
    """Whether ``rec`` takes a slot (a sandbox, or an env that owns one); light envs cost memory only."""
    return rec.kind == "sandbox" or "sandbox" in (rec.info.get("requirements") or ())


class Records(dict[str, ObjectRecord]):
    """The records by id, with running totals of what is live per worker and per owner.

    Placement and quotas read the totals in O(1) instead of scanning 10,000 records per creation.
    Status changes go through :meth:`set_status` so that the totals stay right.
    """

    def __init__(self, items: dict[str, ObjectRecord] | None = None) -> None:
        super().__init__()
        #: (worker id, heavy) -> live size
        self.by_worker: dict[tuple[str, bool], int] = {}
        #: (owner, kind) -> [live size, vector worker processes]
        self.by_owner: dict[tuple[str, str], list[int]] = {}
        for key, rec in (items or {}).items():
            self[key] = rec

    def _count(self, rec: ObjectRecord, sign: int) -> None:
        if rec.status != "live":
            return
        key = (rec.worker_id, is_heavy(rec))
        self.by_worker[key] = self.by_worker.get(key, 0) + sign * rec.size
        usage = self.by_owner.setdefault((rec.owner, rec.kind), [0, 0])
        usage[0] += sign * rec.size
        if rec.kind == "vec" and rec.request.get("mode") == "async":
            usage[1] += sign * int(rec.request.get("num_workers") or 0)

    def __setitem__(self, key: str, rec: ObjectRecord) -> None:
        old = self.get(key)
        if old is not None:
            self._count(old, -1)
        super().__setitem__(key, rec)
        self._count(rec, 1)

    def __delitem__(self, key: str) -> None:
        self._count(self[key], -1)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        """Remove and return a record (its size leaves the totals)."""
        if key in self:
            rec = super().pop(key)
            self._count(rec, -1)
            return rec
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        """Forget every record."""
        super().clear()
        self.by_worker.clear()
        self.by_owner.clear()

    def set_status(self, key: str, status: str) -> None:
        """Change a record's status, keeping the totals right."""
        rec = self[key]
        self._count(rec, -1)
        rec.status = status
        self._count(rec, 1)


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
    _records: Records
    workers: dict[str, WorkerEntry]
    _tokens: list[TokenSpec]
    _pending: set[str]
    _dirty: dict[str, float]
    _limiter: anyio.CapacityLimiter | None
    _tasks: list[asyncio.Task[Any]]
    #: Workers lost for good (e.g. a dead Ray actor's): their heartbeats and registrations are refused.
    retired_workers: set[str]
    #: Worker processes ``rock-env admin start workers=N`` started that have not registered yet at startup.
    local_workers: int
    #: Whether any of those processes still runs (set with them; creations stop waiting once none does).
    local_workers_starting: Callable[[], bool]
    #: ``time.monotonic()`` when the service was made.
    started_at: float

    @property
    def records(self) -> Records:
        """The records by id (a :class:`Records`: assigning a plain dict wraps it)."""
        return self._records

    @records.setter
    def records(self, value: dict[str, ObjectRecord]) -> None:
        self._records = value if isinstance(value, Records) else Records(value)

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
        if (
            rec is None
            or rec.kind not in kinds
            or (self.role == "admin" and rec.owner != owner)
            or (owner.startswith(GRANT_OWNER) and owner[len(GRANT_OWNER) :] != obj_id)
        ):
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
            self.records.set_status(i, "lost")
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
        if owner.startswith(GRANT_OWNER):
            rec = self.records.get(owner[len(GRANT_OWNER) :])
            return [rec] if rec is not None and rec.kind == kind else []
        return [r for r in self.records.values() if r.kind == kind and (self.role != "admin" or r.owner == owner)]

    def reserve(self, obj_id: str) -> None:
        """Mark an id as being created (reconciliation leaves it alone)."""
        self._pending.add(obj_id)

    def release(self, obj_id: str) -> None:
        """Creation of ``obj_id`` finished (or failed)."""
        self._pending.discard(obj_id)

    def used_slots(self, worker_id: str) -> int:
        """Slots used on a worker according to the records: sandboxes and envs that own one."""
        return self.records.by_worker.get((worker_id, True), 0)

    def light_envs(self, worker_id: str) -> int:
        """Live light envs (no sandbox; vector sub-envs count one each) on a worker, by the records."""
        return self.records.by_worker.get((worker_id, False), 0)

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
