"""The sandbox contract: every sandbox operation stated once.

* :data:`OPS` is the ops table: one :class:`SandboxOp` per operation with its HTTP verb and
  path (relative to ``/api/v1/sandboxes``), request and response models, query parameters and
  how the body travels (:class:`Wire`). The server's sandbox routes and the remote clients
  (``RemoteSandbox``, ``AsyncRemoteSandbox``) are derived from it.
* :func:`invoke` runs an op on a local ``Sandbox`` from a parsed request and returns the wire
  answer: what a worker does for every route that the table describes.
* :class:`SandboxAPI` and :class:`AsyncSandboxAPI` (defined in :mod:`rock_env.sandbox.protocols`,
  re-exported here) state the public API of the four sandbox
  classes (``Sandbox``, ``AsyncSandbox``, ``RemoteSandbox``, ``AsyncRemoteSandbox``): same names,
  same kinds, same signatures; the async one has ``arun`` (ROCK's name) besides ``run``.
  ``tests/sandbox/test_contract.py`` checks the four classes against them and against the table.

"Starts on first use": an op whose :attr:`SandboxOp.starts` is true starts a sandbox that is not
started yet (locally the runtime, remotely the server-side sandbox); the others answer without
starting it (``status`` says ``created``, ``sessions``/``snapshots`` are empty, closing a
session or deleting a snapshot raises the not-found error).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel

from rock_env.errors import InvalidArgument
from rock_env.protocol import (
    ExecRequest,
    InterruptRequest,
    Ok,
    ProcessHandle,
    ProcessOutput,
    ProcessWaitRequest,
    RestoreRequest,
    RunRequest,
    SandboxCreateRequest,
    SandboxList,
    SandboxPlacement,
    SessionCreateRequest,
    SnapshotResponse,
    SpawnRequest,
    StreamRequest,
)
from rock_env.sandbox.models import CommandResult, FileInfo, SandboxInfo, SessionInfo, SnapshotInfo
from rock_env.sandbox.protocols import (
    AsyncProcessAPI,
    AsyncSandboxAPI,
    OutputStreamAPI,
    ProcessAPI,
    SandboxAPI,
    StreamTransport,
)

#: The prefix of every path in :data:`OPS`.
PREFIX = "/api/v1/sandboxes"
#: The longest query parameter value (a path in the sandbox).
MAX_QUERY_LENGTH = 4096
HttpMethod = Literal["GET", "POST", "PUT", "DELETE"]
#: What an op acts on: the server's collection of sandboxes, one sandbox, or one background process.
Target = Literal["server", "sandbox", "process"]


class Wire(StrEnum):
    """How an op's request and answer travel."""

    JSON = "json"
    """JSON body (the ``request`` model, or none) in, JSON (the ``response`` type) out."""
    BYTES_IN = "bytes-in"
    """Raw body (``application/octet-stream``) in, JSON out."""
    BYTES_OUT = "bytes-out"
    """No body in, raw bytes (``application/octet-stream``) out."""
    TAR_IN = "tar-in"
    """A tar stream in (one top-level entry), JSON out."""
    TAR_OUT = "tar-out"
    """No body in, a tar stream (``application/x-tar``) out."""
    SSE = "sse"
    """JSON body in, server-sent events out: ``output`` ``{"text"}``..., then ``exit`` or ``error``."""
    WEBSOCKET = "websocket"
    """A WebSocket: the request as the first message, then the same events as JSON messages."""


@dataclass(frozen=True)
class SandboxOp:
    """One sandbox operation: its method, route and wire models."""

    name: str
    """Unique name; for sandbox ops the method name on the sandbox classes."""
    http_method: HttpMethod
    path: str
    """Route path relative to :data:`PREFIX`; path parameters in braces (``{sandbox}``, ``{proc}``, ...)."""
    request: type[BaseModel] | None
    response: Any
    """The answer's type (a model, ``list[Model]``, ``bytes``), or ``None`` for streams."""
    summary: str
    target: Target = "sandbox"
    method: str | None = None
    """The method on the target object (defaults to :attr:`name`; ``None``: no method)."""
    query: tuple[str, ...] = ()
    """Query parameter names; each is a string of 1 to :data:`MAX_QUERY_LENGTH` characters."""
    query_defaults: tuple[tuple[str, str], ...] = ()
    """Defaults of optional query parameters (the others are required)."""
    wire: Wire = Wire.JSON
    starts: bool = True
    """Whether the op starts a sandbox that is not started yet (see the module docstring)."""

    @property
    def attr(self) -> str | None:
        """The method name on the target object."""
        return self.name if self.method is None and self.target != "server" else self.method

    @cached_property
    def path_params(self) -> tuple[str, ...]:
        """The names of the path parameters, in order."""
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{") and part.endswith("}"))

    @cached_property
    def full_path(self) -> str:
        """The path with the API prefix."""
        return PREFIX + self.path

    def url(self, **params: str) -> str:
        """The full path with its parameters filled in (each must be given)."""
        try:
            return self.full_path.format(**params)
        except KeyError as exc:
            raise InvalidArgument(f"{self.name}: missing path parameter {exc}") from None


OPS: tuple[SandboxOp, ...] = (
    # lifecycle
    SandboxOp(
        "create",
        "POST",
        "",
        SandboxCreateRequest,
        SandboxPlacement,
        "Create a sandbox",
        target="server",
        method="start",
    ),
    SandboxOp("list", "GET", "", None, SandboxList, "List sandboxes", target="server"),
    SandboxOp("status", "GET", "/{sandbox}", None, SandboxInfo, "Sandbox status", starts=False),
    SandboxOp("stop", "DELETE", "/{sandbox}", None, Ok, "Stop a sandbox", starts=False),
    # commands
    SandboxOp("run", "POST", "/{sandbox}/run", RunRequest, CommandResult, "Run in a session"),
    SandboxOp("exec", "POST", "/{sandbox}/exec", ExecRequest, CommandResult, "Run a one-shot command"),
    SandboxOp("interrupt", "POST", "/{sandbox}/interrupt", InterruptRequest, Ok, "Ctrl-C a session"),
    SandboxOp("stream", "POST", "/{sandbox}/stream", StreamRequest, None, "Stream a command's output", wire=Wire.SSE),
    SandboxOp(
        "stream_ws",
        "GET",
        "/{sandbox}/stream/ws",
        StreamRequest,
        None,
        "Stream a command's output (WebSocket)",
        method="stream",
        wire=Wire.WEBSOCKET,
    ),
    # sessions
    SandboxOp("create_session", "POST", "/{sandbox}/sessions", SessionCreateRequest, SessionInfo, "Create a session"),
    SandboxOp("sessions", "GET", "/{sandbox}/sessions", None, list[SessionInfo], "List sessions", starts=False),
    SandboxOp("close_session", "DELETE", "/{sandbox}/sessions/{name}", None, Ok, "Close a session", starts=False),
    # background processes
    SandboxOp("spawn", "POST", "/{sandbox}/processes", SpawnRequest, ProcessHandle, "Start a background command"),
    SandboxOp("process", "GET", "/{sandbox}/processes/{proc}", None, ProcessHandle, "Process status", starts=False),
    SandboxOp(
        "process_wait",
        "POST",
        "/{sandbox}/processes/{proc}/wait",
        ProcessWaitRequest,
        ProcessHandle,
        "Wait for a process",
        target="process",
        method="wait",
    ),
    SandboxOp(
        "process_output",
        "GET",
        "/{sandbox}/processes/{proc}/output",
        None,
        ProcessOutput,
        "Output",
        target="process",
        method="output",
    ),
    SandboxOp(
        "process_kill",
        "DELETE",
        "/{sandbox}/processes/{proc}",
        None,
        ProcessHandle,
        "Kill",
        target="process",
        method="kill",
    ),
    # files
    SandboxOp("write_file", "PUT", "/{sandbox}/file", None, Ok, "Write a file", query=("path",), wire=Wire.BYTES_IN),
    SandboxOp("read_file", "GET", "/{sandbox}/file", None, bytes, "Read a file", query=("path",), wire=Wire.BYTES_OUT),
    SandboxOp(
        "list_dir",
        "GET",
        "/{sandbox}/dir",
        None,
        list[FileInfo],
        "List a directory",
        query=("path",),
        query_defaults=(("path", "."),),
    ),
    SandboxOp(
        "upload", "PUT", "/{sandbox}/archive", None, Ok, "Upload (tar stream)", query=("path",), wire=Wire.TAR_IN
    ),
    SandboxOp(
        "download",
        "GET",
        "/{sandbox}/archive",
        None,
        bytes,
        "Download (tar stream)",
        query=("path",),
        wire=Wire.TAR_OUT,
    ),
    # snapshots
    SandboxOp("snapshot", "POST", "/{sandbox}/snapshots", None, SnapshotResponse, "Snapshot"),
    SandboxOp("snapshots", "GET", "/{sandbox}/snapshots", None, list[SnapshotInfo], "List snapshots", starts=False),
    SandboxOp(
        "delete_snapshot", "DELETE", "/{sandbox}/snapshots/{snapshot_id}", None, Ok, "Delete a snapshot", starts=False
    ),
    SandboxOp("restore", "POST", "/{sandbox}/restore", RestoreRequest, Ok, "Restore a snapshot", starts=False),
)

#: The table by op name.
OPS_BY_NAME: Mapping[str, SandboxOp] = {op.name: op for op in OPS}


def op(name: str) -> SandboxOp:
    """The op called ``name``."""
    try:
        return OPS_BY_NAME[name]
    except KeyError:
        raise InvalidArgument(f"no sandbox op {name!r}; known: {sorted(OPS_BY_NAME)}") from None


def check_transport(transport: str) -> None:
    """Raise ``InvalidArgument`` unless ``transport`` is a :data:`StreamTransport`."""
    if transport not in ("sse", "ws"):
        raise InvalidArgument(f"transport must be 'sse' or 'ws', got {transport!r}.")


# --- running an op on a local sandbox (the worker's side) -------------------------------------


def process_handle(proc: ProcessAPI) -> ProcessHandle:
    """The wire handle of a local background process."""
    return ProcessHandle(id=proc.id, pid=proc.pid, command=proc.command, running=proc.running, exit_code=proc.exit_code)


def _kill(proc: Any) -> None:
    """Kill, then wait (at most 5 s) so that the answer carries the exit code."""
    proc.kill()
    proc.wait(5.0)


#: Fixed arguments of some local calls, and the local calls that are more than one method.
_EXTRA_ARGS: Mapping[str, Mapping[str, Any]] = {"read_file": {"binary": True}}


def invoke(
    sandbox: Any,
    op: SandboxOp,
    params: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: Any = None,
) -> Any:
    """Run ``op`` on the local ``sandbox`` (a started ``rock_env.sandbox.Sandbox``) and return the wire answer.

    ``params`` are the path parameters (``sandbox`` itself is ignored), ``query`` the query
    parameters named by ``op.query``, ``body`` the parsed ``op.request`` model; for
    :attr:`Wire.BYTES_IN` the raw bytes, for :attr:`Wire.TAR_IN` the local path of the uploaded
    entry (already extracted) and for :attr:`Wire.TAR_OUT` the local path to download into.

    The answer is an instance of ``op.response`` (``Ok()`` for ops that return nothing, bytes for
    :attr:`Wire.BYTES_OUT`, ``None`` for tar out); for :attr:`Wire.SSE` and
    :attr:`Wire.WEBSOCKET` the local output stream (iterate it, then read ``exit_code``).
    Blocking: call it in a worker thread.
    """
    params = dict(params or {})
    query = dict(query or {})
    if op.target == "server" or op.attr is None:
        raise InvalidArgument(f"{op.name} is a server op, not one of a sandbox")
    target: Any = sandbox
    proc_id = params.pop("proc", None)
    if op.target == "process":
        if proc_id is None:
            raise InvalidArgument(f"{op.name} needs the process id")
        target = sandbox.process(proc_id)
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k != "sandbox"}
    kwargs.update({k: query[k] for k in op.query if k in query})
    if proc_id is not None and op.target == "sandbox":
        kwargs["proc_id"] = proc_id
    if isinstance(body, BaseModel):
        kwargs.update({name: getattr(body, name) for name in type(body).model_fields})
    result = _call_local(target, op, kwargs, body)
    return _answer(op, result, target)


def _call_local(target: Any, op: SandboxOp, kwargs: dict[str, Any], body: Any) -> Any:
    kwargs.update(_EXTRA_ARGS.get(op.name, {}))
    if op.name == "process_kill":
        return _kill(target)
    if op.wire is Wire.BYTES_IN:
        return target.write_file(kwargs["path"], body)
    if op.wire is Wire.TAR_IN:
        return target.upload(os.fspath(body), kwargs["path"])
    if op.wire is Wire.TAR_OUT:
        return target.download(kwargs["path"], os.fspath(body))
    return getattr(target, op.attr or op.name)(**kwargs)


def _answer(op: SandboxOp, result: Any, target: Any) -> Any:
    if op.response is Ok:
        return Ok()
    if op.response is SnapshotResponse:
        return SnapshotResponse(snapshot_id=result)
    if op.response is ProcessOutput:
        return ProcessOutput(output=result)
    if op.response is ProcessHandle:
        return process_handle(target if op.target == "process" else result)
    return result


#: The public methods every sandbox class has (sync names; the async classes add ``arun``).
API_METHODS: tuple[str, ...] = tuple(
    name for name in SandboxAPI.__dict__ if not name.startswith("_") and callable(SandboxAPI.__dict__[name])
)

__all__ = [
    "API_METHODS",
    "MAX_QUERY_LENGTH",
    "OPS",
    "OPS_BY_NAME",
    "PREFIX",
    "AsyncProcessAPI",
    "AsyncSandboxAPI",
    "HttpMethod",
    "OutputStreamAPI",
    "ProcessAPI",
    "SandboxAPI",
    "SandboxOp",
    "StreamTransport",
    "Target",
    "Wire",
    "check_transport",
    "invoke",
    "op",
    "process_handle",
]
