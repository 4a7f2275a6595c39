"""Choosing an episode's task: the one named in ``reset`` options, or one drawn with the env's RNG."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from rock_env.errors import InvalidArgument

_Task = TypeVar("_Task")


def pick_task(
    options: Mapping[str, Any], tasks: Sequence[_Task], by_id: Mapping[str, _Task], rng: random.Random, kind: str
) -> _Task:
    """The task ``options["task_id"]`` names, or without one a task of ``tasks`` drawn with ``rng``.

    ``kind`` names what an id identifies in the error (e.g. ``"bash task id"``).

    Raises:
        InvalidArgument: the id is not in ``by_id`` (close ids are suggested).
    """
    task_id = options.get("task_id")
    if task_id is not None:
        if task_id not in by_id:
            import difflib  # only on this error path: keeps the env modules' import light

            close = difflib.get_close_matches(str(task_id), by_id, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InvalidArgument(f"unknown {kind} {task_id!r}.{hint} See env.task_ids().")
        return by_id[task_id]
    return tasks[rng.randrange(len(tasks))]
