"""Vector env requests and answers: ``/api/v1/vecs`` (make, reset, step, sample, render)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from rock_env.protocol.common import IdleTtl, JsonDict, WireModel
from rock_env.validation import MAX_TTL, check_duration

AutoresetMode = Literal["next_step", "same_step", "disabled"]


class VecMakeRequest(WireModel):
    """``POST /api/v1/vecs``: a vector of ``num_envs`` copies of one env, stepped together."""

    env_id: str = Field(min_length=1, max_length=256)
    num_envs: int = Field(ge=1, le=65536)
    kwargs: JsonDict = Field(default_factory=dict)
    autoreset_mode: AutoresetMode = "next_step"
    mode: Literal["sync", "async"] = Field(default="sync", description="how the worker runs the sub-envs")
    seed: int | list[int | None] | None = Field(default=None, description="seeds of the first reset")
    num_workers: int | None = Field(default=None, ge=1, le=256, description="mode='async': worker processes")
    idle_ttl: IdleTtl | None = None

    @field_validator("idle_ttl")
    @classmethod
    def _idle_ttl(cls, value: float | None) -> float | None:
        return check_duration(value, "idle_ttl", cap=MAX_TTL)


class VecInfo(BaseModel):
    """A vector env hosted by a worker."""

    id: str
    env_id: str
    num_envs: int
    autoreset_mode: str
    worker_id: str
    created: float
    last_used: float
    idle_ttl: float | None = None
    status: Literal["live", "lost", "closed"] = "live"
    tools: list[JsonDict] | None = Field(default=None, description="the sub-envs' OpenAI tool schemas, if any")
    worker_url: str | None = Field(
        default=None, description="the worker that hosts it, for the direct data plane (None: talk to the admin)"
    )
    grant: str | None = Field(
        default=None, description="the bearer token the worker accepts for this object only (None: no auth there)"
    )


class VecSampleResponse(BaseModel):
    """``POST /api/v1/vecs/{id}/sample_actions``: one random action per sub-env, from their own RNGs."""

    actions: list[str]


class VecRenderResponse(BaseModel):
    """``GET /api/v1/vecs/{id}/render``: each sub-env's ``render()``."""

    renders: list[str | None]


class VecResetRequest(WireModel):
    """``POST /api/v1/vecs/{id}/reset``: one seed (sub-env i gets seed+i), a list, or none."""

    seed: int | list[int | None] | None = None
    options: JsonDict | None = None


class VecResetResponse(BaseModel):
    """Observations of all sub-envs and the vector info dict."""

    observations: list[Any]
    infos: JsonDict = Field(default_factory=dict)


class VecStepRequest(WireModel):
    """``POST /api/v1/vecs/{id}/step``: one action per sub-env (``null`` passes through, as for one env)."""

    actions: list[str | None] = Field(max_length=65536)


class VecStepResponse(BaseModel):
    """Arrays of the vector step, as lists."""

    observations: list[Any]
    rewards: list[float]
    terminations: list[bool]
    truncations: list[bool]
    infos: JsonDict = Field(default_factory=dict)


__all__ = [
    "AutoresetMode",
    "VecInfo",
    "VecMakeRequest",
    "VecRenderResponse",
    "VecResetRequest",
    "VecResetResponse",
    "VecSampleResponse",
    "VecStepRequest",
    "VecStepResponse",
]
