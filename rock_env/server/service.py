"""The server's state and rules: workers, placement, records, quotas, reconciliation, reaping.

One :class:`Service` lives in every server process. In the admin (``role="admin"``) it
places objects on workers (its embedded :class:`~rock_env.server.worker.Worker` or remote
ones reached through :class:`~rock_env.server.peer.WorkerPeer`) and keeps the records in
SQLite. In a worker process (``role="worker"``) it hosts objects under the ids the admin
chose and reports them in heartbeats. The HTTP routes (:mod:`rock_env.server.routes`) are
thin wrappers around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
import httpx

from rock_env.errors import (
    EnvInstanceNotFound,
    Forbidden,
    NoCapacity,
    QuotaExceeded,
    RockEnvError,
    SandboxNotFound,
    Unauthorized,
    WorkerLost,
)
from rock_env.protocol import (
    OBJECT_ID_HEADER,
    WorkerCapacity,
    WorkerHeartbeatRequest,
    WorkerHeartbeatResponse,
    WorkerInfo,
    WorkerRegisterRequest,
)
from rock_env.server.metrics import Labels, Metrics
from rock_env.server.peer import WorkerPeer
from rock_env.server.policy import ServerPolicy
from rock_env.server.settings import Limits, ServerSettings
from rock_env.server.store import ObjectRecord, Store, WorkerRecord
from rock_env.server.worker import Worker, default_capacity

logger = logging.getLogger(__name__)

T = TypeVar("T")
Kind = Literal["env", "vec", "sandbox"]
ANONYMOUS = "anonymous"


@dataclass
class WorkerEntry:
    """A worker known to this service."""

    id: str
    url: str
    embedded: bool
    capacity: WorkerCapacity
    status: str
    last_heartbeat: float
    peer: WorkerPeer | None = None

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


class Service:
    """State and rules of one server process (see the module docstring)."""

    def __init__(self, settings: ServerSettings, role: Literal["admin", "worker"] = "admin") -> None:
        self.settings = settings
        self.role = role
        self.metrics = Metrics()
        self._tokens = settings.all_tokens()
        self.records: dict[str, ObjectRecord] = {}
        self.workers: dict[str, WorkerEntry] = {}
        #: Workers lost for good (e.g. a dead Ray actor's): their heartbeats and registrations are refused.
        self.retired_workers: set[str] = set()
        self._pending: set[str] = set()
        self._dirty: dict[str, float] = {}
        self._limiter: anyio.CapacityLimiter | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.store: Store | None = None
        self.worker: Worker | None = None
        #: Coroutine factories started as background tasks at startup (e.g. a worker's agent).
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        #: What this server hands out to clients (runtimes, host paths, code): one policy for every route.
        self.policy = ServerPolicy.from_settings(settings)
        #: Quota held by creations in progress: (owner, kind) -> (size, vector workers).
        self._held: dict[tuple[str, str], list[int]] = {}
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
            )
        self._register_gauges()

    # -- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store, recover state and start the background loops."""
        self._limiter = anyio.CapacityLimiter(64)
        if self.role == "admin":
            self.store = Store(self.settings.data_path() / "state.sqlite3")
            await self._recover()
            self._tasks.append(asyncio.create_task(self._reaper_loop(), name="rock-env-reaper"))
        for factory in self.background:
            self._tasks.append(asyncio.create_task(factory(), name="rock-env-background"))
        self._tasks.append(asyncio.create_task(self._warm_registry(), name="rock-env-warm-registry"))

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
            if entry.peer is not None:
                await entry.peer.aclose()
        if self.store is not None:
            self.store.touch(self._dirty)
            self.store.close()

    async def _warm_registry(self) -> None:
        """Load the env registry (GEM's too) in a thread so that the first make is fast."""
        import rock_env

        try:
            await self.blocking(rock_env.list_envs)
        except Exception:
            logger.exception("loading the env registry failed")
        if self.settings.gc_freeze:
            freeze_heap()

    def add_task(self, coro: Any, name: str) -> None:
        """Run a background coroutine until shutdown."""
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call in the thread pool."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    # -- auth and quotas -----------------------------------------------------------------

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a token."""
        return bool(self._tokens)

    def authenticate(self, presented: str | None) -> str:
        """The owner name for a presented token (constant-time comparison); raise Unauthorized."""
        if not self._tokens:
            return ANONYMOUS
        if not presented:
            raise Unauthorized(
                "this server needs an API token: send 'Authorization: Bearer <token>' "
                "(clients read it from token=... or $ROCK_ENV_TOKEN)."
            )
        owner: str | None = None
        given = presented.encode()
        for spec in self._tokens:
            if hmac.compare_digest(given, spec.token.encode()):
                owner = spec.name
        if owner is None:
            raise Unauthorized("the API token is wrong: check token=... or $ROCK_ENV_TOKEN.")
        return owner

    def check_cluster_caller(self, owner: str) -> None:
        """Only the cluster token may register workers and send their heartbeats (Forbidden otherwise).

        The cluster token is the first configured token (``server.tokens[0]``, else ``server.token``):
        the admin sends it to its workers and they send it back. Another client's token must not
        make the admin place everyone's envs and sandboxes on a "worker" that client runs.
        """
        if self._tokens and owner != self._tokens[0].name:
            raise Forbidden(
                f"token {owner!r} may not register workers: only the cluster token ({self._tokens[0].name!r}, the "
                "first of server.tokens, else server.token) may. Start workers with that token (worker.token=... "
                "or $ROCK_ENV_TOKEN)."
            )

    def limits_of(self, owner: str) -> Limits:
        """Quotas of ``owner``: the global ``limits``, with the fields its token's own limits set."""
        for spec in self._tokens:
            if spec.name == owner and spec.limits is not None:
                return self.settings.limits.model_copy(update=spec.limits.model_dump(exclude_unset=True))
        return self.settings.limits

    def _usage(self, owner: str, kind: Kind) -> tuple[int, int]:
        """What ``owner`` holds of ``kind`` (live objects and creations in progress): (size, vector workers)."""
        size = workers = 0
        for r in self.records.values():
            if r.owner == owner and r.kind == kind and r.status == "live":
                size += r.size
                if kind == "vec" and r.request.get("mode") == "async":
                    workers += int(r.request.get("num_workers") or 0)
        held = self._held.get((owner, kind))
        if held is not None:
            size += held[0]
            workers += held[1]
        return size, workers

    def check_quota(self, owner: str, kind: Kind, size: int, workers: int = 0) -> None:
        """Raise QuotaExceeded if ``owner`` may not create ``size`` more objects of ``kind``
        (and ``workers`` more vector worker processes)."""
        if self.role != "admin":
            return
        limits = self.limits_of(owner)
        used, used_workers = self._usage(owner, kind)
        quota = {
            "env": ("max_envs", "envs"),
            "vec": ("max_vec_envs", "vector sub-envs"),
            "sandbox": ("max_sandboxes", "sandboxes"),
        }
        field, what = quota[kind]
        checks = [(field, what, getattr(limits, field), used, size)]
        if kind == "vec" and workers:
            checks.append(("max_vec_workers", "vector worker processes", limits.max_vec_workers, used_workers, workers))
        for name, noun, limit, have, more in checks:
            if limit is not None and have + more > limit:
                close = "sandbox.stop()" if kind == "sandbox" else "env.close()"
                raise QuotaExceeded(
                    f"quota {name} exceeded: token {owner!r} may hold at most {limit} {noun}; it holds {have} and "
                    f"asked for {more} more. Close some ({close}) or raise the quota: limits.{name}=N for every "
                    f"token, or server.tokens[].limits.{name} for one (null: unlimited)."
                )

    @contextlib.contextmanager
    def hold_quota(self, owner: str, kind: Kind, size: int, workers: int = 0) -> Iterator[None]:
        """Check the quota and count ``size`` (and ``workers``) as used while a creation is in progress.

        Concurrent creations of one owner therefore cannot together pass a quota that each passes alone.
        """
        self.check_quota(owner, kind, size, workers)
        key = (owner, kind)
        held = self._held.setdefault(key, [0, 0])
        held[0] += size
        held[1] += workers
        try:
            yield
        finally:
            held[0] -= size
            held[1] -= workers
            if held == [0, 0]:
                self._held.pop(key, None)

    # -- records -------------------------------------------------------------------------

    def lookup(self, obj_id: str, kinds: tuple[Kind, ...], owner: str) -> ObjectRecord:
        """The live record of ``obj_id``; raise not-found or WorkerLost naming it."""
        rec = self.records.get(obj_id)
        if rec is None or rec.kind not in kinds or (self.role == "admin" and rec.owner != owner):
            what = "sandbox" if kinds == ("sandbox",) else ("vector env" if kinds == ("vec",) else "env")
            cls = SandboxNotFound if kinds == ("sandbox",) else EnvInstanceNotFound
            raise cls(f"no {what} with id {obj_id!r} on this server: it was closed, reaped or never made.")
        if rec.status != "live":
            raise WorkerLost(
                f"{_describe(rec)} is gone: {rec.reason or 'its worker was lost'}. Make a new one "
                "(and close this handle)."
            )
        now = time.time()
        rec.last_used = now
        self._dirty[obj_id] = now
        return rec

    def entry_of(self, rec: ObjectRecord) -> WorkerEntry:
        """The worker hosting ``rec``; WorkerLost if it is gone."""
        entry = self.workers.get(rec.worker_id)
        if entry is None or entry.status != "alive":
            self._mark_lost([rec.id], f"worker {rec.worker_id!r} is lost")
            raise WorkerLost(f"{_describe(rec)} is gone: its worker {rec.worker_id!r} is lost. Make a new one.")
        return entry

    def is_local(self, rec: ObjectRecord) -> bool:
        """Whether ``rec`` lives in this process."""
        return self.workers[rec.worker_id].embedded if rec.worker_id in self.workers else False

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

    def _mark_lost(self, ids: list[str], reason: str) -> None:
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

    def records_of(self, owner: str, kind: Kind) -> list[ObjectRecord]:
        """Records of ``owner`` (all owners in a worker process)."""
        return [r for r in self.records.values() if r.kind == kind and (self.role != "admin" or r.owner == owner)]

    def reserve(self, obj_id: str) -> None:
        """Mark an id as being created (reconciliation leaves it alone)."""
        self._pending.add(obj_id)

    def release(self, obj_id: str) -> None:
        """Creation of ``obj_id`` finished (or failed)."""
        self._pending.discard(obj_id)

    # -- placement -----------------------------------------------------------------------

    def used_slots(self, worker_id: str) -> int:
        """Slots used on a worker according to the records."""
        return sum(r.size for r in self.records.values() if r.worker_id == worker_id and r.status == "live")

    def place(self, size: int, runtime: str | tuple[str, ...] | None = None, what: str = "env") -> WorkerEntry:
        """The alive worker with the most free capacity that has ``runtime`` (one of them, for a tuple);
        NoCapacity if none."""
        best: tuple[float, WorkerEntry] | None = None
        wanted = (
            (runtime,)
            if isinstance(runtime, str) and runtime != "auto"
            else runtime
            if isinstance(runtime, tuple)
            else None
        )
        for entry in self.workers.values():
            if entry.status != "alive":
                continue
            if wanted is not None and not any(r in entry.capacity.runtimes for r in wanted):
                continue
            free = entry.capacity.slots - self.used_slots(entry.id)
            if free < size:
                continue
            score = (free / max(entry.capacity.slots, 1)) * max(entry.capacity.cpus, 0.1)
            if best is None or score > best[0]:
                best = (score, entry)
        if best is None:
            alive = [e.id for e in self.workers.values() if e.status == "alive"]
            need = f" with runtime {' or '.join(repr(r) for r in wanted)}" if wanted else ""
            raise NoCapacity(
                f"no worker can host this {what} (needs {size} free slot(s){need}); alive workers: {alive or 'none'}. "
                "Close unused objects or start another worker: rock-env worker start --admin URL."
            )
        return best[1]

    def place_sandbox(self, size: int, runtime: str | None, what: str = "sandbox") -> tuple[WorkerEntry, str]:
        """A worker for ``size`` slots of sandboxes of ``runtime``, and the concrete runtime to use there.

        The server's policy decides: ``local`` only if allowed, ``auto`` (or None) resolved to the
        first of namespace, docker (and local, if allowed) that the chosen worker offers.
        """
        name = self.policy.check_runtime(runtime) or "auto"
        if name != "auto":
            return self.place(size, name, what), name
        candidates = self.policy.auto_candidates()
        alive = [e for e in self.workers.values() if e.status == "alive"]
        if alive and not any(r in e.capacity.runtimes for e in alive for r in candidates):
            raise self.policy.no_isolating_runtime(sorted({r for e in alive for r in e.capacity.runtimes}))
        entry = self.place(size, candidates, what)
        return entry, self.policy.resolve_runtime(None, entry.capacity.runtimes)

    async def create_placed(
        self, choose: Callable[[], WorkerEntry], create: Callable[[WorkerEntry], Awaitable[T]], what: str
    ) -> tuple[WorkerEntry, T]:
        """``create`` on the worker ``choose()`` picks; a remote worker that cannot even be connected to
        is marked lost and the creation placed again (at most twice), so that one dead or bogus worker
        does not fail every creation until its heartbeats time out."""
        for attempt in range(3):
            entry = choose()
            try:
                return entry, await create(entry)
            except WorkerLost as exc:
                unreachable = isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))
                if entry.embedded or not unreachable or attempt == 2:
                    raise
                self.mark_worker_lost(entry.id, f"it could not be reached while {what}")
        raise AssertionError("unreachable")

    def object_headers(self, obj_id: str) -> dict[str, str]:
        """Headers that ask a worker to create an object under ``obj_id``."""
        return {OBJECT_ID_HEADER: obj_id, "content-type": "application/json"}

    # -- workers -------------------------------------------------------------------------

    def register_worker(self, req: WorkerRegisterRequest) -> WorkerHeartbeatResponse:
        """A remote worker joins (or re-joins) this admin."""
        now = time.time()
        if req.worker_id in self.retired_workers:
            raise WorkerLost(f"worker {req.worker_id!r} was retired by this admin; start a worker with a new id.")
        old = self.workers.get(req.worker_id)
        if old is not None and old.embedded:
            raise Unauthorized(f"worker id {req.worker_id!r} is the admin's embedded worker; pick another id.")
        token = self._tokens[0].token if self._tokens else None
        peer = old.peer if old is not None and old.peer is not None and old.url == req.url else None
        if peer is None:
            if old is not None and old.peer is not None:
                self.add_task(old.peer.aclose(), "close-peer")
            peer = WorkerPeer(req.worker_id, req.url, token)
        entry = WorkerEntry(req.worker_id, req.url, False, req.capacity, "alive", now, peer)
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
        self._mark_lost(missing, f"worker {entry.id!r} no longer hosts it (the worker restarted)")
        if close:
            logger.info("asking worker %s to close %d orphan(s)", entry.id, len(close))
        return close

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
        self._mark_lost(ids, f"worker {worker_id!r} is lost: {reason}")
        return len(ids)

    def worker_infos(self) -> list[WorkerInfo]:
        """All workers, embedded first."""
        entries = sorted(self.workers.values(), key=lambda e: (not e.embedded, e.id))
        return [e.info(self.used_slots(e.id)) for e in entries]

    # -- recovery and reaping ------------------------------------------------------------

    async def _recover(self) -> None:
        """Reload state after a restart: the embedded worker's objects are gone, remote ones are re-checked."""
        assert self.store is not None
        now = time.time()
        for wrec in self.store.workers():
            if wrec.embedded or wrec.id in self.workers:
                continue
            token = self._tokens[0].token if self._tokens else None
            self.workers[wrec.id] = WorkerEntry(
                wrec.id,
                wrec.url,
                False,
                WorkerCapacity.model_validate(wrec.capacity),
                "alive" if wrec.status == "alive" else "lost",
                now,
                WorkerPeer(wrec.id, wrec.url, token),
            )
        for rec in self.store.objects():
            self.records[rec.id] = rec
        embedded = self.settings.worker_id
        dead = [r for r in self.records.values() if r.status == "live" and r.worker_id == embedded]
        if dead:
            self._mark_lost(
                [r.id for r in dead], "the admin restarted and its embedded worker's objects ended with the old process"
            )
            await self._reap_dead_sandboxes([r for r in dead if r.kind == "sandbox"])
        for rec in self.records.values():
            if rec.status == "live" and rec.worker_id not in self.workers:
                self._mark_lost([rec.id], f"worker {rec.worker_id!r} is unknown after the admin restart")
        if self.records:
            logger.info(
                "recovered %d records (%d live) and %d remote workers",
                len(self.records),
                sum(1 for r in self.records.values() if r.status == "live"),
                sum(1 for w in self.workers.values() if not w.embedded),
            )

    async def _reap_dead_sandboxes(self, recs: list[ObjectRecord]) -> None:
        """Remove what sandboxes of a killed admin left behind (their processes, mounts, state dirs)."""
        if not recs:
            return
        from rock_env.sandbox.gc import reap_dir
        from rock_env.sandbox.state import state_root

        for rec in recs:
            sandbox_id = str(rec.info.get("config", {}).get("sandbox_id") or "")
            # only ever a direct child of the state root, named like a sandbox id
            if not sandbox_id or "/" in sandbox_id or sandbox_id.startswith("."):
                continue
            directory = state_root() / sandbox_id
            if directory.parent == state_root() and directory.is_dir():
                try:
                    await self.blocking(reap_dir, directory)
                    logger.info("reaped sandbox %s left by the previous admin process", sandbox_id)
                except Exception:
                    logger.exception("reaping sandbox %s failed", sandbox_id)

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval)
            try:
                await self.reap_once()
            except Exception:
                logger.exception("reaper pass failed")

    async def reap_once(self) -> None:
        """One pass: lost workers, idle objects, old lost records, flush ``last_used``."""
        now = time.time()
        for entry in list(self.workers.values()):
            if entry.embedded or entry.status != "alive":
                continue
            if now - entry.last_heartbeat > self.settings.heartbeat_timeout:
                self.mark_worker_lost(entry.id, f"it missed heartbeats for {now - entry.last_heartbeat:.0f}s")
        for rec in list(self.records.values()):
            if rec.status == "live":
                ttl = rec.idle_ttl or (
                    self.settings.sandbox_idle_ttl if rec.kind == "sandbox" else self.settings.env_idle_ttl
                )
                if ttl is not None and now - rec.last_used > ttl:
                    logger.info("reaping %s after %.0fs idle", _describe(rec), now - rec.last_used)
                    self.metrics.inc("objects_reaped_total", "Objects closed by the idle TTL.", kind=rec.kind)
                    await self.close_object(rec)
            elif now - rec.last_used > self.settings.lost_retention:
                self.drop_record(rec.id)
        if self.store is not None and self._dirty:
            dirty, self._dirty = self._dirty, {}
            await self.blocking(self.store.touch, dirty)

    async def close_object(self, rec: ObjectRecord) -> None:
        """Close ``rec`` on its worker (best effort) and forget it."""
        self.drop_record(rec.id)
        entry = self.workers.get(rec.worker_id)
        if entry is None or entry.status != "alive":
            return
        try:
            if entry.embedded:
                assert self.worker is not None
                await self.blocking(self.worker.close, rec.id)
            else:
                assert entry.peer is not None
                path = {"env": "envs", "vec": "vecs", "sandbox": "sandboxes"}[rec.kind]
                await entry.peer.request("DELETE", f"/api/v1/{path}/{rec.id}", what=f"closing {rec.id}")
        except RockEnvError as exc:
            logger.warning("closing %s failed: %s", rec.id, exc)

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


def freeze_heap() -> None:
    """Collect garbage once, then exclude every surviving object from later collections (``gc.freeze``).

    A server's heap after startup is mostly modules, classes and the registry: long-lived and
    never garbage. Freezing it keeps the full collections that steady-state allocation triggers
    short (they scan only younger objects); without it they scanned ~170k objects each time.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    logger.debug(
        "froze %d objects out of the GC in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1e3
    )


def _describe(rec: ObjectRecord) -> str:
    what = {"env": "env", "vec": "vector env", "sandbox": "sandbox"}.get(rec.kind, rec.kind)
    name = rec.request.get("env_id")
    return f"{what} {rec.id!r}" + (f" ({name})" if name else "") + f" on worker {rec.worker_id!r}"
