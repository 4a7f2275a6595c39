"""``RemoteEnv``: an env whose ``reset``/``step`` run on a rock-env server.

``rock.make(id, backend="remote", base_url=...)`` returns one. It is a
:class:`rock_env.core.Env` like a local env, and for the same seed and actions it gives
the same transcript, because the worker builds the env from the same spec.

What trainers and policies read from an env is there too: ``sample_random_action()`` runs
on the server (the hosted env's own RNG draws it, so a seeded random policy plays the same
actions as locally), ``tools`` are the hosted env's OpenAI tool schemas (and
``tool_call_to_action`` its own hook, when it has one), ``spec`` is the local registry's
spec of the id (looked up when first read, never when the env is made), ``action_space``/``observation_space`` are copies of the hosted env's text
spaces, ``render()`` asks the hosted env, and ``with`` closes it.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from gymnasium.spaces import Text

from rock_env.core import Env, SpecLike, StepResult, text_space
from rock_env.errors import EnvInstanceNotFound, InvalidAction, RockEnvError, ServerUnavailable, WorkerLost
from rock_env.protocol import (
    EnvInfo,
    EnvMakeRequest,
    EnvResetRequest,
    EnvResetResponse,
    EnvStepRequest,
    EnvStepResponse,
    Ok,
    RenderResponse,
    SampleActionRequest,
    SampleActionResponse,
    TextSpaceInfo,
    ToolCallRequest,
    ToolCallResponse,
    require_json,
)
from rock_env.remote.client import ApiClient
from rock_env.remote.coalesce import thread_coalescer
from rock_env.remote.pool import Route, shared_client

logger = logging.getLogger(__name__)


class RemoteTextSpace(Text):
    """A copy of the hosted env's ``Text`` action space; ``seed()`` also seeds the hosted one.

    The seed is sent with the next :meth:`RemoteEnv.sample_random_action` (no extra request),
    so ``env.action_space.seed(n)`` followed by ``env.sample_random_action()`` draws what the
    local env would.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, charset: str | None = None) -> None:
        if charset is None:
            super().__init__(max_length, min_length=min_length)
        else:
            super().__init__(max_length, min_length=min_length, charset=charset)
        #: ``(seed,)`` when the space was seeded since the last remote sample, else ``None``.
        self.pending_seed: tuple[int | None] | None = None

    def seed(self, seed: int | None = None) -> int:  # type: ignore[override]
        """Seed this copy and, on the next remote sample, the hosted env's action space."""
        result = super().seed(seed)
        self.pending_seed = (seed,)
        return result


#: Never-sampled spaces that :func:`_copy_of` copies (building a ``Text`` indexes its whole charset).
_PROTOTYPES: dict[tuple[type[Text], int, int, str | None], Text] = {}


def _prototype(cls: type[Text], max_length: int, min_length: int, charset: str | None) -> Text:
    key = (cls, max_length, min_length, charset)
    found = _PROTOTYPES.get(key)
    if found is None:
        if len(_PROTOTYPES) > 256:
            _PROTOTYPES.clear()
        if charset is None:
            found = cls(max_length, min_length=min_length)
        else:
            found = cls(max_length, min_length=min_length, charset=charset)
        _PROTOTYPES[key] = found
    return found


def _copy_of(cls: type[Text], max_length: int, min_length: int, charset: str | None) -> Text:
    """A ``cls`` space: a shallow copy of a cached prototype with its own (unseeded) random generator,
    like :func:`rock_env.core.text_space` (a trainer makes thousands of remote envs of one id)."""
    space = copy.copy(_prototype(cls, max_length, min_length, charset))
    space._np_random = None  # type: ignore[assignment]
    return space


def _space(info: TextSpaceInfo | None, fallback: Text) -> Text:
    if info is None:
        return fallback
    return _copy_of(Text, info.max_length, info.min_length, info.charset)


class RemoteEnv(Env):
    """An env hosted by a worker behind the admin at ``base_url``.

    Attributes:
        info: the server's :class:`~rock_env.protocol.EnvInfo` of this env.
        remote_id: its instance id on the server.
        tools: the hosted env's OpenAI tool schemas, ``None`` when it has no tools.
        spec: the local registry's spec of the id, looked up on first read (``None`` if the id is
            known to the server only).
    """

    def __init__(
        self,
        env_id: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 300.0,
        idle_ttl: float | None = None,
        client: ApiClient | None = None,
        coalesce: bool = False,
        **kwargs: Any,
    ) -> None:
        self._spec: SpecLike | None = None
        self._spec_looked_up = False
        super().__init__()
        require_json(kwargs, f"the keyword arguments of {env_id!r}")
        # the process's one pool for this server, shared by every remote env, vector env and sandbox
        self._client = client or shared_client(base_url, token, timeout=timeout)
        request = EnvMakeRequest(env_id=env_id, kwargs=kwargs, idle_ttl=idle_ttl)
        if coalesce:
            made = thread_coalescer(self._client, "make").call(request.model_dump(mode="json"))
            self.info: EnvInfo = EnvInfo.model_validate(made)
        else:
            self.info = self._client.call("POST", "/api/v1/envs", EnvInfo, body=request, idempotent=False)
        self._setup(coalesce)

    @classmethod
    def attach(cls, info: EnvInfo, client: ApiClient) -> RemoteEnv:
        """A handle on an env the server made already (``info``: its placement answer), using ``client``."""
        env = cls.__new__(cls)
        env._spec, env._spec_looked_up = None, False
        Env.__init__(env)
        env._client = client
        env.info = info
        env._setup(coalesce=False)
        return env

    def _setup(self, coalesce: bool) -> None:
        """Everything a handle derives from the placement answer :attr:`info`."""
        #: with ``coalesce=True``: the batchers that carry this env's resets and steps with other threads' calls
        self._coalescers = (
            (thread_coalescer(self._client, "reset"), thread_coalescer(self._client, "step")) if coalesce else None
        )
        self.remote_id = self.info.id
        self._base = f"/api/v1/envs/{self.remote_id}"
        #: where reset/step go: the hosting worker directly when the placement named one, else the admin
        self._route = Route(
            self._base,
            self.info.worker_url,
            self.info.grant,
            f"env {self.remote_id!r} ({self.info.env_id}) on worker {self.info.worker_id!r}",
        )
        self.tools: list[dict[str, Any]] | None = self.info.tools
        if self.info.tool_call_hook:  # only then, like a local env that has (or lacks) the method
            self.tool_call_to_action = self._tool_call_to_action
        act = self.info.action_space
        self.action_space = (
            _copy_of(RemoteTextSpace, act.max_length, act.min_length, act.charset)
            if act is not None
            else _copy_of(RemoteTextSpace, 4096, 0, "".join(text_space().character_list))
        )
        self.observation_space = _space(self.info.observation_space, text_space())

    @property
    def spec(self) -> SpecLike | None:  # type: ignore[override]
        """The local registry's spec of the id, looked up on first read (``None``: known to the server only).

        Not looked up when the env is made: an id known only to the server must not make this
        process load GEM's registry.
        """
        if not self._spec_looked_up:
            self._spec_looked_up = True
            from rock_env.registry import registry

            try:
                self._spec = registry.spec(self.info.env_id)
            except RockEnvError:
                self._spec = None
        return self._spec

    @spec.setter
    def spec(self, value: SpecLike | None) -> None:
        self._spec, self._spec_looked_up = value, True

    @property
    def base_url(self) -> str:
        """The server this env lives on."""
        return self._client.base_url

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = EnvResetRequest(seed=seed, options=options or None)
        if self._coalescers is not None:
            item = {"env": self.remote_id, "seed": body.seed, "options": body.options}
            result = self._coalescers[0].call(item, self._route)
            return result["observation"], result["info"]
        answer = self._route.post(self._client, "reset", body, EnvResetResponse, idempotent=True)
        return answer.observation, answer.info

    def _step(self, action: str) -> StepResult:
        if action is not None and not isinstance(action, str):  # None goes through, like to a local env
            raise InvalidAction(f"a remote env takes text actions, got {type(action).__name__}: pass str(action).")
        if self._coalescers is not None and action is not None:
            r = self._coalescers[1].call({"env": self.remote_id, "action": action}, self._route)
            return r["observation"], r["reward"], r["terminated"], r["truncated"], r["info"]
        body = EnvStepRequest(action=action)
        answer = self._route.post(self._client, "step", body, EnvStepResponse)
        return answer.observation, answer.reward, answer.terminated, answer.truncated, answer.info

    def sample_random_action(self) -> str:
        """``sample_random_action()`` of the hosted env: drawn on the server from its own RNG.

        Works before the first reset and between episodes, like a local env.
        """
        self._check_usable("sample_random_action")
        space = self.action_space
        pending = space.pending_seed if isinstance(space, RemoteTextSpace) else None
        if pending is None:
            body = SampleActionRequest()
        else:
            body = SampleActionRequest(action_space_seed=pending[0], seed_action_space=True)
        answer = self._client.post_fast(f"{self._base}/sample_action", body, SampleActionResponse)
        if isinstance(space, RemoteTextSpace):
            space.pending_seed = None
        return answer.action

    def _tool_call_to_action(self, name: str, arguments: Any) -> str:
        """The hosted env's ``tool_call_to_action(name, arguments)`` (exposed only when it has one)."""
        self._check_usable("tool_call_to_action")
        require_json(arguments, "the tool call's arguments")
        body = ToolCallRequest(name=name, arguments=arguments)
        return self._client.post_fast(f"{self._base}/tool_call_to_action", body, ToolCallResponse).action

    def render(self) -> str | None:
        """``render()`` of the hosted env (for rock_env envs: the last observation)."""
        self._check_usable("render")
        return self._client.call("GET", f"{self._base}/render", RenderResponse).render

    def _check_usable(self, what: str) -> None:
        if self._closed:
            from rock_env.errors import EnvClosed

            raise EnvClosed(f"RemoteEnv.{what}() on a closed env: make a new one with rock.make.")

    def close(self) -> None:
        """Close the env on the server (idempotent; a lost or unreachable server is not an error here)."""
        if not self._closed:
            try:
                self._client.call("DELETE", self._base, Ok)
            except (EnvInstanceNotFound, WorkerLost, ServerUnavailable) as exc:
                logger.debug("closing remote env %s: %s", self.remote_id, exc)
        super().close()

    def __repr__(self) -> str:
        return f"<RemoteEnv id={self.info.env_id!r} remote_id={self.remote_id!r} at {self.base_url}>"


def make_remote_env(
    env_id: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    timeout: float = 300.0,
    idle_ttl: float | None = None,
    coalesce: bool = False,
    **kwargs: Any,
) -> RemoteEnv:
    """Make ``env_id`` on the server at ``base_url`` (else ``$ROCK_ENV_URL``, else 127.0.0.1:8080).

    ``coalesce=True``: this env's make, resets and steps travel in batched requests together with
    the calls other threads' envs make at the same time (see :mod:`~rock_env.remote.coalesce`).
    """
    return RemoteEnv(
        env_id, base_url=base_url, token=token, timeout=timeout, idle_ttl=idle_ttl, coalesce=coalesce, **kwargs
    )
