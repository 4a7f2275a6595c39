"""The admin's relay of remote model services: trainers get the requests of their sandboxes, wherever they run.

A trainer (:class:`~rock_env.agents.model_remote.RemoteModelService`) long-polls the admin
(``GET /api/v1/model-service/requests?wait=``); the relay finds the caller's sandboxes that have a
model service (from the admin's records: only the owner's), and keeps one long poll open per worker
that hosts them while a trainer waits (:meth:`~rock_env.server.model_hub.ModelHub.poll`: in-process
for the embedded worker, HTTP for a peer). Requests it gets are buffered per sandbox and handed out
once, each under a relay id ``<worker request id>@<sandbox id>`` that routes its answer back to the
worker hosting the sandbox. Cursors make a lost poll answer harmless: the next poll repeats it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rock_env.errors import InvalidArgument, ModelRequestNotFound, SandboxNotFound, WorkerLost
from rock_env.protocol.model_service import (
    ModelAnswer,
    ModelEpisode,
    ModelFail,
    ModelPendingQuery,
    ModelPoll,
    ModelPollResult,
    ModelRequest,
    ModelRequestList,
    ModelSandboxCreateRequest,
    ModelServiceOptions,
)
from rock_env.server.hosts import EmbeddedHost, HostOp, creation_headers
from rock_env.server.model_hub import create_model_sandbox, hub_of
from rock_env.server.objects import WorkerEntry
from rock_env.server.store import ObjectRecord

logger = logging.getLogger(__name__)

#: the public routes' prefix and the worker-internal one
PREFIX = "/api/v1/model-service"
WORKER_PREFIX = PREFIX + "/worker"
#: how long one admin -> worker poll stays open (a trainer's longer wait is several polls)
POLL_WAIT = 10.0
#: separates the worker's request id from the sandbox id in a relay id
ID_SEP = "@"


def _never(worker: Any, obj_id: str, body: Any) -> bool:
    return False


def model_create_op(options: ModelServiceOptions) -> HostOp:
    """The host op that creates a sandbox with a model service of ``options`` (as ``SANDBOX_CREATE``)."""
    return HostOp(
        "create",
        "sandbox",
        "POST",
        PREFIX + "/sandboxes",
        lambda w, i, config, a: create_model_sandbox(w, i, config, options),
        wire=lambda config: ModelSandboxCreateRequest(config=config, model_service=options).model_dump_json().encode(),
        creates=True,
        headers=creation_headers,
    )


MS_ANSWER = HostOp(
    "model_answer",
    "sandbox",
    "POST",
    WORKER_PREFIX + "/sandboxes/{id}/requests/{rid}/answer",
    lambda w, i, body, a: hub_of(w).answer(i, a["rid"], body.reply),
    offload=_never,
)
MS_FAIL = HostOp(
    "model_fail",
    "sandbox",
    "POST",
    WORKER_PREFIX + "/sandboxes/{id}/requests/{rid}/fail",
    lambda w, i, body, a: hub_of(w).fail(i, a["rid"], body.status, body.message),
    offload=_never,
)
MS_EPISODE = HostOp(
    "model_episode",
    "sandbox",
    "POST",
    WORKER_PREFIX + "/sandboxes/{id}/episode",
    lambda w, i, body, a: hub_of(w).begin_episode(i, body.episode, body.env_id),
    offload=_never,
)
MS_PENDING = HostOp(
    "model_pending",
    "sandbox",
    "POST",
    WORKER_PREFIX + "/pending",
    lambda w, i, body, a: ModelRequestList(requests=hub_of(w).pending(body.sandboxes)),
    offload=_never,
)
MS_POLL = HostOp("model_poll", "sandbox", "POST", WORKER_PREFIX + "/poll", lambda w, i, b, a: None)


def relay_id(request: ModelRequest) -> ModelRequest:
    """The request as the trainer sees it: its id names the sandbox too."""
    return request.model_copy(update={"id": f"{request.id}{ID_SEP}{request.sandbox_id}"})


def split_id(request_id: str) -> tuple[str, str]:
    """``(worker request id, sandbox id)`` of a relay id; ModelRequestNotFound if it is not one."""
    rid, sep, sandbox = request_id.rpartition(ID_SEP)
    if not sep or not rid or not sandbox:
        raise ModelRequestNotFound(
            f"no pending model request {request_id!r}: ids of this server look like 'mr-...@sbx-...'"
        )
    return rid, sandbox


def has_model_service(rec: ObjectRecord) -> bool:
    """Whether a sandbox record was made with a model service."""
    return rec.kind == "sandbox" and "model_service" in rec.request


@dataclass
class _Track:
    owner: str
    worker_id: str
    cursor: int = 0
    buffer: deque[ModelRequest] = field(default_factory=deque)


@dataclass(eq=False)
class _Waiter:
    owner: str
    sandbox_id: str | None
    future: asyncio.Future[None]

    def wants(self, sandbox_id: str, track: _Track) -> bool:
        return track.owner == self.owner and self.sandbox_id in (None, sandbox_id)


class ModelRelay:
    """The admin's side of remote model services (see the module docstring)."""

    def __init__(self, service: Any) -> None:
        self.svc = service
        self.tracks: dict[str, _Track] = {}
        self.waiters: set[_Waiter] = set()
        self.pollers: dict[str, tuple[frozenset[str], asyncio.Task[None]]] = {}

    # --- which sandboxes ----------------------------------------------------------------------

    def model_sandbox(self, owner: str, sandbox_id: str) -> ObjectRecord:
        """The owner's live sandbox ``sandbox_id``, which must have a model service."""
        rec = self.svc.lookup(sandbox_id, ("sandbox",), owner)
        if not has_model_service(rec):
            raise InvalidArgument(
                f"sandbox {sandbox_id!r} was created without a model service: create it with "
                "Sandbox(base_url=..., model_service=True)"
            )
        return rec

    def track(self, rec: ObjectRecord) -> None:
        """Follow a new model sandbox (polls that wait for its owner include it at once)."""
        if rec.id not in self.tracks:
            self.tracks[rec.id] = _Track(rec.owner, rec.worker_id)
            self._ensure_pollers()

    def _sync(self, owner: str) -> None:
        """Follow every live model sandbox of ``owner``; forget the ones that are gone."""
        live = {r.id: r for r in self.svc.records_of(owner, "sandbox") if r.status == "live" and has_model_service(r)}
        for sandbox_id, rec in live.items():
            if sandbox_id not in self.tracks:
                self.tracks[sandbox_id] = _Track(rec.owner, rec.worker_id)
        for sandbox_id, track in list(self.tracks.items()):
            if track.owner == owner and sandbox_id not in live:
                self._drop(sandbox_id)

    def _drop(self, sandbox_id: str) -> None:
        if self.tracks.pop(sandbox_id, None) is not None:
            self._wake()

    # --- get ----------------------------------------------------------------------------------

    def _take(self, owner: str, sandbox_id: str | None, limit: int) -> list[ModelRequest]:
        out: list[ModelRequest] = []
        while len(out) < limit:
            best: _Track | None = None
            for sid, track in self.tracks.items():
                if not track.buffer or track.owner != owner or sandbox_id not in (None, sid):
                    continue
                if best is None or track.buffer[0].received_at < best.buffer[0].received_at:
                    best = track
            if best is None:
                break
            out.append(best.buffer.popleft())
        return out

    async def get(self, owner: str, sandbox_id: str | None, wait: float, limit: int = 1) -> list[ModelRequest]:
        """Up to ``limit`` requests not handed out yet, waiting up to ``wait`` s ([] if none came)."""
        if sandbox_id is not None:
            self.model_sandbox(owner, sandbox_id)
        self._sync(owner)
        if not any(t.owner == owner for t in self.tracks.values()):
            return []  # nothing could come: the caller has no sandbox with a model service (the client waits)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            out = self._take(owner, sandbox_id, limit)
            if out:
                return out
            if sandbox_id is not None and sandbox_id not in self.tracks:
                raise SandboxNotFound(f"sandbox {sandbox_id!r} was stopped; its model requests were dropped")
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            waiter = _Waiter(owner, sandbox_id, loop.create_future())
            self.waiters.add(waiter)
            try:
                self._ensure_pollers()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.future, remaining)
            finally:
                self.waiters.discard(waiter)

    def _wake(self) -> None:
        for waiter in list(self.waiters):
            if not waiter.future.done():
                waiter.future.set_result(None)

    # --- the polls of the workers -------------------------------------------------------------

    def _ensure_pollers(self) -> None:
        """One poll per worker over the sandboxes some waiter wants; restarted when that set changes."""
        wanted: dict[str, set[str]] = {}
        for sid, track in self.tracks.items():
            if any(w.wants(sid, track) for w in self.waiters):
                wanted.setdefault(track.worker_id, set()).add(sid)
        for worker_id, sids in wanted.items():
            frozen = frozenset(sids)
            current = self.pollers.get(worker_id)
            if current is not None and not current[1].done():
                if current[0] == frozen:
                    continue
                current[1].cancel()  # cursors: whatever that poll would have brought comes again
            task = asyncio.ensure_future(self._poller(worker_id, frozen))
            self.pollers[worker_id] = (frozen, task)

    async def _poller(self, worker_id: str, sandboxes: frozenset[str]) -> None:
        while True:
            cursors = {s: self.tracks[s].cursor for s in sandboxes if s in self.tracks}
            if not cursors or not any(w.wants(s, self.tracks[s]) for s in cursors for w in self.waiters):
                return
            try:
                result = await self._poll(worker_id, cursors)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("model-service poll of worker %s failed: %s", worker_id, exc)
                if isinstance(exc, WorkerLost) or worker_id not in self.svc.workers:
                    for sid in cursors:
                        self._drop(sid)
                    return
                self._wake()
                await asyncio.sleep(0.5)
                continue
            for item in result.requests:
                track = self.tracks.get(item.request.sandbox_id)
                if track is not None and item.seq > track.cursor:
                    track.buffer.append(relay_id(item.request))
                    track.cursor = item.seq
            for sid in result.gone:
                self._drop(sid)
            self._wake()

    def _entry(self, worker_id: str) -> WorkerEntry:
        entry: WorkerEntry | None = self.svc.workers.get(worker_id)
        if entry is None or entry.status != "alive":
            raise WorkerLost(f"worker {worker_id!r} is lost; its sandboxes are gone")
        return entry

    async def _poll(self, worker_id: str, cursors: dict[str, int]) -> ModelPollResult:
        entry = self._entry(worker_id)
        if isinstance(entry.host, EmbeddedHost):
            return await hub_of(entry.host.worker).poll(cursors, POLL_WAIT)
        answer = await entry.host.call(MS_POLL, "", ModelPoll(cursors=cursors, wait=POLL_WAIT))
        return ModelPollResult.model_validate_json(answer)

    # --- the other calls ----------------------------------------------------------------------

    async def pending(self, owner: str, sandbox_id: str | None) -> list[ModelRequest]:
        """Every unanswered request of the owner's model sandboxes (of one, if given), oldest first."""
        if sandbox_id is not None:
            recs = [self.model_sandbox(owner, sandbox_id)]
        else:
            recs = [r for r in self.svc.records_of(owner, "sandbox") if r.status == "live" and has_model_service(r)]
        by_worker: dict[str, list[str]] = {}
        for rec in recs:
            by_worker.setdefault(rec.worker_id, []).append(rec.id)
        out: list[ModelRequest] = []
        for worker_id, sids in by_worker.items():
            entry = self._entry(worker_id)
            answer = await entry.host.call(MS_PENDING, "", ModelPendingQuery(sandboxes=sids))
            out += ModelRequestList.model_validate_json(answer).requests
        return [relay_id(r) for r in sorted(out, key=lambda r: r.received_at)]

    def _route(self, owner: str, request_id: str) -> tuple[str, str, WorkerEntry]:
        rid, sandbox_id = split_id(request_id)
        try:
            rec = self.svc.lookup(sandbox_id, ("sandbox",), owner)
        except SandboxNotFound:
            raise ModelRequestNotFound(
                f"no pending model request {request_id!r}: its sandbox {sandbox_id!r} is not one of yours (stopped?)"
            ) from None
        track = self.tracks.get(sandbox_id)
        if track is not None:
            with contextlib.suppress(ValueError, StopIteration):
                track.buffer.remove(next(r for r in track.buffer if r.id == request_id))
        return rid, sandbox_id, self._entry(rec.worker_id)

    async def answer(self, owner: str, request_id: str, body: ModelAnswer) -> None:
        """Answer a request on the worker that hosts its sandbox."""
        rid, sandbox_id, entry = self._route(owner, request_id)
        await entry.host.call(MS_ANSWER, sandbox_id, body, {"rid": rid})

    async def fail(self, owner: str, request_id: str, body: ModelFail) -> None:
        """Fail a request with an HTTP error on the worker that hosts its sandbox."""
        rid, sandbox_id, entry = self._route(owner, request_id)
        await entry.host.call(MS_FAIL, sandbox_id, body, {"rid": rid})

    async def begin_episode(self, owner: str, sandbox_id: str, body: ModelEpisode) -> None:
        """Tag a sandbox's later requests."""
        rec = self.model_sandbox(owner, sandbox_id)
        await self._entry(rec.worker_id).host.call(MS_EPISODE, sandbox_id, body)

    async def run(self) -> None:
        """Wait until the server shuts down (this task is cancelled), then cancel the polls."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.close()

    def close(self) -> None:
        """Cancel the polls."""
        for _, task in self.pollers.values():
            task.cancel()
        self.pollers.clear()
        self._wake()


_RELAYS: weakref.WeakKeyDictionary[Any, ModelRelay] = weakref.WeakKeyDictionary()


def relay_of(service: Any) -> ModelRelay:
    """The relay of a server's service (made on first use)."""
    relay = _RELAYS.get(service)
    if relay is None:
        relay = _RELAYS[service] = ModelRelay(service)
        service.add_task(relay.run(), "rock-env-model-relay")  # cancelled at shutdown: stops the polls
    return relay


__all__ = [
    "MS_ANSWER",
    "MS_EPISODE",
    "MS_FAIL",
    "MS_PENDING",
    "MS_POLL",
    "ModelRelay",
    "model_create_op",
    "relay_of",
    "split_id",
]
