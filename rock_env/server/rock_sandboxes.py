"""ROCK's sandbox operations on our sandboxes: start (sync and async), status, stop, sessions, commands, files.

Every ROCK call maps onto the same paths as our own API: a start is :func:`make_sandbox` (the
server's runtime defaults, its policy, the token's quota, placement on a worker), and every
other call runs one op of the ops table (:data:`~rock_env.server.sandbox_ops.JSON_OPS`,
:data:`~rock_env.server.sandbox_ops.BYTE_OPS`) on the sandbox's host. A ROCK sandbox is one of
ours under the same id (``sbx-...``), so either API can use it.

What ROCK has and we keep here, per service (:class:`RockSandboxes`): starts in progress
(``start_async`` answers at once; ``get_status`` then reports ``pending`` and the start's
phase) and sandboxes stopped through ROCK (ROCK keeps a stopped sandbox until ``delete``;
ours is gone once stopped, so its status is remembered for a while).

ROCK's ``memory``, ``cpus`` (``limit_cpus`` when given), ``disk`` and ``image`` become the
sandbox's limits and image; ``auto_clear_time_minutes`` its ``idle_ttl``; ``startup_timeout``
the time a start may take (a start that takes longer is reported ``timeout`` and the sandbox
stopped). Who asked (``X-User-Id``, ``X-Experiment-Id``, ``X-Namespace``, ``X-Cluster``) is
kept in the sandbox's labels and reported back by ``get_status``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import shlex
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from rock_env.errors import InvalidArgument, RockEnvError, SandboxNotFound, SandboxStartError
from rock_env.protocol import (
    ExecRequest,
    RockBashAction,
    RockCloseSessionRequest,
    RockCommandResult,
    RockCreateSessionRequest,
    RockExecuteRequest,
    RockObservation,
    RockPhase,
    RockReadFileRequest,
    RockSessionResult,
    RockStartRequest,
    RockStartResult,
    RockStatusResult,
    RockWriteFileRequest,
    RunRequest,
    SessionCreateRequest,
)
from rock_env.sandbox.models import CommandResult, SandboxInfo, parse_size
from rock_env.server.objects import new_id
from rock_env.server.policy import sandbox_config_of
from rock_env.server.rock_image import resolve_image
from rock_env.server.sandbox_ops import BYTE_OPS, JSON_OPS, SANDBOX_STOP, make_sandbox
from rock_env.server.service import Service

logger = logging.getLogger(__name__)

#: Label keys that keep ROCK's view of a sandbox (what it asked for, who asked).
LABEL_PREFIX = "rock."
#: Headers ROCK's SDK sends, and the ``get_status`` field each fills.
HEADER_FIELDS = {
    "x-user-id": "user_id",
    "x-experiment-id": "experiment_id",
    "x-namespace": "namespace",
    "x-cluster": "cluster",
}
#: How long failed starts and stopped sandboxes are remembered (seconds), and how many at most.
REMEMBER_FOR = 3600.0
REMEMBER_AT_MOST = 4096
#: Ids a client may choose for its sandbox (``SandboxConfig.sandbox_id``).
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ERRORS_HANDLERS = frozenset({"strict", "ignore", "replace", "backslashreplace", "surrogateescape"})
#: The start phase ``get_status`` reports (ROCK's SDK fails its start on ``failed``/``timeout``).
START_PHASE = "sandbox_start"
#: How long ``get_status`` waits for a start in progress before it answers ``pending``.
STATUS_WAIT = 2.0


PhaseStatus = Literal["waiting", "running", "success", "failed", "timeout"]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class PendingStart:
    """A ``start_async`` in progress (or failed)."""

    sandbox_id: str
    owner: str
    labels: dict[str, str]
    started: float
    deadline: float
    task: asyncio.Task[None] | None = None
    error: str | None = None
    phase: PhaseStatus = "running"
    stop_requested: bool = False


@dataclass
class Stopped:
    """A sandbox stopped through ROCK: what ``get_status`` still reports about it."""

    sandbox_id: str
    owner: str
    labels: dict[str, str]
    worker_id: str | None
    created: float | None
    stopped: float = field(default_factory=time.time)


class RockSandboxes:
    """The ROCK-specific state of one service (see the module docstring)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.pending: dict[str, PendingStart] = {}
        self.stopped: OrderedDict[str, Stopped] = OrderedDict()

    # -- start --------------------------------------------------------------------------------

    async def prepare(
        self, owner: str, body: RockStartRequest, headers: Mapping[str, str]
    ) -> tuple[str, dict[str, Any], float]:
        """Check a start and make our config: ``(sandbox id, config, startup timeout)``; raises to refuse.

        Everything that can be refused is refused here, before anything starts: the image (not on
        this host and not mapped), the config, the policy, the quota, a worker with the runtime.
        """
        svc = self.svc
        obj_id = self._new_id(body.sandbox_id)
        if body.image_os.casefold() != "linux":
            raise InvalidArgument(f"image_os={body.image_os!r} is not supported: rock-env runs Linux sandboxes only.")
        if body.num_gpus:
            raise InvalidArgument(f"num_gpus={body.num_gpus} is not supported: rock-env sandboxes have no GPUs.")
        runtime = svc.policy.check_runtime(svc.settings.runtime.get("runtime"), "runtime") or "auto"
        await svc.local_workers_ready()  # right after `admin start`: its worker processes may still be registering
        _, runtime = svc.place_sandbox(1, runtime)
        image = await svc.blocking(resolve_image, body.image, runtime, svc.settings.rock_image_map)
        labels = {f"{LABEL_PREFIX}image": body.image, f"{LABEL_PREFIX}memory": str(body.memory)}
        labels[f"{LABEL_PREFIX}cpus"] = repr(float(body.cpus))
        if body.disk is not None:
            labels[f"{LABEL_PREFIX}disk"] = str(body.disk)
        for header, name in HEADER_FIELDS.items():
            value = headers.get(header)
            if value:
                labels[f"{LABEL_PREFIX}{name}"] = value[:256]
        config: dict[str, Any] = {
            "runtime": runtime,
            "image": image,
            "cpus": body.limit_cpus or body.cpus,
            "memory": body.memory,
            "labels": labels,
        }
        if body.disk is not None:
            config["disk"] = _disk_within(body.disk, body.memory)
        minutes = body.auto_clear_time_minutes if body.auto_clear_time_minutes is not None else body.auto_clear_time
        if minutes:
            config["idle_ttl"] = float(minutes * 60)
        sandbox_config_of({**svc.settings.runtime, **config})
        svc.policy.check_sandbox_fields(config)
        svc.check_quota(owner, "sandbox", 1)
        return obj_id, config, body.startup_timeout or 180.0

    def _new_id(self, wanted: str | None) -> str:
        if wanted is None:
            return new_id("sbx")
        if not _ID_RE.match(wanted):
            raise InvalidArgument(
                f"sandbox_id={wanted!r} is not usable: give 1 to 128 letters, digits, '_', '.' or '-' "
                "(starting with a letter or digit), or leave it unset."
            )
        if wanted in self.svc.records or wanted in self.pending or wanted in self.svc._pending:
            raise InvalidArgument(
                f"sandbox_id={wanted!r} is taken by another object; choose another or leave it unset."
            )
        return wanted

    async def start(self, owner: str, obj_id: str, config: dict[str, Any]) -> RockStartResult:
        """Start a sandbox and wait for it (ROCK's ``start``)."""
        info = await make_sandbox(self.svc, owner, obj_id, config)
        return self._start_result(obj_id, info.worker_id, config)

    def start_async(self, owner: str, obj_id: str, config: dict[str, Any], timeout: float) -> RockStartResult:
        """Start a sandbox in the background; ``get_status`` reports how it goes (ROCK's ``start_async``)."""
        now = time.time()
        pending = PendingStart(obj_id, owner, dict(config["labels"]), now, now + timeout)
        self.pending[obj_id] = pending
        pending.task = asyncio.create_task(self._start_in_background(pending, config), name=f"rock-start-{obj_id}")
        return self._start_result(obj_id, None, config)

    async def _start_in_background(self, pending: PendingStart, config: dict[str, Any]) -> None:
        try:
            await make_sandbox(self.svc, pending.owner, pending.sandbox_id, config)
        except Exception as exc:  # reported by get_status
            pending.phase, pending.error = "failed", _describe(exc)
            self._forget_later()
            return
        late = time.time() > pending.deadline
        if late or pending.stop_requested:
            with contextlib.suppress(RockEnvError):
                await self.svc.close("sandbox", pending.sandbox_id, pending.owner, SANDBOX_STOP)
            if late:
                pending.phase = "timeout"
                pending.error = (
                    f"the sandbox took longer than startup_timeout={pending.deadline - pending.started:g}s to start "
                    "and was stopped; raise startup_timeout (SandboxConfig.startup_timeout)."
                )
                return
            self._remember_stopped(pending.sandbox_id, pending.owner, pending.labels, None, pending.started)
        self.pending.pop(pending.sandbox_id, None)

    def _start_result(self, obj_id: str, worker_id: str | None, config: Mapping[str, Any]) -> RockStartResult:
        labels = config.get("labels") or {}
        return RockStartResult(
            sandbox_id=obj_id,
            host_name=worker_id,
            host_ip="127.0.0.1",
            cpus=float(config["cpus"]),
            memory=labels.get(f"{LABEL_PREFIX}memory"),
            disk=labels.get(f"{LABEL_PREFIX}disk"),
        )

    # -- status, stop, delete -----------------------------------------------------------------

    def _pending_of(self, obj_id: str, owner: str) -> PendingStart | None:
        pending = self.pending.get(obj_id)
        return pending if pending is not None and pending.owner == owner else None

    def _stopped_of(self, obj_id: str, owner: str) -> Stopped | None:
        stopped = self.stopped.get(obj_id)
        return stopped if stopped is not None and stopped.owner == owner else None

    async def status(self, obj_id: str, owner: str) -> RockStatusResult:
        """ROCK's ``get_status``: pending, running, failed or stopped; SandboxNotFound if never known."""
        pending = self._pending_of(obj_id, owner)
        if pending is not None and pending.task is not None and not pending.task.done():
            # long poll: answer as soon as the start ends (ROCK's SDK polls every 3 s)
            await asyncio.wait({pending.task}, timeout=STATUS_WAIT)
            pending = self._pending_of(obj_id, owner)
        if pending is not None and obj_id not in self.svc.records:
            phase: PhaseStatus = pending.phase
            if phase == "running" and time.time() > pending.deadline:
                phase = "timeout"
            message = pending.error or (
                f"did not start within startup_timeout={pending.deadline - pending.started:g}s"
                if phase == "timeout"
                else "starting"
            )
            return self._status_result(
                obj_id,
                pending.labels,
                None,
                pending.started,
                "pending",
                {START_PHASE: RockPhase(status=phase, message=message)},
            )
        stopped = self._stopped_of(obj_id, owner)
        if stopped is not None and obj_id not in self.svc.records:
            phases = {START_PHASE: RockPhase(status="success"), "sandbox_stop": RockPhase(status="success")}
            result = self._status_result(obj_id, stopped.labels, stopped.worker_id, stopped.created, "stopped", phases)
            result.stop_time = _iso(stopped.stopped)
            return result
        rec = self.svc.lookup(obj_id, ("sandbox",), owner)
        answer = await self.svc.host_of(rec).call(JSON_OPS["status"], obj_id)
        info = SandboxInfo.model_validate_json(answer)
        alive = info.status in ("created", "running")
        labels = dict((rec.request.get("config") or {}).get("labels") or {})
        if f"{LABEL_PREFIX}image" not in labels and info.image:
            labels[f"{LABEL_PREFIX}image"] = info.image
        config = info.config
        if config is not None:
            labels.setdefault(f"{LABEL_PREFIX}cpus", repr(config.cpus) if config.cpus else "")
            labels.setdefault(f"{LABEL_PREFIX}memory", str(config.memory or ""))
        done = RockPhase(status="success" if alive else "failed", message=f"sandbox is {info.status}")
        return self._status_result(
            obj_id, labels, rec.worker_id, rec.created, "running" if alive else "stopped", {START_PHASE: done}, alive
        )

    @staticmethod
    def _status_result(
        obj_id: str,
        labels: Mapping[str, str],
        worker_id: str | None,
        created: float | None,
        state: Any,
        phases: dict[str, RockPhase],
        alive: bool = False,
    ) -> RockStatusResult:
        def label(name: str) -> str | None:
            return labels.get(f"{LABEL_PREFIX}{name}") or None

        cpus = label("cpus")
        return RockStatusResult(
            sandbox_id=obj_id,
            status=phases,
            state=state,
            host_name=worker_id,
            host_ip="127.0.0.1" if worker_id else None,
            is_alive=alive,
            image=label("image"),
            user_id=label("user_id"),
            experiment_id=label("experiment_id"),
            namespace=label("namespace"),
            cpus=float(cpus) if cpus else None,
            memory=label("memory"),
            disk=label("disk"),
            create_time=_iso(created),
            start_time=_iso(created) if alive else None,
        )

    async def stop(self, obj_id: str, owner: str) -> None:
        """ROCK's ``stop``: stop the sandbox (a start in progress is stopped when it completes)."""
        pending = self._pending_of(obj_id, owner)
        if pending is not None and obj_id not in self.svc.records:
            if pending.phase == "running":
                pending.stop_requested = True
            else:
                self.pending.pop(obj_id, None)
            return
        if self._stopped_of(obj_id, owner) is not None and obj_id not in self.svc.records:
            return
        rec = self.svc.lookup(obj_id, ("sandbox",), owner)
        labels = dict((rec.request.get("config") or {}).get("labels") or {})
        await self.svc.close("sandbox", obj_id, owner, SANDBOX_STOP)
        self._remember_stopped(obj_id, owner, labels, rec.worker_id, rec.created)

    async def delete(self, obj_id: str, owner: str) -> None:
        """ROCK's ``delete``: forget a stopped sandbox (a running one must be stopped first, as in ROCK)."""
        if obj_id in self.svc.records:
            self.svc.lookup(obj_id, ("sandbox",), owner)  # not-found for another owner's id
            raise InvalidArgument(
                f"sandbox {obj_id!r} is running; stop it first (ROCK's delete removes a stopped sandbox)."
            )
        pending = self._pending_of(obj_id, owner)
        if pending is not None:
            if pending.phase == "running":
                raise InvalidArgument(f"sandbox {obj_id!r} is still starting; stop it first.")
            self.pending.pop(obj_id, None)
            return
        if self.stopped.pop(obj_id, None) is None:
            raise SandboxNotFound(
                f"no sandbox with id {obj_id!r} on this server: it was deleted, reaped or never made."
            )

    def _remember_stopped(
        self, obj_id: str, owner: str, labels: dict[str, str], worker_id: str | None, created: float | None
    ) -> None:
        self.stopped[obj_id] = Stopped(obj_id, owner, labels, worker_id, created)
        self._forget_later()

    def _forget_later(self) -> None:
        """Drop remembered stops and failed starts that are too old or too many."""
        cutoff = time.time() - REMEMBER_FOR
        while self.stopped and (
            len(self.stopped) > REMEMBER_AT_MOST or next(iter(self.stopped.values())).stopped < cutoff
        ):
            self.stopped.popitem(last=False)
        done = [k for k, p in self.pending.items() if p.phase != "running" and p.started < cutoff]
        for key in done:
            del self.pending[key]
        while len(self.pending) > REMEMBER_AT_MOST:
            oldest = next((k for k, p in self.pending.items() if p.phase != "running"), None)
            if oldest is None:
                break
            del self.pending[oldest]

    # -- sessions and commands ------------------------------------------------------------------

    async def _json(
        self, obj_id: str, owner: str, op: str, body: Any = None, args: Mapping[str, str] | None = None
    ) -> bytes:
        return await self.svc.call("sandbox", obj_id, owner, JSON_OPS[op], body, args)

    async def create_session(self, owner: str, body: RockCreateSessionRequest) -> RockSessionResult:
        """ROCK's ``create_session``: a persistent bash session; ``startup_source`` files are sourced in it."""
        if body.remote_user not in (None, "", "root"):
            raise InvalidArgument(
                f"remote_user={body.remote_user!r} is not supported: rock-env sessions run as the sandbox's user."
            )
        request = SessionCreateRequest(name=body.session, env=body.env or None)
        await self._json(body.sandbox_id, owner, "create_session", request)
        outputs = []
        for path in body.startup_source:
            result = await self._run(body.sandbox_id, owner, f"source {shlex.quote(path)}", body.session, None)
            if result.exit_code != 0:
                raise InvalidArgument(
                    f"startup_source {path!r} failed in session {body.session!r} (exit code {result.exit_code}): "
                    f"{result.output.strip()[:2000]}"
                )
            outputs.append(result.output.strip())
        return RockSessionResult(output="\n".join(o for o in outputs if o))

    async def close_session(self, owner: str, body: RockCloseSessionRequest) -> RockSessionResult:
        """ROCK's ``close_session``."""
        await self._json(body.sandbox_id, owner, "close_session", None, {"name": body.session})
        return RockSessionResult()

    async def _run(self, obj_id: str, owner: str, cmd: str, session: str, timeout: float | None) -> CommandResult:
        answer = await self._json(obj_id, owner, "run", RunRequest(cmd=cmd, session=session, timeout=timeout))
        return CommandResult.model_validate_json(answer)

    async def run_in_session(self, owner: str, body: RockBashAction) -> tuple[RockObservation, str | None]:
        """ROCK's ``run_in_session``: the observation, and the failure (``check="raise"`` and a non-zero exit)."""
        if body.is_interactive_command or body.is_interactive_quit or body.expect:
            raise InvalidArgument(
                "interactive commands (is_interactive_command, is_interactive_quit, expect) are not supported; "
                "run the program non-interactively or feed its input with a here-document."
            )
        result = await self._run(body.sandbox_id, owner, body.command, body.session, body.timeout)
        output = result.output.strip()
        if result.timed_out or result.exit_code is None:
            return RockObservation(output=output, failure_reason="timeout"), (
                f"timeout after {body.timeout} seconds while running command {body.command!r}"
                if result.timed_out
                else f"command {body.command!r} did not finish (its session was interrupted)"
            )
        if body.check == "ignore":
            return RockObservation(output=output, exit_code=None), None
        if body.check == "raise" and result.exit_code != 0:
            reason = (
                f"Command {body.command!r} failed with exit code {result.exit_code}. Here is the output:\n{output!r}"
            )
            if body.error_msg:
                reason = f"{body.error_msg}: {reason}"
            return RockObservation(output=output, exit_code=result.exit_code, failure_reason=reason), reason
        return RockObservation(output=output, exit_code=result.exit_code), None

    async def execute(self, owner: str, body: RockExecuteRequest) -> tuple[RockCommandResult, str | None]:
        """ROCK's ``execute``: a one-shot command (a string runs with ``bash -c``); output in ``stdout``."""
        cmd: str | list[str] = body.command
        request = ExecRequest(cmd=cmd, cwd=body.cwd, env=body.env, timeout=body.timeout)
        result = CommandResult.model_validate_json(await self._json(body.sandbox_id, owner, "exec", request))
        answer = RockCommandResult(stdout=result.output, exit_code=result.exit_code)
        if result.timed_out:
            return answer, f"Timeout ({body.timeout}s) exceeded while running command"
        if body.check and result.exit_code != 0:
            reason = f"Command {body.command!r} failed with exit code {result.exit_code}. Stdout:\n{result.output!r}"
            return answer, f"{body.error_msg}: {reason}" if body.error_msg else reason
        return answer, None

    # -- files ------------------------------------------------------------------------------------

    async def read_file(self, owner: str, body: RockReadFileRequest) -> str:
        """ROCK's ``read_file``: the file decoded with ``encoding`` (UTF-8) and ``errors`` (``strict``)."""
        encoding = body.encoding or "utf-8"
        errors = body.errors or "strict"
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InvalidArgument(f"encoding={encoding!r} is not a known text encoding; e.g. 'utf-8'.") from None
        if errors not in _ERRORS_HANDLERS:
            raise InvalidArgument(f"errors={errors!r} is not one of {sorted(_ERRORS_HANDLERS)}.")
        rec = self.svc.lookup(body.sandbox_id, ("sandbox",), owner)
        stream = await self.svc.host_of(rec).open_bytes(BYTE_OPS["read_file"], body.sandbox_id, {"path": body.path})
        try:
            data = b"".join([chunk async for chunk in stream.chunks])
        finally:
            await stream.close()
        try:
            return data.decode(encoding, errors)
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"{body.path!r} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                "pass errors='replace' or another encoding."
            ) from None

    async def write_bytes(self, owner: str, obj_id: str, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` in the sandbox (parents created)."""
        rec = self.svc.lookup(obj_id, ("sandbox",), owner)

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        await self.svc.host_of(rec).send_bytes(BYTE_OPS["write_file"], obj_id, {"path": path}, chunks())

    async def write_file(self, owner: str, body: RockWriteFileRequest) -> None:
        """ROCK's ``write_file``: text written as UTF-8."""
        await self.write_bytes(owner, body.sandbox_id, body.path, body.content.encode("utf-8", "surrogatepass"))


def _disk_within(disk: str | int, memory: str | int) -> str | int:
    """ROCK's ``disk`` as our workspace size, at most a quarter of ``memory`` (the writable tmpfs
    mounts count against it; ROCK's default ``50G`` would otherwise be cut down with a warning)."""
    size, mem = parse_size(disk, field="disk"), parse_size(memory, field="memory")
    if size is None or mem is None:
        return disk
    return min(size, max(mem // 4, 1 << 20))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RockEnvError):
        return f"{type(exc).__name__}: {exc}"
    logger.exception("ROCK start failed", exc_info=exc)
    return f"{type(SandboxStartError()).__name__}: {exc}"


def basename(path: str) -> str:
    """The last component of a sandbox path."""
    return os.path.basename(path.rstrip("/")) or path


__all__ = ["HEADER_FIELDS", "LABEL_PREFIX", "PendingStart", "RockSandboxes", "Stopped", "basename"]
