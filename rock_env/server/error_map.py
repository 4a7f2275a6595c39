"""One mapping from exceptions to JSON error answers, for the app's handlers and its fast path.

:class:`~rock_env.errors.RockEnvError` keeps its ``http_status``; framework errors (404 route,
405, 408, 413, a client that went away, a bad request body) get an
:class:`~rock_env.protocol.ErrorBody` of their own; anything else is a logged 500.
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from rock_env.errors import RockEnvError
from rock_env.protocol import ErrorBody, error_body, invalid_request
from rock_env.server.metrics import Metrics

logger = logging.getLogger(__name__)

#: Status codes of framework errors -> the error class name we report.
HTTP_ERROR_NAMES = {
    400: "RequestInvalid",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    413: "PayloadTooLarge",
    415: "RequestInvalid",
}
_ERRORS_HELP = "Errors returned, by type."


def json_error(exc: RockEnvError) -> Response:
    """The response for ``exc``."""
    return Response(
        content=error_body(exc).model_dump_json(), status_code=exc.http_status, media_type="application/json"
    )


def _body(body: ErrorBody, headers: dict[str, str] | None = None) -> Response:
    return Response(body.model_dump_json(), status_code=body.status, media_type="application/json", headers=headers)


def error_response(exc: BaseException, method: str, path: str, metrics: Metrics) -> Response:
    """The JSON answer to ``exc`` raised while serving ``method path`` (counted in ``errors_total``)."""
    if isinstance(exc, RequestValidationError):
        exc = invalid_request(exc, f"{method} {path}")
    if isinstance(exc, RockEnvError):
        metrics.inc("errors_total", _ERRORS_HELP, type=type(exc).__name__)
        if exc.http_status >= 500:
            logger.warning("%s %s -> %s: %s", method, path, type(exc).__name__, exc)
        return json_error(exc)
    if isinstance(exc, StarletteHTTPException):
        name = HTTP_ERROR_NAMES.get(exc.status_code, "RequestInvalid")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {method} {path}; see /openapi.json for the API."
        if exc.status_code == 405:
            detail = f"{method} is not allowed on {path}; see /openapi.json."
        metrics.inc("errors_total", _ERRORS_HELP, type=name)
        return _body(ErrorBody(error=name, message=detail, status=exc.status_code), getattr(exc, "headers", None))
    if isinstance(exc, ClientDisconnect):
        # The client went away before its request arrived whole: nobody reads an answer, nothing broke.
        logger.debug("%s %s: the client disconnected mid-request", method, path)
        metrics.inc("client_disconnects_total", "Requests whose client went away before the end.")
        message = "the client disconnected before the request body arrived."
        return _body(ErrorBody(error="RequestInvalid", message=message, status=400))
    logger.error("unexpected error in %s %s", method, path, exc_info=exc)
    metrics.inc("errors_total", _ERRORS_HELP, type="InternalError")
    message = f"internal error: {type(exc).__name__}: {exc}"
    return _body(ErrorBody(error="RockEnvError", message=message, status=500))
