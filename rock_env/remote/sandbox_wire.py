"""The layer the sync and async remote sandboxes share: requests built from the ops table, answers parsed.

:func:`build` turns an op of :data:`rock_env.sandbox.contract.OPS` and the method's arguments into
a :class:`Call` (verb, URL, query, body); :func:`parse` turns the answer's bytes into the op's
response type. :class:`RemoteState` holds what both remote classes know about their sandbox and
applies the contract's "starts on first use" rule. The tar and server-sent-event helpers are
used by both too. Nothing here does I/O on the network.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from rock_env.errors import (
    InvalidArgument,
    PathOutsideSandbox,
    SandboxClosed,
    SessionNotFound,
    SnapshotNotFound,
)
from rock_env.protocol import Ok, ProcessHandle, SandboxCreateRequest, SandboxPlacement, exception_from_body
from rock_env.protocol.model_service import ModelSandboxCreateRequest, ModelServiceOptions
from rock_env.remote.client import resolve_token, resolve_url
from rock_env.sandbox.contract import OPS_BY_NAME, SandboxOp, check_transport
from rock_env.sandbox.files import check_member
from rock_env.sandbox.local import merge_config
from rock_env.sandbox.models import CommandResult, ProcessInfo, SandboxConfig, SandboxInfo
from rock_env.validation import check_exec, check_paths, check_run, check_session, check_session_name

CHUNK = 1 << 16
#: What to do with an op: send it, start the sandbox first, or answer without the server.
Plan = Literal["send", "start", "answer"]


def _check_write(a: Mapping[str, Any]) -> None:
    check_paths(a["path"])
    if not isinstance(a["content"], str | bytes):
        raise InvalidArgument(f"content must be str or bytes, got {type(a['content']).__name__}")


def _check_run(a: Mapping[str, Any]) -> None:
    check_run(a["cmd"], a.get("session"), a.get("timeout"))
    if not isinstance(a["cmd"], str):
        raise InvalidArgument(f"run() takes a command string, got {type(a['cmd']).__name__}; use exec() for argv lists")


def _check_stream(a: Mapping[str, Any]) -> None:
    check_exec(a["cmd"], a.get("cwd"), a.get("env"), a.get("timeout"))
    check_transport(a.get("transport", "sse"))


#: The argument checks of each op: the same functions the local sandbox applies.
CHECKS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "run": _check_run,
    "exec": lambda a: check_exec(a["cmd"], a.get("cwd"), a.get("env"), a.get("timeout")),
    "stream": _check_stream,
    "stream_ws": _check_stream,
    "spawn": lambda a: check_exec(a["cmd"], a.get("cwd"), a.get("env")),
    "interrupt": lambda a: check_session_name(a.get("session"), allow_none=True),
    "create_session": lambda a: check_session(a["name"], a.get("env"), a.get("cwd")),
    "close_session": lambda a: check_session_name(a["name"]),
    "write_file": _check_write,
    "read_file": lambda a: check_paths(a["path"]),
    "list_dir": lambda a: check_paths(a["path"]),
    "upload": lambda a: check_paths(a["path"]),
    "download": lambda a: check_paths(a["path"]),
}


def check(op: SandboxOp, args: Mapping[str, Any]) -> None:
    """Check the method's arguments of ``op`` as the local sandbox does (before anything is sent or started)."""
    checker = CHECKS.get(op.name)
    if checker is not None:
        checker(args)


@dataclass(frozen=True)
class Call:
    """One HTTP request of an op."""

    op: SandboxOp
    method: str
    url: str
    params: dict[str, str] | None
    body: BaseModel | None
    content: Any = None
    timeout: float | None = None


def build(op: SandboxOp, sandbox_id: str | None, /, *, http_timeout: float | None = None, **args: Any) -> Call:
    """The request of ``op`` with the method's arguments ``args`` (check them first with :func:`check`)."""
    path = {p: str(args[p]) for p in op.path_params if p != "sandbox"}
    if "sandbox" in op.path_params:
        path["sandbox"] = str(sandbox_id)
    params = {k: str(args[k]) for k in op.query if k in args} or None
    body = args.get("body")
    if body is None and op.request is not None:
        body = op.request(**{k: _wire_value(args[k]) for k in _fields(op.request) if k in args})
    return Call(op, op.http_method, op.url(**path), params, body, args.get("content"), http_timeout)


@cache
def _fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(model.model_fields)


def _wire_value(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


@cache
def _adapter(response: Any) -> TypeAdapter[Any]:
    return TypeAdapter(response)


def parse(op: SandboxOp, content: bytes) -> Any:
    """The answer of ``op`` as its response type (``None`` for ``Ok``, raw bytes for byte answers)."""
    if op.response is bytes:
        return content
    if op.response is Ok:
        return None
    return _adapter(op.response).validate_json(content)


class RemoteState:
    """What a remote sandbox knows of itself, shared by the sync and async classes.

    ``RemoteSandbox(config=None, *, base_url=None, token=None, timeout=600.0, **config_fields)``:
    the subclass's ``_client`` is the process's shared client for the server (never closed here: it is
    the one bounded pool that every remote env, vector env and sandbox of the process uses).
    """

    config: SandboxConfig
    id: str | None
    placement: SandboxPlacement | None
    _stopped: bool
    _base_url: str
    _token: str | None
    _timeout: float

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        model_service: Any = None,
        **fields: Any,
    ) -> None:
        #: the model service the worker attaches (``None``: none)
        self.model_service = model_service_options(model_service)
        self.config = merge_config(config, fields)
        self.id = None
        self.placement = None
        self._stopped = False
        self._base_url = resolve_url(base_url)
        self._token = resolve_token(token)
        self._timeout = timeout

    @property
    def base_url(self) -> str:
        """The server."""
        return self._base_url

    @property
    def runtime(self) -> str | None:
        """The runtime the worker picked, once started."""
        return None if self.placement is None else self.placement.runtime

    def _create_call(self) -> Call:
        config = self.config.model_dump(mode="json", exclude_defaults=True)
        if self.model_service is not None:  # the worker hosting it serves its model endpoint
            op = OPS_BY_NAME["create"]
            body = ModelSandboxCreateRequest(config=config, model_service=self.model_service)
            return Call(op, "POST", MODEL_SANDBOXES_PATH, None, body)
        return build(OPS_BY_NAME["create"], None, body=SandboxCreateRequest(config=config))

    def _created(self, placement: SandboxPlacement) -> None:
        self.placement = placement
        self.id = placement.id

    def _closed(self) -> SandboxClosed:
        return SandboxClosed(f"sandbox {self.id} was stopped; create a new {type(self).__name__}")

    def _check_start(self) -> bool:
        """Whether ``start`` must create the sandbox on the server (``SandboxClosed`` once stopped)."""
        if self._stopped:
            raise self._closed()
        return self.id is None

    def _plan(self, op: SandboxOp) -> Plan:
        """The contract's rule: ops that start a sandbox start it; the others answer without the server."""
        if self.id is not None and not self._stopped:
            return "send"
        if op.starts and not self._stopped:
            return "start"
        if self._stopped and op.name not in ("status", "sessions", "snapshots"):
            raise self._closed()
        return "answer"

    def _answer(self, op: SandboxOp, args: Mapping[str, Any]) -> Any:
        """The answer of an op that does not start a sandbox which is not running (as the local sandbox's)."""
        if op.name == "status":
            state: Literal["stopped", "created"] = "stopped" if self._stopped else "created"
            return SandboxInfo(id=self.id or "", runtime=self.runtime or self.config.runtime, status=state)
        if op.name in ("sessions", "snapshots"):
            return []
        if op.name == "close_session":
            raise SessionNotFound(f"no session {args['name']!r}: the sandbox is not started")
        if op.name in ("delete_snapshot", "restore"):
            raise SnapshotNotFound(f"no snapshot {args['snapshot_id']!r}: the sandbox is not started")
        raise InvalidArgument(f"no background process {args.get('proc')!r}: the sandbox is not started.")

    def _live(self) -> bool:
        return self.id is not None and not self._stopped


#: where a sandbox with a model service is created (rock_env.server.routes.model_service)
MODEL_SANDBOXES_PATH = "/api/v1/model-service/sandboxes"


def model_service_options(value: Any) -> ModelServiceOptions | None:
    """The model service a remote sandbox asks for: ``True``, a dict of options (``timeout``, ``model``),
    :class:`ModelServiceOptions`, or a :class:`~rock_env.agents.RemoteModelService` (its options)."""
    if value is None or value is False:
        return None
    if value is True:
        return ModelServiceOptions()
    if isinstance(value, ModelServiceOptions):
        return value
    if isinstance(value, dict):
        try:
            return ModelServiceOptions(**value)
        except ValueError as exc:
            raise InvalidArgument(f"bad model_service options {value!r}: {exc}") from None
    options = getattr(value, "options", None)
    if isinstance(options, ModelServiceOptions):
        return options
    raise InvalidArgument(
        f"a remote sandbox (base_url=...) takes model_service=True (or a dict of options, or "
        f"ModelService.connect(base_url)), not {type(value).__name__}: a local ModelService cannot reach a sandbox "
        "on a server; answer its requests with ModelService.connect(base_url)"
    )


class RemoteProcessState:
    """What a remote process handle knows (its sandbox, last handle and start time), shared by sync and async."""

    def __init__(self, sandbox: Any, handle: ProcessHandle, started: float | None = None) -> None:
        self._sandbox = sandbox
        self._handle = handle
        self.id = handle.id
        self.pid = handle.pid
        self.command = handle.command
        self._started = time.monotonic() if started is None else started

    def _result(self, code: int | None, output: str) -> CommandResult:
        """The :class:`CommandResult` of a wait (the duration is measured here, from the spawn request on)."""
        timed_out = code is None and self._handle.running
        return CommandResult(
            output=output, exit_code=code, duration=time.monotonic() - self._started, timed_out=timed_out
        )

    @staticmethod
    def _wait_timeout(timeout: float | None) -> float | None:
        """The HTTP timeout of a wait of ``timeout`` seconds."""
        return None if timeout is None else timeout + 30.0

    @staticmethod
    def _info(h: ProcessHandle) -> ProcessInfo:
        return ProcessInfo(pid=h.pid, command=h.command, running=h.running, exit_code=h.exit_code)


# --- tar streams -------------------------------------------------------------------------------


def tar_of(local: str | os.PathLike[str], remote: str) -> Path:
    """A temporary tar of ``local`` (file or directory) whose top-level entry is ``remote``'s base name."""
    source = Path(local)
    if not source.exists():
        raise InvalidArgument(f"local path {str(source)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="rock-env-upload-", suffix=".tar")
    os.close(fd)
    with tarfile.open(tmp, "w") as tar:
        tar.add(source, arcname=os.path.basename(remote.rstrip("/")) or "workspace")
    return Path(tmp)


def download_file() -> tuple[int, Path]:
    """A temporary file to receive a downloaded tar stream (descriptor, path)."""
    fd, tmp = tempfile.mkstemp(prefix="rock-env-download-", suffix=".tar")
    return fd, Path(tmp)


def extract_to(archive: Path, local: str | os.PathLike[str], remote: str) -> None:
    """Extract a downloaded tar (one top-level entry, members checked) to ``local``; remove the archive."""
    target = Path(local)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                check_member(member)
                _, _, rest = member.name.partition("/")
                member.name = target.name + ("/" + rest if rest else "")
                tar.extract(member, target.parent, filter="data")
    except tarfile.TarError as exc:
        raise PathOutsideSandbox(f"the server sent a bad tar stream for {remote!r}: {exc}") from exc
    finally:
        archive.unlink(missing_ok=True)


# --- server-sent events ------------------------------------------------------------------------


class SseDecoder:
    """Server-sent events, one line at a time: :meth:`feed` returns each chunk of output.

    ``output`` events give their text; ``exit`` sets :attr:`done`, :attr:`exit_code` and
    :attr:`timed_out`; ``error`` raises its typed error.
    """

    def __init__(self) -> None:
        self.done = False
        self.exit_code: int | None = None
        self.timed_out = False
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """The output text completed by ``line``, or ``None``."""
        if line.startswith("event:"):
            self._event = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].strip())
        elif line == "" and self._data:
            payload = json.loads("\n".join(self._data))
            event, self._event, self._data = self._event, "message", []
            if event == "output":
                return str(payload["text"])
            if event == "error":
                raise exception_from_body(payload)
            self.exit_code = payload.get("exit_code")
            self.timed_out = bool(payload.get("timed_out"))
            self.done = True
        return None


__all__ = [
    "CHECKS",
    "CHUNK",
    "Call",
    "RemoteProcessState",
    "RemoteState",
    "SseDecoder",
    "build",
    "check",
    "download_file",
    "extract_to",
    "model_service_options",
    "parse",
    "tar_of",
]
