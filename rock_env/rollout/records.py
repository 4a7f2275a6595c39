"""Trajectory records and their JSONL encoding.

``trajectories.jsonl`` holds, per episode and in completion order, one ``reset`` record, one
``step`` record per step and one ``episode`` record; ``episodes.jsonl`` holds the ``episode``
records alone. Records carry no timing, so a rerun with the same config and seed writes the
same bytes. Timing lives in ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import IO, Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data (numpy scalars/arrays, tuples, sets, bytes, models, dataclasses)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    return repr(value)


def _default(value: Any) -> Any:
    """``json.dumps`` hook for what JSON does not know (numpy scalars, sets, models, ...)."""
    return to_jsonable(value)


def dumps(record: dict[str, Any]) -> str:
    """One JSONL line (no trailing newline), stable for equal input.

    The common case (plain str/int/float/bool/list/dict data) goes straight to ``json.dumps``;
    records with non-finite floats or non-string keys other than ints are converted with
    :func:`to_jsonable` first. Both give the same text for the same data.
    """
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default)
    except (TypeError, ValueError):
        return json.dumps(to_jsonable(record), ensure_ascii=False, separators=(",", ":"))


class JsonlWriter:
    """Appends records to a JSONL file, flushing after each batch so a crash keeps what was written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Write records and flush."""
        self._file.write("".join(dumps(r) + "\n" for r in records))
        self._file.flush()

    def close(self) -> None:
        """Close the file. Idempotent."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a JSONL file written by :class:`JsonlWriter`."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
