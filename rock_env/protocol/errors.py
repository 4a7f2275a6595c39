"""Errors on the wire: :class:`ErrorBody` and the conversions to and from :class:`RockEnvError`.

An error travels as ``{"error": "<RockEnvError subclass>", "message": ..., "status": ...}``
with the class's ``http_status``; :func:`raise_error` turns one back into the same exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from rock_env.errors import RequestInvalid, RockEnvError, error_class
from rock_env.protocol.common import JsonDict


class ErrorBody(BaseModel):
    """The JSON body of every error response."""

    error: str = Field(description="name of the RockEnvError subclass, e.g. 'EnvNotFound'")
    message: str
    status: int


def error_body(exc: RockEnvError) -> ErrorBody:
    """The wire form of ``exc``."""
    return ErrorBody(error=type(exc).__name__, message=exc.message or str(exc), status=exc.http_status)


def exception_from_body(body: ErrorBody | JsonDict) -> RockEnvError:
    """The exception that ``body`` describes (the same class as on the server)."""
    if isinstance(body, dict):
        body = ErrorBody.model_validate(
            {"error": body.get("error", "RockEnvError"), "message": body.get("message", ""), "status": 500}
            | {k: v for k, v in body.items() if k == "status" and isinstance(v, int)}
        )
    return error_class(body.error)(body.message)


def raise_error(body: ErrorBody | JsonDict) -> None:
    """Raise the exception that ``body`` describes."""
    raise exception_from_body(body)


def invalid_request(exc: ValidationError | Any, where: str) -> RockEnvError:
    """The error to answer for a request body that failed validation.

    A validator of the shared sandbox checks (:mod:`rock_env.validation`) raises
    :class:`~rock_env.errors.InvalidArgument` with the reason; that error is kept (the local SDK
    raises the same one). Any other problem is a :class:`~rock_env.errors.RequestInvalid`
    listing the bad fields. ``exc`` is a pydantic ``ValidationError`` or anything with the same
    ``errors()`` (FastAPI's ``RequestValidationError``).
    """
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RockEnvError):
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            reason = cause.message or str(cause)
            prefix = f"{loc}: " if loc and not reason.startswith(loc.rsplit(".", 1)[-1]) else ""
            return type(cause)(f"invalid request to {where}: {prefix}{reason}")
    return RequestInvalid(f"invalid request to {where}: {describe_errors(exc.errors())}")


def describe_errors(errors: Sequence[Mapping[str, Any]], limit: int = 10) -> str:
    """``"loc: message; ..."`` for pydantic/FastAPI validation errors (the leading ``body`` is dropped)."""
    parts = []
    for err in list(errors)[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


__all__ = [
    "ErrorBody",
    "describe_errors",
    "error_body",
    "exception_from_body",
    "invalid_request",
    "raise_error",
]
