"""What every wire model shares: the API prefix, the body limit, the base model, ``Ok`` and ``Health``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from rock_env.validation import MAX_TTL

API_PREFIX = "/api/v1"
#: Largest accepted request body (bytes) unless the server is configured otherwise.
DEFAULT_MAX_BODY = 64 * 1024 * 1024

JsonDict = dict[str, Any]

#: JSON-schema hint for the OpenAPI document; the check itself is ``check_duration`` in each model.
IdleTtl = Annotated[float, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TTL})]


class WireModel(BaseModel):
    """Base of the wire models: unknown fields are rejected so typos fail loudly."""

    model_config = ConfigDict(extra="forbid")


class Ok(BaseModel):
    """A request that returns nothing."""

    ok: bool = True


class Health(BaseModel):
    """``GET /api/v1/health``."""

    status: Literal["ok"] = "ok"
    version: str
    role: Literal["admin", "worker"]
    workers: int
    envs: int
    sandboxes: int


__all__ = [
    "API_PREFIX",
    "DEFAULT_MAX_BODY",
    "Health",
    "IdleTtl",
    "JsonDict",
    "Ok",
    "WireModel",
]
