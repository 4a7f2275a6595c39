"""The trainer side of remote model services: requests of sandboxes on a rock-env server, through its admin.

A sandbox created with ``rock.Sandbox(base_url=URL, model_service=True)`` runs on a worker that
serves its ``OPENAI_BASE_URL``; the trainer connects to the admin with
``ModelService.connect(URL)`` (a :class:`RemoteModelService`) and gets, answers and fails requests
with the same methods as a local :class:`~rock_env.agents.ModelService`. The admin relays each
call to the worker hosting the sandbox and shows a trainer only its own sandboxes' requests.
``get`` is a long poll (``?wait=``): a request reaches the trainer as soon as the harness sends it.

>>> svc = ModelService.connect("http://127.0.0.1:8080")  # doctest: +SKIP
>>> with rock.Sandbox(base_url="http://127.0.0.1:8080", model_service=svc) as sb:  # doctest: +SKIP
...     proc = sb.spawn("python3 agent.py")
...     req = svc.get(timeout=30)
...     svc.answer(req.id, "hello")

Request ids look like ``mr-...@sbx-...``: the admin routes an answer by them. With ``record=PATH``
the trainer side writes every exchange it answers or fails (and :meth:`RemoteModelService.record_reward`
lines) to a JSONL recording, in the same format as a local service's.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from rock_env.agents.model_completion import completion_from_reply
from rock_env.agents.recording import Recorder
from rock_env.errors import InvalidArgument, ServerUnavailable
from rock_env.protocol.errors import exception_from_body
from rock_env.protocol.model_service import (
    MAX_WAIT,
    ModelAnswer,
    ModelEpisode,
    ModelExchange,
    ModelFail,
    ModelRequest,
    ModelRequestList,
    ModelServiceOptions,
)

PREFIX = "/api/v1/model-service"
#: how long one long poll waits at most (a longer ``get`` is several)
POLL = MAX_WAIT
#: the pause before asking again when the server answered at once that nothing can come yet (no sandboxes)
IDLE = 0.2
#: small requests leave at once (no Nagle wait for the ACK of the headers)
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
#: extra seconds an HTTP call of a long poll may take beyond its wait
SLACK = 30.0


def _url(base_url: str | None) -> str:
    url = base_url or os.environ.get("ROCK_ENV_URL") or "http://127.0.0.1:8080"
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url.rstrip("/")


def _headers(token: str | None) -> dict[str, str]:
    token = token or os.environ.get("ROCK_ENV_TOKEN") or None
    headers = {"accept": "application/json", "content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        data: Any = resp.json()
    except ValueError:
        data = {"error": "RockEnvError", "message": resp.text[:500]}
    if not isinstance(data, dict):
        data = {"message": str(data)}
    data.setdefault("status", resp.status_code)
    raise exception_from_body(data)


def _unreachable(base_url: str, exc: Exception) -> ServerUnavailable:
    return ServerUnavailable(f"the rock-env server {base_url} did not answer ({type(exc).__name__}: {exc})")


class _Base:
    """What the sync and async clients share: options, URLs, request bodies."""

    def __init__(
        self,
        base_url: str | None,
        token: str | None,
        timeout: float,
        model: str,
        http_timeout: float,
        record: str | Path | None = None,
    ) -> None:
        #: the model service of sandboxes made with ``model_service=`` this object
        self.options = ModelServiceOptions(timeout=timeout, model=model)
        self.base_url = _url(base_url)
        self._headers = _headers(token)
        self._http_timeout = http_timeout
        self._recorder = None if record is None else Recorder(Path(record))
        self._handed_out: dict[str, ModelRequest] = {}  # requests given to the trainer, for the recording

    def _hand_out(self, requests: list[ModelRequest]) -> list[ModelRequest]:
        """``requests``, remembered for the recording until answered or failed."""
        if self._recorder is not None:
            self._handed_out.update((request.id, request) for request in requests)
        return requests

    def _record(self, request_id: str, completion: dict[str, Any] | None, status: int, error: str | None) -> None:
        """Write one exchange of a request this object handed out (nothing without ``record=``)."""
        request = self._handed_out.pop(request_id, None)
        if self._recorder is None or request is None:
            return
        answered = time.time()
        self._recorder.write(
            ModelExchange(
                request_id=request.id,
                sandbox_id=request.sandbox_id,
                env_id=request.env_id,
                episode=request.episode,
                turn=request.turn,
                request=request.body,
                response=completion,
                error=error,
                status=status,
                source="trainer",
                received_at=request.received_at,
                answered_at=answered,
                latency=max(0.0, answered - request.received_at),
            )
        )

    def record_reward(
        self,
        sandbox_id: str,
        episode: int,
        reward: float,
        info: dict[str, Any] | None = None,
        env_id: str | None = None,
    ) -> None:
        """Write the episode's reward into the recording (a ``kind="reward"`` line; nothing without ``record=``)."""
        if self._recorder is not None:
            self._recorder.write_reward(sandbox_id, episode, reward, info, env_id)

    def _close_recording(self) -> None:
        if self._recorder is not None:
            self._recorder.close()

    @staticmethod
    def _query(wait: float, sandbox_id: str | None, limit: int = 1) -> dict[str, str]:
        query = {"wait": f"{wait:.3f}", "limit": str(limit)}
        if sandbox_id is not None:
            query["sandbox"] = sandbox_id
        return query

    @staticmethod
    def _wait(deadline: float | None) -> float:
        if deadline is None:
            return POLL
        return max(0.0, min(POLL, deadline - time.monotonic()))

    @staticmethod
    def _idle(asked: float, wait: float, deadline: float | None) -> float:
        """The pause before the next poll: none after a full wait, :data:`IDLE` after an early empty answer."""
        now = time.monotonic()
        if now - asked >= wait * 0.9:
            return 0.0
        pause = IDLE if deadline is None else max(0.0, min(IDLE, deadline - now))
        return pause

    @staticmethod
    def _check_timeout(timeout: float | None) -> float | None:
        if timeout is None:
            return None
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidArgument(f"timeout={timeout!r} must be a non-negative number of seconds or None")
        return time.monotonic() + float(timeout)


class RemoteModelService(_Base):
    """The trainer's side of the model services of remote sandboxes (sync); see the module docstring.

    ``timeout``/``model``: the model service of sandboxes created with ``model_service=`` this object
    (seconds before an unanswered harness call gets HTTP 504; the model name). ``token``: as for
    remote sandboxes (else ``$ROCK_ENV_TOKEN``); a trainer sees the requests of its token's sandboxes.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 300.0,
        model: str = "rock-env",
        http_timeout: float = 60.0,
        record: str | Path | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, model, http_timeout, record)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._headers,
            timeout=http_timeout,
            transport=httpx.HTTPTransport(socket_options=NODELAY),
        )

    def _request(self, method: str, path: str, *, body: Any = None, params: Any = None, wait: float = 0.0) -> Any:
        content = None if body is None else body.model_dump_json()
        try:
            resp = self._http.request(
                method, path, content=content, params=params, timeout=self._http_timeout + wait + SLACK
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc
        _raise_for(resp)
        return resp.content

    def get(self, timeout: float | None = None, *, sandbox_id: str | None = None) -> ModelRequest:
        """The next request not handed out yet (of ``sandbox_id`` if given); ``TimeoutError`` after ``timeout`` s.

        Raises :class:`~rock_env.errors.SandboxNotFound` if ``sandbox_id`` is (or gets) stopped.
        """
        deadline = self._check_timeout(timeout)
        while True:
            wait = self._wait(deadline)
            asked = time.monotonic()
            raw = self._request("GET", PREFIX + "/requests", params=self._query(wait, sandbox_id), wait=wait)
            requests = ModelRequestList.model_validate_json(raw).requests
            if requests:
                return self._hand_out(requests[:1])[0]
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no model request within {timeout}s")
            time.sleep(self._idle(asked, wait, deadline))

    def get_many(self, max_count: int, timeout: float | None = None) -> list[ModelRequest]:
        """Up to ``max_count`` requests at once, waiting up to ``timeout`` s for the first ([] if none came)."""
        deadline = self._check_timeout(timeout)
        while True:
            wait = self._wait(deadline)
            asked = time.monotonic()
            params = self._query(wait, None, max(1, int(max_count)))
            requests = ModelRequestList.model_validate_json(
                self._request("GET", PREFIX + "/requests", params=params, wait=wait)
            ).requests
            if requests or (deadline is not None and time.monotonic() >= deadline):
                return self._hand_out(requests)
            time.sleep(self._idle(asked, wait, deadline))

    def pending(self, sandbox_id: str | None = None) -> list[ModelRequest]:
        """Every unanswered request of your sandboxes (of ``sandbox_id`` if given), oldest first."""
        params = None if sandbox_id is None else {"sandbox": sandbox_id}
        raw = self._request("GET", PREFIX + "/pending", params=params)
        return self._hand_out(ModelRequestList.model_validate_json(raw).requests)

    def answer(self, request_id: str, reply: str | dict[str, Any]) -> None:
        """Answer a request (assistant text, an assistant message, or a chat.completion)."""
        completion = completion_from_reply(reply, model=self.options.model)  # a bad reply raises here
        self._request("POST", f"{PREFIX}/requests/{_path(request_id)}/answer", body=ModelAnswer(reply=reply))
        self._record(request_id, completion, 200, None)

    def fail(self, request_id: str, status: int = 500, message: str = "the trainer failed this request") -> None:
        """Answer a request with an HTTP error (``status`` 400..599)."""
        body = _fail_body(status, message)
        self._request("POST", f"{PREFIX}/requests/{_path(request_id)}/fail", body=body)
        self._record(request_id, None, status, message)

    def begin_episode(self, sandbox_id: str, episode: int, env_id: str | None = None) -> None:
        """Tag the sandbox's later requests with ``episode`` (and ``env_id``); their turn restarts at 0."""
        body = ModelEpisode(episode=episode, env_id=env_id)
        self._request("POST", f"{PREFIX}/sandboxes/{_path(sandbox_id)}/episode", body=body)

    def close(self) -> None:
        """Close the connection pool (and the recording)."""
        self._http.close()
        self._close_recording()

    def __enter__(self) -> RemoteModelService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRemoteModelService(_Base):
    """The async twin of :class:`RemoteModelService` (same constructor): ``await svc.get()``, ``await svc.answer()``."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 300.0,
        model: str = "rock-env",
        http_timeout: float = 60.0,
        record: str | Path | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, model, http_timeout, record)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=http_timeout,
            transport=httpx.AsyncHTTPTransport(socket_options=NODELAY),
        )

    async def _request(self, method: str, path: str, *, body: Any = None, params: Any = None, wait: float = 0.0) -> Any:
        content = None if body is None else body.model_dump_json()
        try:
            resp = await self._http.request(
                method, path, content=content, params=params, timeout=self._http_timeout + wait + SLACK
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc
        _raise_for(resp)
        return resp.content

    async def get(self, timeout: float | None = None, *, sandbox_id: str | None = None) -> ModelRequest:
        """The next request not handed out yet; ``TimeoutError`` after ``timeout`` s."""
        deadline = self._check_timeout(timeout)
        while True:
            wait = self._wait(deadline)
            asked = time.monotonic()
            raw = await self._request("GET", PREFIX + "/requests", params=self._query(wait, sandbox_id), wait=wait)
            requests = ModelRequestList.model_validate_json(raw).requests
            if requests:
                return self._hand_out(requests[:1])[0]
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no model request within {timeout}s")
            await asyncio.sleep(self._idle(asked, wait, deadline))

    async def pending(self, sandbox_id: str | None = None) -> list[ModelRequest]:
        """Every unanswered request, oldest first."""
        params = None if sandbox_id is None else {"sandbox": sandbox_id}
        raw = await self._request("GET", PREFIX + "/pending", params=params)
        return self._hand_out(ModelRequestList.model_validate_json(raw).requests)

    async def answer(self, request_id: str, reply: str | dict[str, Any]) -> None:
        """Answer a request."""
        completion = completion_from_reply(reply, model=self.options.model)  # a bad reply raises here
        await self._request("POST", f"{PREFIX}/requests/{_path(request_id)}/answer", body=ModelAnswer(reply=reply))
        self._record(request_id, completion, 200, None)

    async def fail(self, request_id: str, status: int = 500, message: str = "the trainer failed this request") -> None:
        """Answer a request with an HTTP error."""
        await self._request("POST", f"{PREFIX}/requests/{_path(request_id)}/fail", body=_fail_body(status, message))
        self._record(request_id, None, status, message)

    async def begin_episode(self, sandbox_id: str, episode: int, env_id: str | None = None) -> None:
        """Tag the sandbox's later requests."""
        body = ModelEpisode(episode=episode, env_id=env_id)
        await self._request("POST", f"{PREFIX}/sandboxes/{_path(sandbox_id)}/episode", body=body)

    async def aclose(self) -> None:
        """Close the connection pool (and the recording)."""
        await self._http.aclose()
        self._close_recording()

    async def __aenter__(self) -> AsyncRemoteModelService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _path(value: str) -> str:
    """A path segment (an id); refuse what would change the path."""
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise InvalidArgument(f"{value!r} is not a request or sandbox id")
    return value


def _fail_body(status: int, message: str) -> ModelFail:
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise InvalidArgument(f"status={status!r} must be an HTTP error status (400..599)")
    try:
        return ModelFail(status=status, message=str(message))
    except ValueError as exc:
        raise InvalidArgument(f"bad fail(): {exc}") from exc


__all__ = ["AsyncRemoteModelService", "RemoteModelService"]
