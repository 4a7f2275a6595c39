"""Pydantic models of the sandbox SDK: the config, command results and info records.

These are also the wire models of the server: the remote sandbox client and the admin
exchange exactly these objects, so there is one definition of each.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rock_env.errors import ConfigError
from rock_env.validation import (
    MAX_OUTPUT_LIMIT,
    MAX_PATH,
    MAX_PIDS,
    MAX_SIZE,
    MAX_TTL,
    check_cpus,
    check_duration,
    check_env,
    check_size_bytes,
    check_text,
)

#: Default cap on the output kept from one command (1 MiB).
DEFAULT_OUTPUT_LIMIT = 1 << 20
#: pids limit used when ``SandboxConfig.pids`` is None (a fork bomb stops here).
DEFAULT_PIDS = 1024
#: workspace size limit used when ``SandboxConfig.disk`` is None (runtimes that can limit it).
DEFAULT_DISK = 2 << 30

RuntimeName = Literal["auto", "local", "namespace", "docker"]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int | None, *, field: str = "size") -> int | None:
    """Parse a size such as ``512m``, ``2g``, ``1GiB``, ``1048576`` into bytes (``None`` stays ``None``).

    Units are binary (``k`` = 1024). Raises :class:`ConfigError` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{field}={value!r} is not a size; use bytes (int) or a string like '512m' or '2g'.")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"{field}={value!r} must be a positive number of bytes.")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            number = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
            if number >= 1:
                return int(number)
    raise ConfigError(
        f"{field}={value!r} is not a valid size; use bytes (int) or a number with an optional unit "
        "k, m, g or t, e.g. '512m', '2g', '1GiB'."
    )


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class SandboxConfig(BaseModel):
    """How to build a sandbox: image, runtime, resource limits, network, env and lifetimes.

    ``memory`` and ``disk`` take bytes or strings like ``"512m"``/``"2g"``; a malformed value
    raises :class:`~rock_env.errors.ConfigError`. ``ttl`` is an absolute lifetime in seconds,
    ``idle_ttl`` the longest time without a command; both are enforced even if the owner dies.
    ``disk`` limits the workspace (on the namespace runtime ``/workspace`` and ``/tmp`` each).
    ``pids`` and ``disk`` left at ``None`` get the runtime's safe defaults
    (:data:`DEFAULT_PIDS`, :data:`DEFAULT_DISK`) where the runtime can enforce them.
    """

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    runtime: RuntimeName = "auto"
    cpus: float | None = Field(default=None, gt=0)
    memory: str | int | None = None
    pids: int | None = Field(default=None, gt=0)
    disk: str | int | None = None
    network: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    ttl: float | None = Field(default=None, gt=0)
    idle_ttl: float | None = Field(default=None, gt=0)
    output_limit: int = Field(default=DEFAULT_OUTPUT_LIMIT, gt=0)
    workdir: str = "/workspace"
    labels: dict[str, str] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid SandboxConfig: {_format_validation(exc)}") from exc

    @field_validator("memory", "disk")
    @classmethod
    def _check_size(cls, value: str | int | None, info: Any) -> str | int | None:
        try:
            size = parse_size(value, field=info.field_name)
            if size is not None:
                check_size_bytes(size, info.field_name, high=MAX_SIZE)
        except ConfigError as exc:
            # pydantic turns ValueError into a ValidationError; __init__ turns that into ConfigError.
            raise ValueError(str(exc)) from None
        return value

    @field_validator("workdir")
    @classmethod
    def _check_workdir(cls, value: str) -> str:
        check_text(value, "workdir")
        if not value.startswith("/") or ".." in value.split("/") or len(value) > MAX_PATH:
            raise ValueError(f"workdir={value!r} must be an absolute path without '..', e.g. '/workspace'")
        return value.rstrip("/") or "/"

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str | None) -> str | None:
        if value is not None:
            check_text(value, "image", allow_empty=False)
            if len(value) > MAX_PATH:
                raise ValueError(f"image is {len(value)} characters long; at most {MAX_PATH} are accepted")
        return value

    @field_validator("cpus")
    @classmethod
    def _check_cpus(cls, value: float | None) -> float | None:
        return check_cpus(value)

    @field_validator("pids")
    @classmethod
    def _check_pids(cls, value: int | None) -> int | None:
        if value is not None and value > MAX_PIDS:
            raise ValueError(f"pids={value} is out of range: at most {MAX_PIDS} processes")
        return value

    @field_validator("output_limit")
    @classmethod
    def _check_output_limit(cls, value: int) -> int:
        if value > MAX_OUTPUT_LIMIT:
            raise ValueError(f"output_limit={value} is out of range: at most {MAX_OUTPUT_LIMIT} bytes (1 GiB)")
        return value

    @field_validator("ttl", "idle_ttl")
    @classmethod
    def _check_ttl(cls, value: float | None, info: Any) -> float | None:
        return check_duration(value, info.field_name, cap=MAX_TTL)

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        return check_env(value) or {}

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            check_text(key, "labels key", allow_empty=False)
            check_text(text, f"labels[{key!r}]")
        return value

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes, or ``None`` for no limit."""
        return parse_size(self.memory, field="memory")

    @property
    def disk_bytes(self) -> int | None:
        """The workspace disk limit in bytes, or ``None`` (runtime default)."""
        return parse_size(self.disk, field="disk")

    def tmpfs_size(self, mounts: int = 1) -> tuple[int, bool]:
        """Size of each of ``mounts`` tmpfs mounts of the writable layer, and whether it was capped.

        Each gets ``disk`` (default :data:`DEFAULT_DISK`), but together they get at most half the
        memory limit: tmpfs pages count against the sandbox's memory and cannot be reclaimed, so a
        writable layer as large as the limit would let a full disk OOM-kill every process (and any
        new one). Capped, a full disk is ENOSPC and the other half stays for processes.
        """
        size = self.disk_bytes or DEFAULT_DISK
        memory = self.memory_bytes
        if memory is not None and size * mounts > memory // 2:
            return max(memory // (2 * mounts), 1 << 20), True
        return size, False


class CommandResult(BaseModel):
    """The result of one command: merged stdout/stderr, exit code and how it ended.

    ``exit_code`` is ``None`` when the command did not finish (timeout, killed session).
    ``truncated`` says the output exceeded the limit (a marker line is appended);
    ``session_restarted`` says the bash session had to be replaced to stop the command
    (its cwd, variables and functions are lost); ``oom_killed`` says the memory limit was hit.
    """

    output: str
    exit_code: int | None
    duration: float
    truncated: bool = False
    timed_out: bool = False
    interrupted: bool = False
    session_restarted: bool = False
    oom_killed: bool = False
    output_bytes: int = 0

    @property
    def ok(self) -> bool:
        """True if the command finished with exit code 0."""
        return self.exit_code == 0


class SessionInfo(BaseModel):
    """A persistent bash session inside a sandbox."""

    name: str
    pid: int | None = None
    alive: bool = True
    commands: int = 0
    created_at: float = Field(default_factory=time.time)


FileType = Literal["file", "dir", "symlink", "other"]


class FileInfo(BaseModel):
    """One entry of ``list_dir``."""

    name: str
    path: str
    type: FileType
    size: int
    mode: int
    mtime: float


class ProcessInfo(BaseModel):
    """A background process started with ``spawn``/``start(cmd)``."""

    pid: int | None
    command: str
    running: bool
    exit_code: int | None = None


class SnapshotInfo(BaseModel):
    """A snapshot of the writable layer (the workspace)."""

    id: str
    created_at: float
    size: int = 0


SandboxStatus = Literal["created", "running", "stopped", "dead"]


class SandboxInfo(BaseModel):
    """What is known about a sandbox (``status()``, ``rock-env sandbox list``)."""

    id: str
    runtime: str
    status: SandboxStatus
    image: str | None = None
    created_at: float = Field(default_factory=time.time)
    owner_pid: int | None = None
    state_dir: str | None = None
    sessions: list[str] = Field(default_factory=list)
    expires_at: float | None = None
    config: SandboxConfig | None = None
