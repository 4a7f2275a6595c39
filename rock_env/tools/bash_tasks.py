"""Bash tasks: the model, the built-in set (``data/bash_tasks.yaml``) and the verifier script.

A task is a description for the agent, a ``setup`` script that prepares the workspace (run
once per sandbox; the result is snapshotted), an optional ``start`` script run at every
reset (it starts the processes the task is about; they must detach, e.g. ``setsid -f cmd
>/dev/null 2>&1``, and it should wait until they are up), and ``checks``: bash conditions
that the verifier runs in the workspace. The reward is the fraction of checks that succeed.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from rock_env.errors import ConfigError

BUILTIN_TASKS_FILE = "bash_tasks.yaml"


class BashTask(BaseModel):
    """One task of ``tool:Bash-v0``."""

    id: str = Field(min_length=1)
    category: str = "misc"
    description: str = Field(min_length=1)
    setup: str = ""
    start: str = ""
    checks: list[str] = Field(min_length=1)
    timeout: float = Field(default=20.0, gt=0, description="seconds the verifier may run")

    @field_validator("checks")
    @classmethod
    def _non_empty_checks(cls, value: list[str]) -> list[str]:
        if any(not c.strip() for c in value):
            raise ValueError("a check must be a non-empty bash condition")
        return value


def _parse_tasks(data: Any, source: str) -> list[BashTask]:
    if not isinstance(data, list):
        raise ConfigError(f"{source}: expected a list of tasks (YAML/JSON list of mappings).")
    tasks: list[BashTask] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        try:
            task = BashTask.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(
                f"{source}: task #{i} is invalid: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from exc
        if task.id in seen:
            raise ConfigError(f"{source}: duplicate task id {task.id!r}; task ids must be unique.")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise ConfigError(f"{source}: the task list is empty.")
    return tasks


@functools.cache
def builtin_tasks() -> tuple[BashTask, ...]:
    """The built-in task set shipped with the package."""
    text = resources.files("rock_env.tools").joinpath("data").joinpath(BUILTIN_TASKS_FILE).read_text(encoding="utf-8")
    return tuple(_parse_tasks(yaml.safe_load(text), BUILTIN_TASKS_FILE))


def load_tasks(source: str | Path | Sequence[BashTask | dict[str, Any]] | None) -> list[BashTask]:
    """Tasks from ``None`` (the built-in set), a YAML/JSON file path, or a list of tasks/dicts."""
    if source is None:
        return list(builtin_tasks())
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"bash task file {str(path)!r} does not exist; pass a YAML or JSON list of tasks.")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"bash task file {str(path)!r} is not valid YAML/JSON: {exc}") from exc
        return _parse_tasks(data, str(path))
    return _parse_tasks([t.model_dump() if isinstance(t, BashTask) else t for t in source], "tasks")


def verifier_script(task: BashTask) -> tuple[str, str]:
    """A bash script that runs the task's checks (in its working directory); returns ``(script, nonce)``.

    Each check runs in a subshell with its output discarded, and prints a line
    ``<nonce> PASS|FAIL <index>``; the random nonce keeps files written by the agent from
    forging results.
    """
    nonce = "ROCKV" + secrets.token_hex(8)
    lines: list[str] = []
    for i, check in enumerate(task.checks):
        lines.append(f"( {check}\n) </dev/null >/dev/null 2>&1 && echo '{nonce} PASS {i}' || echo '{nonce} FAIL {i}'")
    return "\n".join(lines) + "\n", nonce


def score_verifier_output(output: str, nonce: str, n_checks: int) -> tuple[float, list[bool]]:
    """The reward (fraction of checks passed) and per-check results from the verifier output."""
    results = [False] * n_checks
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == nonce and parts[1] in ("PASS", "FAIL") and parts[2].isdigit():
            idx = int(parts[2])
            if 0 <= idx < n_checks:
                results[idx] = parts[1] == "PASS"
    return (sum(results) / n_checks if n_checks else 0.0), results
