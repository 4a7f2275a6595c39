"""Problem loading (built-in, HumanEval, MBPP, native) and the harness codec (no sandbox needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rock_env.errors import ConfigError
from rock_env.tools.code_harness import Untransferable, decode, encode
from rock_env.tools.grading import GradeLimits, build_request, parse_report, program_for
from rock_env.tools.problems import builtin_problems, load_jsonl, load_problems, problem_from_record
from tests.tools.python_solutions import REFERENCE, WRONG

HUMANEVAL_RECORD = {
    "task_id": "Demo/0",
    "prompt": 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n',
    "canonical_solution": "    return sum(xs)\n",
    "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate([]) == 0\n"
    "    assert candidate([1, 2]) == 3\n    assert candidate([-1]) == -1\n",
    "entry_point": "total",
}

MBPP_RECORD = {
    "task_id": 601,
    "text": "Write a function to find the largest of three numbers.",
    "code": "def largest(a, b, c):\n    return max(a, b, c)",
    "test_list": ["assert largest(1, 2, 3) == 3", "assert largest(3, 2, 1) == 3", "assert largest(-1, -2, -3) == -1"],
    "test_setup_code": "",
    "challenge_test_list": [],
}


def test_builtin_problems() -> None:
    problems = builtin_problems()
    assert len(problems) >= 40
    assert len({p.task_id for p in problems}) == len(problems)
    assert all(p.source == "builtin" and p.entry_point and len(p.tests) >= 4 for p in problems)
    assert set(REFERENCE) == set(WRONG) == {p.task_id for p in problems}


def test_humaneval_record_is_accepted_as_is() -> None:
    problem = problem_from_record(HUMANEVAL_RECORD)
    assert (problem.kind, problem.entry_point, problem.source) == ("check", "total", "humaneval")
    assert "def total(xs: List[int]) -> int:" in problem.statement
    assert problem.prefix == HUMANEVAL_RECORD["prompt"]


def test_mbpp_record_is_accepted_as_is() -> None:
    problem = problem_from_record(MBPP_RECORD)
    assert (problem.task_id, problem.kind, problem.source) == ("601", "asserts", "mbpp")
    assert problem.tests == MBPP_RECORD["test_list"]
    assert MBPP_RECORD["text"] in problem.statement and MBPP_RECORD["test_list"][0] in problem.statement


def test_jsonl_and_yaml_files(tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(HUMANEVAL_RECORD) + "\n\n" + json.dumps(MBPP_RECORD) + "\n")
    problems = load_jsonl(path)
    assert [p.task_id for p in problems] == ["Demo/0", "601"]
    yaml_path = tmp_path / "problems.yaml"
    yaml_path.write_text("- task_id: n1\n  prompt: Write f.\n  entry_point: f\n  tests: ['assert f() == 1']\n")
    assert load_problems(str(yaml_path))[0].tests == ["assert f() == 1"]
    assert len(load_problems(None)) == len(builtin_problems())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json}\n", "not valid JSON"),
        ('{"task_id": "a", "foo": 1}\n', "unknown problem format"),
        ('{"text": "t", "test_list": ["assert 1"]}\n', "no task_id"),
        ('{"task_id": "a", "text": "t", "test_list": []}\n', "empty test_list"),
        ('{"task_id": "a", "text": "t", "test_list": ["assert 1"]}\n' * 2, "duplicate"),
        ("\n", "no problems"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
)
def test_bad_datasets_raise_config_errors(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_jsonl(path)


def test_missing_dataset() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_jsonl("/nonexistent.jsonl")


def test_humaneval_programs_accept_full_functions_and_bodies() -> None:
    problem = problem_from_record(HUMANEVAL_RECORD)
    full = program_for(problem, "def total(xs):\n    return sum(xs)\n")
    body = program_for(problem, "    return sum(xs)\n")
    dedented_body = program_for(problem, "return sum(xs)\n")
    for program in (full, body, dedented_body):
        namespace: dict[str, object] = {}
        exec(compile(program, "<p>", "exec"), namespace)
        assert namespace["total"]([1, 2, 3]) == 6  # type: ignore[operator]


def test_request_and_report() -> None:
    problem = builtin_problems()[0]
    request = build_request(problem, "x = 1", GradeLimits(time_limit=1.5))
    assert request["tests"] == problem.tests and request["time_limit"] == 1.5 and "def grade(" in request["harness"]
    report = parse_report('noise\n{"status": "ok", "passed": 2, "total": 4, "results": []}\n')
    assert report is not None and report.fraction == 0.5
    assert parse_report("no report") is None
    assert parse_report('{"status": "timeout", "passed": 3, "total": 4}').fraction == 0.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -(2**80),
        1.5,
        "s",
        [1, [2]],
        (1, (2,)),
        {1, 2},
        frozenset({3}),
        {"a": 1, (1, 2): [3]},
        b"\x00\xff",
        1 + 2j,
        float("inf"),
        range(3),
    ],
)
def test_codec_round_trip(value: object) -> None:
    data = json.loads(json.dumps(encode(value)))
    back = decode(data)
    expected = list(value) if isinstance(value, range) else value
    assert back == expected and type(back) is type(expected)


def test_codec_nan_and_untransferable() -> None:
    assert math.isnan(decode(json.loads(json.dumps(encode(float("nan"))))))
    with pytest.raises(Untransferable):
        encode(lambda: 1)
    with pytest.raises(Untransferable):
        encode(object())
    with pytest.raises(ValueError, match="unknown tag"):
        decode({"$evil": "os.system"})
