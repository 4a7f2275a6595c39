"""Python problems: the model, the built-in set, and loaders for HumanEval and MBPP JSONL files.

Accepted record formats (one JSON object per line, or a YAML/JSON list):

* **HumanEval** (as published): ``task_id``, ``prompt`` (signature and docstring),
  ``test`` (defines ``check(candidate)``), ``entry_point``; ``canonical_solution`` is ignored.
  Each top-level statement of ``check`` that contains an ``assert`` counts as one test.
* **MBPP** (as published): ``task_id``, ``text`` (the statement), ``test_list`` (assert
  statements), ``test_setup_code``; ``challenge_test_list`` is added to the tests when
  present; ``code`` is ignored. The first test is shown as an example so the function's
  name and signature are known.
* **native** (the built-in set): ``task_id``, ``prompt``, ``tests`` (assert statements),
  ``entry_point``, optional ``setup``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from rock_env.errors import ConfigError

BUILTIN_PROBLEMS_FILE = "python_problems.yaml"


class CodeProblem(BaseModel):
    """One problem of ``code:Python-v0``.

    Attributes:
        task_id: unique id (``reset(options={"task_id": ...})``).
        statement: the text shown to the agent.
        kind: ``asserts`` (``tests`` is a list of statements) or ``check`` (HumanEval ``test``).
        tests: the hidden test statements (``asserts``).
        test: the HumanEval test source defining ``check(candidate)`` (``check``).
        entry_point: the function the submission must define, if known.
        setup: code run before the submission and before the tests (MBPP ``test_setup_code``).
        prefix: code put before the submission (HumanEval ``prompt``: imports and the signature,
            so that a bare function body is accepted too).
        source: ``builtin``, ``humaneval``, ``mbpp`` or ``native``.
    """

    task_id: str = Field(min_length=1)
    statement: str
    kind: Literal["asserts", "check"] = "asserts"
    tests: list[str] = Field(default_factory=list)
    test: str = ""
    entry_point: str | None = None
    setup: str = ""
    prefix: str = ""
    source: str = "native"

    @property
    def n_tests(self) -> int:
        """The number of tests when known up front (``asserts``); 0 for ``check`` problems."""
        return len(self.tests)


def _require(record: Mapping[str, Any], keys: Iterable[str], fmt: str, where: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise ConfigError(f"{where}: a {fmt} record needs the fields {missing}.")


def problem_from_record(record: Mapping[str, Any], where: str = "record", source: str | None = None) -> CodeProblem:
    """A :class:`CodeProblem` from a HumanEval, MBPP or native record (detected by its fields)."""
    if not isinstance(record, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}.")
    task_id = str(record.get("task_id", "")).strip()
    if not task_id:
        raise ConfigError(f"{where}: the record has no task_id.")
    if "test" in record and "prompt" in record and "entry_point" in record:
        _require(record, ("prompt", "test", "entry_point"), "HumanEval", where)
        prompt = str(record["prompt"])
        statement = (
            f"Complete the Python function {record['entry_point']} below. Submit the whole function "
            f"(with any imports it needs) in a ```python code block.\n\n```python\n{prompt.rstrip()}\n```"
        )
        return CodeProblem(
            task_id=task_id,
            statement=statement,
            kind="check",
            test=str(record["test"]),
            entry_point=str(record["entry_point"]),
            prefix=prompt,
            source=source or "humaneval",
        )
    if "text" in record and "test_list" in record:
        tests = [str(t) for t in record["test_list"]] + [str(t) for t in record.get("challenge_test_list") or []]
        if not tests:
            raise ConfigError(f"{where}: the MBPP record {task_id!r} has an empty test_list.")
        statement = (
            f"{str(record['text']).strip()}\nYour code should pass tests like this one:\n{tests[0]}\n"
            "Submit your solution in a ```python code block."
        )
        return CodeProblem(
            task_id=task_id,
            statement=statement,
            tests=tests,
            setup=str(record.get("test_setup_code") or ""),
            entry_point=record.get("entry_point"),
            source=source or "mbpp",
        )
    if "prompt" in record and "tests" in record:
        tests = [str(t) for t in record["tests"]]
        if not tests:
            raise ConfigError(f"{where}: problem {task_id!r} has no tests.")
        entry = record.get("entry_point")
        statement = str(record["prompt"]).strip()
        if entry:
            statement += f"\nDefine the function {entry} and submit your code in a ```python code block."
        return CodeProblem(
            task_id=task_id,
            statement=statement,
            tests=tests,
            setup=str(record.get("setup") or ""),
            entry_point=entry,
            source=source or "native",
        )
    raise ConfigError(
        f"{where}: unknown problem format (fields {sorted(record)}). Use HumanEval fields "
        "(task_id, prompt, test, entry_point), MBPP fields (task_id, text, test_list, test_setup_code) "
        "or native fields (task_id, prompt, tests, entry_point)."
    )


def _check_unique(problems: Sequence[CodeProblem], where: str) -> list[CodeProblem]:
    seen: set[str] = set()
    for p in problems:
        if p.task_id in seen:
            raise ConfigError(f"{where}: duplicate task_id {p.task_id!r}; task ids must be unique.")
        seen.add(p.task_id)
    if not problems:
        raise ConfigError(f"{where}: no problems found.")
    return list(problems)


def load_jsonl(path: str | Path) -> list[CodeProblem]:
    """Problems from a JSONL file (one HumanEval/MBPP/native record per line); ``.yaml``/``.json`` lists too."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"dataset {str(p)!r} does not exist; pass the path of a JSONL file of problems.")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml", ".json"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"dataset {str(p)!r} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(data, list):
            raise ConfigError(f"dataset {str(p)!r} must hold a list of problems.")
        return _check_unique([problem_from_record(r, f"{p}[{i}]") for i, r in enumerate(data)], str(p))
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{p}:{lineno}: not valid JSON ({exc.msg}); a JSONL file has one object per line."
            ) from exc
        problems.append(problem_from_record(record, f"{p}:{lineno}"))
    return _check_unique(problems, str(p))


@functools.cache
def builtin_problems() -> tuple[CodeProblem, ...]:
    """The built-in problem set shipped with the package."""
    text = (
        resources.files("rock_env.tools").joinpath("data").joinpath(BUILTIN_PROBLEMS_FILE).read_text(encoding="utf-8")
    )
    records = yaml.safe_load(text)
    problems = [
        problem_from_record(r, f"{BUILTIN_PROBLEMS_FILE}[{i}]", source="builtin") for i, r in enumerate(records)
    ]
    return tuple(_check_unique(problems, BUILTIN_PROBLEMS_FILE))


def load_problems(dataset: str | Path | Sequence[CodeProblem | Mapping[str, Any]] | None) -> list[CodeProblem]:
    """Problems from ``None`` (built-in), a JSONL/YAML path, or a list of problems/records."""
    if dataset is None:
        return list(builtin_problems())
    if isinstance(dataset, (str, Path)):
        return load_jsonl(dataset)
    out = [p if isinstance(p, CodeProblem) else problem_from_record(p, f"dataset[{i}]") for i, p in enumerate(dataset)]
    return _check_unique(out, "dataset")
