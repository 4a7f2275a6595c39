"""Workers joining, heartbeating and getting lost, and what the admin's records say about them.

A remote worker registers (or re-registers after a restart) and then heartbeats the ids it
hosts; :class:`Reconciliation` compares them with the records: objects the admin does not
know are orphans the worker must close, records the worker no longer has become lost.
After an admin restart :meth:`Reconciliation.recover` reloads the records and workers.
"""

from __future__ import annotations

import logging
import time

from rock_env.errors import Unauthorized, WorkerLost
from rock_env.protocol import (
    WorkerCapacity,
    WorkerHeartbeatRequest,
    WorkerHeartbeatResponse,
    WorkerInfo,
    WorkerRegisterRequest,
)
from rock_env.server.hosts import PeerHost
from rock_env.server.objects import WorkerEntry
from rock_env.server.peer import WorkerPeer
from rock_env.server.placement import Placement
from rock_env.server.store import WorkerRecord

logger = logging.getLogger(__name__)


class Reconciliation(Placement):
    """Worker registration, heartbeats, loss and recovery."""

    def peer_host(self, worker_id: str, url: str) -> PeerHost:
        """The host of a remote worker (reached with the cluster token)."""
        return PeerHost(WorkerPeer(worker_id, url, self.cluster_token), lambda obj_id: self.vanished(worker_id, obj_id))

    def register_worker(self, req: WorkerRegisterRequest) -> WorkerHeartbeatResponse:
        """A remote worker joins (or re-joins) this admin."""
        now = time.time()
        if req.worker_id in self.retired_workers:
            raise WorkerLost(f"worker {req.worker_id!r} was retired by this admin; start a worker with a new id.")
        old = self.workers.get(req.worker_id)
        if old is not None and old.embedded:
            raise Unauthorized(f"worker id {req.worker_id!r} is the admin's embedded worker; pick another id.")
        if old is not None and old.url == req.url:
            host = old.host
        else:
            if old is not None:
                self.add_task(old.host.aclose(), "close-peer")
            host = self.peer_host(req.worker_id, req.url)
        entry = WorkerEntry(req.worker_id, req.url, False, req.capacity, "alive", now, host)
        self.workers[req.worker_id] = entry
        if self.store is not None:
            self.store.put_worker(
                WorkerRecord(entry.id, entry.url, False, entry.capacity.model_dump(), "alive", entry.last_heartbeat)
            )
        logger.info("worker %s registered at %s (%s slots)", req.worker_id, req.url, req.capacity.slots)
        close = self._reconcile(entry, req.objects, grace=0.0)
        return WorkerHeartbeatResponse(known=True, close=close)

    def heartbeat(self, worker_id: str, req: WorkerHeartbeatRequest) -> WorkerHeartbeatResponse:
        """A worker reports it is alive and what it hosts."""
        entry = self.workers.get(worker_id)
        if entry is None or entry.embedded or worker_id in self.retired_workers:
            return WorkerHeartbeatResponse(known=False)
        entry.last_heartbeat = time.time()
        if entry.status != "alive":
            logger.info("worker %s is back", worker_id)
            entry.status = "alive"
            if self.store is not None:
                self.store.set_worker_status(worker_id, "alive")
        if req.capacity is not None:
            entry.capacity = req.capacity
        for obj_id, used in req.used.items():  # calls served directly by the worker keep the idle TTL away
            rec = self.records.get(obj_id)
            if rec is not None and rec.worker_id == worker_id and used > rec.last_used:
                rec.last_used = min(used, time.time())
                self._dirty[obj_id] = rec.last_used
        close = self._reconcile(entry, req.objects, grace=max(5.0, 2 * self.settings.heartbeat_interval))
        return WorkerHeartbeatResponse(known=True, close=close)

    def _reconcile(self, entry: WorkerEntry, reported: list[str], grace: float) -> list[str]:
        """Orphans (reported, unknown here) to close; records the worker no longer has become lost."""
        now = time.time()
        have = set(reported)
        close = []
        for obj_id in have:
            rec = self.records.get(obj_id)
            if obj_id in self._pending:
                continue
            if rec is None or rec.status != "live" or rec.worker_id != entry.id:
                close.append(obj_id)
        missing = [
            r.id
            for r in self.records.values()
            if r.worker_id == entry.id
            and r.status == "live"
            and r.id not in have
            and r.id not in self._pending
            and r.created < now - grace
        ]
        self.mark_lost(missing, f"worker {entry.id!r} no longer hosts it (the worker restarted)")
        if close:
            logger.info("asking worker %s to close %d orphan(s)", entry.id, len(close))
        return close

    def worker_infos(self) -> list[WorkerInfo]:
        """All workers, embedded first."""
        entries = sorted(self.workers.values(), key=lambda e: (not e.embedded, e.id))
        if self.worker is not None:
            self.worker.measure()  # the embedded worker's memory per env, measured now
        return [e.info(self.used_slots(e.id), self.light_envs(e.id)) for e in entries]

    def recover_records(self) -> list[str]:
        """Reload workers and records after an admin restart; the ids of the embedded worker's objects,
        which ended with the old process (now marked lost)."""
        assert self.store is not None, "recovery needs the admin's store"
        now = time.time()
        for wrec in self.store.workers():
            if wrec.embedded or wrec.id in self.workers:
                continue
            status = "alive" if wrec.status == "alive" else "lost"
            capacity = WorkerCapacity.model_validate(wrec.capacity)
            host = self.peer_host(wrec.id, wrec.url)
            self.workers[wrec.id] = WorkerEntry(wrec.id, wrec.url, False, capacity, status, now, host)
        for rec in self.store.objects():
            self.records[rec.id] = rec
        embedded = self.settings.worker_id
        dead = [r.id for r in self.records.values() if r.status == "live" and r.worker_id == embedded]
        self.mark_lost(dead, "the admin restarted and its embedded worker's objects ended with the old process")
        for rec in self.records.values():
            if rec.status == "live" and rec.worker_id not in self.workers:
                self.mark_lost([rec.id], f"worker {rec.worker_id!r} is unknown after the admin restart")
        if self.records:
            logger.info(
                "recovered %d records (%d live) and %d remote workers",
                len(self.records),
                sum(1 for r in self.records.values() if r.status == "live"),
                sum(1 for w in self.workers.values() if not w.embedded),
            )
        return dead
