"""A python tool for any env: the agent may run Python code mid-episode (GEM's tool-wrapper convention).

``PythonToolWrapper(env)`` wraps any env (a game, a QA env, a GEM env). On each step, if the
action holds a python call (``<python>...</python>``, a ```` ```python ```` block, or a
``python`` tool call) and the episode has tool uses left, the code runs in a sandbox and its
output is the observation (``"Code execution result: ..."``, as GEM's ``PythonCodeTool``);
the wrapped env is not stepped, the episode does not end and the reward is ``tool_reward``.
Any other action goes to the wrapped env. The code runs with ``python3 -I`` in the wrapper's
own sandbox (one per wrapper, reused, restored to a clean workspace before each call); its
timeout is honoured (the process group is killed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rock_env.core import Env, StepResult
from rock_env.errors import InvalidArgument
from rock_env.tools.parsing import ToolCall, parse_action
from rock_env.tools.sandbox_env import SandboxEnv
from rock_env.tools.schemas import python_tool

if TYPE_CHECKING:
    from rock_env.sandbox import SandboxConfig


def tool_instructions(timeout: float) -> str:
    """The text appended to the first observation (GEM's wording, adapted)."""
    return (
        "You can run Python code to help your reasoning: put a complete Python 3 script in <python>...</python> "
        "tags or a ```python code block. It runs in a sandbox (killed after "
        f'{timeout:g} s) and its output is returned after "Code execution result: ". '
        "Give your final answer as you were asked to; a reply without Python code is taken as your answer."
    )


class PythonToolWrapper(SandboxEnv):
    """Give ``env`` a python tool (see the module docstring).

    Args:
        env: the env to wrap (any env with GEM's ``reset``/``step``).
        timeout: seconds a python call may run.
        max_tool_uses: tool calls per episode; later python actions go to the wrapped env.
        tool_reward: the reward of a step that was a tool call (GEM's default 0).
        tool_success_reward: added when the code exited with status 0 (GEM's default 0).
        output_limit: bytes of the code's output kept in the observation.
        runtime, sandbox, base_url, token: the wrapper's sandbox (see
            :class:`~rock_env.tools.sandbox_env.SandboxEnv`); network is off by default.
    """

    def __init__(
        self,
        env: Any,
        *,
        timeout: float = 5.0,
        max_tool_uses: int | None = 10,
        tool_reward: float = 0.0,
        tool_success_reward: float = 0.0,
        output_limit: int = 16 << 10,
        runtime: str | None = None,
        sandbox: SandboxConfig | Mapping[str, Any] | None = None,
        base_url: str | None = None,
        token: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise InvalidArgument(f"timeout must be a positive number of seconds, got {timeout!r}.")
        super().__init__(
            runtime=runtime, sandbox=sandbox, base_url=base_url, token=token,
            sandbox_defaults={"memory": "1g", "pids": 128, "output_limit": output_limit},
        )  # fmt: skip
        self.env = env
        self.timeout = float(timeout)
        self.max_tool_uses = max_tool_uses
        self.tool_reward = float(tool_reward)
        self.tool_success_reward = float(tool_success_reward)
        self.tool_use_counter = 0
        self.tool_success_counter = 0
        inner_tools = list(getattr(env, "tools", None) or [])
        self.tools: list[dict[str, Any]] = [*inner_tools, python_tool(self.timeout)]
        if isinstance(env, Env) or hasattr(env, "action_space"):
            self.action_space = env.action_space
        if hasattr(env, "observation_space"):
            self.observation_space = env.observation_space
        self.spec = getattr(env, "spec", None)
        self.max_episode_steps = None
        self._counter_before = (0, 0)

    @property
    def unwrapped(self) -> Any:  # type: ignore[override]
        """The innermost env."""
        return getattr(self.env, "unwrapped", self.env)

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._counter_before = (self.tool_use_counter, self.tool_success_counter)
        self.tool_use_counter = 0
        self.tool_success_counter = 0
        obs, info = self.env.reset(seed=seed, options=options) if options else self.env.reset(seed=seed)
        info = dict(info)
        info.update(
            {
                "tool_use_counter": 0,
                "prev_ep_tool_use_counter": self._counter_before[0],
                "tool_success_counter": 0,
                "prev_ep_tool_success_counter": self._counter_before[1],
                "use_tool": False,
            }
        )
        return f"{obs}\n{tool_instructions(self.timeout)}", info

    def _python_call(self, action: Any) -> tuple[ToolCall | None, str]:
        parsed = parse_action(action)
        for call in parsed.calls:
            if call.name == "python" and isinstance(call.arguments.get("code"), str):
                return call, parsed.parsed_action
        return None, ""

    def run_python(self, code: str) -> tuple[bool, str]:
        """Run ``code`` in the sandbox; return ``(success, observation text)``."""
        if self._sandbox is None or self._dirty:
            self.reset_sandbox("python-tool:clean", None, session=False)
        self.mark_dirty()
        res = self.sandbox.exec(["python3", "-I", "-"], stdin=code, timeout=self.timeout)
        out = res.output.lstrip(" \n")
        if res.timed_out:
            out += f"\n[timed out after {self.timeout:g} s: the code was killed]"
            return False, f"Code execution result: {out}\n"
        ok = res.exit_code == 0
        if getattr(res, "oom_killed", False):
            out += "\n[killed: memory limit exceeded]"
        return ok, f"Code execution result: {out}\n"

    def _step(self, action: Any) -> StepResult:
        limit = self.max_tool_uses
        if limit is None or self.tool_use_counter < limit:
            call, parsed_action = self._python_call(action)
            if call is not None:
                ok, obs = self.run_python(str(call.arguments["code"]))
                self.tool_use_counter += 1
                if ok:
                    self.tool_success_counter += 1
                if limit is not None and self.tool_use_counter == limit:
                    obs += "\n\nReached the maximum number of tool use. Please output final answer directly."
                info = {
                    "parsed_action": parsed_action,
                    "tool_type": "python_code",
                    "tool_use_counter": self.tool_use_counter,
                    "tool_success_counter": self.tool_success_counter,
                    "use_tool": True,
                    "tool_success": ok,
                }
                reward = self.tool_reward + (self.tool_success_reward if ok else 0.0)
                return obs, reward, False, False, info
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info.update(
            {
                "tool_use_counter": self.tool_use_counter,
                "tool_success_counter": self.tool_success_counter,
                "use_tool": False,
            }
        )
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Close the wrapped env and the wrapper's sandbox."""
        try:
            close = getattr(self.env, "close", None)
            if close is not None:
                close()
        finally:
            super().close()
