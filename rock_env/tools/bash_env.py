"""``tool:Bash-v0``: solve a task in a sandboxed bash shell; a verifier script gives the reward.

An episode is one task (see :mod:`rock_env.tools.bash_tasks`). The agent's actions are tool
calls (any format of :mod:`rock_env.tools.parsing`): ``bash`` runs a command in a persistent
shell and returns its output and exit code; ``submit`` ends the episode and runs the
verifier. The episode also ends at the turn limit or the episode time limit (the verifier
runs then too, and ``truncated`` is set). A malformed action costs ``format_error_reward``
(GEM's -0.1 by default) and the observation says what was wrong; the episode goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rock_env.core import StepResult, text_space
from rock_env.errors import InvalidArgument, SandboxError
from rock_env.tools.bash_tasks import BashTask, load_tasks, score_verifier_output, verifier_script
from rock_env.tools.parsing import ToolCall, format_help, parse_action
from rock_env.tools.picking import pick_task
from rock_env.tools.sandbox_env import SandboxEnv
from rock_env.tools.schemas import bash_tool, submit_tool, tool_names, validate_call

if TYPE_CHECKING:
    from rock_env.sandbox import CommandResult, Sandbox, SandboxConfig

logger = logging.getLogger(__name__)

#: GEM's reward for an action that cannot be parsed (``LanguageGameReward.format_error_reward``).
FORMAT_ERROR_REWARD = -0.1


def format_command_result(result: CommandResult, timeout: float) -> str:
    """The observation for one command: its output, then a status line with the exit code."""
    out = result.output
    if out and not out.endswith("\n"):
        out += "\n"
    if result.timed_out:
        status = f"[command timed out after {timeout:g} s and was killed]"
    elif result.exit_code is None:
        status = "[command did not finish]"
    else:
        status = f"[exit code: {result.exit_code}]"
    if getattr(result, "session_restarted", False):
        status += "\n[the shell was restarted: working directory, variables and functions were reset]"
    if getattr(result, "oom_killed", False):
        status += "\n[a process was killed for exceeding the memory limit]"
    return out + status


class BashEnv(SandboxEnv):
    """``tool:Bash-v0``: bash tasks in a sandbox, rewarded by a verifier.

    Args:
        tasks: ``None`` (the built-in set), a YAML/JSON file of tasks, or a list of
            :class:`BashTask`/dicts.
        max_turns: the episode is truncated after this many steps (and verified).
        episode_timeout: seconds of wall-clock time per episode (and verified when it runs out).
        command_timeout: the default and largest timeout of one command, in seconds.
        format_error_reward: the reward of a malformed action (GEM's -0.1).
        runtime, sandbox, base_url, token, seed: see :class:`~rock_env.tools.sandbox_env.SandboxEnv`.
    """

    def __init__(
        self,
        tasks: str | Path | Sequence[BashTask | Mapping[str, Any]] | None = None,
        *,
        max_turns: int = 30,
        episode_timeout: float = 600.0,
        command_timeout: float = 30.0,
        format_error_reward: float = FORMAT_ERROR_REWARD,
        runtime: str | None = None,
        sandbox: SandboxConfig | Mapping[str, Any] | None = None,
        base_url: str | None = None,
        token: str | None = None,
        seed: int | None = None,
    ) -> None:
        if max_turns <= 0 or episode_timeout <= 0 or command_timeout <= 0:
            raise InvalidArgument(
                f"max_turns, episode_timeout and command_timeout must be positive, got "
                f"{max_turns}, {episode_timeout}, {command_timeout}."
            )
        super().__init__(
            runtime=runtime, sandbox=sandbox, base_url=base_url, token=token, seed=seed,
            sandbox_defaults={"memory": "1g", "pids": 512, "output_limit": 64 << 10},
        )  # fmt: skip
        self.tasks: list[BashTask] = load_tasks(tasks)  # type: ignore[arg-type]
        self._by_id = {t.id: t for t in self.tasks}
        self.max_turns = max_turns
        self.episode_timeout = float(episode_timeout)
        self.command_timeout = float(command_timeout)
        self.format_error_reward = float(format_error_reward)
        self.tools: list[dict[str, Any]] = [
            bash_tool(self.command_timeout),
            submit_tool("Submit your work: ends the episode and runs the task's checks."),
        ]
        self.action_space = text_space(max_length=1 << 16)
        self.observation_space = text_space(max_length=1 << 20)
        self.task: BashTask | None = None
        self._turns = 0
        self._deadline = 0.0

    # -- episodes ------------------------------------------------------------------------

    def task_ids(self) -> list[str]:
        """The ids of this env's tasks, in order."""
        return [t.id for t in self.tasks]

    def _pick(self, options: dict[str, Any]) -> BashTask:
        return pick_task(options, self.tasks, self._by_id, self.rng, "bash task id")

    @staticmethod
    def _setup_of(task: BashTask) -> Callable[[Sandbox], None]:
        def setup(sb: Sandbox) -> None:
            if not task.setup.strip():
                return
            res = sb.exec(["bash", "--norc", "--noprofile", "-e", "-s"], stdin=task.setup, timeout=60)
            if res.exit_code != 0:
                raise SandboxError(f"setup of bash task {task.id!r} failed (exit {res.exit_code}): {res.output[-500:]}")

        return setup

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        task = self._pick(options)
        self.reset_sandbox(f"bash:{task.id}", self._setup_of(task), start=task.start)
        self.task = task
        self._turns = 0
        self._deadline = time.monotonic() + self.episode_timeout
        return self._prompt(task), {"task_id": task.id, "category": task.category, "tools": tool_names(self.tools)}

    def _prompt(self, task: BashTask) -> str:
        return (
            f"You are in a bash shell in {self.sandbox_config.workdir}, inside a sandbox.\n\n"
            f"Task: {task.description.strip()}\n\n"
            "Run one command per turn with <bash>COMMAND</bash> (a ```bash block or a `bash` tool call works too); "
            "you see its output and exit code. The shell keeps its working directory and variables between "
            "commands. When you are done, submit with <submit></submit> (or the `submit` tool) to have your work "
            f"checked. You have {self.max_turns} turns and {self.episode_timeout:g} seconds."
        )

    def verify(self) -> tuple[float, list[bool]]:
        """Run the current task's checks in the sandbox; return ``(reward, per-check results)``."""
        assert self.task is not None
        script, nonce = verifier_script(self.task)
        try:
            res = self.sandbox.exec(["bash", "--norc", "--noprofile", "-s"], stdin=script, timeout=self.task.timeout)
        except SandboxError as exc:
            logger.warning("verifier of %s failed: %s", self.task.id, exc)
            return 0.0, [False] * len(self.task.checks)
        return score_verifier_output(res.output, nonce, len(self.task.checks))

    def _run_bash(self, call: ToolCall) -> tuple[str, dict[str, Any]]:
        remaining = self._deadline - time.monotonic()
        timeout = self.command_timeout
        requested = call.arguments.get("timeout")
        if isinstance(requested, (int, float)) and requested > 0:
            timeout = min(float(requested), self.command_timeout)
        timeout = max(0.1, min(timeout, remaining))
        self.mark_dirty()
        result = self.sandbox.run(str(call.arguments["command"]), session=self.session_name, timeout=timeout)
        info = {"exit_code": result.exit_code, "timed_out": result.timed_out, "truncated": result.truncated}
        return format_command_result(result, timeout), info

    def _finish(self, obs: str, info: dict[str, Any], truncated: bool) -> StepResult:
        reward, checks = self.verify()
        info.update({"checks": checks, "success": reward >= 1.0})
        passed = sum(checks)
        obs = (obs + "\n\n" if obs else "") + f"Checks passed: {passed}/{len(checks)}. Reward: {reward:g}."
        return obs, reward, not truncated, truncated, info

    def _step(self, action: str) -> StepResult:
        assert self.task is not None
        self._turns += 1
        parsed = parse_action(action, default_fence="bash")
        info: dict[str, Any] = {"task_id": self.task.id, "turn": self._turns, "parsed_action": parsed.parsed_action}
        calls: list[ToolCall] = []
        error = parsed.error
        if error is None:
            for call in parsed.calls:
                checked, call_error = validate_call(call, self.tools)
                if call_error is not None:
                    error = call_error
                    break
                calls.append(checked)
        out_of_time = time.monotonic() >= self._deadline
        last_turn = self._turns >= self.max_turns
        if error is not None:
            obs = f"{error} {format_help(tool_names(self.tools))}"
            info.update({"format_error": True, "tool_calls": []})
            if out_of_time or last_turn:
                obs_end, reward, term, trunc, info = self._finish(
                    obs + "\n\n" + self._limit_text(out_of_time), info, True
                )
                return obs_end, float(reward) + self.format_error_reward, term, trunc, info
            return obs, self.format_error_reward, False, False, info
        info["tool_calls"] = [c.name for c in calls]
        parts: list[str] = []
        for call in calls:
            if call.name == "submit":
                return self._finish("\n\n".join(parts), info, False)
            if time.monotonic() >= self._deadline:
                out_of_time = True
                break
            text, run_info = self._run_bash(call)
            info.update(run_info)
            parts.append(text)
        obs = "\n\n".join(parts)
        out_of_time = out_of_time or time.monotonic() >= self._deadline
        if out_of_time or last_turn:
            return self._finish(obs + "\n\n" + self._limit_text(out_of_time), info, True)
        return obs, 0.0, False, False, info

    def _limit_text(self, out_of_time: bool) -> str:
        if out_of_time:
            return f"The episode's time limit ({self.episode_timeout:g} s) is over; your work is checked now."
        return f"That was the last turn ({self.max_turns}); your work is checked now."
