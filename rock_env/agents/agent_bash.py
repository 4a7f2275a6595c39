"""``agent:Bash-v0``: the bash tasks of ``tool:Bash-v0``, solved by a harness in the sandbox.

The tasks, their workspace setup, start scripts and verifier are those of
:mod:`rock_env.tools.bash_tasks`; the reward is the fraction of the task's checks that pass after
the harness exits (see :class:`~rock_env.agents.env.AgentEnv` for the episode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rock_env.agents.agent_harness import BUILTIN
from rock_env.agents.env import FORMAT_ERROR_REWARD, AgentEnv
from rock_env.tools.bash_env import BashEnv
from rock_env.tools.bash_tasks import BashTask, load_tasks, score_verifier_output, verifier_script
from rock_env.tools.picking import pick_task

if TYPE_CHECKING:
    from rock_env.agents.model_service import ModelService
    from rock_env.sandbox import Sandbox, SandboxConfig


class AgentBashEnv(AgentEnv):
    """``agent:Bash-v0``: bash tasks, a harness in the sandbox, the task's verifier as reward.

    Args:
        tasks: ``None`` (the built-in set of ``tool:Bash-v0``), a YAML/JSON file of tasks, or a
            list of :class:`~rock_env.tools.bash_tasks.BashTask`/dicts.
        harness, ..., seed: see :class:`~rock_env.agents.env.AgentEnv`.
    """

    def __init__(
        self,
        tasks: str | Path | Sequence[BashTask | Mapping[str, Any]] | None = None,
        *,
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
            sandbox_defaults={"memory": "1g", "pids": 512, "output_limit": 256 << 10},
        )  # fmt: skip
        self.tasks: list[BashTask] = load_tasks(tasks)  # type: ignore[arg-type]
        self._by_id = {t.id: t for t in self.tasks}
        self.task: BashTask | None = None

    def task_ids(self) -> list[str]:
        """The ids of this env's tasks, in order."""
        return [t.id for t in self.tasks]

    def _select(self, options: dict[str, Any]) -> str:
        self.task = pick_task(options, self.tasks, self._by_id, self.rng, "bash task id")
        return self.task.id

    def _workspace(self) -> tuple[str, Callable[[Sandbox], None] | None, str]:
        assert self.task is not None
        return f"bash:{self.task.id}", BashEnv._setup_of(self.task), self.task.start

    def _task_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"task_id": self._task_id}
        if self.task is not None:
            info["category"] = self.task.category
        return info

    def _task_text(self) -> str:
        assert self.task is not None
        return (
            f"Task: {self.task.description.strip()}\n\n"
            f"You work in {self.sandbox_config.workdir} (the current directory) on a Linux machine without "
            "network access. When the task is done, say so (submit); your work is then checked."
        )

    def _verify(self) -> tuple[float, dict[str, Any]]:
        assert self.task is not None
        script, nonce = verifier_script(self.task)
        res = self.sandbox.exec(["bash", "--norc", "--noprofile", "-s"], stdin=script, timeout=self.task.timeout)
        reward, checks = score_verifier_output(res.output, nonce, len(self.task.checks))
        return reward, {"checks": checks, "success": reward >= 1.0}


__all__ = ["AgentBashEnv"]
