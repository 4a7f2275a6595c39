"""Short garbage-collector pauses for a server process that hosts thousands of envs.

CPython's full collections walk every object the collector tracks. A worker hosting 10,000 envs
holds hundreds of thousands of them, and a full pass then stalls every request on its event
loop for 100-200 ms, several times a second under load: request objects that happen to be
alive during two young collections move to the old generation, and that growth is what
triggers full passes. ``benchmarks/scale.py`` showed these pauses as the p99 of a step.

With ``server.gc_freeze`` (the default) a server runs :class:`GcPolicy`:

- after startup (registry loaded) it collects once and freezes the heap (``gc.freeze()``): the
  import-time objects are never scanned again;
- young collections run every :data:`GEN0_THRESHOLD` allocations instead of every 700, so that
  most request objects are gone before a collection could promote them;
- every :data:`FREEZE_EVERY` seconds it freezes what is alive (a constant-time list move), so that
  full passes walk only what is newer than that;
- every :data:`FULL_EVERY` seconds it unfreezes and collects everything once, so that reference
  cycles that were alive when frozen and are garbage since (closed envs, finished requests) are
  freed: memory returns after envs are closed, at the price of one full pass a minute.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from rock_env.remote.gc_tuning import OLDER_THRESHOLDS, TUNED_THRESHOLD, restore_gc, tune_gc

logger = logging.getLogger(__name__)

#: Allocations between young collections (CPython's default is 700): what ``rock.tune_gc()`` sets.
GEN0_THRESHOLD = TUNED_THRESHOLD
#: Young collections between middle ones, and middle between full ones.
GEN1_THRESHOLD, GEN2_THRESHOLD = OLDER_THRESHOLDS
#: Seconds between freezes of what is alive.
FREEZE_EVERY = 2.0
#: Seconds between full collections of everything (frozen objects included).
FULL_EVERY = 60.0


def freeze_heap() -> None:
    """Collect garbage once, then exclude every surviving object from later collections (``gc.freeze``)."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    logger.debug(
        "froze %d objects out of the GC in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1e3
    )


class GcPolicy:
    """The collector settings of one server process (see the module docstring)."""

    def __init__(self, freeze_every: float = FREEZE_EVERY, full_every: float = FULL_EVERY) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every

    def start(self) -> None:
        """Raise the thresholds and freeze the startup heap: :func:`~rock_env.remote.gc_tuning.tune_gc`, which
        keeps the process's previous thresholds for :meth:`stop`."""
        tune_gc(GEN0_THRESHOLD)

    def full_collection(self) -> None:
        """Unfreeze, collect everything, freeze what survived."""
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        logger.debug("full collection: %d freed in %.0f ms", freed, (time.perf_counter() - started) * 1e3)

    async def run(self) -> None:
        """Freeze every :attr:`freeze_every` seconds and collect everything every :attr:`full_every` (a
        background task of the service)."""
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.freeze_every)
            if time.monotonic() - last_full >= self.full_every:
                self.full_collection()
                last_full = time.monotonic()
            else:
                gc.freeze()

    def stop(self) -> None:
        """Give the process its thresholds back and unfreeze (so that what the server held can be freed)."""
        restore_gc()


__all__ = ["FREEZE_EVERY", "FULL_EVERY", "GEN0_THRESHOLD", "GcPolicy", "freeze_heap"]
