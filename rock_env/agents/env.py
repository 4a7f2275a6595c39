"""Agent envs: the agent's own harness runs in the sandbox; its model requests are the observations.

``reset()`` prepares the task's workspace (from a snapshot, as the tool envs do), starts the
harness in the sandbox with the model service attached (``OPENAI_BASE_URL``/``OPENAI_API_KEY``;
the sandbox's network stays off) and returns the harness's first model request: the messages
rendered as text (:mod:`rock_env.agents.agent_render`), the full request in ``info["request"]`` and
its tools in ``info["tools"]``. ``step(action)`` answers that request with the action (text, a
``<tool_call>`` block, an assistant message dict or its JSON text: :mod:`rock_env.agents.agent_actions`)
and returns the next request, with reward 0.

The episode ends when the harness exits (``terminated``), or at the turn limit (``max_turns``, or
the spec's ``max_episode_steps``), the time limit, or when the harness's call timed out waiting for
the trainer (``truncated``; the harness is killed). Then
the task's verifier runs in the sandbox and its score is the reward of that last step; ``info`` has
``end_reason``, ``harness_exit_code`` and ``harness_output`` (the tail of its output). A malformed
action is not passed on: the observation says what was wrong, the request stays open and the step
gets ``format_error_reward``. A sandbox that dies ends the episode with reward 0 and
``info["error"]``; the next reset makes a new sandbox.

Subclasses give the tasks: :class:`~rock_env.agents.agent_bash.AgentBashEnv` (``agent:Bash-v0``)
and :class:`~rock_env.agents.agent_python.AgentPythonEnv` (``agent:Python-v0``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rock_env.agents import agent_services
from rock_env.agents.agent_actions import reply_of
from rock_env.agents.agent_harness import BUILTIN, Harness
from rock_env.agents.agent_render import render_request
from rock_env.core import StepResult, text_space
from rock_env.errors import HarnessFailed, InvalidArgument, ModelRequestNotFound, RockEnvError
from rock_env.tools.sandbox_env import SandboxEnv

if TYPE_CHECKING:
    from rock_env.agents.model_service import ModelService
    from rock_env.protocol.model_service import ModelRequest
    from rock_env.sandbox import Sandbox, SandboxConfig
    from rock_env.sandbox.protocols import ProcessAPI

logger = logging.getLogger(__name__)

#: GEM's reward for an action that cannot be parsed.
FORMAT_ERROR_REWARD = -0.1
#: the longest pause between two looks at whether the harness is still running
_POLL_MAX = 0.1


class AgentEnv(SandboxEnv):
    """The base of the agent envs (see the module docstring).

    Args:
        harness: ``"builtin"`` (the stdlib bash agent), a command string (``bash -c``) or an argv
            list; see :mod:`rock_env.agents.agent_harness` for placeholders and environment.
        harness_files: files (absolute path in the sandbox -> text) written before each harness start.
        harness_env: extra environment variables of the harness.
        system_prompt: the built-in harness's system prompt (``None``: its default).
        sampling: extra fields of the built-in harness's requests (``temperature``, ``max_tokens``...).
        model: the model name the harness is told to use (``OPENAI_MODEL``).
        max_turns: model requests answered per episode; the next one ends it (``truncated``).
        episode_timeout: wall-clock seconds per episode (``truncated`` when over).
        start_timeout: seconds the harness may take to send its first request.
        model_timeout: seconds a harness's call waits for the trainer's answer before it gets HTTP 504.
        command_timeout: the built-in harness's longest bash command, in seconds.
        output_limit: bytes of a command's output the built-in harness shows the model.
        output_tail: characters of the harness's own output kept in ``info["harness_output"]``.
        format_error_reward: the reward of a malformed action (GEM's -0.1).
        model_service: a :class:`~rock_env.agents.ModelService` to use (e.g. one that records);
            default: one shared by this process's agent envs.
        runtime, sandbox, seed: see :class:`~rock_env.tools.sandbox_env.SandboxEnv`.
    """

    #: Reading ``model_service`` acquires the shared model service: not copied by GEM's wrappers.
    live_attributes = SandboxEnv.live_attributes | {"model_service"}

    def __init__(
        self,
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
        sandbox_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        numbers = {
            "max_turns": max_turns,
            "episode_timeout": episode_timeout,
            "start_timeout": start_timeout,
            "model_timeout": model_timeout,
            "command_timeout": command_timeout,
            "output_limit": output_limit,
        }
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument(f"{name} must be a positive number, got {value!r}.")
        if isinstance(output_tail, bool) or not isinstance(output_tail, int) or output_tail < 0:
            raise InvalidArgument(f"output_tail must be a non-negative int, got {output_tail!r}.")
        super().__init__(runtime=runtime, sandbox=sandbox, seed=seed, sandbox_defaults=sandbox_defaults)
        self.prefetch_sessions = False  # the harness runs as a process, not in a session
        self.harness = Harness(
            harness, files=harness_files, env=harness_env, system_prompt=system_prompt, sampling=sampling
        )
        self.model = str(model)
        self.max_turns = int(max_turns)
        self.episode_timeout = float(episode_timeout)
        self.start_timeout = float(start_timeout)
        self.model_timeout = float(model_timeout)
        self.command_timeout = float(command_timeout)
        self.output_limit = int(output_limit)
        self.output_tail = int(output_tail)
        self.format_error_reward = float(format_error_reward)
        #: the built-in harness's tools (a command harness's tools are in each request's info["tools"])
        self.tools: list[dict[str, Any]] = self.harness.tools()
        self.action_space = text_space(max_length=1 << 20)
        self.observation_space = text_space(max_length=1 << 24)
        self._own_service = model_service is None
        if model_service is not None and model_service.timeout != self.model_timeout:
            self.model_timeout = model_service.timeout
        self._service: ModelService | None = model_service
        self._proc: ProcessAPI | None = None
        self._request: ModelRequest | None = None
        self._episode = 0
        self._steps = 0
        self._answered = 0
        self._deadline = 0.0
        self._task_id = ""

    # -- what subclasses give ---------------------------------------------------------------

    def task_ids(self) -> list[str]:
        """The ids of this env's tasks, in order."""
        raise NotImplementedError

    def _select(self, options: dict[str, Any]) -> str:
        """Pick the episode's task (``options["task_id"]`` or the env's RNG); return its id."""
        raise NotImplementedError

    def _workspace(self) -> tuple[str, Callable[[Sandbox], None] | None, str]:
        """The current task's snapshot key, workspace preparation and start script."""
        raise NotImplementedError

    def _task_text(self) -> str:
        """The current task as the harness's user message."""
        raise NotImplementedError

    def _verify(self) -> tuple[float, dict[str, Any]]:
        """Run the current task's verifier; ``(reward, info)``. May raise a sandbox error."""
        raise NotImplementedError

    def _task_info(self) -> dict[str, Any]:
        """What every ``info`` of the episode carries about the task."""
        return {"task_id": self._task_id}

    # -- the model service and the sandbox --------------------------------------------------

    @property
    def model_service(self) -> ModelService:
        """The model service this env's sandbox is attached to."""
        if self._service is None:
            self._service = agent_services.acquire(self.model_timeout)
        return self._service

    def _new_sandbox(self) -> Sandbox:
        from rock_env.sandbox import Sandbox

        return Sandbox(self.sandbox_config, model_service=self.model_service)

    # -- episodes ---------------------------------------------------------------------------

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._end_harness()
        if self._sandbox is not None and not self._sandbox.alive():
            logger.warning("sandbox %s is gone (stopped or reaped): making a new one", self._sandbox.id)
            self.discard_sandbox()
        self._task_id = self._select(options)
        key, prepare, start = self._workspace()
        self.reset_sandbox(key, prepare, start=start, session=False)
        sb = self.sandbox
        svc = self.model_service
        self._episode += 1
        self._steps = self._answered = 0
        self._request = None
        env_id = self.spec.id if self.spec is not None else None
        svc.begin_episode(str(sb.id), self._episode, env_id=env_id)
        self._fail_pending("a new episode started")
        launch = self.harness.launch(
            self._task_text(),
            workdir=self.sandbox_config.workdir,
            max_turns=self.max_turns,
            model=self.model,
            command_timeout=self.command_timeout,
            output_limit=self.output_limit,
        )
        for path, text in launch.files.items():
            sb.write_file(path, text)
        self.mark_dirty()
        now = time.monotonic()
        self._deadline = now + self.episode_timeout
        proc = sb.spawn(launch.argv, env=launch.env)
        self._proc = proc
        self._background.append(proc)
        request, why = self._wait(min(self._deadline, now + self.start_timeout))
        if request is None:
            tail = self._output_tail()
            code = self._kill_harness()
            self._fail_pending("the harness did not start")
            if why == "exit":
                raise HarnessFailed(
                    f"the harness {self.harness.name!r} exited with code {code} before its first model request; "
                    f"its output ends with: {tail[-800:]!r}. Check the command and that it reads OPENAI_BASE_URL."
                )
            raise HarnessFailed(
                f"the harness {self.harness.name!r} sent no model request within {self.start_timeout:g} s; "
                f"its output ends with: {tail[-800:]!r}. Raise start_timeout= or check the harness."
            )
        self._request = request
        return render_request(request.body), self._request_info(request)

    def _request_info(self, request: ModelRequest) -> dict[str, Any]:
        return {
            **self._task_info(),
            "request_id": request.id,
            "request": request.body,
            "tools": request.tools or [],
            "turn": request.turn,
            "sandbox_id": request.sandbox_id,
            "harness": self.harness.name,
        }

    def _wait(self, deadline: float) -> tuple[ModelRequest | None, str]:
        """The harness's next request; or ``(None, "exit")`` when it ended, ``(None, "time")`` at ``deadline``."""
        svc, proc = self.model_service, self._proc
        sandbox_id = str(self.sandbox.id)
        assert proc is not None
        pause = 0.005
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "time"
            try:
                return svc.get(timeout=min(pause, remaining), sandbox_id=sandbox_id), "request"
            except TimeoutError:
                pass
            if not proc.running:
                with contextlib.suppress(TimeoutError):  # a request sent just before the exit
                    return svc.get(timeout=0.001, sandbox_id=sandbox_id), "request"
                return None, "exit"
            pause = min(pause * 2, _POLL_MAX)

    def _step(self, action: Any) -> StepResult:
        request = self._request
        if request is None:  # the episode's harness is gone (it cannot happen through step())
            return self._finish("harness_exit", False, {})
        self._steps += 1
        info = self._request_info(request)
        reply, error = reply_of(action, request.tools, call_prefix=f"call_{request.turn}")
        out_of_time = time.monotonic() >= self._deadline
        if reply is not None:
            try:
                self.model_service.answer(request.id, reply)
            except ModelRequestNotFound:
                return self._request_gone(request, info)
            except InvalidArgument as exc:  # a reply the service cannot turn into a completion
                reply, error = None, f"Malformed answer: {exc}"
        if reply is None:
            info.update({"format_error": True, "error": error})
            if out_of_time or self._steps >= self.max_turns or self._step_limit_reached():
                reason = "time_limit" if out_of_time else "turn_limit"
                return self._finish(reason, True, info, extra_reward=self.format_error_reward)
            obs = f"{error}\n\nThe request is still open; answer it again.\n\n{render_request(request.body)}"
            return obs, self.format_error_reward, False, False, info
        self._answered += 1
        self._request = None
        following, why = self._wait(self._deadline)
        if following is None:
            return self._finish("harness_exit" if why == "exit" else "time_limit", why != "exit", info)
        if self._answered >= self.max_turns or self._step_limit_reached():
            self._request = following
            return self._finish("turn_limit", True, info)
        self._request = following
        return render_request(following.body), 0.0, False, False, self._request_info(following)

    def _request_gone(self, request: ModelRequest, info: dict[str, Any]) -> StepResult:
        """End the episode whose open request cannot be answered any more (timed out, or dropped)."""
        waited = time.time() - request.received_at
        reason = "model_timeout" if waited >= self.model_timeout - 0.5 else "request_dropped"
        info["error"] = (
            f"the harness's model request {request.id} was not answered in time: it waited {waited:.1f} s "
            f"(model_timeout={self.model_timeout:g} s) and got HTTP 504"
            if reason == "model_timeout"
            else f"the harness's model request {request.id} was dropped (its connection closed or the sandbox stopped)"
        )
        self._request = None
        self._settle(5.0)
        return self._finish(reason, True, info)

    def _step_limit_reached(self) -> bool:
        """Whether the spec's ``max_episode_steps`` ends the episode at this step (it is verified then too)."""
        return self.max_episode_steps is not None and self._steps >= self.max_episode_steps

    def _settle(self, seconds: float) -> None:
        """Give the harness a moment to exit on its own (after its model call failed)."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(RockEnvError):
                proc.wait(timeout=seconds)

    def _finish(self, reason: str, truncated: bool, info: dict[str, Any], extra_reward: float = 0.0) -> StepResult:
        """End the episode: stop the harness, run the verifier, report."""
        tail = self._output_tail()
        code = self._kill_harness()
        self._fail_pending(f"the episode ended ({reason})")
        self._request = None
        info.update(
            {
                **self._task_info(),
                "end_reason": reason,
                "harness_exit_code": code,
                "harness_output": tail,
                "turns": self._answered,
            }
        )
        info.pop("request", None)
        info.pop("request_id", None)
        sb = self._sandbox
        if sb is None or not sb.alive():
            reward, checks = 0.0, {"success": False}
            info["error"] = (
                info.get("error") or "the sandbox stopped during the episode; the next reset makes a new one"
            )
            self.discard_sandbox()
        else:
            try:
                reward, checks = self._verify()
            except RockEnvError as exc:
                logger.warning("verifier of %s failed: %s", self._task_id, exc)
                reward, checks = 0.0, {"success": False}
                info["error"] = f"the verifier could not run: {type(exc).__name__}: {exc}"
                if not sb.alive():
                    self.discard_sandbox()
        info.update(checks)
        if sb is not None and sb.id is not None and self._service is not None:
            env_id = self.spec.id if self.spec is not None else None
            summary = {"task_id": self._task_id, "end_reason": reason, "success": bool(info.get("success"))}
            with contextlib.suppress(Exception):  # only a recording service writes it
                self._service.record_reward(str(sb.id), self._episode, float(reward), summary, env_id=env_id)
        why = {
            "harness_exit": f"The harness exited with code {code}.",
            "turn_limit": f"The turn limit ({self.max_turns}) was reached; the harness was stopped.",
            "time_limit": f"The episode's time limit ({self.episode_timeout:g} s) is over; the harness was stopped.",
            "model_timeout": "The harness's model call timed out waiting for an answer; the harness was stopped.",
            "request_dropped": "The harness's model request was dropped; the harness was stopped.",
        }.get(reason, f"The episode ended ({reason}).")
        obs = f"{why} Your work was checked. Reward: {reward:g}."
        if "error" in info:
            obs += f"\n{info['error']}"
        return obs, float(reward) + extra_reward, not truncated, truncated, info

    # -- the harness process ----------------------------------------------------------------

    def _output_tail(self) -> str:
        proc = self._proc
        if proc is None or self.output_tail == 0:
            return ""
        try:
            return proc.output()[-self.output_tail :]
        except Exception:
            return ""

    def _kill_harness(self) -> int | None:
        """Stop the harness (if it still runs); its exit code (``None`` if killed or unknown)."""
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.running:
                proc.kill()
                proc.wait(timeout=5)
                return None
            return proc.exit_code
        except Exception:
            logger.debug("stopping the harness failed", exc_info=True)
            return None

    def _fail_pending(self, why: str) -> None:
        """Fail the sandbox's unanswered requests (a harness that is gone, or is about to be)."""
        svc, sb = self._service, self._sandbox
        if svc is None or sb is None or sb.id is None:
            return
        for request in svc.pending(str(sb.id)):
            with contextlib.suppress(RockEnvError):
                svc.fail(request.id, 503, why)

    def _end_harness(self) -> None:
        """Stop the last episode's harness if it is still running (an episode given up)."""
        if self._proc is not None:
            self._kill_harness()
            self._fail_pending("the episode was abandoned")
        self._proc = None
        self._request = None

    @property
    def episode(self) -> int:
        """How many episodes this env started (the model service tags the requests of each with it)."""
        return self._episode

    @property
    def pending_request(self) -> ModelRequest | None:
        """The request the next ``step`` answers (``None`` between episodes)."""
        return self._request

    def close(self) -> None:
        """Stop the harness and the sandbox; give back the shared model service. Idempotent."""
        if getattr(self, "_closed", False):
            return
        with contextlib.suppress(Exception):
            self._end_harness()
        super().close()
        service, self._service = self._service, None
        if service is not None and self._own_service:
            agent_services.release(service)


__all__ = ["FORMAT_ERROR_REWARD", "AgentEnv"]
