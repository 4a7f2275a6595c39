"""Sandbox routes: create, status, list, run/exec, sessions, background processes, streamed
output (server-sent events), files and archives (streamed), snapshots, stop.

Every route first finds the sandbox's record; if another worker hosts it, the request is
forwarded there as a stream (body and answer), otherwise the local SDK object serves it in
a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from rock_env.errors import InvalidArgument, PathOutsideSandbox, RockEnvError
from rock_env.protocol import (
    OBJECT_ID_HEADER,
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
    error_body,
)
from rock_env.sandbox.files import check_member
from rock_env.sandbox.models import CommandResult, FileInfo, SandboxInfo, SessionInfo, SnapshotInfo
from rock_env.server.peer import proxy_request
from rock_env.server.policy import sandbox_config_of
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    body_schema,
    check_peer_response,
    model_response,
    owner_of,
    parse_body,
    parse_peer,
    service_of,
)
from rock_env.server.service import Service, WorkerEntry, new_id
from rock_env.server.store import ObjectRecord

router = APIRouter(prefix="/api/v1/sandboxes", tags=["sandboxes"])
_CHUNK = 1 << 16


async def _local_or_proxy(request: Request, sandbox: str) -> tuple[Service, ObjectRecord, Response | None]:
    """The record, and the forwarded answer if another worker hosts the sandbox."""
    svc = service_of(request)
    rec = svc.lookup(sandbox, ("sandbox",), owner_of(request))
    if svc.is_local(rec):
        return svc, rec, None
    entry = svc.entry_of(rec)
    assert entry.peer is not None
    resp = await proxy_request(
        entry.peer, request.method, request.url.path, dict(request.query_params), request.stream()
    )
    if resp.status_code >= 400:
        await resp.aread()
        await resp.aclose()
        check_peer_response(svc, rec, resp)
    return (
        svc,
        rec,
        StreamingResponse(
            resp.aiter_raw(),
            status_code=resp.status_code,
            media_type=resp.headers.get("content-type"),
            background=BackgroundTask(resp.aclose),
        ),
    )


def _sdk(svc: Service, sandbox: str) -> Any:
    assert svc.worker is not None
    return svc.worker.sandbox(sandbox)


def _placement(rec: ObjectRecord) -> SandboxPlacement:
    return SandboxPlacement.model_validate(rec.info | {"last_used": rec.last_used, "status": _status_name(rec)})


def _status_name(rec: ObjectRecord) -> str:
    return "running" if rec.status == "live" else rec.status


# --- lifecycle -------------------------------------------------------------------------------


@router.post(
    "",
    response_model=SandboxPlacement,
    responses=ERROR_RESPONSES,
    summary="Create a sandbox",
    openapi_extra=body_schema(SandboxCreateRequest),
)
async def create_sandbox(request: Request) -> Response:
    """Start a sandbox on a worker that has the requested runtime.

    Before anything is placed the config is validated (422, as the local SDK) and the server's
    policy applied (403): ``runtime="local"`` only if the server allows it (``worker.allow_local_runtime``),
    an image that is a host path only under ``worker.data_dirs``; ``runtime="auto"`` is resolved
    here, never to ``local`` unless allowed. Then the token's quota (429).
    """
    svc = service_of(request)
    owner = owner_of(request)
    body = await parse_body(request, SandboxCreateRequest)
    config = {**svc.settings.runtime, **body.config}
    sandbox_config_of(config)  # a bad config is a 422 (ConfigError, as locally) before anything is placed
    svc.policy.check_sandbox_fields(body.config)
    forced = request.headers.get(OBJECT_ID_HEADER) if svc.role == "worker" else None
    obj_id = forced or new_id("sbx")
    started = time.perf_counter()
    chosen: dict[str, str] = {}

    def choose() -> WorkerEntry:
        entry, chosen["runtime"] = svc.place_sandbox(1, config.get("runtime"))
        return entry

    async def create(entry: WorkerEntry) -> SandboxPlacement:
        placed = {**config, "runtime": chosen["runtime"]}
        if entry.embedded:
            assert svc.worker is not None
            return await svc.blocking(svc.worker.create_sandbox, obj_id, placed)
        assert entry.peer is not None
        resp = await entry.peer.request(
            "POST",
            "/api/v1/sandboxes",
            content=SandboxCreateRequest(config=placed).model_dump_json().encode(),
            headers=svc.object_headers(obj_id),
            what="creating a sandbox",
        )
        return parse_peer(svc, None, resp, SandboxPlacement)

    with svc.hold_quota(owner, "sandbox", 1):
        svc.reserve(obj_id)
        try:
            entry, info = await svc.create_placed(choose, create, "creating a sandbox")
            placed = {**config, "runtime": chosen["runtime"]}
            idle_ttl = config.get("idle_ttl") if isinstance(config.get("idle_ttl"), int | float) else None
            svc.add_record(obj_id, "sandbox", entry, owner, 1, {"config": placed}, info.model_dump(), idle_ttl)
        finally:
            svc.release(obj_id)
    svc.observe("sandbox_create", time.perf_counter() - started)
    return model_response(info)


@router.get("", response_model=SandboxList, responses=ERROR_RESPONSES, summary="List sandboxes")
async def list_sandboxes(request: Request) -> Response:
    """The caller's sandboxes (live and lost)."""
    svc = service_of(request)
    return model_response(SandboxList(sandboxes=[_placement(r) for r in svc.records_of(owner_of(request), "sandbox")]))


@router.get("/{sandbox}", response_model=SandboxInfo, responses=ERROR_RESPONSES, summary="Sandbox status")
async def sandbox_status(sandbox: str, request: Request) -> Response:
    """The SDK's ``status()`` of the sandbox."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    return model_response(await svc.blocking(_sdk(svc, sandbox).status))


@router.delete("/{sandbox}", response_model=Ok, responses=ERROR_RESPONSES, summary="Stop a sandbox")
async def stop_sandbox(sandbox: str, request: Request) -> Response:
    """Stop the sandbox and free its slot (a lost sandbox is just forgotten)."""
    svc = service_of(request)
    if svc.forget_lost(sandbox, "sandbox", owner_of(request)):
        return model_response(Ok())
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    svc.drop_record(sandbox)
    if forwarded is not None:
        return forwarded
    assert svc.worker is not None
    await svc.blocking(svc.worker.stop_sandbox, sandbox)
    return model_response(Ok())


# --- commands --------------------------------------------------------------------------------


@router.post(
    "/{sandbox}/run",
    response_model=CommandResult,
    responses=ERROR_RESPONSES,
    summary="Run in a session",
    openapi_extra=body_schema(RunRequest),
)
async def run(sandbox: str, request: Request) -> Response:
    """Run a command in a persistent bash session (the default session if none is named)."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, RunRequest)
    started = time.perf_counter()
    result = await svc.blocking(_sdk(svc, sandbox).run, body.cmd, session=body.session, timeout=body.timeout)
    svc.observe("sandbox_run", time.perf_counter() - started)
    return model_response(result)


@router.post(
    "/{sandbox}/exec",
    response_model=CommandResult,
    responses=ERROR_RESPONSES,
    summary="Run a one-shot command",
    openapi_extra=body_schema(ExecRequest),
)
async def exec_(sandbox: str, request: Request) -> Response:
    """Run one command outside any session."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, ExecRequest)
    started = time.perf_counter()
    result = await svc.blocking(
        _sdk(svc, sandbox).exec, body.cmd, cwd=body.cwd, env=body.env, timeout=body.timeout, stdin=body.stdin
    )
    svc.observe("sandbox_exec", time.perf_counter() - started)
    return model_response(result)


@router.post(
    "/{sandbox}/interrupt",
    response_model=Ok,
    responses=ERROR_RESPONSES,
    summary="Ctrl-C a session",
    openapi_extra=body_schema(InterruptRequest),
)
async def interrupt(sandbox: str, request: Request) -> Response:
    """Send SIGINT to the command running in a session."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, InterruptRequest)
    await svc.blocking(_sdk(svc, sandbox).interrupt, body.session)
    return model_response(Ok())


async def local_output_events(svc: Service, sandbox: str, body: StreamRequest) -> AsyncGenerator[tuple[str, Any]]:
    """Run ``body``'s command in a sandbox of this process; yield its events as they come.

    The first item is ``("started", {})`` once the command runs (errors starting it are raised);
    then ``("output", {"text": ...})`` items and one last ``("exit", {"exit_code", "timed_out"})``
    or ``("error", ErrorBody dict)``. Closing the generator early kills the command.
    """
    out = await svc.blocking(_sdk(svc, sandbox).stream, body.cmd, cwd=body.cwd, env=body.env, timeout=body.timeout)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=256)

    def put(item: tuple[str, Any], timeout: float | None = None) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result(timeout=timeout)

    def pump() -> None:
        try:
            for chunk in out:
                put(("output", {"text": chunk}))
            put(("exit", {"exit_code": out.exit_code, "timed_out": out.timed_out}))
        except RockEnvError as exc:
            put(("error", error_body(exc).model_dump()))
        except Exception as exc:  # the client went away (loop closed) or the pipe broke
            with contextlib.suppress(Exception):
                put(("error", {"error": "SandboxError", "message": str(exc), "status": 500}), timeout=1)

    task: asyncio.Future[None] | None = None
    try:
        yield "started", {}
        task = asyncio.ensure_future(svc.blocking(pump))
        while True:
            item = await queue.get()
            yield item
            if item[0] != "output":
                return
    finally:
        out.close()
        while task is not None and not task.done():
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)


@router.post(
    "/{sandbox}/stream",
    responses=ERROR_RESPONSES | {200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    summary="Stream a command's output",
    openapi_extra=body_schema(StreamRequest),
)
async def stream(sandbox: str, request: Request) -> Response:
    """Run a command and stream its output as server-sent events.

    Events: ``output`` (``{"text": ...}``) as output comes, then one ``exit``
    (``{"exit_code": ..., "timed_out": ...}``), or ``error`` (an ErrorBody).
    """
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, StreamRequest)
    source = local_output_events(svc, sandbox, body)
    await anext(source)  # ("started", {}): a command that cannot start is an HTTP error, not an event

    async def events() -> AsyncIterator[bytes]:
        try:
            async for kind, payload in source:
                yield f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()
        finally:
            await source.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


# --- sessions --------------------------------------------------------------------------------


@router.post(
    "/{sandbox}/sessions",
    response_model=SessionInfo,
    responses=ERROR_RESPONSES,
    summary="Create a session",
    openapi_extra=body_schema(SessionCreateRequest),
)
async def create_session(sandbox: str, request: Request) -> Response:
    """Open a named persistent bash session."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, SessionCreateRequest)
    info = await svc.blocking(_sdk(svc, sandbox).create_session, body.name, env=body.env, cwd=body.cwd)
    return model_response(info)


@router.get("/{sandbox}/sessions", response_model=list[SessionInfo], responses=ERROR_RESPONSES, summary="List sessions")
async def list_sessions(sandbox: str, request: Request) -> Response:
    """The open sessions."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    infos = await svc.blocking(_sdk(svc, sandbox).sessions)
    return Response(json.dumps([i.model_dump(mode="json") for i in infos]), media_type="application/json")


@router.delete("/{sandbox}/sessions/{name}", response_model=Ok, responses=ERROR_RESPONSES, summary="Close a session")
async def close_session(sandbox: str, name: str, request: Request) -> Response:
    """Close a session (its shell and children are killed)."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    await svc.blocking(_sdk(svc, sandbox).close_session, name)
    return model_response(Ok())


# --- background processes --------------------------------------------------------------------


def _handle(proc_id: str, proc: Any) -> ProcessHandle:
    return ProcessHandle(id=proc_id, pid=proc.pid, command=proc.command, running=proc.running, exit_code=proc.exit_code)


@router.post(
    "/{sandbox}/processes",
    response_model=ProcessHandle,
    responses=ERROR_RESPONSES,
    summary="Start a background command",
    openapi_extra=body_schema(SpawnRequest),
)
async def spawn(sandbox: str, request: Request) -> Response:
    """Start a command in the background."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, SpawnRequest)
    proc = await svc.blocking(_sdk(svc, sandbox).spawn, body.cmd, cwd=body.cwd, env=body.env)
    assert svc.worker is not None
    return model_response(_handle(svc.worker.add_process(sandbox, proc), proc))


@router.get(
    "/{sandbox}/processes/{proc}", response_model=ProcessHandle, responses=ERROR_RESPONSES, summary="Process status"
)
async def process_status(sandbox: str, proc: str, request: Request) -> Response:
    """Whether it runs, and its exit code."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    assert svc.worker is not None
    return model_response(_handle(proc, svc.worker.process(sandbox, proc)))


@router.post(
    "/{sandbox}/processes/{proc}/wait",
    response_model=ProcessHandle,
    responses=ERROR_RESPONSES,
    summary="Wait for a process",
    openapi_extra=body_schema(ProcessWaitRequest),
)
async def process_wait(sandbox: str, proc: str, request: Request) -> Response:
    """Wait up to ``timeout`` seconds for the end."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, ProcessWaitRequest)
    assert svc.worker is not None
    handle = svc.worker.process(sandbox, proc)
    await svc.blocking(handle.wait, body.timeout)
    return model_response(_handle(proc, handle))


@router.get(
    "/{sandbox}/processes/{proc}/output", response_model=ProcessOutput, responses=ERROR_RESPONSES, summary="Output"
)
async def process_output(sandbox: str, proc: str, request: Request) -> Response:
    """The output gathered so far."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    assert svc.worker is not None
    return model_response(ProcessOutput(output=svc.worker.process(sandbox, proc).output()))


@router.delete("/{sandbox}/processes/{proc}", response_model=ProcessHandle, responses=ERROR_RESPONSES, summary="Kill")
async def process_kill(sandbox: str, proc: str, request: Request) -> Response:
    """SIGKILL the process and its descendants."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    assert svc.worker is not None
    handle = svc.worker.process(sandbox, proc)
    await svc.blocking(handle.kill)
    await svc.blocking(handle.wait, 5.0)
    return model_response(_handle(proc, handle))


# --- files -----------------------------------------------------------------------------------


@router.put(
    "/{sandbox}/file",
    response_model=Ok,
    responses=ERROR_RESPONSES,
    summary="Write a file",
    openapi_extra={
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def write_file(sandbox: str, request: Request, path: str = Query(min_length=1, max_length=4096)) -> Response:
    """Write the raw body to ``path`` (parents created)."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    data = await request.body()
    await svc.blocking(_sdk(svc, sandbox).write_file, path, data)
    return model_response(Ok())


@router.get(
    "/{sandbox}/file",
    responses=ERROR_RESPONSES | {200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}},
    summary="Read a file",
)
async def read_file(sandbox: str, request: Request, path: str = Query(min_length=1, max_length=4096)) -> Response:
    """The file's bytes."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    data = await svc.blocking(_sdk(svc, sandbox).read_file, path, True)
    return Response(data, media_type="application/octet-stream")


@router.get("/{sandbox}/dir", response_model=list[FileInfo], responses=ERROR_RESPONSES, summary="List a directory")
async def list_dir(sandbox: str, request: Request, path: str = Query(default=".", max_length=4096)) -> Response:
    """Entries of a directory."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    entries = await svc.blocking(_sdk(svc, sandbox).list_dir, path)
    return Response(json.dumps([e.model_dump(mode="json") for e in entries]), media_type="application/json")


@router.put(
    "/{sandbox}/archive",
    response_model=Ok,
    responses=ERROR_RESPONSES,
    summary="Upload (tar stream)",
    openapi_extra={
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def upload(sandbox: str, request: Request, path: str = Query(min_length=1, max_length=4096)) -> Response:
    """Upload a tar stream whose single top-level entry becomes ``path`` in the sandbox (streamed to disk)."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    tmp = Path(tempfile.mkdtemp(prefix="rock-env-upload-"))
    try:
        archive = tmp / "upload.tar"
        with archive.open("wb") as fh:
            async for chunk in request.stream():
                fh.write(chunk)
        top = await svc.blocking(_extract_single, archive, tmp / "x")
        await svc.blocking(_sdk(svc, sandbox).upload, str(top), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model_response(Ok())


def _extract_single(archive: Path, dest: Path) -> Path:
    """Extract a tar with exactly one top-level entry (members checked); that entry's path."""
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) != 1 or not members:
                raise InvalidArgument(f"the upload must be a tar with one top-level entry, got {sorted(tops)[:5]}.")
            for m in members:
                check_member(m)  # the same rules (and error) as every runtime's archive writer
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise PathOutsideSandbox(f"the upload has a member that would leave the sandbox: {exc}") from exc
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the upload is not a valid tar stream: {exc}") from exc
    return dest / tops.pop()


@router.get(
    "/{sandbox}/archive",
    responses=ERROR_RESPONSES | {200: {"content": {"application/x-tar": {}}, "description": "tar stream"}},
    summary="Download (tar stream)",
)
async def download(sandbox: str, request: Request, path: str = Query(min_length=1, max_length=4096)) -> Response:
    """A tar stream of ``path`` (file or directory) whose top-level entry is its base name."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    tmp = Path(tempfile.mkdtemp(prefix="rock-env-download-"))
    try:
        name = os.path.basename(path.rstrip("/")) or "workspace"
        await svc.blocking(_sdk(svc, sandbox).download, path, str(tmp / name))
        archive = tmp / "download.tar"
        await svc.blocking(_make_tar, tmp / name, archive, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    async def chunks() -> AsyncIterator[bytes]:
        with archive.open("rb") as fh:
            while data := fh.read(_CHUNK):
                yield data

    return StreamingResponse(
        chunks(), media_type="application/x-tar", background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
    )


def _make_tar(source: Path, archive: Path, name: str) -> None:
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=name)


# --- snapshots -------------------------------------------------------------------------------


@router.post("/{sandbox}/snapshots", response_model=SnapshotResponse, responses=ERROR_RESPONSES, summary="Snapshot")
async def snapshot(sandbox: str, request: Request) -> Response:
    """Save the workspace; the id restores it."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    snapshot_id = await svc.blocking(_sdk(svc, sandbox).snapshot)
    return model_response(SnapshotResponse(snapshot_id=snapshot_id))


@router.get(
    "/{sandbox}/snapshots", response_model=list[SnapshotInfo], responses=ERROR_RESPONSES, summary="List snapshots"
)
async def list_snapshots(sandbox: str, request: Request) -> Response:
    """Snapshots taken so far."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    infos = await svc.blocking(_sdk(svc, sandbox).snapshots)
    return Response(json.dumps([i.model_dump(mode="json") for i in infos]), media_type="application/json")


@router.delete(
    "/{sandbox}/snapshots/{snapshot_id}", response_model=Ok, responses=ERROR_RESPONSES, summary="Delete a snapshot"
)
async def delete_snapshot(sandbox: str, snapshot_id: str, request: Request) -> Response:
    """Forget a snapshot."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    await svc.blocking(_sdk(svc, sandbox).delete_snapshot, snapshot_id)
    return model_response(Ok())


@router.post(
    "/{sandbox}/restore",
    response_model=Ok,
    responses=ERROR_RESPONSES,
    summary="Restore a snapshot",
    openapi_extra=body_schema(RestoreRequest),
)
async def restore(sandbox: str, request: Request) -> Response:
    """Bring the workspace back to a snapshot."""
    svc, _, forwarded = await _local_or_proxy(request, sandbox)
    if forwarded is not None:
        return forwarded
    body = await parse_body(request, RestoreRequest)
    await svc.blocking(_sdk(svc, sandbox).restore, body.snapshot_id)
    return model_response(Ok())
