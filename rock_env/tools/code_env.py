"""``code:Python-v0``: write a Python function; hidden tests run in a sandbox give the reward.

An episode is one problem (built-in, or a HumanEval/MBPP JSONL file: ``dataset=``). The
agent submits code in a fenced block (GEM's convention: the last block counts), a
``<python>`` tag, or a ``submit`` tool call with a ``code`` argument. The hidden tests run in
the env's sandbox under a time and memory limit (see :mod:`rock_env.tools.code_harness`);
the reward is the fraction of tests passed (``strict=True``, ``code:Python-v0-strict``:
1 if all pass, else 0). Code that loops forever, uses too much memory, prints too much or
tries to read the tests scores 0, and the observation says why.

Single-turn (default, as GEM's code env): the first submission ends the episode; an action
with no code ends it with GEM's format-error reward (-0.1). Multi-turn (``max_attempts > 1``):
a submission that does not pass every test gets feedback (how many passed, the first
failures, without the test code) and the agent may resubmit; the episode ends when all
tests pass or the attempts are used up, and its last step carries the reward of the last
submission (earlier steps get 0; malformed actions get the format-error reward).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rock_env.core import StepResult, text_space
from rock_env.errors import InvalidArgument
from rock_env.tools.grading import VIOLATIONS, GradeLimits, GradeReport, grade_in_sandbox
from rock_env.tools.parsing import extract_code, parse_action
from rock_env.tools.picking import pick_task
from rock_env.tools.problems import CodeProblem, load_problems
from rock_env.tools.sandbox_env import SandboxEnv
from rock_env.tools.schemas import submit_tool, tool_names

if TYPE_CHECKING:
    from rock_env.sandbox import SandboxConfig

logger = logging.getLogger(__name__)

#: GEM's reward for an action without code (``CodeEnv`` and ``format_error_reward``).
FORMAT_ERROR_REWARD = -0.1

_WHY = {
    "timeout": "Your code ran too long (time limit exceeded)",
    "memory": "Your code used too much memory (memory limit exceeded)",
    "output": "Your code printed too much output (output limit exceeded)",
    "crash": "Your code crashed the test process",
    "forbidden": "Your code tried to read the hidden tests, which is not allowed",
}


class PythonCodeEnv(SandboxEnv):
    """``code:Python-v0``: Python problems graded by hidden tests in a sandbox.

    Args:
        dataset: ``None`` (the built-in problems), the path of a JSONL (or YAML/JSON) file of
            HumanEval, MBPP or native records, or a list of :class:`CodeProblem`/dicts.
        strict: reward 1 only if every test passes, else 0 (``code:Python-v0-strict``).
        max_attempts: submissions per episode; more than 1 turns on multi-turn feedback.
        time_limit: seconds the code may take per test call (and to load).
        memory_mb: the address-space limit of the code's process, in MiB.
        output_limit: bytes the code may print before it scores 0.
        format_error_reward: the reward of an action without code (GEM's -0.1).
        feedback_failures: how many failed tests the multi-turn feedback describes.
        runtime, sandbox, base_url, token, seed: see :class:`~rock_env.tools.sandbox_env.SandboxEnv`.
    """

    def __init__(
        self,
        dataset: str | Path | Sequence[CodeProblem | Mapping[str, Any]] | None = None,
        *,
        strict: bool = False,
        max_attempts: int = 1,
        time_limit: float = 4.0,
        memory_mb: int = 512,
        output_limit: int = 1 << 20,
        format_error_reward: float = FORMAT_ERROR_REWARD,
        feedback_failures: int = 3,
        runtime: str | None = None,
        sandbox: SandboxConfig | Mapping[str, Any] | None = None,
        base_url: str | None = None,
        token: str | None = None,
        seed: int | None = None,
    ) -> None:
        if max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be >= 1, got {max_attempts}.")
        super().__init__(
            runtime=runtime, sandbox=sandbox, base_url=base_url, token=token, seed=seed,
            sandbox_defaults={"memory": "2g", "pids": 256, "output_limit": 4 << 20},
        )  # fmt: skip
        self.problems: list[CodeProblem] = load_problems(dataset)  # type: ignore[arg-type]
        self._by_id = {p.task_id: p for p in self.problems}
        self.strict = bool(strict)
        self.max_attempts = int(max_attempts)
        self.limits = GradeLimits(time_limit=time_limit, memory_mb=memory_mb, output_limit=output_limit)
        self.format_error_reward = float(format_error_reward)
        self.feedback_failures = int(feedback_failures)
        self.tools: list[dict[str, Any]] = [
            submit_tool(
                "Submit your Python solution; it is run against hidden tests.",
                {"code": {"type": "string", "description": "The complete Python code of your solution."}},
                required=["code"],
            )
        ]
        self.action_space = text_space(max_length=1 << 17)
        self.observation_space = text_space(max_length=1 << 16)
        self.problem: CodeProblem | None = None
        self._attempts = 0
        self.last_report: GradeReport | None = None

    def task_ids(self) -> list[str]:
        """The ids of this env's problems, in order."""
        return [p.task_id for p in self.problems]

    def _pick(self, options: dict[str, Any]) -> CodeProblem:
        return pick_task(options, self.problems, self._by_id, self.rng, "problem id")

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        problem = self._pick(options)
        self.reset_sandbox("code:empty", None, session=False)
        self.problem = problem
        self._attempts = 0
        self.last_report = None
        return self._prompt(problem), {"task_id": problem.task_id, "tools": tool_names(self.tools)}

    def _prompt(self, problem: CodeProblem) -> str:
        extra = (
            f" You have {self.max_attempts} attempts; after each one you learn how many hidden tests passed."
            if self.max_attempts > 1
            else ""
        )
        return (
            f"{problem.statement.strip()}\n\n"
            "Write your solution in Python 3 and put it in a ```python code block (or call the `submit` tool)."
            f" Hidden tests check it (limit {self.limits.time_limit:g} s per test, {self.limits.memory_mb} MiB).{extra}"
        )

    def _code_of(self, action: str) -> str | None:
        parsed = parse_action(action, default_fence="python")
        for call in parsed.calls:
            if call.name == "submit" and isinstance(call.arguments.get("code"), str):
                return str(call.arguments["code"])
            if call.format in ("openai", "tool_call") and call.name == "python":
                code = call.arguments.get("code")
                if isinstance(code, str):
                    return code
        if isinstance(action, str):
            return extract_code(action)
        return None

    def _step(self, action: str) -> StepResult:
        assert self.problem is not None
        code = self._code_of(action)
        info: dict[str, Any] = {"task_id": self.problem.task_id}
        if code is None or not code.strip():
            self._attempts += 1
            done = self.max_attempts == 1 or self._attempts >= self.max_attempts
            info["format_error"] = True
            obs = "No code found: put your solution in a ```python code block (or call the `submit` tool)."
            return obs, self.format_error_reward, done, False, info
        if self._attempts > 0:
            self.stop_leftovers()  # what an earlier submission left running must not meddle with this one
        self._attempts += 1
        self.mark_dirty()
        report = grade_in_sandbox(self.sandbox, self.problem, code, self.limits)
        self.last_report = report
        score = report.fraction
        reward = (1.0 if report.status == "ok" and report.passed == report.total else 0.0) if self.strict else score
        solved = report.status == "ok" and report.passed == report.total
        done = solved or self._attempts >= self.max_attempts
        info.update(
            {
                "status": report.status,
                "passed": report.passed,
                "total": report.total,
                "attempt": self._attempts,
                "success": solved,
            }
        )
        obs = self._feedback(report, done)
        return obs, (reward if done else 0.0), done, False, info

    def _feedback(self, report: GradeReport, done: bool) -> str:
        if report.status in VIOLATIONS:
            head = f"{_WHY[report.status]}: {report.message}. Score: 0."
        elif report.status == "load_error":
            head = f"Your code could not be run: {report.message}. Score: 0."
        elif report.status != "ok":
            head = f"The tests could not be run: {report.message}."
        else:
            head = f"{report.passed}/{report.total} hidden tests passed."
            failures = [(i, r.error) for i, r in enumerate(report.results) if not r.ok][: self.feedback_failures]
            if failures and not done:
                head += "\n" + "\n".join(f"- test {i + 1} failed: {err}" for i, err in failures)
        if not done:
            left = self.max_attempts - self._attempts
            head += f"\nYou have {left} more attempt{'s' if left != 1 else ''}: fix your code and submit it again."
        return head
