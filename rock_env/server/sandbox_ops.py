"""The host operations of sandboxes, derived from the ops table (:mod:`rock_env.sandbox.contract`).

Every op of :data:`~rock_env.sandbox.contract.OPS` that acts on one sandbox becomes a host op:
JSON ops (:data:`JSON_OPS`) run :func:`~rock_env.sandbox.contract.invoke` on the hosted
``Sandbox`` in-process, byte ops (:data:`BYTE_OPS`: files and tar archives) stream their body
or answer, and :func:`local_events` runs a command for the ``stream`` op. Only creating and
stopping a sandbox are the worker's own (it hosts the object under the admin's id).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from rock_env.errors import InvalidArgument, PathOutsideSandbox, RockEnvError
from rock_env.protocol import SandboxCreateRequest, SandboxPlacement, StreamRequest, error_body
from rock_env.sandbox.contract import OPS, OPS_BY_NAME, PREFIX, SandboxOp, Wire, invoke
from rock_env.sandbox.files import check_member
from rock_env.server.hosts import Blocking, ByteOp, ByteStream, HostOp, creation_headers
from rock_env.server.objects import WorkerEntry
from rock_env.server.placement import Creation, Placement
from rock_env.server.policy import sandbox_config_of
from rock_env.server.worker import Worker

_CHUNK = 1 << 16

SANDBOX_CREATE = HostOp(
    "create",
    "sandbox",
    "POST",
    PREFIX,
    lambda w, i, config, a: w.create_sandbox(i, config),
    wire=lambda config: SandboxCreateRequest(config=config).model_dump_json().encode(),
    creates=True,
    headers=creation_headers,
)
SANDBOX_STOP = HostOp("stop", "sandbox", "DELETE", PREFIX + "/{id}", lambda w, i, b, a: w.stop_sandbox(i))


async def make_sandbox(
    svc: Placement,
    owner: str,
    obj_id: str,
    config: Mapping[str, Any],
    *,
    op: HostOp = SANDBOX_CREATE,
    record: Mapping[str, Any] | None = None,
) -> SandboxPlacement:
    """Place and start a sandbox under ``obj_id`` (the server's ``runtime`` defaults under the client's config).

    Before anything is placed the config is validated (a 422 ConfigError, as the local SDK raises)
    and the server's policy applied (403): ``runtime="local"`` only if allowed, a host-path image
    only under ``worker.data_dirs``; ``auto`` becomes the runtime the chosen worker offers.
    ``op``: the worker's creation (a sandbox with a model service has its own); ``record``: more to record.
    """
    merged = {**svc.settings.runtime, **config}
    sandbox_config_of(merged)
    svc.policy.check_sandbox_fields(config)

    async def prepare(entry: WorkerEntry, runtime: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        placed = {**merged, "runtime": runtime}
        return placed, {"config": placed, **(record or {})}

    idle_ttl = merged.get("idle_ttl")
    creation = Creation(
        "sandbox",
        "sandbox",
        op,
        SandboxPlacement,
        prepare,
        sandbox=True,
        runtime=merged.get("runtime"),
        idle_ttl=idle_ttl if isinstance(idle_ttl, int | float) else None,
    )
    return await svc.create(owner, obj_id, creation)


def _invoker(sop: SandboxOp) -> Any:
    def run(worker: Worker, obj_id: str, body: Any, args: Mapping[str, str]) -> Any:
        params = {k: args[k] for k in sop.path_params if k in args}
        query = {k: args[k] for k in sop.query if k in args}
        return invoke(worker.sandbox(obj_id), sop, params, query, body)

    return run


def host_op(sop: SandboxOp) -> HostOp:
    """The host op of a JSON op of the table."""
    return HostOp(
        sop.name, "sandbox", sop.http_method, sop.full_path, _invoker(sop), id_param="sandbox", query=sop.query
    )


def is_hosted_json(sop: SandboxOp) -> bool:
    """Whether an op of the table is a JSON call on one hosted sandbox (not create/list/stop, not a stream)."""
    return sop.target != "server" and sop.wire is Wire.JSON and sop.name != "stop"


#: JSON ops by name.
JSON_OPS: Mapping[str, HostOp] = {sop.name: host_op(sop) for sop in OPS if is_hosted_json(sop)}


# --- byte streams ------------------------------------------------------------------------------


async def _write_file(
    worker: Worker, obj_id: str, params: Mapping[str, str], chunks: AsyncIterator[bytes], blocking: Blocking
) -> Any:
    data = b"".join([chunk async for chunk in chunks])
    return await blocking(invoke, worker.sandbox(obj_id), OPS_BY_NAME["write_file"], {}, params, data)


async def _upload(
    worker: Worker, obj_id: str, params: Mapping[str, str], chunks: AsyncIterator[bytes], blocking: Blocking
) -> Any:
    """Spool the tar stream to disk, extract its one top-level entry (members checked), upload that."""
    tmp = Path(tempfile.mkdtemp(prefix="rock-env-upload-"))
    try:
        archive = tmp / "upload.tar"
        with archive.open("wb") as fh:
            async for chunk in chunks:
                fh.write(chunk)
        top = await blocking(extract_single, archive, tmp / "x")
        return await blocking(invoke, worker.sandbox(obj_id), OPS_BY_NAME["upload"], {}, params, top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_single(archive: Path, dest: Path) -> Path:
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


async def _nothing() -> None:
    return None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_file(worker: Worker, obj_id: str, params: Mapping[str, str], blocking: Blocking) -> ByteStream:
    data = await blocking(invoke, worker.sandbox(obj_id), OPS_BY_NAME["read_file"], {}, params)
    return ByteStream("application/octet-stream", _one(data), _nothing)


async def _download(worker: Worker, obj_id: str, params: Mapping[str, str], blocking: Blocking) -> ByteStream:
    """Download into a temp dir, tar it (top-level entry: the base name), stream the tar, then remove it."""
    tmp = Path(tempfile.mkdtemp(prefix="rock-env-download-"))
    try:
        name = os.path.basename(params["path"].rstrip("/")) or "workspace"
        await blocking(invoke, worker.sandbox(obj_id), OPS_BY_NAME["download"], {}, params, tmp / name)
        archive = tmp / "download.tar"
        await blocking(_make_tar, tmp / name, archive, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    async def chunks() -> AsyncIterator[bytes]:
        with archive.open("rb") as fh:
            while data := fh.read(_CHUNK):
                yield data

    async def remove() -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    return ByteStream("application/x-tar", chunks(), remove)


def _make_tar(source: Path, archive: Path, name: str) -> None:
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=name)


_RECEIVERS = {Wire.BYTES_IN: _write_file, Wire.TAR_IN: _upload}
_PRODUCERS = {Wire.BYTES_OUT: _read_file, Wire.TAR_OUT: _download}

#: Byte ops by name.
BYTE_OPS: Mapping[str, ByteOp] = {
    sop.name: ByteOp(sop.name, sop.http_method, sop.full_path, _RECEIVERS.get(sop.wire), _PRODUCERS.get(sop.wire))
    for sop in OPS
    if sop.wire in _RECEIVERS or sop.wire in _PRODUCERS
}


# --- a command's output events -----------------------------------------------------------------


async def local_events(
    worker: Worker, obj_id: str, body: StreamRequest, blocking: Blocking
) -> AsyncGenerator[tuple[str, Any]]:
    """Run ``body``'s command in a sandbox of this process; yield its events as they come.

    The first item is ``("started", {})`` once the command runs (errors starting it are raised);
    then ``("output", {"text": ...})`` items and one last ``("exit", {"exit_code", "timed_out"})``
    or ``("error", ErrorBody dict)``. Closing the generator early kills the command.
    """
    out = await blocking(invoke, worker.sandbox(obj_id), OPS_BY_NAME["stream"], {}, {}, body)
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
        task = asyncio.ensure_future(blocking(pump))
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
