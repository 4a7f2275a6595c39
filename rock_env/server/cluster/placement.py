"""The placement loop: exactly one long-lived worker actor per alive cluster node.

Nothing here imports Ray: :class:`ClusterBackend` is the small interface the loop needs
(list nodes, start an actor on a node, tell which actors died, kill one), implemented for
Ray in :mod:`rock_env.server.cluster.ray_backend` and by a fake in the unit tests. Each
:meth:`PlacementLoop.tick` compares the nodes with the actors it started and returns the
events the admin applies: a worker started, or a worker lost (with the reason clients see).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: Longest wait before retrying a node whose actors keep failing to start.
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class NodeView:
    """One cluster node as the backend reports it."""

    node_id: str
    ip: str
    alive: bool


class ClusterBackend(Protocol):
    """What the placement loop needs from a cluster."""

    def nodes(self) -> list[NodeView]:
        """Every node the cluster knows, alive or dead."""
        ...

    def start_worker(self, node: NodeView, worker_id: str) -> Any:
        """Start a worker actor pinned to ``node`` (without waiting for it); its handle."""
        ...

    def dead_workers(self, handles: Iterable[Any]) -> dict[Any, str]:
        """Of ``handles``, those whose actor has ended, with a short reason each."""
        ...

    def kill_worker(self, handle: Any) -> None:
        """End an actor at once (best effort; it may be gone already)."""
        ...


@dataclass(frozen=True)
class WorkerStarted:
    """A worker actor was started on a node (it registers with the admin by itself)."""

    worker_id: str
    node_id: str


@dataclass(frozen=True)
class WorkerGone:
    """A worker is lost; ``reason`` completes "worker X is lost: ..." for clients."""

    worker_id: str
    node_id: str
    reason: str


Event = WorkerStarted | WorkerGone


@dataclass
class ActorState:
    """A worker actor the loop started."""

    worker_id: str
    node_id: str
    handle: Any
    started: float
    registered: bool = False


@dataclass
class _Backoff:
    until: float = 0.0
    delay: float = 0.0


@dataclass
class PlacementLoop:
    """Keeps one worker actor per alive node (see the module docstring).

    ``start_timeout``: an actor whose worker has not registered after this many seconds is
    replaced. ``restart_backoff``: after an actor died before registering (a start failure),
    wait this long before the next try on that node, doubling up to :data:`MAX_BACKOFF`.
    """

    backend: ClusterBackend
    start_timeout: float = 120.0
    restart_backoff: float = 2.0
    prefix: str = "ray"
    #: Part of every worker id, unique per admin run: ids never repeat across admin restarts.
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    clock: Callable[[], float] = time.monotonic
    actors: dict[str, ActorState] = field(default_factory=dict)
    _backoff: dict[str, _Backoff] = field(default_factory=dict)
    _seq: int = 0

    def worker_ids(self) -> list[str]:
        """Ids of the workers of the current actors."""
        return [a.worker_id for a in self.actors.values()]

    def handles(self) -> list[Any]:
        """Handles of the current actors."""
        return [a.handle for a in self.actors.values()]

    def _new_worker_id(self, node_id: str) -> str:
        self._seq += 1
        return (
            f"{self.prefix}-{node_id[:8]}-{self.run}{self._seq}"
            if self.run
            else f"{self.prefix}-{node_id[:8]}-{self._seq}"
        )

    def tick(self, registered: Iterable[str] = ()) -> list[Event]:
        """Look at the nodes and actors once; the events to apply, losses first.

        ``registered``: ids of the workers that the admin currently counts as alive.
        """
        now = self.clock()
        known = set(registered)
        nodes = {n.node_id: n for n in self.backend.nodes()}
        dead = self.backend.dead_workers(self.handles()) if self.actors else {}
        events: list[Event] = []
        for node_id, actor in list(self.actors.items()):
            if actor.worker_id in known and not actor.registered:
                actor.registered = True
                self._backoff.pop(node_id, None)
            node = nodes.get(node_id)
            if node is None or not node.alive:
                where = f"{node.ip}, " if node is not None else ""
                reason = f"its Ray node {node_id[:12]} ({where}{'dead' if node else 'gone from the cluster'}) was lost"
            elif actor.handle in dead:
                reason = f"its Ray actor died ({dead[actor.handle]})"
                if not actor.registered:
                    self._delay(node_id, now)
            elif not actor.registered and now - actor.started > self.start_timeout:
                reason = f"its Ray actor did not register within {self.start_timeout:.0f}s"
                self._delay(node_id, now)
            else:
                continue
            del self.actors[node_id]
            try:
                self.backend.kill_worker(actor.handle)
            except Exception:
                logger.debug("killing the actor of worker %s failed", actor.worker_id, exc_info=True)
            logger.warning("worker %s on Ray node %s is lost: %s", actor.worker_id, node_id[:12], reason)
            events.append(WorkerGone(actor.worker_id, node_id, reason))
        for node_id in [i for i in list(self._backoff) if i not in nodes or not nodes[i].alive]:
            del self._backoff[node_id]
        for node in nodes.values():
            if not node.alive or node.node_id in self.actors:
                continue
            backoff = self._backoff.get(node.node_id)
            if backoff is not None and now < backoff.until:
                continue
            worker_id = self._new_worker_id(node.node_id)
            try:
                handle = self.backend.start_worker(node, worker_id)
            except Exception as exc:
                logger.warning("could not start a worker actor on Ray node %s: %s", node.node_id[:12], exc)
                self._delay(node.node_id, now)
                continue
            self.actors[node.node_id] = ActorState(worker_id, node.node_id, handle, now)
            logger.info("started worker actor %s on Ray node %s (%s)", worker_id, node.node_id[:12], node.ip)
            events.append(WorkerStarted(worker_id, node.node_id))
        return events

    def _delay(self, node_id: str, now: float) -> None:
        backoff = self._backoff.setdefault(node_id, _Backoff())
        backoff.delay = min(MAX_BACKOFF, backoff.delay * 2 if backoff.delay else self.restart_backoff)
        backoff.until = now + backoff.delay
