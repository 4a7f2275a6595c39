"""``RemoteVecEnv``: a vector env whose sub-envs all live on one worker, stepped in one request.

``rock.make_vec(id, n, backend="remote", base_url=...)`` returns one. The worker runs a
local :mod:`rock_env.vector` env, so autoreset semantics, seeding and the info arrays
(dtypes included) are those of the local vector env: the transcripts are equal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space

from rock_env.core import text_space
from rock_env.errors import EnvClosed, EnvInstanceNotFound, ResetNeeded, ServerUnavailable, WorkerLost
from rock_env.protocol import (
    Ok,
    VecInfo,
    VecMakeRequest,
    VecRenderResponse,
    VecResetRequest,
    VecResetResponse,
    VecSampleResponse,
    VecStepRequest,
    VecStepResponse,
    pack_tree,
    require_json,
    unpack_tree,
)
from rock_env.remote.pool import Route, shared_client
from rock_env.vector.base import check_action_batch

logger = logging.getLogger(__name__)


class RemoteVecEnv(gymnasium.vector.VectorEnv[tuple[str, ...], Sequence[str], np.ndarray]):
    """``num_envs`` copies of ``env_id`` on a rock-env server."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        base_url: str | None = None,
        token: str | None = None,
        autoreset_mode: str = "next_step",
        mode: str = "sync",
        seed: int | Sequence[int | None] | None = None,
        idle_ttl: float | None = None,
        timeout: float = 300.0,
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        from rock_env.vector.autoreset import parse_autoreset_mode

        parsed_mode = parse_autoreset_mode(autoreset_mode)
        mode_name = {"NextStep": "next_step", "SameStep": "same_step", "Disabled": "disabled"}[parsed_mode.value]
        require_json({**(env_kwargs or {}), **kwargs}, f"the keyword arguments of {env_id!r}")
        request = VecMakeRequest(
            env_id=env_id,
            num_envs=num_envs,
            kwargs={**(env_kwargs or {}), **kwargs},
            autoreset_mode=mode_name,  # type: ignore[arg-type]
            mode=mode,  # type: ignore[arg-type]
            seed=None if seed is None else (seed if isinstance(seed, int) else list(seed)),
            num_workers=num_workers,
            idle_ttl=idle_ttl,
        )
        self._client = shared_client(base_url, token, timeout=timeout)  # the process's one pool for this server
        self.closed = False
        self.info: VecInfo = self._client.call("POST", "/api/v1/vecs", VecInfo, body=request, idempotent=False)
        self.remote_id = self.info.id
        self._base = f"/api/v1/vecs/{self.remote_id}"
        self._route = Route(
            self._base,
            self.info.worker_url,
            self.info.grant,
            f"vector env {self.remote_id!r} ({self.info.env_id}) on worker {self.info.worker_id!r}",
        )
        self.num_envs = num_envs
        self.env_id = self.info.env_id
        self.autoreset_mode = parsed_mode
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": ["ansi"]}
        self.render_mode = None
        self.single_observation_space = text_space()
        self.single_action_space = text_space(max_length=4096)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        #: The sub-envs' OpenAI tool schemas, ``None`` when they have no tools.
        self.tools: list[dict[str, Any]] | None = self.info.tools

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise EnvClosed(f"RemoteVecEnv.{what}() on a closed vector env: make a new one with rock.make_vec.")

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``)."""
        self._check_open("reset")
        wire_seed = None if seed is None else (int(seed) if isinstance(seed, int | np.integer) else list(seed))
        body = VecResetRequest(seed=wire_seed, options=pack_tree(dict(options)) if options else None)
        answer = self._route.post(self._client, "reset", body, VecResetResponse, idempotent=True)
        return tuple(answer.observations), unpack_tree(answer.infos)

    def step(
        self, actions: Sequence[str]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with its action, in one request."""
        self._check_open("step")
        batch = check_action_batch(actions, self.num_envs)
        answer = self._route.post(self._client, "step", VecStepRequest(actions=batch), VecStepResponse)
        return (
            tuple(answer.observations),
            np.asarray(answer.rewards, dtype=np.float64),
            np.asarray(answer.terminations, dtype=np.bool_),
            np.asarray(answer.truncations, dtype=np.bool_),
            unpack_tree(answer.infos),
        )

    def sample_random_actions(self) -> list[str]:
        """One ``sample_random_action()`` per sub-env, drawn on the server from each sub-env's own RNG.

        The same as ``list(vec.call("sample_random_action"))`` on the local vector env.
        """
        self._check_open("sample_random_actions")
        answer = self._client.call("POST", f"{self._base}/sample_actions", VecSampleResponse, idempotent=False)
        return answer.actions

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``call("sample_random_action")`` and ``call("render")`` as on a local vector env (no others remotely)."""
        if args or kwargs or name not in ("sample_random_action", "render"):
            from rock_env.errors import InvalidArgument

            raise InvalidArgument(
                f"RemoteVecEnv.call({name!r}) is not available over HTTP; only call('sample_random_action') and "
                "call('render') are (without arguments). Use the local backend to call other methods."
            )
        return tuple(self.sample_random_actions()) if name == "sample_random_action" else self.render()

    def render(self) -> tuple[str | None, ...]:  # type: ignore[override]
        """Each sub-env's ``render()``, from the server."""
        self._check_open("render")
        return tuple(self._client.call("GET", f"{self._base}/render", VecRenderResponse).renders)

    def close(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Close the sub-envs on the server (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._client.call("DELETE", self._base, Ok)
        except (EnvInstanceNotFound, WorkerLost, ServerUnavailable, ResetNeeded) as exc:
            logger.debug("closing remote vector env %s: %s", self.remote_id, exc)

    def __enter__(self) -> RemoteVecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<RemoteVecEnv {self.env_id!r} x{self.num_envs} remote_id={self.remote_id!r} at {self._client.base_url}>"
        )


def make_remote_vec(
    env_id: str,
    num_envs: int = 1,
    *,
    base_url: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> RemoteVecEnv:
    """A :class:`RemoteVecEnv` of ``num_envs`` copies of ``env_id`` on the server at ``base_url``."""
    return RemoteVecEnv(env_id, num_envs, base_url=base_url, token=token, **kwargs)
