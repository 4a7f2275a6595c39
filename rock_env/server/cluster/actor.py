"""The rock-env worker inside a Ray actor (one per node, placed by the admin).

:class:`NodeActor` is a plain class; :mod:`.ray_backend` turns it into a threaded Ray
actor. Its constructor does what ``rock-env worker start --admin URL`` does, in the actor's
process: it serves the worker app on the node's IP (a free port) from a background thread
and runs the heartbeat link that registers and heartbeats with the admin. ``wait_stopped`` blocks
until :meth:`NodeActor.stop`, so the admin learns of the actor's death when that call fails.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

logger = logging.getLogger(__name__)


class NodeActor:
    """The actor on one Ray node: it serves a worker app from this process until :meth:`stop`."""

    def __init__(
        self,
        admin_url: str,
        worker_id: str,
        host: str,
        token: str | None,
        worker: dict[str, Any],
    ) -> None:
        from rock_env.server.app import create_app
        from rock_env.server.heartbeat import run_heartbeat
        from rock_env.server.logs import configure_logging
        from rock_env.server.runner import BackgroundServer
        from rock_env.server.settings import settings_from

        settings = settings_from(
            {**worker, "host": host, "port": 0, "token": token, "worker_id": worker_id, "embedded_worker": True}
        )
        settings.check_bind()
        configure_logging(settings.log_level, settings.log_format)
        from rock_env.server.policy import ServerPolicy

        ServerPolicy.from_settings(settings).apply_to_process()
        app = create_app(settings, role="worker")
        service = app.state.service
        self._server = BackgroundServer(app, host=host, port=0, log_level=settings.log_level)
        advertise = f"http://{host if ':' not in host else f'[{host}]'}:{self._server.port}"
        service.background.append(lambda: run_heartbeat(service, admin_url, advertise, token))
        self._server.start()
        self._stopped = threading.Event()
        self.worker_id = worker_id
        self.advertise_url = advertise
        logger.info("worker %s serving on %s for admin %s", worker_id, advertise, admin_url)

    def info(self) -> dict[str, Any]:
        """``{"worker_id", "url", "pid"}`` of this worker."""
        return {"worker_id": self.worker_id, "url": self.advertise_url, "pid": os.getpid()}

    def reap_sandboxes(self, sandbox_ids: list[str]) -> list[str]:
        """Reap sandboxes a dead predecessor on this node left (only orphaned ones); the ids reaped."""
        from rock_env.sandbox.gc import reap_dir
        from rock_env.sandbox.state import SandboxRecord, is_sandbox_dir, state_root

        root = state_root()
        done = []
        for sandbox_id in sandbox_ids:
            directory = root / sandbox_id
            if "/" in sandbox_id or directory.parent != root or not is_sandbox_dir(directory):
                continue
            record = SandboxRecord.load(directory)
            if record is not None and record.owner_alive():
                continue  # still owned by a live process: not ours to reap
            try:
                reap_dir(directory)
                done.append(sandbox_id)
            except Exception:
                logger.exception("reaping sandbox %s failed", sandbox_id)
        if done:
            logger.info("reaped %d sandbox(es) left by a dead worker actor on this node", len(done))
        return done

    def wait_stopped(self) -> str:
        """Block until :meth:`stop` (the admin watches this call to notice the actor's death)."""
        self._stopped.wait()
        return "stopped"

    def stop(self) -> None:
        """Close everything the worker hosts and stop serving."""
        try:
            self._server.stop()
        finally:
            self._stopped.set()
