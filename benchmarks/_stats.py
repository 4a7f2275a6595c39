"""Timing and percentile helpers shared by the sandbox benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt(values: list[float]) -> str:
    """p50/p95 in ms."""
    return f"p50 {statistics.median(values) * 1e3:8.2f} ms  p95 {pct(values, 0.95) * 1e3:8.2f} ms"


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by ``fn()``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
