"""Which harness an agent env runs in its sandbox, and how it is started.

``harness="builtin"`` (the default) is the minimal tool-calling bash agent shipped in
:mod:`rock_env.agents.harness` (the image's ``python3`` and its standard library only). Any other
string is a command run with ``bash -c`` in the workspace; a list is an argv run as it is. The
command may use these placeholders (replaced literally; other braces are left alone):

* ``{task_file}``: the file holding the task text (``/tmp/.rock-agent/task.md``);
* ``{task}``: the task text, shell-quoted (for a string command);
* ``{workdir}``, ``{max_turns}``, ``{model}``.

Every harness gets, besides ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` (from the model service),
``ROCK_AGENT_TASK`` (the task text), ``ROCK_AGENT_TASK_FILE``, ``ROCK_AGENT_WORKDIR``,
``ROCK_AGENT_MAX_TURNS`` and ``OPENAI_MODEL``, plus the env's ``harness_env``. ``harness_files``
(path in the sandbox -> text) are written before each episode's harness starts, so a script can be
uploaded and run: ``harness="python3 /tmp/my_agent.py {task_file}", harness_files={"/tmp/my_agent.py": src}``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rock_env.agents.harness import harness_source
from rock_env.errors import ConfigError

BUILTIN = "builtin"
#: where the task text is written for command harnesses
TASK_FILE = "/tmp/.rock-agent/task.md"

#: the system prompt of the built-in harness
BUILTIN_SYSTEM_PROMPT = (
    "You are an autonomous agent working in a sandboxed Linux workspace. Use the `bash` tool to run "
    "commands (each call runs in a fresh bash in the workspace) and look at their output. When the task "
    "is done, call the `submit` tool. Be concise."
)

_PLACEHOLDERS = ("task_file", "task", "workdir", "max_turns", "model")


@dataclass(frozen=True)
class HarnessLaunch:
    """How to start one episode's harness: argv, extra environment and files to write first."""

    argv: list[str]
    env: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)


def _fill(text: str, values: Mapping[str, str]) -> str:
    for name in _PLACEHOLDERS:
        text = text.replace("{" + name + "}", values[name])
    return text


class Harness:
    """A harness choice (see the module docstring), checked when the env is made."""

    def __init__(
        self,
        harness: str | Sequence[str] = BUILTIN,
        *,
        files: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        system_prompt: str | None = None,
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(harness, str):
            if not harness.strip():
                raise ConfigError("harness= is empty: pass 'builtin' or a command such as 'python3 /tmp/agent.py'.")
            self.command: str | list[str] = harness.strip()
        elif isinstance(harness, Sequence) and harness and all(isinstance(a, str) for a in harness):
            self.command = list(harness)
        else:
            raise ConfigError(f"harness= must be 'builtin', a command string or an argv list, got {harness!r}.")
        self.files = self._check_strings(files, "harness_files", absolute=True)
        self.env = self._check_strings(env, "harness_env")
        self.system_prompt = system_prompt
        self.sampling = dict(sampling or {})
        if "messages" in self.sampling or "tools" in self.sampling:
            raise ConfigError("sampling= sets request fields such as temperature or max_tokens, not messages or tools.")

    @staticmethod
    def _check_strings(value: Mapping[str, str] | None, what: str, absolute: bool = False) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{what}= must map strings to strings, got {value!r}.")
        if absolute and not all(k.startswith("/") for k in value):
            raise ConfigError(f"{what}= paths must be absolute paths inside the sandbox, got {sorted(value)}.")
        return dict(value)

    @property
    def builtin(self) -> bool:
        """Whether this is the built-in bash agent."""
        return self.command == BUILTIN

    @property
    def name(self) -> str:
        """A short description for ``info["harness"]``."""
        return self.command if isinstance(self.command, str) else shlex.join(self.command)

    def tools(self) -> list[dict[str, Any]]:
        """The built-in harness's tools (OpenAI function format); ``[]`` for a command harness (unknown)."""
        if not self.builtin:
            return []
        from rock_env.agents.harness.bash_agent import TOOLS

        return json.loads(json.dumps(TOOLS))  # a deep copy

    def launch(
        self,
        task: str,
        *,
        workdir: str,
        max_turns: int,
        model: str,
        command_timeout: float,
        output_limit: int,
    ) -> HarnessLaunch:
        """The argv, environment and files of one episode's harness."""
        env = {
            "ROCK_AGENT_TASK": task,
            "ROCK_AGENT_TASK_FILE": TASK_FILE,
            "ROCK_AGENT_WORKDIR": workdir,
            "ROCK_AGENT_MAX_TURNS": str(max_turns),
            "OPENAI_MODEL": model,
        }
        env.update(self.env)
        if self.builtin:
            config = {
                "task": task,
                "system": BUILTIN_SYSTEM_PROMPT if self.system_prompt is None else self.system_prompt,
                # one more than the env's limit: the env ends the episode, the harness never has to
                "max_turns": max_turns + 1,
                "command_timeout": command_timeout,
                "output_limit": output_limit,
                "model": model,
                "sampling": self.sampling,
            }
            env["ROCK_AGENT_CONFIG"] = json.dumps(config)
            return HarnessLaunch(["python3", "-I", "-S", "-c", harness_source()], env, dict(self.files))
        values = {
            "task_file": TASK_FILE,
            "task": shlex.quote(task),
            "workdir": workdir,
            "max_turns": str(max_turns),
            "model": model,
        }
        files = {TASK_FILE: task, **self.files}
        if isinstance(self.command, str):
            return HarnessLaunch(["bash", "--norc", "--noprofile", "-c", _fill(self.command, values)], env, files)
        raw = {**values, "task": task}  # an argv element needs no quoting
        return HarnessLaunch([_fill(a, raw) for a in self.command], env, files)


__all__ = ["BUILTIN", "BUILTIN_SYSTEM_PROMPT", "TASK_FILE", "Harness", "HarnessLaunch"]
