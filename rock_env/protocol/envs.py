"""Env requests and answers: ``/api/v1/envs`` (make, reset, step, batched step, sample, tools, render)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from rock_env.protocol.common import IdleTtl, JsonDict, WireModel
from rock_env.protocol.errors import ErrorBody
from rock_env.validation import MAX_TTL, check_duration


class EnvMakeRequest(WireModel):
    """``POST /api/v1/envs``: build one env from a registered id."""

    env_id: str = Field(min_length=1, max_length=256, description="registered id, e.g. 'game:Sokoban-v0-easy'")
    kwargs: JsonDict = Field(default_factory=dict, description="keyword arguments for the env")
    seed: int | None = Field(default=None, description="as make(seed=...): the first reset uses it")
    max_episode_steps: int | None = Field(default=None, gt=0, le=1 << 31)
    idle_ttl: IdleTtl | None = Field(default=None, description="close the env after this many idle seconds")

    @field_validator("idle_ttl")
    @classmethod
    def _idle_ttl(cls, value: float | None) -> float | None:
        return check_duration(value, "idle_ttl", cap=MAX_TTL)


class TextSpaceInfo(BaseModel):
    """A gymnasium ``Text`` space on the wire (a client rebuilds the same space from it)."""

    max_length: int = Field(ge=0)
    min_length: int = Field(default=0, ge=0)
    charset: str


class EnvInfo(BaseModel):
    """An env instance hosted by a worker."""

    id: str = Field(description="instance id used in later requests")
    env_id: str
    worker_id: str
    created: float
    last_used: float
    idle_ttl: float | None = None
    status: Literal["live", "lost", "closed"] = "live"
    requirements: list[str] = Field(default_factory=list)
    sandbox_id: str | None = None
    tools: list[JsonDict] | None = Field(default=None, description="the env's OpenAI tool schemas, if it has tools")
    tool_call_hook: bool = Field(default=False, description="the env turns tool calls into actions itself")
    action_space: TextSpaceInfo | None = Field(default=None, description="None: not a text space")
    observation_space: TextSpaceInfo | None = Field(default=None, description="None: not a text space")
    worker_url: str | None = Field(
        default=None, description="the worker that hosts it, for the direct data plane (None: talk to the admin)"
    )
    grant: str | None = Field(
        default=None, description="the bearer token the worker accepts for this object only (None: no auth there)"
    )


class EnvList(BaseModel):
    """``GET /api/v1/envs``."""

    envs: list[EnvInfo]


class EnvResetRequest(WireModel):
    """``POST /api/v1/envs/{id}/reset``."""

    seed: int | None = None
    options: JsonDict | None = None


class EnvResetResponse(BaseModel):
    """The ``(observation, info)`` of a reset."""

    observation: Any
    info: JsonDict = Field(default_factory=dict)


class EnvStepRequest(WireModel):
    """``POST /api/v1/envs/{id}/step`` (``null`` is passed to the env: GEM's envs answer a format error)."""

    action: str | None = Field(max_length=1 << 20)


class EnvStepResponse(BaseModel):
    """The ``(observation, reward, terminated, truncated, info)`` of a step."""

    observation: Any
    reward: float
    terminated: bool
    truncated: bool
    info: JsonDict = Field(default_factory=dict)


class SampleActionRequest(WireModel):
    """``POST /api/v1/envs/{id}/sample_action``: draw ``env.sample_random_action()`` on the server.

    ``action_space_seed`` (when the client seeded its copy of the action space since the last
    sample) first seeds the hosted env's action space the same way, so both sides draw alike.
    """

    action_space_seed: int | None = Field(default=None, ge=0)
    seed_action_space: bool = Field(default=False, description="seed the action space (with None: from entropy)")


class SampleActionResponse(BaseModel):
    """One action drawn from the env's own RNG."""

    action: str


class ToolCallRequest(WireModel):
    """``POST /api/v1/envs/{id}/tool_call_to_action``: the env's own text action for a model's tool call."""

    name: str = Field(max_length=1024)
    arguments: Any = None


class ToolCallResponse(BaseModel):
    """The action ``env.tool_call_to_action(name, arguments)`` returned."""

    action: str


class RenderResponse(BaseModel):
    """``GET /api/v1/envs/{id}/render``: what the hosted env's ``render()`` returned (text or None)."""

    render: str | None = None


#: An item's own grant in a batch sent straight to a worker (see :class:`BatchStepItem`).
ItemGrant = Field(
    default=None,
    max_length=512,
    description="the env's grant, in a batch sent straight to its worker with another env's grant as the bearer",
)


class BatchStepItem(WireModel):
    """One env and its action in a batched step.

    A batch sent straight to a worker under auth carries each env's own grant in ``grant`` (the
    request's bearer is one of them); the worker checks every item's grant against its env.
    """

    env: str = Field(description="instance id")
    action: str = Field(max_length=1 << 20)
    grant: str | None = ItemGrant


class BatchStepRequest(WireModel):
    """``POST /api/v1/batch/step``: step many envs in one request."""

    steps: list[BatchStepItem] = Field(max_length=65536)


class BatchStepResult(BaseModel):
    """Either a step result or the error that env raised (the others still step)."""

    result: EnvStepResponse | None = None
    error: ErrorBody | None = None


class BatchStepResponse(BaseModel):
    """Results in the order of the request."""

    results: list[BatchStepResult]


class BatchResetItem(EnvResetRequest):
    """One env and its reset arguments in a batched reset (``grant``: as in :class:`BatchStepItem`)."""

    env: str = Field(description="instance id")
    grant: str | None = ItemGrant


class BatchResetRequest(WireModel):
    """``POST /api/v1/batch/reset``: reset many envs in one request."""

    resets: list[BatchResetItem] = Field(max_length=65536)


class BatchResetResult(BaseModel):
    """Either a reset result or the error that env raised (the others still reset)."""

    result: EnvResetResponse | None = None
    error: ErrorBody | None = None


class BatchResetResponse(BaseModel):
    """Results in the order of the request."""

    results: list[BatchResetResult]


#: The most envs one batched make creates.
MAX_BATCH_MAKE = 4096


class BatchMakeRequest(WireModel):
    """``POST /api/v1/batch/make``: make many envs in one request (each is placed like a single make)."""

    makes: list[EnvMakeRequest] = Field(max_length=MAX_BATCH_MAKE)


class BatchMakeResult(BaseModel):
    """Either the info of the env made or the error its make raised (the others are still made)."""

    result: EnvInfo | None = None
    error: ErrorBody | None = None


class BatchMakeResponse(BaseModel):
    """Results in the order of the request."""

    results: list[BatchMakeResult]


__all__ = [
    "MAX_BATCH_MAKE",
    "BatchMakeRequest",
    "BatchMakeResponse",
    "BatchMakeResult",
    "BatchResetItem",
    "BatchResetRequest",
    "BatchResetResponse",
    "BatchResetResult",
    "BatchStepItem",
    "BatchStepRequest",
    "BatchStepResponse",
    "BatchStepResult",
    "EnvInfo",
    "EnvList",
    "EnvMakeRequest",
    "EnvResetRequest",
    "EnvResetResponse",
    "EnvStepRequest",
    "EnvStepResponse",
    "RenderResponse",
    "SampleActionRequest",
    "SampleActionResponse",
    "TextSpaceInfo",
    "ToolCallRequest",
    "ToolCallResponse",
]
