"""Wire models of the ModelService: a harness's model request as the trainer sees it, and one recorded exchange.

A :class:`ModelRequest` is one ``POST /v1/chat/completions`` that a harness inside a sandbox sent
(``body`` is the OpenAI request as sent: messages, tools, sampling parameters), tagged with the
sandbox it came from and the episode and turn it belongs to. A :class:`ModelExchange` is one line
of a recording (JSONL): the request, the response the harness got and the timings.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rock_env.protocol.common import JsonDict


class ModelRequest(BaseModel):
    """One pending chat-completions request of a harness, waiting for the trainer's answer."""

    model_config = ConfigDict(extra="forbid")

    id: str
    sandbox_id: str
    env_id: str | None = None
    episode: int = 0
    turn: int = 0
    body: JsonDict
    received_at: float = Field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's chat messages."""
        messages = self.body.get("messages")
        return list(messages) if isinstance(messages, list) else []

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        """The request's tools (OpenAI function format), or ``None``."""
        tools = self.body.get("tools")
        return list(tools) if isinstance(tools, list) else None

    @property
    def stream(self) -> bool:
        """True if the harness asked for server-sent chunks."""
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str | None:
        """The model name the harness asked for."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None


class ModelExchange(BaseModel):
    """One recorded exchange (a line of a recording): request, response, where it came from and when.

    ``response`` is the full ``chat.completion`` object the harness got (also when it was streamed
    to it), or ``None`` with ``error`` set when it got an HTTP error. ``source`` says who answered.
    Join with rewards on ``(sandbox_id, episode)`` or ``(env_id, episode)``; reward lines have
    ``kind="reward"``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["exchange"] = "exchange"
    request_id: str
    sandbox_id: str
    env_id: str | None = None
    episode: int = 0
    turn: int = 0
    request: JsonDict
    response: JsonDict | None = None
    error: str | None = None
    status: int = 200
    source: Literal["trainer", "upstream", "replay"] = "trainer"
    received_at: float
    answered_at: float
    latency: float


class RewardRecord(BaseModel):
    """A reward line of a recording: the reward of one episode of one sandbox."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reward"] = "reward"
    sandbox_id: str
    env_id: str | None = None
    episode: int
    reward: float
    info: JsonDict = Field(default_factory=dict)
    at: float = Field(default_factory=time.time)


# --- remote model service (a sandbox on a worker, the trainer at the admin) -----------------------

#: the longest long poll (``?wait=``) a server holds a ``get`` open, in seconds (a client's longer ``get``
#: is several polls: one round trip per 5 s costs nothing measurable)
MAX_WAIT = 5.0


class ModelServiceOptions(BaseModel):
    """The model service a remote sandbox is created with (on the worker that hosts it).

    ``timeout``: seconds a harness's call waits for the trainer before it gets HTTP 504;
    ``model``: the name ``GET /v1/models`` lists and completions report.
    """

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(default=300.0, gt=0, le=86400)
    model: str = Field(default="rock-env", min_length=1, max_length=200)


class ModelSandboxCreateRequest(BaseModel):
    """``POST /api/v1/model-service/sandboxes``: a sandbox (SandboxConfig fields) with a model service."""

    model_config = ConfigDict(extra="forbid")

    config: JsonDict = Field(default_factory=dict)
    model_service: ModelServiceOptions = Field(default_factory=ModelServiceOptions)


class ModelRequestList(BaseModel):
    """Model requests (``GET /api/v1/model-service/requests`` and ``.../pending``); empty after a long poll timed out."""

    requests: list[ModelRequest] = Field(default_factory=list)


class ModelAnswer(BaseModel):
    """``POST /api/v1/model-service/requests/{id}/answer``: assistant text, an assistant message or a chat.completion."""

    model_config = ConfigDict(extra="forbid")

    reply: str | JsonDict


class ModelFail(BaseModel):
    """``POST /api/v1/model-service/requests/{id}/fail``: the harness gets this HTTP error."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(default=500, ge=400, le=599)
    message: str = Field(default="the trainer failed this request", max_length=10000)


class ModelEpisode(BaseModel):
    """``POST /api/v1/model-service/sandboxes/{id}/episode``: tag the sandbox's later requests."""

    model_config = ConfigDict(extra="forbid")

    episode: int = Field(ge=0)
    env_id: str | None = None


class ModelPoll(BaseModel):
    """Admin -> worker: the requests of these sandboxes numbered above each cursor (waiting up to ``wait`` s).

    A cursor says the admin has every request of that sandbox up to that number: the worker
    forgets those, so a poll whose answer was lost is simply repeated.
    """

    model_config = ConfigDict(extra="forbid")

    cursors: dict[str, int]
    wait: float = Field(default=0.0, ge=0, le=60.0)


class NumberedRequest(BaseModel):
    """A request with the worker's number for it (see :class:`ModelPoll`)."""

    seq: int
    request: ModelRequest


class ModelPollResult(BaseModel):
    """Worker -> admin: new requests, and the polled sandboxes that have no model service there (stopped)."""

    requests: list[NumberedRequest] = Field(default_factory=list)
    gone: list[str] = Field(default_factory=list)


class ModelPendingQuery(BaseModel):
    """Admin -> worker: every unanswered request of these sandboxes."""

    model_config = ConfigDict(extra="forbid")

    sandboxes: list[str]


__all__ = [
    "MAX_WAIT",
    "ModelAnswer",
    "ModelEpisode",
    "ModelExchange",
    "ModelFail",
    "ModelPendingQuery",
    "ModelPoll",
    "ModelPollResult",
    "ModelRequest",
    "ModelRequestList",
    "ModelSandboxCreateRequest",
    "ModelServiceOptions",
    "NumberedRequest",
    "RewardRecord",
]
