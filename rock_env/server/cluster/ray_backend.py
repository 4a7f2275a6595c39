"""The Ray side of the placement loop: connect, list nodes, start, watch and kill worker actors.

Every worker actor is a threaded, named actor (``rock-env-worker-<worker id>`` in the
configured namespace) pinned to its node with a hard ``NodeAffinitySchedulingStrategy``,
owned by the admin's driver (it ends with the admin) and never restarted by Ray: the
placement loop replaces it under a new worker id instead, so that clients of the old one get
``WorkerLost`` rather than silently talking to a fresh, empty worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rock_env.cluster import leftovers
from rock_env.cluster.ray_connect import LOOPBACK_ENV_VAR, address_is_loopback, init_ray
from rock_env.server.cluster.placement import NodeView
from rock_env.server.cluster.settings import RayClusterSettings

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK_ENV_VAR", "STOP_TIMEOUT", "RayBackend", "RayWorkerHandle", "address_is_loopback"]

#: How long a graceful stop of the actors may take at admin shutdown before they are killed.
STOP_TIMEOUT = 20.0


@dataclass(eq=False)
class RayWorkerHandle:
    """A started worker actor and the pending ``wait_stopped`` call that ends with it."""

    worker_id: str
    node_id: str
    actor: Any
    watch: Any = field(default=None)


class RayBackend:
    """:class:`~rock_env.server.cluster.placement.ClusterBackend` on a Ray cluster."""

    def __init__(
        self, settings: RayClusterSettings, token: str | None, worker: dict[str, Any], data_dir: Path | None = None
    ) -> None:
        self.settings = settings
        #: Where a private head's processes are recorded (see :mod:`.leftovers`); ``None``: not recorded.
        self.data_dir = data_dir if settings.is_local_head else None
        self.token = token
        #: ServerSettings fields of each actor's worker (slots, heartbeat_interval, runtime, log_*).
        self.worker = worker
        #: Set by the admin once it knows where it listens.
        self.admin_url = ""
        self._actor_class: Any = None
        self.connected = False

    # -- connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """``ray.init``: a private head on 127.0.0.1 for ``address=local``, else join the cluster."""
        if self.data_dir is not None:
            leftovers.reap(self.data_dir)  # what a crashed admin's private head left running
        ray = init_ray(
            self.settings.address,
            namespace=self.settings.namespace,
            temp_dir=self.settings.temp_dir,
            local_hint="let the admin start its own with cluster.address=local",
        )
        self.connected = True
        self._record()
        gcs = ray.get_runtime_context().gcs_address
        logger.info("connected to Ray at %s (namespace %s)", gcs, self.settings.namespace)

    def node_ip(self) -> str:
        """The IP of the admin's own Ray node."""
        import ray

        return str(ray.util.get_node_ip_address())

    def gcs_address(self) -> str:
        """``HOST:PORT`` of the cluster's GCS (what other drivers pass as the address)."""
        import ray

        return str(ray.get_runtime_context().gcs_address)

    # -- ClusterBackend ------------------------------------------------------------------

    def nodes(self) -> list[NodeView]:
        """Every node in ``ray.nodes()``."""
        import ray

        return [
            NodeView(node_id=str(n["NodeID"]), ip=str(n.get("NodeManagerAddress") or ""), alive=bool(n.get("Alive")))
            for n in ray.nodes()
        ]

    def start_worker(self, node: NodeView, worker_id: str) -> RayWorkerHandle:
        """Create the worker actor pinned to ``node``; it registers with the admin by itself."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from rock_env.server.cluster.actor import NodeActor

        if not self.admin_url:
            raise RuntimeError("the admin URL is not known yet")
        if self._actor_class is None:
            self._actor_class = ray.remote(NodeActor)
        actor = self._actor_class.options(
            name=f"rock-env-worker-{worker_id}",
            namespace=self.settings.namespace,
            num_cpus=self.settings.num_cpus,
            max_concurrency=8,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node.node_id, soft=False),
        ).remote(self.admin_url, worker_id, node.ip, self.token, self.worker)
        self._record()  # the head's agents are up by now
        return RayWorkerHandle(worker_id, node.node_id, actor, actor.wait_stopped.remote())

    def dead_workers(self, handles: Iterable[Any]) -> dict[Any, str]:
        """Handles whose ``wait_stopped`` call has finished: the actor died (or was stopped)."""
        import ray

        by_ref = {h.watch: h for h in handles if isinstance(h, RayWorkerHandle)}
        if not by_ref:
            return {}
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0, fetch_local=False)
        out: dict[Any, str] = {}
        for ref in ready:
            try:
                ray.get(ref, timeout=5)
                out[by_ref[ref]] = "it was stopped"
            except Exception as exc:  # RayActorError and friends: the actor process is gone
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out[by_ref[ref]] = f"{type(exc).__name__}: {first[:200]}"
        return out

    def kill_worker(self, handle: Any) -> None:
        """``ray.kill`` the actor."""
        import ray

        ray.kill(handle.actor, no_restart=True)

    def reap_sandboxes(self, handle: Any, sandbox_ids: list[str]) -> None:
        """Ask a node's new actor to reap what the dead one's sandboxes left (does not wait)."""
        handle.actor.reap_sandboxes.remote(sandbox_ids)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self, handles: Iterable[Any]) -> None:
        """Stop the actors gracefully (they close what they host), kill stragglers, leave Ray."""
        if not self.connected:
            return
        import ray

        live = [h for h in handles if isinstance(h, RayWorkerHandle)]
        try:
            if live:
                refs = [h.actor.stop.remote() for h in live]
                ray.wait(refs, num_returns=len(refs), timeout=STOP_TIMEOUT)
            for handle in live:
                try:
                    ray.kill(handle.actor, no_restart=True)
                except Exception:
                    logger.debug("killing %s failed", handle.worker_id, exc_info=True)
        finally:
            ray.shutdown()
            self.connected = False
            if self.data_dir is not None:
                leftovers.reap(self.data_dir)  # stragglers of the private head
            logger.info("left the Ray cluster")

    def _record(self) -> None:
        if self.data_dir is not None:
            try:
                leftovers.record(self.data_dir)
            except OSError as exc:
                logger.warning("cannot record the Ray head's processes in %s: %s", self.data_dir, exc)
