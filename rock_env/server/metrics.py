"""Counters, gauges and histograms rendered in the Prometheus text format (``/metrics``).

A dependency-free subset of what ``prometheus_client`` does: enough for live objects,
steps, request latency by operation and errors by type.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

#: Latency buckets in seconds (100 us .. 30 s).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = (*labels, *extra)
    if not items:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe metric registry for one server process."""

    def __init__(self, prefix: str = "rock_env") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._hist: dict[str, dict[Labels, list[float]]] = {}
        self._hist_sum: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, Callable[[], list[tuple[Labels, float]]]] = {}

    def _name(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def inc(self, name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help.setdefault(name, ("counter", help_text))
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, help_text: str, value: float, **labels: str) -> None:
        """Record ``value`` (seconds) in a histogram."""
        key = tuple(sorted(labels.items()))
        index = bisect.bisect_left(LATENCY_BUCKETS, value)
        with self._lock:
            self._help.setdefault(name, ("histogram", help_text))
            series = self._hist.setdefault(name, {})
            counts = series.get(key)
            if counts is None:
                counts = series[key] = [0.0] * (len(LATENCY_BUCKETS) + 1)
            counts[index] += 1
            sums = self._hist_sum.setdefault(name, {})
            sums[key] = sums.get(key, 0.0) + value

    def gauge(self, name: str, help_text: str, read: Callable[[], list[tuple[Labels, float]]]) -> None:
        """Register a gauge whose values are read at scrape time."""
        with self._lock:
            self._help[name] = ("gauge", help_text)
            self._gauges[name] = read

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        with self._lock:
            counters = {k: dict(v) for k, v in self._counters.items()}
            hists = {k: {lk: list(c) for lk, c in v.items()} for k, v in self._hist.items()}
            sums = {k: dict(v) for k, v in self._hist_sum.items()}
            gauges = dict(self._gauges)
            helps = dict(self._help)
        for name, read in sorted(gauges.items()):
            full = self._name(name)
            lines += [f"# HELP {full} {helps[name][1]}", f"# TYPE {full} gauge"]
            for labels, value in read():
                lines.append(f"{full}{_fmt_labels(labels)} {_num(value)}")
        for name, series in sorted(counters.items()):
            full = self._name(name)
            lines += [f"# HELP {full} {helps[name][1]}", f"# TYPE {full} counter"]
            for labels, value in sorted(series.items()):
                lines.append(f"{full}{_fmt_labels(labels)} {_num(value)}")
        for name, hist in sorted(hists.items()):
            full = self._name(name)
            lines += [f"# HELP {full} {helps[name][1]}", f"# TYPE {full} histogram"]
            for labels, counts in sorted(hist.items()):
                running = 0.0
                bounds: tuple[float, ...] = (*LATENCY_BUCKETS, float("inf"))
                for bound, count in zip(bounds, counts, strict=True):
                    running += count
                    lines.append(f"{full}_bucket{_fmt_labels(labels, (('le', _num(bound)),))} {_num(running)}")
                lines.append(f"{full}_sum{_fmt_labels(labels)} {sums[name][labels]!r}")
                lines.append(f"{full}_count{_fmt_labels(labels)} {_num(running)}")
        return "\n".join(lines) + "\n"
