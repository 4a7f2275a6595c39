"""Every request and response that crosses the wire, in one module.

The admin server (:mod:`rock_env.server`), the workers and the clients
(:mod:`rock_env.remote`) all import these models, so the two sides cannot drift apart.
The sandbox models (:class:`SandboxConfig`, :class:`CommandResult`) are the SDK's own
(:mod:`rock_env.sandbox.models`), re-exported here lazily so that env-only users do not
import the sandbox package.

Errors travel as :class:`ErrorBody` (``{"error": "<RockEnvError subclass>", "message": ...}``)
with the class's ``http_status``; :func:`raise_error` turns one back into the same exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from rock_env.errors import RequestInvalid, RockEnvError, error_class
from rock_env.validation import (
    ENV_NAME_PATTERN,
    MAX_PATH,
    MAX_SESSION_NAME,
    MAX_TIMEOUT,
    MAX_TTL,
    NO_NUL_PATTERN,
    check_command,
    check_cwd,
    check_duration,
    check_env,
    check_session_name,
    check_text,
)

if TYPE_CHECKING:
    from rock_env.sandbox.models import (
        CommandResult,
        FileInfo,
        ProcessInfo,
        SandboxConfig,
        SandboxInfo,
        SessionInfo,
        SnapshotInfo,
    )

API_PREFIX = "/api/v1"
#: The header an admin sets when it asks a worker to create an object under a given id.
OBJECT_ID_HEADER = "x-rock-object-id"
#: Largest accepted request body (bytes) unless the server is configured otherwise.
DEFAULT_MAX_BODY = 64 * 1024 * 1024

JsonDict = dict[str, Any]

#: JSON-schema hints for the OpenAPI document; the checks themselves are the validators below.
_TEXT = {"type": "string", "pattern": NO_NUL_PATTERN}
CommandText = Annotated[str, WithJsonSchema({**_TEXT, "maxLength": 1 << 20})]
Command = Annotated[
    str | list[str],
    WithJsonSchema(
        {
            "anyOf": [
                {**_TEXT, "maxLength": 1 << 20},
                {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 65536},
            ]
        }
    ),
]
PathText = Annotated[str, WithJsonSchema({**_TEXT, "minLength": 1, "maxLength": MAX_PATH})]
SessionName = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": "^[^\\u0000-\\u001f/\\u007f]+$", "maxLength": MAX_SESSION_NAME})
]
EnvVars = Annotated[
    dict[str, str],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN, "maxLength": 1024},
            "additionalProperties": _TEXT,
        }
    ),
]
Timeout = Annotated[float, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT})]
IdleTtl = Annotated[float, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TTL})]


class _SandboxInputs:
    """Validators of the sandbox request fields (the same checks as the local SDK's)."""

    @field_validator("cmd", check_fields=False)
    @classmethod
    def _cmd(cls, value: Any) -> Any:
        return check_command(value, "cmd")

    @field_validator("cwd", check_fields=False)
    @classmethod
    def _cwd(cls, value: Any) -> Any:
        return check_cwd(value)

    @field_validator("env", check_fields=False)
    @classmethod
    def _env(cls, value: Any) -> Any:
        return check_env(value)

    @field_validator("timeout", check_fields=False)
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return check_duration(value, "timeout", cap=MAX_TIMEOUT)

    @field_validator("session", check_fields=False)
    @classmethod
    def _session(cls, value: Any) -> Any:
        return check_session_name(value, allow_none=True)


class WireModel(BaseModel):
    """Base of the wire models: unknown fields are rejected so typos fail loudly."""

    model_config = ConfigDict(extra="forbid")


# --- errors --------------------------------------------------------------------------------


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


# --- JSON conversion -----------------------------------------------------------------------


def require_json(value: Any, what: str) -> None:
    """Raise InvalidArgument if ``value`` cannot travel as JSON (e.g. a callable in env kwargs)."""
    import json

    from rock_env.errors import InvalidArgument

    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"{what} must be JSON-serialisable to reach a remote server ({exc}); pass plain values "
            "(str, int, float, bool, None, lists, dicts) or use the local backend."
        ) from None


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars and arrays, tuples, sets, bytes, NaN)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value)


_NDARRAY = "__ndarray__"


def pack_tree(value: Any) -> Any:
    """Like :func:`jsonable`, but numpy arrays keep dtype and shape (``{"__ndarray__": [...], ...}``)."""
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        if value.dtype == object:
            items = [pack_tree(v) for v in flat]
            return {_NDARRAY: items, "dtype": "object", "shape": list(value.shape)}
        return {_NDARRAY: jsonable(flat.tolist()), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(k): pack_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack_tree(v) for v in value]
    return jsonable(value)


def unpack_tree(value: Any) -> Any:
    """The inverse of :func:`pack_tree`."""
    if isinstance(value, dict):
        if _NDARRAY in value and "dtype" in value:
            shape = tuple(value.get("shape") or (len(value[_NDARRAY]),))
            if value["dtype"] == "object":
                array = np.empty(len(value[_NDARRAY]), dtype=object)
                for i, item in enumerate(value[_NDARRAY]):
                    array[i] = unpack_tree(item)
                return array.reshape(shape)
            data = [np.nan if v is None else v for v in value[_NDARRAY]]
            return np.asarray(data, dtype=np.dtype(value["dtype"])).reshape(shape)
        return {k: unpack_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack_tree(v) for v in value]
    return value


# --- envs ----------------------------------------------------------------------------------


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


class BatchStepItem(WireModel):
    """One env and its action in a batched step."""

    env: str = Field(description="instance id")
    action: str = Field(max_length=1 << 20)


class BatchStepRequest(WireModel):
    """``POST /api/v1/envs/step``: step many envs in one request."""

    steps: list[BatchStepItem] = Field(max_length=65536)


class BatchStepResult(BaseModel):
    """Either a step result or the error that env raised (the others still step)."""

    result: EnvStepResponse | None = None
    error: ErrorBody | None = None


class BatchStepResponse(BaseModel):
    """Results in the order of the request."""

    results: list[BatchStepResult]


# --- vector envs ---------------------------------------------------------------------------

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


# --- workers -------------------------------------------------------------------------------


class WorkerCapacity(BaseModel):
    """What a worker can host."""

    cpus: float = Field(ge=0)
    memory: int = Field(ge=0, description="bytes")
    slots: int = Field(ge=0, description="how many envs and sandboxes it hosts at most")
    runtimes: list[str] = Field(default_factory=list, description="sandbox runtimes it has, e.g. ['local', 'docker']")


class WorkerRegisterRequest(WireModel):
    """``POST /api/v1/workers``: a worker joins (or re-joins) the admin."""

    worker_id: str = Field(min_length=1, max_length=128)
    url: str = Field(
        min_length=1, max_length=2048, pattern=r"^https?://\S+$", description="where the admin reaches the worker"
    )
    capacity: WorkerCapacity
    objects: list[str] = Field(default_factory=list, description="ids of the objects it hosts right now")


class WorkerHeartbeatRequest(WireModel):
    """``POST /api/v1/workers/{id}/heartbeat``."""

    objects: list[str] = Field(default_factory=list)
    used_slots: int = Field(default=0, ge=0)


class WorkerHeartbeatResponse(BaseModel):
    """The admin's answer: objects it does not know (orphans) that the worker must close."""

    known: bool = Field(description="False: the admin forgot this worker, register again")
    close: list[str] = Field(default_factory=list)


class WorkerInfo(BaseModel):
    """A worker as the admin sees it."""

    id: str
    url: str
    embedded: bool
    status: Literal["alive", "lost"]
    capacity: WorkerCapacity
    used_slots: int
    last_heartbeat: float


class WorkerList(BaseModel):
    """``GET /api/v1/workers``."""

    workers: list[WorkerInfo]


class Health(BaseModel):
    """``GET /api/v1/health``."""

    status: Literal["ok"] = "ok"
    version: str
    role: Literal["admin", "worker"]
    workers: int
    envs: int
    sandboxes: int


# --- sandboxes -----------------------------------------------------------------------------
# The SDK's own models (SandboxConfig, CommandResult, SandboxInfo, SessionInfo, FileInfo,
# ProcessInfo, SnapshotInfo) travel as they are; these are the requests around them.


class SandboxCreateRequest(WireModel):
    """``POST /api/v1/sandboxes``: the SDK's ``SandboxConfig`` fields as a JSON object."""

    config: JsonDict = Field(default_factory=dict, description="SandboxConfig fields (image, runtime, cpus, ...)")


class SandboxPlacement(BaseModel):
    """A sandbox as the admin tracks it."""

    id: str
    worker_id: str
    created: float
    last_used: float
    status: str
    runtime: str | None = None
    config: JsonDict = Field(default_factory=dict)


class SandboxList(BaseModel):
    """``GET /api/v1/sandboxes``."""

    sandboxes: list[SandboxPlacement]


class RunRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/run``: a command in a persistent bash session."""

    cmd: CommandText = Field(max_length=1 << 20)
    session: SessionName | None = Field(default=None, max_length=MAX_SESSION_NAME)
    timeout: Timeout | None = None

    @field_validator("cmd")
    @classmethod
    def _run_cmd(cls, value: str) -> str:
        return check_text(value, "cmd")


class ExecRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/exec``: a one-shot command, no session."""

    cmd: Command
    cwd: PathText | None = None
    env: EnvVars | None = None
    timeout: Timeout | None = None
    stdin: str | None = None


class SessionCreateRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/sessions``."""

    name: SessionName = Field(min_length=1, max_length=MAX_SESSION_NAME)
    env: EnvVars | None = None
    cwd: PathText | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(check_session_name(value))


class InterruptRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/interrupt``: Ctrl-C in a session (``None``: the default one)."""

    session: SessionName | None = Field(default=None, max_length=MAX_SESSION_NAME)


class SpawnRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/processes``: a background command."""

    cmd: Command
    cwd: PathText | None = None
    env: EnvVars | None = None


class ProcessHandle(BaseModel):
    """A background process in a sandbox; ``id`` names it in later requests."""

    id: str
    pid: int | None = None
    command: str = ""
    running: bool
    exit_code: int | None = None


class ProcessWaitRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/processes/{proc}/wait``."""

    timeout: Timeout | None = None


class ProcessOutput(BaseModel):
    """Output gathered so far by a background process."""

    output: str


class StreamRequest(_SandboxInputs, WireModel):
    """``POST /api/v1/sandboxes/{id}/stream``: run a command and stream its output as server-sent events."""

    cmd: Command
    cwd: PathText | None = None
    env: EnvVars | None = None
    timeout: Timeout | None = None


class SnapshotResponse(BaseModel):
    """``POST /api/v1/sandboxes/{id}/snapshots``."""

    snapshot_id: str


class RestoreRequest(WireModel):
    """``POST /api/v1/sandboxes/{id}/restore``."""

    snapshot_id: str = Field(min_length=1, max_length=256)

    @field_validator("snapshot_id")
    @classmethod
    def _snapshot_id(cls, value: str) -> str:
        return check_text(value, "snapshot_id")


class Ok(BaseModel):
    """A request that returns nothing."""

    ok: bool = True


# --- ROCK compatibility (/apis/v1/envs/gem/...) ---------------------------------------------


class RockMakeRequest(BaseModel):
    """ROCK's ``make`` body; ROCK's client sends only ``env_id``."""

    model_config = ConfigDict(extra="allow")

    env_id: str = Field(min_length=1, max_length=256)


class RockMakeResponse(BaseModel):
    """ROCK names the env instance ``sandbox_id``."""

    sandbox_id: str


class RockResetRequest(BaseModel):
    """ROCK's ``reset`` body."""

    model_config = ConfigDict(extra="allow")

    sandbox_id: str = Field(min_length=1, max_length=256)
    seed: int | None = None


class RockStepRequest(BaseModel):
    """ROCK's ``step`` body."""

    model_config = ConfigDict(extra="allow")

    sandbox_id: str = Field(min_length=1, max_length=256)
    action: str = Field(max_length=1 << 20)


class RockCloseRequest(BaseModel):
    """ROCK's ``close`` body."""

    model_config = ConfigDict(extra="allow")

    sandbox_id: str = Field(min_length=1, max_length=256)


class RockCloseResponse(BaseModel):
    """ROCK's ``close`` answer."""

    sandbox_id: str


class RockListResponse(BaseModel):
    """ROCK's ``list`` answer: env ids available."""

    env_id: list[str]


_SDK_MODELS = frozenset(
    {"SandboxConfig", "CommandResult", "SandboxInfo", "SessionInfo", "FileInfo", "ProcessInfo", "SnapshotInfo"}
)


def __getattr__(name: str) -> Any:
    """Re-export the sandbox SDK's models without importing the sandbox package eagerly."""
    if name in _SDK_MODELS:
        from rock_env.sandbox import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_PREFIX",
    "DEFAULT_MAX_BODY",
    "OBJECT_ID_HEADER",
    "BatchStepItem",
    "BatchStepRequest",
    "BatchStepResponse",
    "BatchStepResult",
    "CommandResult",
    "EnvInfo",
    "EnvList",
    "EnvMakeRequest",
    "EnvResetRequest",
    "EnvResetResponse",
    "EnvStepRequest",
    "EnvStepResponse",
    "ErrorBody",
    "ExecRequest",
    "FileInfo",
    "Health",
    "InterruptRequest",
    "Ok",
    "ProcessHandle",
    "ProcessInfo",
    "ProcessOutput",
    "ProcessWaitRequest",
    "RenderResponse",
    "RestoreRequest",
    "RockCloseRequest",
    "RockCloseResponse",
    "RockListResponse",
    "RockMakeRequest",
    "RockMakeResponse",
    "RockResetRequest",
    "RockStepRequest",
    "RunRequest",
    "SampleActionRequest",
    "SampleActionResponse",
    "SandboxConfig",
    "SandboxCreateRequest",
    "SandboxInfo",
    "SandboxList",
    "SandboxPlacement",
    "SessionCreateRequest",
    "SessionInfo",
    "SnapshotInfo",
    "SnapshotResponse",
    "SpawnRequest",
    "StreamRequest",
    "TextSpaceInfo",
    "ToolCallRequest",
    "ToolCallResponse",
    "VecInfo",
    "VecMakeRequest",
    "VecRenderResponse",
    "VecResetRequest",
    "VecResetResponse",
    "VecSampleResponse",
    "VecStepRequest",
    "VecStepResponse",
    "WorkerCapacity",
    "WorkerHeartbeatRequest",
    "WorkerHeartbeatResponse",
    "WorkerInfo",
    "WorkerList",
    "WorkerRegisterRequest",
    "describe_errors",
    "error_body",
    "exception_from_body",
    "invalid_request",
    "jsonable",
    "pack_tree",
    "raise_error",
    "require_json",
    "unpack_tree",
]
