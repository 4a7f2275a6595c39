"""ROCK's sandbox API (``/apis/envs/sandbox/v1/...``): the bodies rl-rock's ``Sandbox`` client sends and reads.

Every answer is ROCK's envelope :class:`RockEnvelope` (``{status, message, error, result}``). A
well-formed request that fails answers HTTP 200 with ``status: "Failed"``, as ROCK does (its SDK
reads ``status`` and, on a failed start or delete, ``result.code``: :data:`ROCK_BAD_REQUEST` for
bad input, unknown ids and refused requests, :data:`ROCK_SERVER_ERROR` otherwise); a request that
does not match these models answers HTTP 422 in the same envelope. Request fields follow
``rock.admin.proto.request`` and ``rock.actions``; fields we do not use are accepted (ROCK's
clients send more than they need).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rock_env.protocol.compat import RockRequest
from rock_env.validation import MAX_PATH, MAX_SESSION_NAME, MAX_TIMEOUT

#: ``rock._codes.codes``: a client error (ROCK's SDK raises ``BadRequestRockError``).
ROCK_BAD_REQUEST = 4000
#: ``rock._codes.codes``: a server-side error (``InternalServerRockError``).
ROCK_SERVER_ERROR = 5000
#: The longest sandbox id accepted (ours are ``sbx-`` + 32 hex digits).
MAX_SANDBOX_ID = 128
_TEXT = 1 << 20

SandboxId = str


class RockResult(BaseModel):
    """ROCK's ``SandboxResponse``: what a failed start or delete carries in ``result``."""

    code: int | None = None
    exit_code: int | None = None
    failure_reason: str | None = None


class RockEnvelope(BaseModel):
    """ROCK's ``RockResponse``: every answer of the ROCK sandbox routes (HTTP 200)."""

    status: Literal["Success", "Failed"] = "Success"
    message: str | None = None
    error: str | None = None
    result: Any = None


# --- requests ---------------------------------------------------------------------------------


class RockSandboxRef(RockRequest):
    """A body that names one sandbox (``stop``, ``delete``)."""

    sandbox_id: SandboxId = Field(min_length=1, max_length=MAX_SANDBOX_ID)


class RockSandboxQuery(RockSandboxRef):
    """The query of ``get_status`` and ``is_alive``."""

    include_all_states: bool = False


class RockStartRequest(RockRequest):
    """``start`` / ``start_async``: ROCK's ``SandboxStartRequest``."""

    image: str = Field(min_length=1, max_length=MAX_PATH)
    image_os: str = Field(default="linux", max_length=64)
    auto_clear_time_minutes: int | None = Field(default=None, ge=0, le=525600)
    auto_clear_time: int | None = Field(default=None, ge=0, le=525600)
    pull: str | None = Field(default=None, max_length=16)
    memory: str | int = "8g"
    cpus: float = Field(default=2, gt=0)
    limit_cpus: float | None = Field(default=None, gt=0)
    sandbox_id: SandboxId | None = Field(default=None, min_length=1, max_length=MAX_SANDBOX_ID)
    registry_username: str | None = Field(default=None, max_length=1024)
    registry_password: str | None = Field(default=None, max_length=1024)
    startup_timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT)
    use_kata_runtime: bool = False
    auto_archive_seconds: int | None = Field(default=None, ge=0)
    auto_delete_seconds: int | None = Field(default=None, ge=0)
    disk: str | int | None = None
    num_gpus: float | None = Field(default=None, ge=0)
    accelerator_type: str | None = Field(default=None, max_length=256)


class RockExecuteRequest(RockSandboxRef):
    """``execute``: ROCK's ``SandboxCommand`` (a one-shot command, no session)."""

    command: str | list[str] = Field(max_length=_TEXT)
    timeout: float | None = Field(default=1200, gt=0, le=MAX_TIMEOUT)
    shell: bool = False
    check: bool = False
    error_msg: str = Field(default="", max_length=_TEXT)
    env: dict[str, str] | None = None
    cwd: str | None = Field(default=None, min_length=1, max_length=MAX_PATH)


class RockCreateSessionRequest(RockSandboxRef):
    """``create_session``: ROCK's ``SandboxCreateBashSessionRequest``."""

    session_type: Literal["bash"] = "bash"
    session: str = Field(default="default", min_length=1, max_length=MAX_SESSION_NAME)
    startup_source: list[str] = Field(default_factory=list, max_length=64)
    env_enable: bool = False
    env: dict[str, str] | None = None
    remote_user: str | None = Field(default=None, max_length=256)
    startup_timeout: float = Field(default=1.0, gt=0, le=MAX_TIMEOUT)
    max_read_size: int = Field(default=2000, ge=0)


class RockBashAction(RockSandboxRef):
    """``run_in_session``: ROCK's ``SandboxBashAction``.

    ``check="raise"`` (ROCK's default) answers ``Failed`` when the command exits non-zero, as
    ROCK does (``arun``'s nohup mode relies on it: ``kill -0 PID`` failing means "finished");
    ``"silent"`` answers with the exit code; ``"ignore"`` answers ``exit_code: null``.
    """

    action_type: Literal["bash"] = "bash"
    command: str = Field(max_length=_TEXT)
    session: str = Field(default="default", min_length=1, max_length=MAX_SESSION_NAME)
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT)
    check: Literal["silent", "raise", "ignore"] = "raise"
    is_interactive_command: bool = False
    is_interactive_quit: bool = False
    error_msg: str = Field(default="", max_length=_TEXT)
    expect: list[str] = Field(default_factory=list, max_length=64)


class RockCloseSessionRequest(RockSandboxRef):
    """``close_session``."""

    session_type: Literal["bash"] = "bash"
    session: str = Field(default="default", min_length=1, max_length=MAX_SESSION_NAME)


class RockReadFileRequest(RockSandboxRef):
    """``read_file``: ``encoding`` and ``errors`` as ``Path.read_text`` takes them."""

    path: str = Field(min_length=1, max_length=MAX_PATH)
    encoding: str | None = Field(default=None, max_length=64)
    errors: str | None = Field(default=None, max_length=64)


class RockWriteFileRequest(RockSandboxRef):
    """``write_file``: text content, written as UTF-8."""

    content: str
    path: str = Field(min_length=1, max_length=MAX_PATH)


# --- results ----------------------------------------------------------------------------------


class RockStartResult(RockResult):
    """``start`` / ``start_async`` result: ROCK's ``SandboxStartResponse``."""

    sandbox_id: str | None = None
    host_name: str | None = None
    host_ip: str | None = None
    cpus: float | None = None
    memory: str | None = None
    disk: str | None = None


class RockPhase(BaseModel):
    """One start phase in ``get_status``'s ``status`` (``failed``/``timeout`` ends ROCK's start polling)."""

    status: Literal["waiting", "running", "success", "failed", "timeout"]
    message: str = ""


RockState = Literal["pending", "running", "stopped", "archiving", "archived", "deleted"]


class RockStatusResult(BaseModel):
    """``get_status`` result: ROCK's ``SandboxStatusResponse`` (the fields rock-env knows)."""

    sandbox_id: str
    status: dict[str, RockPhase] = Field(default_factory=dict)
    state: RockState | None = None
    port_mapping: dict[str, Any] | None = None
    host_name: str | None = None
    host_ip: str | None = None
    is_alive: bool = False
    image: str | None = None
    user_id: str | None = None
    experiment_id: str | None = None
    namespace: str | None = None
    cpus: float | None = None
    memory: str | None = None
    disk: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    create_time: str | None = None
    state_history: list[dict[str, Any]] = Field(default_factory=list)


class RockIsAlive(BaseModel):
    """``is_alive`` result."""

    is_alive: bool
    message: str = ""


class RockObservation(BaseModel):
    """``run_in_session`` result: ROCK's ``BashObservation``."""

    session_type: Literal["bash"] = "bash"
    output: str = ""
    exit_code: int | None = None
    failure_reason: str = ""
    expect_string: str = ""


class RockCommandResult(BaseModel):
    """``execute`` result: ROCK's ``CommandResponse`` (rock-env merges stderr into ``stdout``)."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None


class RockSessionResult(BaseModel):
    """``create_session`` / ``close_session`` result."""

    session_type: Literal["bash"] = "bash"
    output: str = ""


class RockFileContent(BaseModel):
    """``read_file`` result."""

    content: str = ""


class RockWriteResult(BaseModel):
    """``write_file`` result."""

    success: bool = False
    message: str = ""


class RockUploadResult(BaseModel):
    """``upload`` result."""

    success: bool = False
    message: str = ""
    file_name: str = ""


__all__ = [
    "MAX_SANDBOX_ID",
    "ROCK_BAD_REQUEST",
    "ROCK_SERVER_ERROR",
    "RockBashAction",
    "RockCloseSessionRequest",
    "RockCommandResult",
    "RockCreateSessionRequest",
    "RockEnvelope",
    "RockExecuteRequest",
    "RockFileContent",
    "RockIsAlive",
    "RockObservation",
    "RockPhase",
    "RockReadFileRequest",
    "RockResult",
    "RockSandboxQuery",
    "RockSandboxRef",
    "RockSessionResult",
    "RockStartRequest",
    "RockStartResult",
    "RockState",
    "RockStatusResult",
    "RockUploadResult",
    "RockWriteFileRequest",
    "RockWriteResult",
]
