"""ROCK's own env API (``/apis/v1/envs/gem/...``): the bodies ROCK's client sends and reads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RockRequest(BaseModel):
    """A ROCK request body: fields we do not use are accepted (ROCK's clients may send more)."""

    model_config = ConfigDict(extra="allow")


_RockRequest = RockRequest


class _RockInstanceRequest(_RockRequest):
    """A ROCK request about one env instance (ROCK calls it ``sandbox_id``)."""

    sandbox_id: str = Field(min_length=1, max_length=256)


class RockMakeRequest(_RockRequest):
    """ROCK's ``make`` body; ROCK's client sends only ``env_id``."""

    env_id: str = Field(min_length=1, max_length=256)


class RockMakeResponse(BaseModel):
    """ROCK names the env instance ``sandbox_id``."""

    sandbox_id: str


class RockResetRequest(_RockInstanceRequest):
    """ROCK's ``reset`` body."""

    seed: int | None = None


class RockStepRequest(_RockInstanceRequest):
    """ROCK's ``step`` body."""

    action: str = Field(max_length=1 << 20)


class RockCloseRequest(_RockInstanceRequest):
    """ROCK's ``close`` body."""


class RockCloseResponse(BaseModel):
    """ROCK's ``close`` answer."""

    sandbox_id: str


class RockListResponse(BaseModel):
    """ROCK's ``list`` answer: env ids available."""

    env_id: list[str]


__all__ = [
    "RockCloseRequest",
    "RockCloseResponse",
    "RockListResponse",
    "RockMakeRequest",
    "RockMakeResponse",
    "RockRequest",
    "RockResetRequest",
    "RockStepRequest",
]
