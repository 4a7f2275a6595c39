"""The combined table of a sweep: one row per run with its overrides and metrics.

After a Hydra multirun, :class:`SweepTableCallback` (registered in ``rollout.yaml`` under
``hydra.callbacks``) reads every job's ``summary.json`` under the sweep directory and writes
``sweep.csv`` and ``sweep.md`` there. :func:`collect_rows` and :func:`write_tables` can be used
on any directory of runs too.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SWEEP_CSV = "sweep.csv"
SWEEP_MD = "sweep.md"

#: Metric columns, in table order.
METRICS: tuple[str, ...] = (
    "status",
    "episodes",
    "success_rate",
    "mean_return",
    "std_return",
    "mean_length",
    "total_steps",
    "steps_per_s",
)


def _override_pairs(overrides: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in overrides:
        key, sep, value = text.partition("=")
        if sep:
            out[key.lstrip("+~")] = re.sub(r"\\(.)", r"\1", value)  # Hydra escapes e.g. ':' as '\:'

    return out


def collect_rows(sweep_dir: Path | str) -> tuple[list[str], list[dict[str, Any]]]:
    """``(override_keys, rows)`` from the ``summary.json`` files under ``sweep_dir`` (job order)."""
    root = Path(sweep_dir)
    summaries = sorted(
        root.glob("*/summary.json"),
        key=lambda p: (0, int(p.parent.name)) if p.parent.name.isdigit() else (1, p.parent.name),
    )
    rows: list[dict[str, Any]] = []
    keys: list[str] = []
    for path in summaries:
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("skipping unreadable %s: %s", path, exc)
            continue
        pairs = {
            (f"{k} (override)" if k in METRICS or k in {"job", "error"} else k): v
            for k, v in _override_pairs(summary.get("overrides") or []).items()
        }
        for key in pairs:
            if key not in keys:
                keys.append(key)
        row: dict[str, Any] = {"job": path.parent.name, **pairs}
        row.update({m: summary.get(m) for m in METRICS})
        row["error"] = summary.get("error") or ""
        rows.append(row)
    return keys, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_tables(sweep_dir: Path | str) -> tuple[Path, Path] | None:
    """Write ``sweep.csv`` and ``sweep.md`` into ``sweep_dir``; ``None`` when it holds no runs."""
    root = Path(sweep_dir)
    keys, rows = collect_rows(root)
    if not rows:
        return None
    columns = ["job", *keys, *METRICS, "error"]
    csv_path = root / SWEEP_CSV
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    md_path = root / SWEEP_MD
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra-core is a dependency
    _HydraCallback = object  # type: ignore[assignment,misc]


class SweepTableCallback(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback: write the sweep table when a multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """Write ``sweep.csv``/``sweep.md`` into ``hydra.sweep.dir``."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        written = write_tables(sweep_dir)
        if written is not None:
            logger.info("sweep table: %s and %s", written[0], written[1])
