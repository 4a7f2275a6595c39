"""A worker's model services: the sandbox side of a remote sandbox's ModelService.

A sandbox created through ``POST /api/v1/model-service/sandboxes`` gets a
:class:`~rock_env.agents.ModelService` bridge on the worker that hosts it (one service per
``(timeout, model)`` there, shared by its sandboxes), under the sandbox's admin id: the requests
its harness sends carry that id, and so does ``OPENAI_API_KEY``. The :class:`ModelHub` numbers
each request as it arrives (a pump task takes them from the services) and hands them to the
admin's relay (:mod:`rock_env.server.model_relay`) through :meth:`ModelHub.poll`, a long poll with
one cursor per sandbox: a poll whose answer was lost is repeated and loses nothing. Answers go
straight to the service. When a sandbox stops its bridge closes, its unanswered requests are
dropped (the harness gets 503) and polls report it ``gone``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any

from rock_env.agents.model_service import AsyncModelService, ModelService
from rock_env.errors import InvalidArgument, ModelRequestNotFound
from rock_env.protocol.model_service import ModelPollResult, ModelRequest, ModelServiceOptions, NumberedRequest
from rock_env.sandbox.bridge import BridgePlan

logger = logging.getLogger(__name__)


class NamedBridge:
    """The bridge a hosted sandbox gets: the hub's service, under the admin's id instead of the local one."""

    def __init__(self, hub: ModelHub, obj_id: str, service: ModelService) -> None:
        self.hub = hub
        self.obj_id = obj_id
        self.service = service

    def open_bridge(self, sandbox_id: str, *, loopback: bool) -> BridgePlan:
        """Open the service's bridge for the admin's id."""
        return self.service.open_bridge(self.obj_id, loopback=loopback)

    def close_bridge(self, sandbox_id: str) -> None:
        """Close it (drops the sandbox's unanswered requests) and tell the hub."""
        try:
            self.service.close_bridge(self.obj_id)
        finally:
            self.hub.detach(self.obj_id)


class ModelHub:
    """The model services of one worker and the numbered log of their requests (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[tuple[float, str], ModelService] = {}
        self._attached: dict[str, ModelService] = {}
        self._log: dict[str, deque[tuple[int, ModelRequest]]] = {}
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._wake: set[asyncio.Future[None]] = set()
        self._closed = False

    # --- sandboxes ----------------------------------------------------------------------------

    def attach(self, obj_id: str, options: ModelServiceOptions) -> NamedBridge:
        """The bridge for a new sandbox ``obj_id`` (a service of its options, made on first use)."""
        key = (float(options.timeout), options.model)
        with self._lock:
            service = self._services.get(key)
            if service is None:
                service = self._services[key] = ModelService(timeout=options.timeout, model=options.model)
            self._attached[obj_id] = service
            self._log[obj_id] = deque()
        self._start_pumps()
        return NamedBridge(self, obj_id, service)

    def detach(self, obj_id: str) -> None:
        """Forget a sandbox (its bridge closed); wakes polls so that they report it gone."""
        with self._lock:
            self._attached.pop(obj_id, None)
            self._log.pop(obj_id, None)
        self._wake_all()

    def has(self, obj_id: str) -> bool:
        """Whether ``obj_id`` is a sandbox with a model service here."""
        return obj_id in self._attached

    def _service(self, obj_id: str, request_id: str) -> ModelService:
        service = self._attached.get(obj_id)
        if service is None:
            raise ModelRequestNotFound(
                f"no pending model request {request_id!r}: sandbox {obj_id!r} has no model service here (stopped?)"
            )
        return service

    # --- requests in (the pumps, on the server's loop) -------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the pumps on ``loop`` (the server's; called from its async code before polling)."""
        if self._loop is None:
            self._loop = loop
        self._start_pumps()

    def _start_pumps(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        for service in list(self._services.values()):
            if id(service) not in self._pumps:
                self._pumps[id(service)] = None  # type: ignore[assignment]  # claimed; set on the loop
                loop.call_soon_threadsafe(self._spawn_pump, service)

    def _spawn_pump(self, service: ModelService) -> None:
        self._pumps[id(service)] = asyncio.ensure_future(self._pump(service))

    async def _pump(self, service: ModelService) -> None:
        """Take every request of ``service`` as it arrives and number it."""
        source = AsyncModelService(service=service)
        while not self._closed:
            try:
                request = await source.get()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the service closed
                logger.debug("model hub pump stops: %s", exc)
                return
            with self._lock:
                log = self._log.get(request.sandbox_id)
                if log is not None:
                    self._seq += 1
                    log.append((self._seq, request))
            self._wake_all()

    def _wake_all(self) -> None:
        loop = self._loop
        if loop is None:
            return

        def wake() -> None:
            for future in list(self._wake):
                if not future.done():
                    future.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop closed
            loop.call_soon_threadsafe(wake)

    # --- the admin's side ---------------------------------------------------------------------

    def _collect(self, cursors: dict[str, int]) -> ModelPollResult:
        out = ModelPollResult()
        with self._lock:
            for obj_id, cursor in cursors.items():
                log = self._log.get(obj_id)
                if log is None:
                    out.gone.append(obj_id)
                    continue
                while log and log[0][0] <= cursor:  # the admin has these: forget them
                    log.popleft()
                out.requests += [NumberedRequest(seq=seq, request=req) for seq, req in log]
        if out.requests:
            live = {r.id for service in {id(s): s for s in self._attached.values()}.values() for r in service.pending()}
            out.requests = [n for n in out.requests if n.request.id in live]  # timed out meanwhile: skip
        return out

    async def poll(self, cursors: dict[str, int], wait: float) -> ModelPollResult:
        """New requests of the sandboxes in ``cursors`` (or those that are gone), waiting up to ``wait`` s."""
        loop = asyncio.get_running_loop()
        self.bind(loop)
        deadline = loop.time() + wait
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._wake.add(future)
            try:
                result = self._collect(cursors)
                remaining = deadline - loop.time()
                if result.requests or result.gone or remaining <= 0:
                    return result
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, remaining)
            finally:
                self._wake.discard(future)

    def pending(self, sandboxes: list[str]) -> list[ModelRequest]:
        """Every unanswered request of ``sandboxes`` (handed out or not), oldest first."""
        out: list[ModelRequest] = []
        for obj_id in sandboxes:
            service = self._attached.get(obj_id)
            if service is not None:
                out += service.pending(obj_id)
        return sorted(out, key=lambda r: r.received_at)

    def answer(self, obj_id: str, request_id: str, reply: str | dict[str, Any]) -> None:
        """Answer one request of sandbox ``obj_id``."""
        self._service(obj_id, request_id).answer(request_id, reply)

    def fail(self, obj_id: str, request_id: str, status: int, message: str) -> None:
        """Fail one request of sandbox ``obj_id`` with an HTTP error."""
        self._service(obj_id, request_id).fail(request_id, status, message)

    def begin_episode(self, obj_id: str, episode: int, env_id: str | None) -> None:
        """Tag the sandbox's later requests (its turn restarts at 0)."""
        service = self._attached.get(obj_id)
        if service is None:
            raise InvalidArgument(f"sandbox {obj_id!r} has no model service on this worker (stopped?)")
        service.begin_episode(obj_id, episode, env_id)

    def close(self) -> None:
        """Stop the pumps and close every service (their socket directories go with them)."""
        self._closed = True
        loop = self._loop
        for task in list(self._pumps.values()):
            if task is not None and loop is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)
        with self._lock:
            services = list(self._services.values())
            self._services.clear()
            self._attached.clear()
            self._log.clear()
        for service in services:
            service.close()
        self._wake_all()


_HUB_LOCK = threading.Lock()


def hub_of(worker: Any) -> ModelHub:
    """The hub of a :class:`~rock_env.server.worker.Worker` (made on first use; the worker closes it)."""
    with _HUB_LOCK:
        hub = getattr(worker, "model_hub", None)
        if hub is None:
            hub = ModelHub()
            worker.model_hub = hub
        return hub


def create_model_sandbox(worker: Any, obj_id: str, config: dict[str, Any], options: ModelServiceOptions) -> Any:
    """Start a sandbox on ``worker`` with a model service of ``options`` (the host op of the creation)."""
    hub = hub_of(worker)
    bridge = hub.attach(obj_id, options)
    try:
        return worker.create_sandbox(obj_id, config, model_service=bridge)
    except BaseException:
        hub.detach(obj_id)
        raise


__all__ = ["ModelHub", "NamedBridge", "create_model_sandbox", "hub_of"]
