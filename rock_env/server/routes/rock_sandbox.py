"""ROCK's sandbox routes (``/apis/envs/sandbox/v1/...``) so that rl-rock's ``Sandbox`` client works unchanged.

Each route parses ROCK's body, runs the call through :class:`~rock_env.server.rock_sandboxes.RockSandboxes`
(the same placement, policy and quotas as ``/api/v1/sandboxes``) and answers in ROCK's envelope
``{"status", "message", "error", "result"}``:

- a request that does not match the route's schema (malformed JSON, a wrong type, a missing or
  out-of-range field, no multipart file) gets HTTP **422** with ``status: "Failed"``, ``error``
  naming the bad fields and ``result.code`` 4000: bad input is a 4xx, as on every other route;
- a well-formed request that fails (an unknown sandbox id, an image neither present nor mapped,
  the policy, a quota, a command that fails its ``check``) gets HTTP **200** with
  ``status: "Failed"``, as ROCK answers: ROCK's SDK reads the envelope, not the HTTP status
  (``write_file``/``upload`` return ``success=False``, ``start``/``delete`` raise
  ``BadRequestRockError`` for ``result.code`` 4000 and ``InternalServerRockError`` for 5000, with
  our message; an HTTP error status would make it raise httpx's bare status error instead).

Nothing here answers a 5xx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from rock_env.errors import InvalidArgument, RequestInvalid, RockEnvError
from rock_env.protocol import (
    ROCK_BAD_REQUEST,
    ROCK_SERVER_ERROR,
    RockBashAction,
    RockCloseSessionRequest,
    RockCreateSessionRequest,
    RockEnvelope,
    RockExecuteRequest,
    RockFileContent,
    RockIsAlive,
    RockReadFileRequest,
    RockRequest,
    RockResult,
    RockSandboxQuery,
    RockSandboxRef,
    RockStartRequest,
    RockUploadResult,
    RockWriteFileRequest,
    RockWriteResult,
    invalid_request,
)
from rock_env.server.rock_sandboxes import RockSandboxes, basename
from rock_env.server.routes._common import ERROR_RESPONSES, body_schema, model_response, owner_of, service_of

logger = logging.getLogger(__name__)

PREFIX = "/apis/envs/sandbox/v1"
router = APIRouter(prefix=PREFIX, tags=["rock-sandbox"])
M = TypeVar("M", bound=BaseModel)
#: ROCK's ``codes.COMMAND_ERROR``: a command that ran and failed (``check``), not a bad request.
ROCK_COMMAND_ERROR = 6000
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": RockEnvelope, "description": "ROCK's envelope: Success, or Failed with result.code"},
    422: {"model": RockEnvelope, "description": "the request does not match the schema: Failed, result.code 4000"},
}
_ANSWERS |= ERROR_RESPONSES


def rock_state(request: Request) -> RockSandboxes:
    """The ROCK state of this app's service (made on first use)."""
    state = getattr(request.app.state, "rock_sandboxes", None)
    if state is None:
        state = RockSandboxes(service_of(request))
        request.app.state.rock_sandboxes = state
    return state


def success(result: Any = None) -> Response:
    """``{"status": "Success", "result": ...}``."""
    return model_response(RockEnvelope(result=result))


def failure(request: Request, exc: BaseException, message: str, status_code: int = 200) -> Response:
    """ROCK's failed answer for ``exc`` (``result.code`` 4000 for our 4xx errors, else 5000)."""
    if isinstance(exc, ValidationError):
        exc = invalid_request(exc, f"{request.method} {request.url.path}")
    if isinstance(exc, RockEnvError):
        service_of(request).count_error(exc)
        code = ROCK_BAD_REQUEST if exc.http_status < 500 else ROCK_SERVER_ERROR
    else:
        logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        code = ROCK_SERVER_ERROR
    error = f"{type(exc).__name__}: {exc}"
    envelope = RockEnvelope(
        status="Failed", message=message, error=error, result=RockResult(code=code, failure_reason=error)
    )
    return model_response(envelope, status_code)


def command_failure(message: str, reason: str, result: BaseModel) -> Response:
    """A command that ran and failed its check: Failed, with its result (code 6000)."""
    data = {**result.model_dump(), "code": ROCK_COMMAND_ERROR, "failure_reason": reason}
    return model_response(RockEnvelope(status="Failed", message=message, error=reason, result=data))


async def json_body(request: Request, model: type[M]) -> M:
    """ROCK's JSON body as ``model`` (strict types; unknown fields accepted)."""
    raw = await request.body()
    if not raw.strip():
        raise RequestInvalid(f"{request.method} {request.url.path} needs a JSON object body.")
    return model.model_validate_json(raw, strict=True)


async def query_body(request: Request, model: type[M]) -> M:
    """The query parameters as ``model`` (one value each)."""
    return model.model_validate(dict(request.query_params))


Parse = Callable[[Request, type[M]], Awaitable[M]]
Handler = Callable[[Request, Any], Awaitable[Response]]


def rock_route(
    path: str, method: str, message: str, model: type[BaseModel], summary: str
) -> Callable[[Handler], Handler]:
    """Register a ROCK route taking ``model`` (the JSON body for POST, the query for GET).

    A request that does not parse is a 422; anything the handler raises is ROCK's failed
    answer with HTTP 200 (see the module docstring).
    """
    parse: Parse[Any] = query_body if method == "GET" else json_body

    def register(fn: Handler) -> Handler:
        async def handler(request: Request) -> Response:
            started = time.perf_counter()
            try:
                try:
                    body = await parse(request, model)
                except (ValidationError, RockEnvError) as exc:
                    return failure(request, exc, message, 422)
                return await fn(request, body)
            except Exception as exc:
                return failure(request, exc, message)
            finally:
                service_of(request).observe(f"rock_{fn.__name__}", time.perf_counter() - started)

        handler.__name__ = f"rock_{fn.__name__}"
        handler.__doc__ = fn.__doc__
        router.add_api_route(
            path,
            handler,
            methods=[method],
            name=f"rock_{fn.__name__}",
            summary=summary,
            response_model=None,
            responses=_ANSWERS,
            openapi_extra=query_schema(model) if method == "GET" else body_schema(model),
        )
        return fn

    return register


def query_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model``'s fields as query parameters."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]
    return {"parameters": params}


# --- lifecycle ---------------------------------------------------------------------------------


@rock_route("/start", "POST", "start sandbox failed", RockStartRequest, "ROCK: start a sandbox")
async def start(request: Request, body: RockStartRequest) -> Response:
    """Start a sandbox and answer once it runs."""
    rock, owner = rock_state(request), owner_of(request)
    obj_id, config, _ = await rock.prepare(owner, body, request.headers)
    return success(await rock.start(owner, obj_id, config))


@rock_route("/start_async", "POST", "async start sandbox failed", RockStartRequest, "ROCK: start a sandbox (async)")
async def start_async(request: Request, body: RockStartRequest) -> Response:
    """Start a sandbox in the background; poll ``get_status`` until ``is_alive`` (or a failed phase)."""
    rock, owner = rock_state(request), owner_of(request)
    obj_id, config, timeout = await rock.prepare(owner, body, request.headers)
    return success(rock.start_async(owner, obj_id, config, timeout))


@rock_route("/get_status", "GET", "get sandbox status failed", RockSandboxQuery, "ROCK: sandbox status")
async def get_status(request: Request, body: RockSandboxQuery) -> Response:
    """``?sandbox_id=...``: pending, running or stopped, with the start's phase."""
    return success(await rock_state(request).status(body.sandbox_id, owner_of(request)))


@rock_route("/is_alive", "GET", "get sandbox is alive failed", RockSandboxQuery, "ROCK: is the sandbox alive")
async def is_alive(request: Request, body: RockSandboxQuery) -> Response:
    """``?sandbox_id=...``: ``{is_alive, message}``."""
    status = await rock_state(request).status(body.sandbox_id, owner_of(request))
    return success(RockIsAlive(is_alive=status.is_alive, message=status.host_name or ""))


@rock_route("/stop", "POST", "stop sandbox failed", RockSandboxRef, "ROCK: stop a sandbox")
async def stop(request: Request, body: RockSandboxRef) -> Response:
    """Stop the sandbox (its status stays readable until ``delete``)."""
    await rock_state(request).stop(body.sandbox_id, owner_of(request))
    return success(f"{body.sandbox_id} stopped")


@rock_route("/delete", "POST", "delete sandbox failed", RockSandboxRef, "ROCK: delete a stopped sandbox")
async def delete(request: Request, body: RockSandboxRef) -> Response:
    """Forget a stopped sandbox."""
    await rock_state(request).delete(body.sandbox_id, owner_of(request))
    return success(f"{body.sandbox_id} deleted")


# --- sessions and commands -------------------------------------------------------------------


@rock_route("/create_session", "POST", "create session failed", RockCreateSessionRequest, "ROCK: create a session")
async def create_session(request: Request, body: RockCreateSessionRequest) -> Response:
    """A persistent bash session."""
    return success(await rock_state(request).create_session(owner_of(request), body))


@rock_route("/run_in_session", "POST", "run in session failed", RockBashAction, "ROCK: run in a session")
async def run_in_session(request: Request, body: RockBashAction) -> Response:
    """A command in a session; ``check="raise"`` and a non-zero exit answer Failed (as ROCK)."""
    observation, failed = await rock_state(request).run_in_session(owner_of(request), body)
    if failed is not None:
        return command_failure("run in session failed", failed, observation)
    return success(observation)


@rock_route("/close_session", "POST", "close session failed", RockCloseSessionRequest, "ROCK: close a session")
async def close_session(request: Request, body: RockCloseSessionRequest) -> Response:
    """Close a session and what runs in it."""
    return success(await rock_state(request).close_session(owner_of(request), body))


@rock_route("/execute", "POST", "execute command failed", RockExecuteRequest, "ROCK: run a one-shot command")
async def execute(request: Request, body: RockExecuteRequest) -> Response:
    """A command outside any session: ``{stdout, stderr, exit_code}`` (stderr merged into stdout)."""
    result, failed = await rock_state(request).execute(owner_of(request), body)
    if failed is not None:
        return command_failure("execute command failed", failed, result)
    return success(result)


# --- files -------------------------------------------------------------------------------------


@rock_route("/read_file", "POST", "read file failed", RockReadFileRequest, "ROCK: read a file")
async def read_file(request: Request, body: RockReadFileRequest) -> Response:
    """A text file's content."""
    return success(RockFileContent(content=await rock_state(request).read_file(owner_of(request), body)))


@rock_route("/write_file", "POST", "write file failed", RockWriteFileRequest, "ROCK: write a file")
async def write_file(request: Request, body: RockWriteFileRequest) -> Response:
    """Write text (UTF-8) to a file, parents created."""
    await rock_state(request).write_file(owner_of(request), body)
    return success(RockWriteResult(success=True, message=f"Successfully write content to file {body.path}"))


@rock_route("/get_token", "GET", "get OSS token failed", RockRequest, "ROCK: object-storage token (not available)")
async def get_token(request: Request, body: RockRequest) -> Response:
    """rock-env has no object storage (OSS): uploads go straight to the sandbox; ROCK's SDK then skips OSS."""
    raise InvalidArgument("object storage (OSS) is not available on rock-env; files are uploaded directly.")


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "target_path", "sandbox_id"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "target_path": {"type": "string", "minLength": 1, "maxLength": 4096},
                        "sandbox_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    },
                }
            }
        },
    }
}


async def upload_form(request: Request) -> tuple[str, str, bytes]:
    """``(target_path, sandbox_id, file bytes)`` from the multipart body; RequestInvalid if malformed."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestInvalid("upload takes multipart/form-data with the fields file, target_path and sandbox_id.")
    async with request.form(max_files=1, max_fields=8) as form:
        repeated = sorted(name for name in ("file", "target_path", "sandbox_id") if len(form.getlist(name)) > 1)
        if repeated:
            raise RequestInvalid(f"upload: the fields {repeated} are given more than once; give each once.")
        upload_file = form.get("file")
        target_path, sandbox_id = form.get("target_path"), form.get("sandbox_id")
        if not isinstance(upload_file, UploadFile):
            raise RequestInvalid("upload needs the multipart field 'file' (the file's bytes).")
        if not isinstance(target_path, str) or not target_path or len(target_path) > 4096:
            raise RequestInvalid("upload needs the field 'target_path': the file's path in the sandbox (1-4096 chars).")
        ref = RockSandboxRef.model_validate({"sandbox_id": sandbox_id})
        return target_path, ref.sandbox_id, await upload_file.read()


async def upload(request: Request) -> Response:
    """Multipart ``file`` + ``target_path`` + ``sandbox_id``: the file written at ``target_path``."""
    started = time.perf_counter()
    message = "upload file failed"
    try:
        try:
            target_path, sandbox_id, data = await upload_form(request)
        except (ValidationError, RockEnvError) as exc:
            return failure(request, exc, message, 422)
        except Exception as exc:  # a body that is not multipart at all
            return failure(
                request, RequestInvalid(f"upload: the body is not valid multipart/form-data ({exc})."), message, 422
            )
        await rock_state(request).write_bytes(owner_of(request), sandbox_id, target_path, data)
        name = basename(target_path)
        return success(
            RockUploadResult(success=True, message=f"uploaded {len(data)} bytes to {target_path}", file_name=name)
        )
    except Exception as exc:
        return failure(request, exc, message)
    finally:
        service_of(request).observe("rock_upload", time.perf_counter() - started)


router.add_api_route(
    "/upload",
    upload,
    methods=["POST"],
    name="rock_upload",
    summary="ROCK: upload a file",
    response_model=None,
    responses=_ANSWERS,
    openapi_extra=_UPLOAD_BODY,
)
