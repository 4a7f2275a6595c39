"""``rock.tune_gc()``: short garbage-collector pauses in a trainer process that drives thousands of envs.

A process holding 10,000 remote envs (their handles, the agent loops, the trainer's own state)
tracks hundreds of thousands of objects, and CPython's full collections walk all of them: 100-200
ms each, several times a second while steps flow, because the objects of the calls in flight keep
being promoted to the old generation. Those pauses become the p99 of a step
(``benchmarks/scale.py`` measures both settings).

Call it once the envs are made (it freezes what is alive then): young collections then run every
``threshold`` allocations instead of every 700, so that most per-call objects are gone before a
collection could promote them, and the frozen setup heap is never walked again. Objects frozen
are still freed when their last reference goes; only reference cycles among them wait for
``gc.unfreeze()``. This changes the whole process's collector, so the library never does it by
itself; :func:`restore_gc` undoes it. A rock-env server process does the same for itself
(:mod:`rock_env.server.gc_policy`).
"""

from __future__ import annotations

import gc

#: Allocations between young collections after :func:`tune_gc` (CPython's default: 700).
TUNED_THRESHOLD = 50_000
#: The middle and old generations' thresholds after :func:`tune_gc` (CPython's defaults: 10, 10).
OLDER_THRESHOLDS = (20, 20)
#: The largest threshold taken (CPython stores it in a C int).
MAX_THRESHOLD = 2**31 - 1
_saved: list[tuple[int, int, int]] = []


def tune_gc(threshold: int = TUNED_THRESHOLD, *, freeze: bool = True) -> tuple[int, int, int]:
    """Raise the young-generation threshold to ``threshold`` and (``freeze``) move every object alive now
    out of the collector's scans; the previous thresholds."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= MAX_THRESHOLD:
        from rock_env.errors import InvalidArgument

        raise InvalidArgument(
            f"tune_gc(threshold={threshold!r}): the threshold must be a whole number of allocations "
            f"from 1 to {MAX_THRESHOLD}."
        )
    previous = gc.get_threshold()
    _saved.append(previous)
    gc.set_threshold(threshold, *OLDER_THRESHOLDS)
    if freeze:
        gc.collect()
        gc.freeze()
    return previous


def restore_gc() -> None:
    """Undo :func:`tune_gc`: the thresholds from before it, and nothing frozen."""
    if _saved:
        gc.set_threshold(*_saved[0])  # the thresholds from before the first tune_gc
        _saved.clear()
    gc.unfreeze()


__all__ = ["MAX_THRESHOLD", "OLDER_THRESHOLDS", "TUNED_THRESHOLD", "restore_gc", "tune_gc"]
