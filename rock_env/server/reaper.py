"""Closing what nobody uses: lost workers, idle objects, old lost records, leftovers of a killed admin."""

from __future__ import annotations

import asyncio
import logging
import time

from rock_env.server.env_ops import ENV_CLOSE, VEC_CLOSE
from rock_env.server.hosts import HostOp
from rock_env.server.objects import describe
from rock_env.server.reconcile import Reconciliation
from rock_env.server.sandbox_ops import SANDBOX_STOP
from rock_env.server.store import ObjectRecord

logger = logging.getLogger(__name__)

#: The op that closes an object of each kind.
CLOSE_OPS: dict[str, HostOp] = {"env": ENV_CLOSE, "vec": VEC_CLOSE, "sandbox": SANDBOX_STOP}


class Reaper(Reconciliation):
    """The admin's periodic clean-up pass and its recovery after a restart."""

    async def recover(self) -> None:
        """Reload state after a restart and reap the sandboxes the old process's embedded worker left."""
        dead = set(self.recover_records())
        await self._reap_dead_sandboxes([r for r in self.records.values() if r.id in dead and r.kind == "sandbox"])

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

    async def reaper_loop(self) -> None:
        """Run :meth:`reap_once` every ``reap_interval`` seconds until cancelled."""
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
                    logger.info("reaping %s after %.0fs idle", describe(rec), now - rec.last_used)
                    self.metrics.inc("objects_reaped_total", "Objects closed by the idle TTL.", kind=rec.kind)
                    await self.close_object(rec, CLOSE_OPS[rec.kind])
            elif now - rec.last_used > self.settings.lost_retention:
                self.drop_record(rec.id)
        if self.store is not None and self._dirty:
            dirty, self._dirty = self._dirty, {}
            await self.blocking(self.store.touch, dirty)
