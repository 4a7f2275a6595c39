"""Rates over the last minutes for the console's overview, sampled from the ``/metrics`` text.

:class:`MetricsSampler` reads :meth:`Metrics.render` (the very numbers Prometheus scrapes) every
few seconds and keeps the differences: steps per second, requests per second and the mean step
latency of each interval, plus the error counters by type.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass

from rock_env.protocol.console import SeriesPoint
from rock_env.server.metrics import Metrics

#: Seconds between samples, and how many intervals are kept (5 minutes).
SAMPLE_EVERY = 2.0
KEPT = 150
#: The ``op`` labels of ``op_seconds`` that are env steps.
STEP_OPS = frozenset({"env_step", "vec_step", "batch_step"})

_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Totals:
    """Counter totals at one moment."""

    t: float
    steps: float
    requests: float
    step_count: float
    step_seconds: float
    errors: dict[str, float]


def parse_totals(text: str, prefix: str = "rock_env", now: float | None = None) -> Totals:
    """The totals the console needs, from Prometheus text as :meth:`Metrics.render` writes it."""
    steps = requests = step_count = step_seconds = 0.0
    errors: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        name = match["name"].removeprefix(prefix + "_")
        labels = dict(_LABEL.findall(match["labels"] or ""))
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if name == "env_steps_total":
            steps += value
        elif name == "errors_total":
            kind = labels.get("type", "?")
            errors[kind] = errors.get(kind, 0.0) + value
        elif name == "op_seconds_count":
            requests += value
            if labels.get("op") in STEP_OPS:
                step_count += value
        elif name == "op_seconds_sum" and labels.get("op") in STEP_OPS:
            step_seconds += value
    return Totals(time.time() if now is None else now, steps, requests, step_count, step_seconds, errors)


def rates(before: Totals, after: Totals) -> SeriesPoint:
    """The rates between two samples."""
    span = max(after.t - before.t, 1e-9)
    count = after.step_count - before.step_count
    latency = (after.step_seconds - before.step_seconds) / count * 1e3 if count > 0 else None
    return SeriesPoint(
        t=after.t,
        steps_per_s=(after.steps - before.steps) / span,
        requests_per_s=(after.requests - before.requests) / span,
        step_latency_ms=latency,
    )


class MetricsSampler:
    """Samples a :class:`Metrics` every :data:`SAMPLE_EVERY` seconds; keeps :data:`KEPT` intervals."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.points: deque[SeriesPoint] = deque(maxlen=KEPT)
        self.last: Totals | None = None

    def sample(self) -> Totals:
        """Take one sample (and add the interval since the previous one)."""
        totals = parse_totals(self.metrics.render(), self.metrics.prefix)
        if self.last is not None:
            self.points.append(rates(self.last, totals))
        self.last = totals
        return totals

    async def run(self) -> None:
        """Sample forever (a background task of the service)."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY)
