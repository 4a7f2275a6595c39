"""Sandbox requests and answers: ``/api/v1/sandboxes`` (create, run, exec, sessions, processes, files).

The SDK's own models (``SandboxConfig``, ``CommandResult``, ``SandboxInfo``, ``SessionInfo``,
``FileInfo``, ``ProcessInfo``, ``SnapshotInfo`` in :mod:`rock_env.sandbox.models`) travel as
they are; these are the requests around them. The request fields are checked by the same
validators as the local SDK's (:mod:`rock_env.validation`), so both raise the same errors.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from rock_env.protocol.common import JsonDict, WireModel
from rock_env.validation import (
    ENV_NAME_PATTERN,
    MAX_PATH,
    MAX_SESSION_NAME,
    MAX_TIMEOUT,
    NO_NUL_PATTERN,
    check_command,
    check_cwd,
    check_duration,
    check_env,
    check_session_name,
    check_text,
)

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


__all__ = [
    "Command",
    "CommandText",
    "EnvVars",
    "ExecRequest",
    "InterruptRequest",
    "PathText",
    "ProcessHandle",
    "ProcessOutput",
    "ProcessWaitRequest",
    "RestoreRequest",
    "RunRequest",
    "SandboxCreateRequest",
    "SandboxList",
    "SandboxPlacement",
    "SessionCreateRequest",
    "SessionName",
    "SnapshotResponse",
    "SpawnRequest",
    "StreamRequest",
    "Timeout",
]
