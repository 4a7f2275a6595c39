"""Grade a submission to a :class:`~rock_env.tools.problems.CodeProblem` inside a sandbox.

The harness (:mod:`rock_env.tools.code_harness`) is sent as the ``-c`` argument of a fresh
``python3 -I`` and the request (code, tests, limits) on its stdin, so nothing of the tests
is ever written into the sandbox and nothing the submitted code leaves behind in the
sandbox can change the harness.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import textwrap
from importlib import resources
from typing import Any, Protocol

from pydantic import BaseModel, Field

from rock_env.tools.problems import CodeProblem

logger = logging.getLogger(__name__)

#: Statuses meaning the submission broke a rule or a limit (it scores 0).
VIOLATIONS = frozenset({"timeout", "memory", "output", "crash", "forbidden"})


class GradeLimits(BaseModel):
    """Limits on the submitted code while it is graded."""

    time_limit: float = Field(default=4.0, gt=0, description="seconds per call of the code (and to load it)")
    memory_mb: int = Field(default=512, gt=16, description="address-space limit of the code's process")
    output_limit: int = Field(default=1 << 20, gt=0, description="bytes the code may print")
    python: str = Field(default="python3", description="the interpreter inside the sandbox")


class TestResult(BaseModel):
    """The outcome of one hidden test."""

    __test__ = False  # not a pytest class

    ok: bool
    error: str | None = None


class GradeReport(BaseModel):
    """What the harness found: status, passed/total and a message for the agent."""

    status: str
    passed: int = 0
    total: int = 0
    results: list[TestResult] = Field(default_factory=list)
    message: str = ""

    @property
    def fraction(self) -> float:
        """The fraction of tests passed (0 for violations and load errors)."""
        if self.status != "ok" or self.total <= 0:
            return 0.0
        return self.passed / self.total


class _Executes(Protocol):
    def exec(
        self,
        cmd: str | list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> Any: ...


@functools.cache
def harness_source() -> str:
    """The source of the harness script."""
    return resources.files("rock_env.tools").joinpath("code_harness.py").read_text(encoding="utf-8")


def _defines(code: str, name: str) -> bool | None:
    """Whether ``code`` defines ``name`` at top level; ``None`` if it does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def program_for(problem: CodeProblem, code: str) -> str:
    """The program to grade: the submission, completed with the problem's prefix if needed.

    For HumanEval problems a submission that defines the entry point is put after the prompt
    (so helpers and imports of the prompt stay available); a bare function body is appended
    to the prompt as its completion.
    """
    if not problem.prefix:
        return code
    entry = problem.entry_point or ""
    defined = _defines(code, entry) if entry else None
    if defined:
        return problem.prefix.rstrip() + "\n\n\n" + code
    body = code if code.startswith((" ", "\t")) else textwrap.indent(textwrap.dedent(code), "    ")
    return problem.prefix.rstrip("\n") + "\n" + body


def build_request(problem: CodeProblem, code: str, limits: GradeLimits) -> dict[str, Any]:
    """The JSON request the harness reads on stdin."""
    request: dict[str, Any] = {
        "code": program_for(problem, code),
        "kind": problem.kind,
        "setup": problem.setup,
        "time_limit": limits.time_limit,
        "memory_mb": limits.memory_mb,
        "output_limit": limits.output_limit,
        "harness": harness_source(),
    }
    if problem.kind == "check":
        request["test"] = problem.test
        request["entry_point"] = problem.entry_point
    else:
        request["tests"] = problem.tests
    return request


def parse_report(output: str) -> GradeReport | None:
    """The report (the last JSON line of the harness output), or ``None``."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return GradeReport.model_validate(json.loads(line))
            except (ValueError, TypeError):
                return None
    return None


def grade_in_sandbox(sandbox: _Executes, problem: CodeProblem, code: str, limits: GradeLimits) -> GradeReport:
    """Run the harness in ``sandbox`` on ``code`` and return its report."""
    request = build_request(problem, code, limits)
    n = max(len(problem.tests), 1) if problem.kind == "asserts" else 50
    budget = limits.time_limit * (n + 2) + 10.0
    result = sandbox.exec(
        [limits.python, "-I", "-S", "-c", request["harness"]],
        stdin=json.dumps(request),
        timeout=budget,
    )
    report = parse_report(result.output)
    if report is None:
        if getattr(result, "timed_out", False):
            return GradeReport(status="timeout", message=f"grading ran longer than {budget:g} s")
        logger.warning("grading harness gave no report (exit %s): %s", result.exit_code, result.output[-500:])
        return GradeReport(
            status="harness_error",
            message=f"the grader failed (exit code {result.exit_code}): {result.output.strip()[-300:]}",
        )
    return report
