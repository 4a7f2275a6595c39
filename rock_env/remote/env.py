"""``RemoteEnv``: an env whose ``reset``/``step`` run on a rock-env server.

``rock.make(id, backend="remote", base_url=...)`` returns one. It is a
:class:`rock_env.core.Env` like a local env, and for the same seed and actions it gives
the same transcript, because the worker builds the env from the same spec.
"""

from __future__ import annotations

import logging
from typing import Any

from rock_env.core import Env, StepResult
from rock_env.errors import EnvInstanceNotFound, InvalidAction, RockEnvError, ServerUnavailable, WorkerLost
from rock_env.protocol import (
    EnvInfo,
    EnvMakeRequest,
    EnvResetRequest,
    EnvResetResponse,
    EnvStepRequest,
    EnvStepResponse,
    Ok,
    require_json,
)
from rock_env.remote.client import ApiClient

logger = logging.getLogger(__name__)


class RemoteEnv(Env):
    """An env hosted by a worker behind the admin at ``base_url``."""

    def __init__(
        self,
        env_id: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 300.0,
        idle_ttl: float | None = None,
        client: ApiClient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        require_json(kwargs, f"the keyword arguments of {env_id!r}")
        self._client = client or ApiClient(base_url, token, timeout=timeout)
        self._owns_client = client is None
        request = EnvMakeRequest(env_id=env_id, kwargs=kwargs, idle_ttl=idle_ttl)
        try:
            self.info: EnvInfo = self._client.call("POST", "/api/v1/envs", EnvInfo, body=request, idempotent=False)
        except BaseException:
            if self._owns_client:
                self._client.close()
            raise
        self.remote_id = self.info.id
        self._base = f"/api/v1/envs/{self.remote_id}"
        try:
            from rock_env.registry import registry

            self.spec = registry.spec(self.info.env_id)
        except RockEnvError:
            self.spec = None

    @property
    def base_url(self) -> str:
        """The server this env lives on."""
        return self._client.base_url

    def _reset(self, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = EnvResetRequest(seed=seed, options=options or None)
        answer = self._client.post_fast(f"{self._base}/reset", body, EnvResetResponse)
        return answer.observation, answer.info

    def _step(self, action: str) -> StepResult:
        if not isinstance(action, str):
            raise InvalidAction(f"a remote env takes text actions, got {type(action).__name__}: pass str(action).")
        body = EnvStepRequest(action=action)
        answer = self._client.post_fast(f"{self._base}/step", body, EnvStepResponse)
        return answer.observation, answer.reward, answer.terminated, answer.truncated, answer.info

    def close(self) -> None:
        """Close the env on the server (idempotent; a lost or unreachable server is not an error here)."""
        if not self._closed:
            try:
                self._client.call("DELETE", self._base, Ok)
            except (EnvInstanceNotFound, WorkerLost, ServerUnavailable) as exc:
                logger.debug("closing remote env %s: %s", self.remote_id, exc)
            finally:
                if self._owns_client:
                    self._client.close()
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
    **kwargs: Any,
) -> RemoteEnv:
    """Make ``env_id`` on the server at ``base_url`` (else ``$ROCK_ENV_URL``, else 127.0.0.1:8080)."""
    return RemoteEnv(env_id, base_url=base_url, token=token, timeout=timeout, idle_ttl=idle_ttl, **kwargs)
