"""The one placement path: quota -> place -> reserve -> call the host -> record -> release.

Envs, vector envs and sandboxes are all created by :meth:`Placement.create` from a
:class:`Creation` (what to make, how much room it needs, how to make the request concrete
for the chosen worker); every later operation goes through :meth:`Placement.call` (find the
record, its host, run the op there) and :meth:`Placement.close`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from rock_env.errors import Forbidden, NoCapacity, RockEnvError, WorkerLost
from rock_env.server.hosts import HostOp
from rock_env.server.objects import GRANT_OWNER, Kind, Objects, WorkerEntry, describe
from rock_env.server.quotas import Quotas
from rock_env.server.store import ObjectRecord

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
#: How often a creation is placed again when its worker cannot even be connected to.
PLACEMENT_ATTEMPTS = 3
#: Seconds after the admin's start that creations wait for the local worker processes it started.
LOCAL_WORKERS_WAIT = 60.0


@dataclass
class Creation(Generic[M]):
    """What :meth:`Placement.create` makes.

    ``prepare(entry, runtime)`` turns the client's request into the body the chosen worker gets
    (``runtime``: the concrete sandbox runtime picked for it, ``None`` for an env without a
    sandbox) and the request to record; it may raise to refuse the request.
    """

    kind: Kind
    #: Names the object in messages, e.g. ``env 'game:Sokoban-v0-easy'``.
    what: str
    op: HostOp
    response: type[M]
    prepare: Callable[[WorkerEntry, str | None], Awaitable[tuple[Any, dict[str, Any]]]]
    size: int = 1
    #: Vector worker processes it starts (the ``max_vec_workers`` quota).
    processes: int = 0
    #: Whether it owns a sandbox, and the runtime asked for (``None``/``"auto"``: an isolating one).
    sandbox: bool = False
    runtime: str | None = None
    idle_ttl: float | None = None


class Placement(Objects, Quotas):
    """Choosing workers, creating objects on them and running operations there."""

    def place(
        self, size: int, runtime: str | tuple[str, ...] | None = None, what: str = "env", *, light: bool = False
    ) -> WorkerEntry:
        """The alive worker with the most free capacity that has ``runtime`` (one of them, for a tuple);
        NoCapacity if none.

        ``light``: envs without a sandbox, which take no slot: they are bounded by the worker's memory
        (``capacity.max_envs``, measured per env); the others by ``capacity.slots``.
        """
        best: tuple[float, WorkerEntry] | None = None
        if isinstance(runtime, str):
            wanted: tuple[str, ...] | None = None if runtime == "auto" else (runtime,)
        else:
            wanted = runtime
        if light and self.worker is not None:
            self.worker.measure()
        for entry in self.workers.values():
            if entry.status != "alive":
                continue
            if wanted is not None and not any(r in entry.capacity.runtimes for r in wanted):
                continue
            if light:
                limit = entry.capacity.max_envs
                free = limit - self.light_envs(entry.id)
            else:
                limit = entry.capacity.slots
                free = limit - self.used_slots(entry.id)
            free -= self._placing().get((entry.id, not light), 0)  # creations on their way there
            if free < size:
                continue
            score = (free / max(limit, 1)) * max(entry.capacity.cpus, 0.1)
            if best is None or score > best[0]:
                best = (score, entry)
        if best is None:
            alive = [e.id for e in self.workers.values() if e.status == "alive"]
            need = f" with runtime {' or '.join(repr(r) for r in wanted)}" if wanted else ""
            room = "room for its memory (light envs are bounded by memory)" if light else "free slot(s)"
            raise NoCapacity(
                f"no worker can host this {what} (needs {size} {room}{need}); alive workers: {alive or 'none'}. "
                "Close unused objects or start another worker: rock-env worker start --admin URL."
            )
        return best[1]

    async def local_workers_ready(self) -> None:
        """Right after ``rock-env admin start workers=N``: wait (at most :data:`LOCAL_WORKERS_WAIT` s from the
        admin's start) until the worker processes it started have registered, so that the first creations
        are placed on them instead of failing with NoCapacity."""
        if not self.local_workers:
            return
        while time.monotonic() - self.started_at < LOCAL_WORKERS_WAIT:
            if sum(1 for e in self.workers.values() if e.status == "alive" and not e.embedded) >= self.local_workers:
                break
            if not self.local_workers_starting():  # they exited: placement says NoCapacity now, not in a minute
                break
            await asyncio.sleep(0.05)
        self.local_workers = 0  # from now on, placement takes the workers as they are

    def _placing(self) -> dict[tuple[str, bool], int]:
        """Sizes of creations under way, by (worker id, takes slots): concurrent creations spread out."""
        placing: dict[tuple[str, bool], int] | None = self.__dict__.get("_placing_sizes")
        if placing is None:
            placing = self.__dict__["_placing_sizes"] = {}
        return placing

    def place_sandbox(self, size: int, runtime: str | None, what: str = "sandbox") -> tuple[WorkerEntry, str]:
        """A worker for ``size`` slots of sandboxes of ``runtime``, and the concrete runtime to use there.

        The server's policy decides: ``local`` only if allowed, ``auto`` (or None) resolved to the
        first of namespace, docker (and local, if allowed) that the chosen worker offers. A worker
        offers a runtime only if that runtime's own probe passed there (see
        :func:`~rock_env.server.capacity.detect_runtimes`).
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

    def _choose(self, creation: Creation[Any]) -> tuple[WorkerEntry, str | None]:
        if creation.sandbox:
            return self.place_sandbox(creation.size, creation.runtime, creation.what)
        return self.place(creation.size, what=creation.what, light=True), None

    async def create(self, owner: str, obj_id: str, creation: Creation[M]) -> M:
        """Create an object under ``obj_id`` for ``owner`` (see the module docstring); its info.

        A remote worker that cannot even be connected to is marked lost and the creation placed
        again (at most twice), so that one dead or bogus worker does not fail every creation
        until its heartbeats time out.
        """
        if owner.startswith(GRANT_OWNER):
            raise Forbidden(f"an object grant cannot create a {creation.what}: send the API token to the admin.")
        await self.local_workers_ready()
        with self.hold_quota(owner, creation.kind, creation.size, creation.processes):
            self.reserve(obj_id)
            try:
                for attempt in range(PLACEMENT_ATTEMPTS):
                    entry, runtime = self._choose(creation)
                    key = (entry.id, creation.sandbox)
                    placing = self._placing()
                    placing[key] = placing.get(key, 0) + creation.size
                    try:
                        body, request = await creation.prepare(entry, runtime)
                        answer = await entry.host.call(creation.op, obj_id, body)
                        break
                    except WorkerLost as exc:
                        unreachable = isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))
                        if not unreachable or attempt == PLACEMENT_ATTEMPTS - 1:
                            raise
                        self.mark_worker_lost(entry.id, f"it could not be reached while making a {creation.what}")
                    finally:
                        placing[key] -= creation.size
                        if not placing[key]:
                            del placing[key]
                info = creation.response.model_validate_json(answer)
                direct = self.role == "admin" and not entry.embedded and self.settings.direct_data_plane
                if direct and "worker_url" in type(info).model_fields:
                    # the direct data plane: the client talks to this worker, with a grant for this object
                    info = info.model_copy(update={"worker_url": entry.url})
                self.add_record(
                    obj_id, creation.kind, entry, owner, creation.size, request, info.model_dump(), creation.idle_ttl
                )
            finally:
                self.release(obj_id)
        if "grant" in type(info).model_fields and getattr(info, "worker_url", None):
            info = info.model_copy(update={"grant": self.grant_for(obj_id)})
        return info

    async def call(
        self,
        kind: Kind,
        obj_id: str,
        owner: str,
        op: HostOp,
        body: Any = None,
        args: Mapping[str, str] | None = None,
    ) -> bytes:
        """Run ``op`` on the ``kind`` object ``obj_id`` of ``owner``, where it lives; the JSON answer."""
        rec = self.lookup(obj_id, (kind,), owner)
        try:
            return await self.host_of(rec).call(op, obj_id, body, args)
        except WorkerLost as exc:
            if obj_id in str(exc):
                raise
            raise WorkerLost(f"{describe(rec)} is lost: {exc}") from exc

    async def close(self, kind: Kind, obj_id: str, owner: str, op: HostOp) -> None:
        """Close an object with ``op`` on its host and forget it (a lost one is just forgotten)."""
        if self.forget_lost(obj_id, kind, owner):
            return
        rec = self.lookup(obj_id, (kind,), owner)
        host = self.host_of(rec)
        self.drop_record(obj_id)
        await host.call(op, obj_id)

    async def close_object(self, rec: ObjectRecord, op: HostOp) -> None:
        """Close ``rec`` on its worker with ``op`` (best effort: the reaper) and forget it."""
        self.drop_record(rec.id)
        entry = self.workers.get(rec.worker_id)
        if entry is None or entry.status != "alive":
            return
        try:
            await entry.host.call(op, rec.id)
        except RockEnvError as exc:
            logger.warning("closing %s failed: %s", rec.id, exc)
