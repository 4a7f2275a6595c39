"""``agent:Python-v0``: the Python problems of ``code:Python-v0``, solved by a harness in the sandbox.

The harness writes its solution to ``solution.py`` in the workspace (it may run and test it there
first). When the harness exits, whatever it left running is stopped and ``solution.py`` is graded
by the hidden tests of :mod:`rock_env.tools.grading`, as ``code:Python-v0`` grades a submission:
the reward is the fraction of tests passed (``strict=True``: 1 if all pass, else 0). No
``solution.py`` scores 0 and ``info["error"]`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rock_env.agents.agent_harness import BUILTIN
from rock_env.agents.env import FORMAT_ERROR_REWARD, AgentEnv
from rock_env.errors import SandboxFileNotFound
from rock_env.tools.grading import GradeLimits, grade_in_sandbox
from rock_env.tools.picking import pick_task
from rock_env.tools.problems import CodeProblem, load_problems

if TYPE_CHECKING:
    from rock_env.agents.model_service import ModelService
    from rock_env.sandbox import Sandbox, SandboxConfig

#: the file the harness writes its solution to (in the workspace)
SOLUTION_FILE = "solution.py"


class AgentPythonEnv(AgentEnv):
    """``agent:Python-v0``: Python problems, a harness in the sandbox, hidden tests as reward.

    Args:
        dataset: ``None`` (the built-in problems), a HumanEval/MBPP/native JSONL (or YAML/JSON) file,
            or a list of :class:`~rock_env.tools.problems.CodeProblem`/dicts.
        strict: reward 1 only if every test passes, else 0.
        time_limit, memory_mb, output_limit_tests: limits of the graded code (per test call).
        harness, ..., seed: see :class:`~rock_env.agents.env.AgentEnv`.
    """

    def __init__(
        self,
        dataset: str | Path | Sequence[CodeProblem | Mapping[str, Any]] | None = None,
        *,
        strict: bool = False,
        time_limit: float = 4.0,
        memory_mb: int = 512,
        output_limit_tests: int = 1 << 20,
        harness: str | Sequence[str] = BUILTIN,
        harness_files: Mapping[str, str] | None = None,
        harness_env: Mapping[str, str] | None = None,
        system_prompt: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        model: str = "rock-env",
        max_turns: int = 30,
        episode_timeout: float = 600.0,
        start_timeout: float = 60.0,
        model_timeout: float = 300.0,
        command_timeout: float = 30.0,
        output_limit: int = 16384,
        output_tail: int = 2000,
        format_error_reward: float = FORMAT_ERROR_REWARD,
        model_service: ModelService | None = None,
        runtime: str | None = None,
        sandbox: SandboxConfig | Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            harness=harness, harness_files=harness_files, harness_env=harness_env, system_prompt=system_prompt,
            sampling=sampling, model=model, max_turns=max_turns, episode_timeout=episode_timeout,
            start_timeout=start_timeout, model_timeout=model_timeout, command_timeout=command_timeout,
            output_limit=output_limit, output_tail=output_tail, format_error_reward=format_error_reward,
            model_service=model_service, runtime=runtime, sandbox=sandbox, seed=seed,
            sandbox_defaults={"memory": "2g", "pids": 256, "output_limit": 4 << 20},
        )  # fmt: skip
        self.problems: list[CodeProblem] = load_problems(dataset)  # type: ignore[arg-type]
        self._by_id = {p.task_id: p for p in self.problems}
        self.strict = bool(strict)
        self.limits = GradeLimits(time_limit=time_limit, memory_mb=memory_mb, output_limit=output_limit_tests)
        self.problem: CodeProblem | None = None

    def task_ids(self) -> list[str]:
        """The ids of this env's problems, in order."""
        return [p.task_id for p in self.problems]

    def _select(self, options: dict[str, Any]) -> str:
        self.problem = pick_task(options, self.problems, self._by_id, self.rng, "problem id")
        return self.problem.task_id

    def _workspace(self) -> tuple[str, Callable[[Sandbox], None] | None, str]:
        return "code:empty", None, ""

    def _task_text(self) -> str:
        assert self.problem is not None
        entry = f" It must define `{self.problem.entry_point}`." if self.problem.entry_point else ""
        return (
            f"{self.problem.statement.strip()}\n\n"
            f"Write your solution in Python 3 to the file {SOLUTION_FILE} in {self.sandbox_config.workdir} "
            f"(the current directory).{entry} You may run and test it there. When you are done, say so (submit): "
            f"hidden tests then check {SOLUTION_FILE} (limit {self.limits.time_limit:g} s per test, "
            f"{self.limits.memory_mb} MiB)."
        )

    def _verify(self) -> tuple[float, dict[str, Any]]:
        assert self.problem is not None
        self.stop_leftovers()  # what the harness left running must not meddle with the grading
        try:
            code = self.sandbox.read_file(f"{self.sandbox_config.workdir}/{SOLUTION_FILE}")
        except SandboxFileNotFound:
            return 0.0, {"success": False, "status": "no_solution", "error": f"no {SOLUTION_FILE} in the workspace"}
        if not isinstance(code, str) or not code.strip():
            return 0.0, {"success": False, "status": "no_solution", "error": f"{SOLUTION_FILE} is empty"}
        report = grade_in_sandbox(self.sandbox, self.problem, code, self.limits)
        solved = report.status == "ok" and report.passed == report.total
        reward = (1.0 if solved else 0.0) if self.strict else report.fraction
        return reward, {
            "success": solved,
            "status": report.status,
            "passed": report.passed,
            "total": report.total,
            "grader_message": report.message,
        }


__all__ = ["SOLUTION_FILE", "AgentPythonEnv"]
