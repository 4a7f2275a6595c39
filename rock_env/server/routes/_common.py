"""Helpers shared by the route modules."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from rock_env.protocol import ErrorBody
from rock_env.server.service import Service

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
#: The ``responses=`` of every route: errors are ErrorBody objects.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "a RockEnvError; `error` names its class"}
}


def service_of(request: Request) -> Service:
    """The service behind the app."""
    svc: Service = request.app.state.service
    return svc


def owner_of(request: Request) -> str:
    """The token name the gateway authenticated (``anonymous`` without auth)."""
    return str(request.scope.get("state", {}).get("owner", "anonymous"))


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """A JSON response from a wire model (serialised by pydantic-core)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type=JSON)


def raw_json(content: bytes) -> Response:
    """A JSON response from bytes that are JSON already."""
    return Response(content, media_type=JSON)


__all__ = ["JSON", "model_response", "owner_of", "raw_json", "service_of"]


#: Schemas the bodies of :func:`body_schema` refer to; :func:`rock_env.server.app.create_app` adds them to
#: the components of /openapi.json (so that every ``$ref`` there resolves).
BODY_COMPONENTS: dict[str, Any] = {}


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that documents a JSON body parsed by :func:`parse_body`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    BODY_COMPONENTS.update(schema.pop("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def parse_body(request: Request, model: type[M]) -> M:
    """Parse the JSON body straight with pydantic-core (the hot routes skip FastAPI's body machinery).

    Strictly: a JSON value of another type than the schema says (``"1"`` for an integer, ``1`` for
    a boolean) is refused, not coerced, so that the API accepts exactly what /openapi.json declares.
    """
    from pydantic import ValidationError

    from rock_env.protocol import invalid_request

    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"", strict=True)
    except ValidationError as exc:
        raise invalid_request(exc, f"{request.method} {request.url.path}") from None
