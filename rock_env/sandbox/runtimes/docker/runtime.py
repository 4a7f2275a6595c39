"""The docker runtime: one container per sandbox (see the package docstring for the design)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from rock_env.errors import (
    ConfigError,
    ImageNotFound,
    InvalidArgument,
    RuntimeUnavailable,
    SandboxError,
    SandboxStartError,
)
from rock_env.sandbox import mounts
from rock_env.sandbox.hostproc import children
from rock_env.sandbox.models import DEFAULT_DISK, DEFAULT_PIDS, SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe
from rock_env.sandbox.runtimes.docker.cgroup import ContainerCgroups
from rock_env.sandbox.runtimes.docker.engine import (
    CONTAINER_PREFIX,
    close_socket,
    container_labels,
    daemon_shares_mounts,
    docker_api,
    errors,
    is_not_found,
    reap_containers,
    remove_container,
)
from rock_env.sandbox.runtimes.docker.files import ContainerFiles
from rock_env.sandbox.runtimes.docker.keeper import EXEC_SCRIPT, SESSION_WRAPPER, init_entrypoint, spare_start_line
from rock_env.sandbox.runtimes.docker.pipe import DockerProcessPipe
from rock_env.sandbox.session import BASH_ARGV
from rock_env.sandbox.state import SandboxRecord, is_sandbox_dir

logger = logging.getLogger(__name__)

#: pids a ``docker exec`` needs to start (runc's init, the exec wrapper shell, the process)
EXEC_PIDS = 4
#: image used when ``SandboxConfig.image`` is None (built by ``rock-env image build-base``)
DEFAULT_IMAGE = "rock-env/base:bookworm"
#: capabilities dropped from Docker's default set (raw sockets, device nodes, chroot, file caps, audit,
#: low ports); what is left is what ordinary root work needs: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
#: SETGID, SETUID, SETPCAP
DROPPED_CAPS = ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SYS_CHROOT", "NET_BIND_SERVICE")
#: paths the container sees read-only: Docker's default list (global /proc knobs) plus ``/dev`` (its
#: tmpfs; the device nodes still work, and /dev/pts, /dev/mqueue and /dev/shm are mounts of their own)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/dev")
#: largest /dev/shm when it is not on the sandbox's tmpfs (Docker's default); never more than ``disk``
SHM_SIZE = 64 << 20

_available: tuple[float, bool] | None = None
#: whether the daemon can cap a container's writable layer (``storage-opt size``); None: not asked yet
_storage_quota: bool | None = None


def storage_quota_supported() -> bool:
    """True if the daemon's storage driver may cap a container's writable layer (asked once per process).

    overlay2 does on xfs mounted with ``pquota`` (which ``docker info`` does not show: a refusal
    at create time turns this off, see :meth:`DockerRuntime._create`).
    """
    global _storage_quota
    if _storage_quota is None:
        try:
            info = docker_api().info()
        except Exception as exc:
            logger.debug("docker info failed: %s", exc)
            info = {}
        status = {str(k): str(v) for k, v in (info.get("DriverStatus") or []) if isinstance(k, str)}
        _storage_quota = info.get("Driver") == "overlay2" and status.get("Backing Filesystem") == "xfs"
    return _storage_quota


class DockerRuntime(ContainerFiles):
    """Sandboxes as Docker containers (see :mod:`rock_env.sandbox.runtimes.docker`)."""

    name = "docker"

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self.image = config.image or DEFAULT_IMAGE
        self.container_name = CONTAINER_PREFIX + sandbox_id
        self.container_id: str | None = None
        #: secret of the keeper's exit marker: sent on the container's stdin, never in argv, env or files
        self._token = secrets.token_hex(16)
        self._ready_token = secrets.token_hex(8)
        self._spare: DockerProcessPipe | None = None
        #: the container's attach socket: open for the sandbox's whole life (its end ends the container)
        self._attach: Any = None
        self._spare_lock = threading.Lock()
        self._init_pid: int | None = None
        self._cgroups: ContainerCgroups | None = None
        self._cgroups_lock = threading.Lock()
        self._stopped = False

    @property
    def api(self) -> Any:
        """The Docker API client."""
        return docker_api()

    # --- availability and reaping ----------------------------------------------------------

    @classmethod
    def available(cls) -> bool:
        """True if a Docker daemon answers (cached for 10 seconds)."""
        global _available
        now = time.monotonic()
        if _available is not None and now - _available[0] < 10:
            return _available[1]
        try:
            ok = bool(docker_api().ping())
        except Exception as exc:
            logger.debug("docker unavailable: %s", exc)
            ok = False
        _available = (now, ok)
        return ok

    @classmethod
    def gc(cls, *, dry_run: bool = False) -> list[str]:
        """Reap containers whose owner is gone, whose ttl passed, or that stopped."""
        return reap_containers(dry_run=dry_run)

    @staticmethod
    def reap_containers(containers: list[str]) -> list[str]:
        """Remove the given containers (names or ids); used by the sandbox gc for recorded sandboxes."""
        return reap_containers(containers)

    # --- lifecycle -------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        return container_labels(self.sandbox_id, self.config.labels, self.config.ttl)

    def _host_config(self) -> Any:
        from docker.types import LogConfig, Ulimit

        config = self.config
        memory = config.memory_bytes
        disk = config.disk_bytes or DEFAULT_DISK
        kwargs: dict[str, Any] = {
            "network_mode": "bridge" if config.network else "none",
            "init": False,  # the keeper script is pid 1 (see keeper.KEEPER_SCRIPT), not docker-init
            "privileged": False,
            "cap_drop": list(DROPPED_CAPS),
            "security_opt": ["no-new-privileges"],
            "pids_limit": config.pids or DEFAULT_PIDS,
            "ulimits": [Ulimit(name="fsize", soft=disk, hard=disk)],
            "log_config": LogConfig(type="none"),
            "auto_remove": True,
        }
        if memory is not None:
            kwargs["mem_limit"] = memory
            kwargs["memswap_limit"] = memory  # no swap on top of the limit
        if config.cpus is not None:
            kwargs["nano_cpus"] = int(config.cpus * 1e9)
        # a list, not a dict keyed by the host path: /tmp and /var/tmp are the same directory
        binds = [f"{host}:{inside}:rw" for inside, host in self._binds]
        binds += [f"{m.host_dir}:{m.inside}:ro" for m in self.bridge_mounts]  # see rock_env.sandbox.bridge
        if binds:
            kwargs["binds"] = binds
        if not any(inside == "/dev/shm" for inside, _ in self._binds):
            kwargs["shm_size"] = min(SHM_SIZE, self.workspace_size())
        host_config = self.api.create_host_config(**kwargs)
        host_config["ReadonlyPaths"] = list(READONLY_PATHS)
        return host_config

    def _record_container(self, *, mount: bool) -> None:
        record = SandboxRecord.load(self.state_dir) or SandboxRecord(id=self.sandbox_id, runtime=self.name)
        if self.container_name not in record.containers:
            record.containers.append(self.container_name)
        if mount and str(self.fs) not in record.mounts:
            record.mounts.append(str(self.fs))
        record.save(self.state_dir)

    def _daemon_is_local(self) -> bool:
        """True if the daemon sees this process's mounts (unix socket and the same mount namespace)."""
        return str(getattr(self.api, "base_url", "")).startswith("http+docker://") and daemon_shares_mounts()

    def start(self) -> None:
        """Create and start the container, attached to its keeper (which gets the token first)."""
        api = self.api
        local = self._daemon_is_local()
        self._record_container(mount=local)  # before creating it: a crash in between still gets it reaped
        if local:
            self._mount_fs()
        try:
            created = self._create(quota=storage_quota_supported())
        except errors().ImageNotFound as exc:
            hint = (
                "build it with 'rock-env image build-base'"
                if self.image == DEFAULT_IMAGE
                else f"build or load it first (no registry is used), or use the base image {DEFAULT_IMAGE!r} "
                "built by 'rock-env image build-base'"
            )
            raise ImageNotFound(f"Docker image {self.image!r} does not exist on this host; {hint}") from exc
        except errors().APIError as exc:
            if exc.status_code == 400:
                raise ConfigError(f"Docker refused the sandbox config: {exc.explanation or exc}") from exc
            raise SandboxStartError(f"cannot create container for sandbox {self.sandbox_id}: {exc}") from exc
        except errors().DockerException as exc:
            raise RuntimeUnavailable(f"the Docker daemon does not answer: {exc}") from exc
        self.container_id = created["Id"]
        try:
            sock = api.attach_socket(self.container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._attach = sock
            self._spare = DockerProcessPipe(self, sock, token=self._token, ready=self._ready_token)
            api.start(self.container_id)
            self._spare.write(f"{self._token} {self._ready_token}\n".encode())  # the keeper's first line
        except (errors().APIError, OSError) as exc:
            self.stop()
            explanation = getattr(exc, "explanation", None) or exc
            raise SandboxStartError(
                f"cannot start container {self.container_name} from image {self.image!r}: {explanation}"
            ) from exc

    def _create(self, *, quota: bool) -> dict[str, Any]:
        """Create the container; with ``quota``, its writable layer is capped at ``disk`` (storage-opt size).

        A daemon that refuses the quota (overlay2 needs xfs mounted with pquota) is asked again
        without it, and the quota is not tried again in this process.
        """
        global _storage_quota
        host_config = self._host_config()
        if quota:
            host_config["StorageOpt"] = {"size": str(self.config.disk_bytes or DEFAULT_DISK)}
        ttl = "infinity" if self.config.ttl is None else str(max(1, int(self.config.ttl + 0.999)))
        try:
            created: dict[str, Any] = self.api.create_container(
                self.image,
                entrypoint=init_entrypoint(),
                command=[ttl],
                name=self.container_name,
                hostname="sandbox",
                working_dir=self.config.workdir,
                labels=self._labels(),
                stdin_open=True,
                tty=False,
                host_config=host_config,
            )
        except errors().APIError as exc:
            if not quota or "storage-opt" not in str(exc.explanation or exc).lower():
                raise
            logger.info(
                "the Docker daemon cannot cap a container's writable layer (%s); outside the sandbox's "
                "tmpfs, disk caps each file only (RLIMIT_FSIZE)",
                exc.explanation or exc,
            )
            _storage_quota = False
            return self._create(quota=False)
        return created

    def stop(self) -> None:
        """Remove the container (killing everything in it) and the state dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        self._close_files()
        with self._cgroups_lock:
            groups, self._cgroups = self._cgroups, None
        if groups is not None:
            groups.close()
        if self.container_id is not None or self.state_dir.exists():
            remove_container(self.container_id or self.container_name)
        attach, self._attach = self._attach, None
        if attach is not None:
            close_socket(attach)
        self._unmount_fs()
        if is_sandbox_dir(self.state_dir) and self.state_dir.is_absolute() and not mounts.mounted_below(self.state_dir):
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            logger.warning(
                "sandbox %s: not removing %s (not a sandbox state dir, or still mounted below)",
                self.sandbox_id,
                self.state_dir,
            )

    def alive(self) -> bool:
        """True while the container's init runs."""
        if self._stopped or self.container_id is None:
            return False
        pid = self.init_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def init_pid(self) -> int | None:
        """Host pid of the container's init (the keeper), or None if it is not running."""
        if self._init_pid is None and self.container_id is not None:
            with contextlib.suppress(errors().APIError):
                state = self.api.inspect_container(self.container_id)["State"]
                if state.get("Running") and state.get("Pid"):
                    self._init_pid = int(state["Pid"])
        return self._init_pid

    def host_pid_of(self, ns_pid: int) -> int | None:
        """Host pid of the process with pid ``ns_pid`` inside the container (searching its init's tree)."""
        root = self.init_pid()
        if root is None:
            return None
        stack = [root]
        seen = {root}
        while stack:
            pid = stack.pop()
            if self.ns_pid_of(pid) == ns_pid:
                return pid
            for child in children(pid):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return None

    @staticmethod
    def ns_pid_of(host_pid: int) -> int | None:
        """The pid that host process ``host_pid`` has in its own (the container's) pid namespace."""
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{host_pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
        return None

    # --- the container's cgroups: OOM kills and the pids limit --------------------------------

    def cgroups(self) -> ContainerCgroups | None:
        """The container's cgroups (found once its init runs), or None if they cannot be seen from here."""
        if self._cgroups is None and self.container_id is not None and not self._stopped:
            pid = self.init_pid()
            with self._cgroups_lock:
                if pid is not None and self._cgroups is None:
                    found = ContainerCgroups(pid, self.container_id)
                    if found.paths:
                        self._cgroups = found
        return self._cgroups

    def oom_kills(self) -> int:
        """Processes killed by the container's memory limit so far (every one, from its memory cgroup)."""
        groups = self.cgroups()
        return 0 if groups is None else groups.oom_kills()

    def pids_limit_hits(self) -> int:
        """How many forks failed at the container's pids limit so far."""
        groups = self.cgroups()
        return 0 if groups is None else groups.limit_hits()

    def free_pids(self, spare: Collection[int] = (), room: int = 1) -> int:
        """If the container is (nearly) full of processes, kill every command process but ``spare``.

        A fork bomb's orphans, or a job that took every pid, would otherwise make every later
        command fail to fork; ``room`` is how many pids the caller is about to need (see
        :meth:`ContainerCgroups.free_if_full`). Returns the pids limit hits so far.
        """
        groups = self.cgroups()
        return 0 if groups is None else groups.free_if_full(spare, room)

    def kill_command_processes(self, spare: Collection[int] | Callable[[], Collection[int]] = ()) -> None:
        """Kill every process of the container that a command started (all but the keeper and ``spare``)."""
        groups = self.cgroups()
        if groups is not None:
            groups.kill_command_processes(spare)

    def kill_orphans_since(self, since: tuple[int, int]) -> None:
        """Kill the processes a command left behind as orphans (started after ``since``, reparented to init)."""
        groups = self.cgroups()
        if groups is not None:
            groups.kill_orphans_since(since)

    # --- processes -------------------------------------------------------------------------

    def _container(self) -> str:
        if self.container_id is None or self._stopped:
            raise SandboxError(f"sandbox {self.sandbox_id}: the container is not running")
        return self.container_id

    def initial_shell(self) -> ProcessPipe | None:
        """The container's spare shell turned into the default session's bash (once; then ``None``).

        One line written to the attached stdin replaces a ``docker exec`` (tens of ms) for the
        first session. Its env is :meth:`default_env` plus ``config.env``, its cwd the workdir.
        """
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return None
        env = {**self.default_env(), **self.config.env}
        line = spare_start_line(self.config.workdir, env, self.session_argv(list(BASH_ARGV)), self._ready_token)
        try:
            # its pid first: without a pidfd on it, its exit marker could not be told from a forged one
            if not spare.wait_spare(timeout=30.0):
                raise SandboxStartError("the spare shell is gone or cannot be watched")
            spare.write(line)
            answer = spare.wait_line("ready", timeout=30.0)
            if answer is None:
                raise SandboxStartError("the spare shell ended on its start line")
        except (OSError, SandboxStartError) as exc:
            logger.debug("spare shell of %s unusable (%s); using docker exec", self.container_name, exc)
            spare.close()
            return None
        if answer[0]:
            logger.debug("spare shell printed before exec: %r", answer[0][:200])
        return spare

    def session_argv(self, argv: list[str]) -> list[str]:
        """A session's shell, made non-dumpable on its way in (see :data:`~.keeper.SESSION_WRAPPER`)."""
        return [*SESSION_WRAPPER, *argv]

    def open_process(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = True,
    ) -> ProcessPipe:
        """Start ``argv`` in the container with ``docker exec`` (its own session and process group)."""
        if not argv:
            raise InvalidArgument("open_process needs a non-empty argv")
        cwd = cwd or self.config.workdir
        pairs = [f"{k}={v}" for k, v in (env if env is not None else self.default_env()).items()]
        self.free_pids(room=EXEC_PIDS)  # a full sandbox cannot start anything: free it (as a timeout would)
        return self._docker_exec(argv, cwd=cwd, pairs=pairs, stdin=stdin)

    def _docker_exec(self, argv: list[str], *, cwd: str, pairs: list[str], stdin: bool) -> DockerProcessPipe:
        api = self.api
        container = self._container()
        try:
            exec_id = api.exec_create(
                container,
                ["/bin/sh", "-c", EXEC_SCRIPT, "sh", cwd, *pairs, *argv],
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except errors().APIError as exc:
            if is_not_found(exc) or exc.status_code == 409:
                raise SandboxError(
                    f"sandbox {self.sandbox_id}: the container is not running (stopped, reaped or out of memory)"
                ) from exc
            raise SandboxError(f"sandbox {self.sandbox_id}: docker exec failed: {exc}") from exc
        return DockerProcessPipe(self, sock, exec_id=exec_id)


__all__ = ["DEFAULT_IMAGE", "DROPPED_CAPS", "READONLY_PATHS", "SHM_SIZE", "DockerRuntime"]
