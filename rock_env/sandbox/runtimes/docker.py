"""The docker runtime: one container per sandbox, driven through the Docker Engine API.

Isolation and limits: no network (``network_mode=none``) unless ``config.network``; never
privileged; a few capabilities dropped and ``no-new-privileges``; ``cpus``, ``memory`` (no
swap on top) and a pids limit (default :data:`~rock_env.sandbox.models.DEFAULT_PIDS`, so a fork
bomb stops there). ``disk`` (default :data:`~rock_env.sandbox.models.DEFAULT_DISK`): the workdir
and ``/tmp`` live on a tmpfs of that size, mounted on the host in the sandbox's state dir and
bind-mounted into the container, so their *total* is capped (overlay2 on ext4 cannot cap a
container's disk); elsewhere in the container (``/root``, ``/var``, ...) only each file is capped,
by ``RLIMIT_FSIZE``. Like every tmpfs, the files count against the memory limit, so with a
``memory`` limit the tmpfs gets at most half of it (:meth:`DockerRuntime.workspace_size`). Without the
tmpfs (a daemon that does not share this process's mount namespace, see :func:`daemon_shares_mounts`,
or no ``CAP_SYS_ADMIN``) only ``RLIMIT_FSIZE`` applies, and files are listed and cleared through
the container instead of from the host. Every container is
labelled with the sandbox id and its owner (host, pid, start time) so :func:`reap_containers`
can find it.

Speed: ``docker exec`` costs a ``runc exec`` (tens of ms), so the container is created with a
*spare shell*: PID 1 is ``docker-init`` running a tiny ``sh`` whose foreground command is a
``setsid sh`` on the container's stdin. The attach socket is opened before start, so
:meth:`DockerRuntime.initial_shell` (the SDK's default session) only writes one line to it
(``cd ... && exec env -i ... bash``) instead of paying for a ``docker exec``. Other processes
use ``docker exec`` with the same ``sh`` wrapper. Output is read straight from the hijacked
attach/exec socket with ``poll`` (no polling loops); the spare shell reports its exit code in
band after a random token. Signals go to host pids (the daemon is local), with the same tree
walk as the host runtimes.

The absolute TTL is also enforced inside the container (a watchdog started by PID 1 kills every
process of the container after ``ttl`` seconds; the container then ends and is removed), so it
holds even if every rock-env process is killed. The container also ends when its owner dies:
the owner holds the container's attach socket until :meth:`DockerRuntime.stop`, and when it
closes (even on SIGKILL) the container's stdin ends and PID 1's script kills the container.
The state dir and its tmpfs are then left for the reaper (with a ttl) or ``rock-env sandbox gc``;
containers are also found by label (:func:`reap_containers`) if a forked child kept the socket. Files move with the archive API
(``put_archive``/``get_archive``); ``list_dir`` and restore read the tmpfs or the container's
overlay directory on the host (fd-relative, never following links). Snapshots are tars of the
workdir kept in the state dir; restore empties the workdir and extracts the tar.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import stat
import struct
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rock_env.errors import (
    ConfigError,
    ImageNotFound,
    InvalidArgument,
    RuntimeUnavailable,
    SandboxError,
    SandboxFileNotFound,
    SandboxStartError,
    SnapshotNotFound,
)
from rock_env.sandbox import mounts
from rock_env.sandbox.hostproc import children, pids_named, signal_tree
from rock_env.sandbox.models import DEFAULT_DISK, DEFAULT_PIDS, FileInfo, SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe, Runtime
from rock_env.sandbox.session import BASH_ARGV
from rock_env.sandbox.state import SandboxRecord, is_sandbox_dir, process_start_time

logger = logging.getLogger(__name__)

#: label with the sandbox id (every container the library creates has it)
LABEL_SANDBOX = "rock_env.sandbox"
#: label with the owner: ``host/pid/start-time`` of the process that created the container
LABEL_OWNER = "rock_env.owner"
#: label with the creation time and, with a ttl, the expiry time (unix seconds)
LABEL_CREATED = "rock_env.created"
LABEL_EXPIRES = "rock_env.expires"
#: image used when ``SandboxConfig.image`` is None (built by ``rock-env image build-base``)
DEFAULT_IMAGE = "rock-env/base:bookworm"
#: capabilities dropped from Docker's default set (raw sockets, device nodes, chroot, file caps, ...)
DROPPED_CAPS = ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SYS_CHROOT", "NET_BIND_SERVICE")
CONTAINER_PREFIX = "rock-env-"
#: seconds a live owner's container may stay not running (being created or started) before gc reaps it
CREATE_GRACE = 120.0

_READ_SIZE = 1 << 18
#: bytes ``wait`` keeps while draining output nobody reads (beyond: dropped)
_WAIT_BUFFER = 64 << 20
_API_TIMEOUT = 120.0

# PID 1's child (under docker-init):
# - a watchdog in the background kills every process of the container when the ttl ($2) has
#   passed (docker-init then exits and the container is removed);
# - a relay `cat` copies the container's stdin into a pipe to the spare shell; when stdin ends it
#   kills every process of the container. The owner keeps the attach socket open until stop() and
#   the container is created with StdinOnce, so stdin ends exactly when the owner closes it or
#   dies (even by SIGKILL, without a ttl or a reaper, and even while a command runs). If the spare
#   is gone and a write breaks the pipe, a second `cat` drains stdin until its end;
# - the spare `setsid sh` reads that pipe. It is part of the foreground pipeline: sh starts
#   background commands with SIGINT and SIGQUIT ignored, and everything the session runs would
#   inherit that (Ctrl-C would do nothing). Its exit code is printed after \036 + a random token ($1).
_PID1_SCRIPT = (
    "exec 3<&0 </dev/null; "
    '(sleep "$2"; kill -KILL -1) >/dev/null 2>&1 3<&- & '
    "{ cat <&3; cat <&3 >/dev/null; kill -KILL -1; } 2>/dev/null | "
    '{ setsid -w /bin/sh 2>&1; printf "\\036%s:exit:%d\\n" "$1" "$?"; } 3<&-'
)
# One-shot processes through `docker exec`: cd, then exec the argv with exactly the given env.
_EXEC_SCRIPT = 'cd -- "$1" || exit 126; shift; exec env -i "$@" 2>&1'

_client_lock = threading.Lock()
_client: Any = None
_available: tuple[float, bool] | None = None


def docker_api() -> Any:
    """The process-wide low-level Docker client (``docker.APIClient``), created on first use."""
    global _client
    with _client_lock:
        if _client is None:
            try:
                import docker
                from docker.utils import kwargs_from_env
            except ImportError as exc:  # pragma: no cover - docker is a core dependency
                raise RuntimeUnavailable("the docker Python SDK is missing: pip install 'docker>=7'") from exc
            try:
                _client = docker.APIClient(version="auto", timeout=_API_TIMEOUT, **kwargs_from_env())
            except docker.errors.DockerException as exc:
                raise RuntimeUnavailable(
                    f"the Docker daemon does not answer ({exc}); start it (as root: 'bash scripts/ensure-docker.sh', "
                    "or 'systemctl start docker') or use runtime='namespace'"
                ) from exc
        return _client


def _errors() -> Any:
    import docker.errors

    return docker.errors


def _owner_label() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{process_start_time(pid) or 0}"


def _owner_alive(label: str) -> bool:
    """True unless the owner recorded in ``label`` is a process of this host that is gone."""
    host, _, rest = label.partition("/")
    pid_text, _, start_text = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another host's container: only its ttl or an explicit --all reaps it
    start = process_start_time(int(pid_text))
    if start is None:
        return False
    return not start_text.isdigit() or int(start_text) in {0, start}


_shares_mounts: bool | None = None


def _dockerd_pids() -> list[int]:
    """Pids of ``dockerd`` on this host: from its pid file, else by name under /proc."""
    for pid_file in ("/var/run/docker.pid", "/run/docker.pid"):
        with contextlib.suppress(OSError, ValueError):
            return [int(Path(pid_file).read_text().strip())]
    return pids_named("dockerd")


def daemon_shares_mounts() -> bool:
    """True if a local ``dockerd`` runs in this process's mount namespace (cached).

    Only then does a host path bind-mounted into a container show what this process sees there
    (not, e.g., when rock-env runs in a container that was given the host's Docker socket).
    """
    global _shares_mounts
    if _shares_mounts is None:
        shares = False
        with contextlib.suppress(OSError):
            own = os.stat("/proc/self/ns/mnt").st_ino
            for pid in _dockerd_pids():
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == own:
                        shares = True
        _shares_mounts = shares
    return _shares_mounts


# --- process pipes -----------------------------------------------------------------------


class DockerProcessPipe(ProcessPipe):
    """A process in a container, read and written through a hijacked Docker API socket.

    ``exec_id`` set: a ``docker exec`` process (end of output = socket EOF, exit code from the
    API). ``token`` set: the container's spare shell (end of output = the in-band exit marker);
    its socket is the container's attach socket, which :meth:`close` leaves open (the runtime
    closes it when the sandbox stops: closing it ends the container).
    """

    def __init__(
        self, runtime: DockerRuntime, sock: Any, *, exec_id: str | None = None, token: str | None = None
    ) -> None:
        self._runtime = runtime
        self._sockio = sock
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._exec_id = exec_id
        self._marker = None if token is None else b"\x1e" + token.encode() + b":exit:"
        self._ready = None if token is None else b"\x1e" + token.encode() + b":ready:"
        self._raw = bytearray()  # undecoded multiplexed frames
        self._out = bytearray()  # decoded output not yet returned
        self._sock_eof = False
        self._ended = False  # all output has been decoded (EOF or exit marker)
        self._code: int | None = None
        self._ns_pid: int | None = None
        self._host_pid: int | None = None
        self._closed = False
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        self._lock = threading.Lock()

    # --- pid -------------------------------------------------------------------------------

    @property  # type: ignore[override]
    def pid(self) -> int | None:
        """Host pid of the process (resolved on first use; ``None`` if it is already gone)."""
        if self._host_pid is None and not self._ended:
            self._host_pid = self._resolve_host_pid()
        return self._host_pid

    @pid.setter
    def pid(self, value: int | None) -> None:
        self._host_pid = value

    def _resolve_host_pid(self) -> int | None:
        api = self._runtime.api
        deadline = time.monotonic() + 10.0
        delay = 0.002
        while time.monotonic() < deadline:
            if self._exec_id is not None:
                with contextlib.suppress(_errors().APIError):
                    info = api.exec_inspect(self._exec_id)
                    if info.get("Pid"):
                        return int(info["Pid"])
                    if not info.get("Running") and info.get("ExitCode") is not None:
                        return None
            elif self._ns_pid is not None:
                host = self._runtime.host_pid_of(self._ns_pid)
                if host is not None:
                    return host
            time.sleep(delay)  # the process is being started by runc: wait for it to appear
            delay = min(delay * 2, 0.05)
        return None

    # --- I/O -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write all of ``data`` to the process's stdin."""
        if self._closed:
            raise BrokenPipeError("the process pipe is closed")
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        """Half-close the socket: the process reads EOF."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def _decode(self) -> None:
        raw = self._raw
        pos = 0
        while len(raw) - pos >= 8:
            size = struct.unpack_from(">I", raw, pos + 4)[0]
            if len(raw) - pos - 8 < size:
                break
            self._out += raw[pos + 8 : pos + 8 + size]
            pos += 8 + size
        if pos:
            del raw[:pos]
        if self._marker is not None and not self._ended:
            index = self._out.find(self._marker)
            if index >= 0:
                end = self._out.find(b"\n", index)
                if end >= 0:
                    with contextlib.suppress(ValueError):
                        self._code = int(self._out[index + len(self._marker) : end])
                    del self._out[index:]
                    self._ended = True

    def _fill(self, timeout: float | None) -> bool:
        """Receive what the socket has (waiting up to ``timeout``); False if nothing came."""
        if self._sock_eof or self._closed:
            return False
        events = self._poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        if not events:
            return False
        try:
            data = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._sock_eof = True
            self._ended = True
            return True
        self._raw += data
        self._decode()
        return True

    def _ready_bytes(self) -> int:
        """How many decoded bytes can be returned (a possible start of the exit marker is held back)."""
        if self._marker is None or self._ended:
            return len(self._out)
        tail_start = max(0, len(self._out) - len(self._marker) - 12)
        hold = self._out.find(b"\x1e", tail_start)
        if hold < 0:
            return len(self._out)
        tail = bytes(self._out[hold:])
        if self._marker.startswith(tail[: len(self._marker)]):
            return hold
        return len(self._out)

    def read(self, timeout: float | None = None) -> bytes | None:
        """Return the next chunk of output, ``b""`` at the end, ``None`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                ready = self._ready_bytes()
                if ready:
                    chunk = bytes(self._out[:ready])
                    del self._out[:ready]
                    return chunk
                if self._ended:
                    return b""
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._fill(remaining)

    def _exit_code(self) -> int | None:
        if self._exec_id is None:
            # the spare shell: the marker carries the code; without it the container died
            return self._code if self._code is not None else 128 + signal.SIGKILL
        if self._code is not None:
            return self._code
        api = self._runtime.api
        delay = 0.001
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                info = api.exec_inspect(self._exec_id)
            except _errors().APIError:
                return 128 + signal.SIGKILL  # the container is gone
            if not info.get("Running") and info.get("ExitCode") is not None:
                self._code = int(info["ExitCode"])
                return self._code
            # output ended a moment before the daemon recorded the exit
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return None

    def poll(self) -> int | None:
        """The exit code if the process has ended, else ``None`` (never blocks)."""
        with self._lock:
            while not self._ended and self._fill(0):
                if len(self._out) > _WAIT_BUFFER:
                    break
            if not self._ended:
                return None
        return self._exit_code()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end (keeping unread output for :meth:`read`); the exit code or ``None`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._fill(remaining)
                if len(self._out) > _WAIT_BUFFER:
                    del self._out[: len(self._out) - _WAIT_BUFFER]
        return self._exit_code()

    def wait_ready(self, timeout: float) -> bytes:
        """Spare shell only: wait for its ``ready`` line (the shell's pid); return output before it."""
        assert self._ready is not None
        ready = self._ready
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                index = self._out.find(ready)
                if index >= 0:
                    end = self._out.find(b"\n", index)
                    if end >= 0:
                        self._ns_pid = int(self._out[index + len(ready) : end])
                        before = bytes(self._out[:index])
                        del self._out[: end + 1]
                        return before
                if self._ended:
                    return b""
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxStartError(
                        f"the spare shell of container {self._runtime.container_name} did not answer"
                    )
                self._fill(remaining)

    # --- signals ---------------------------------------------------------------------------

    def signal_group(self, sig: int) -> None:
        """Signal the process group of the process (it is a session leader)."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)

    def signal_descendants(self, sig: int) -> None:
        """Signal everything the process started, not the process itself."""
        pid = self.pid
        if pid is not None:
            signal_tree(pid, sig, include_root=False)

    def kill(self) -> None:
        """SIGKILL the process and everything it started, wait for the end and close."""
        pid = self.pid
        if pid is not None:
            signal_tree(pid, signal.SIGKILL, include_root=True)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        self.wait(timeout=5)
        self.close()

    def close(self) -> None:
        """Close the socket (does not signal the process); the spare shell's attach socket stays open."""
        if self._closed:
            return
        self._closed = True
        self._ended = True
        with contextlib.suppress(Exception):
            self._poller.unregister(self._sock.fileno())
        if self._marker is None:
            close_socket(self._sockio)


def close_socket(sock: Any) -> None:
    """Close a hijacked Docker API socket (the raw socket and its wrapper)."""
    with contextlib.suppress(OSError):
        getattr(sock, "_sock", sock).close()
    with contextlib.suppress(Exception):
        sock.close()


# --- the runtime -------------------------------------------------------------------------


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, _errors().NotFound) or getattr(exc, "status_code", None) == 404


class DockerRuntime(Runtime):
    """Sandboxes as Docker containers (see the module docstring)."""

    name = "docker"

    def __init__(self, config: SandboxConfig, sandbox_id: str, state_dir: Path) -> None:
        super().__init__(config, sandbox_id, state_dir)
        self.image = config.image or DEFAULT_IMAGE
        self.container_name = CONTAINER_PREFIX + sandbox_id
        self.container_id: str | None = None
        self._token = secrets.token_hex(12)
        self._spare: DockerProcessPipe | None = None
        #: the container's attach socket: open for the sandbox's whole life (its end ends the container)
        self._attach: Any = None
        self._spare_lock = threading.Lock()
        self._init_pid: int | None = None
        self._merged: str | bool | None = False  # False: not looked up yet
        self._stopped = False
        self.snapshots = state_dir / "snapshots"
        #: the host tmpfs (size = the disk limit) that holds the workdir and /tmp, if mounted
        self.fs = state_dir / "fs"
        self._tmpfs = False
        #: (path inside, host directory) of the tmpfs bind mounts, longest path first
        self._binds: list[tuple[str, Path]] = []

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
        now = time.time()
        labels = dict(self.config.labels)
        labels.update(
            {
                LABEL_SANDBOX: self.sandbox_id,
                LABEL_OWNER: _owner_label(),
                LABEL_CREATED: f"{now:.0f}",
            }
        )
        if self.config.ttl is not None:
            labels[LABEL_EXPIRES] = f"{now + self.config.ttl:.0f}"
        return labels

    def _host_config(self) -> Any:
        from docker.types import LogConfig, Ulimit

        config = self.config
        memory = config.memory_bytes
        disk = config.disk_bytes or DEFAULT_DISK
        kwargs: dict[str, Any] = {
            "network_mode": "bridge" if config.network else "none",
            "init": True,
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
        if self._binds:
            kwargs["binds"] = {str(host): {"bind": inside, "mode": "rw"} for inside, host in self._binds}
        return self.api.create_host_config(**kwargs)

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

    def _mount_fs(self) -> None:
        """Mount a tmpfs of ``disk`` bytes in the state dir; bind its ``workspace`` and ``tmp`` into the container.

        This caps the total size of the workdir and /tmp (overlay2 on ext4 cannot cap a container's
        disk). Without it (remote daemon, no CAP_SYS_ADMIN) only RLIMIT_FSIZE applies.
        """
        workdir = self.config.workdir
        if not self.fs.is_absolute() or workdir == "/":
            return
        self.fs.mkdir(parents=True, exist_ok=True)
        if not mounts.mount_tmpfs(self.fs, self.workspace_size()):
            if self.config.disk is not None:
                logger.warning(
                    "sandbox %s: cannot mount a tmpfs, so disk=%s caps each file only (RLIMIT_FSIZE), not the total",
                    self.sandbox_id,
                    self.config.disk,
                )
            return
        self._tmpfs = True
        binds = [(workdir, self.fs / "workspace")]
        if workdir != "/tmp":
            binds.append(("/tmp", self.fs / "tmp"))
        for _, host in binds:
            host.mkdir()
        if workdir != "/tmp":
            os.chmod(self.fs / "tmp", 0o1777)
        self._binds = sorted(binds, key=lambda item: len(item[0]), reverse=True)

    def workspace_size(self) -> int:
        """Size of the workdir + /tmp tmpfs: ``disk``, but at most half the memory limit.

        tmpfs pages count against the container's memory limit and cannot be reclaimed: a
        workspace as large as the limit would let a full disk OOM-kill every process, including
        any new one, leaving a sandbox nothing can run in. Capped, a full disk is ENOSPC and the
        other half of the memory stays for processes.
        """
        size, capped = self.config.tmpfs_size(mounts=1)
        if capped and self.config.disk is not None:
            logger.warning(
                "sandbox %s: disk=%s is more than half of memory=%s; the workdir and /tmp (a tmpfs, "
                "which counts against the memory limit) get %d bytes",
                self.sandbox_id,
                self.config.disk,
                self.config.memory,
                size,
            )
        return size

    def _unmount_fs(self) -> None:
        if self._tmpfs:
            mounts.unmount(self.fs)
            self._tmpfs = False

    def start(self) -> None:
        """Create and start the container, attached to its spare shell."""
        errors = _errors()
        api = self.api
        local = self._daemon_is_local()
        self._record_container(mount=local)  # before creating it: a crash in between still gets it reaped
        if local:
            self._mount_fs()
        ttl = "infinity" if self.config.ttl is None else str(max(1, int(self.config.ttl + 0.999)))
        try:
            created = api.create_container(
                self.image,
                command=["/bin/sh", "-c", _PID1_SCRIPT, "rock-env-init", self._token, ttl],
                name=self.container_name,
                hostname="sandbox",
                working_dir=self.config.workdir,
                labels=self._labels(),
                stdin_open=True,
                tty=False,
                host_config=self._host_config(),
            )
        except errors.ImageNotFound as exc:
            hint = (
                "build it with 'rock-env image build-base'"
                if self.image == DEFAULT_IMAGE
                else f"build or load it first (no registry is used), or use the base image {DEFAULT_IMAGE!r} "
                "built by 'rock-env image build-base'"
            )
            raise ImageNotFound(f"Docker image {self.image!r} does not exist on this host; {hint}") from exc
        except errors.APIError as exc:
            if exc.status_code == 400:
                raise ConfigError(f"Docker refused the sandbox config: {exc.explanation or exc}") from exc
            raise SandboxStartError(f"cannot create container for sandbox {self.sandbox_id}: {exc}") from exc
        except errors.DockerException as exc:
            raise RuntimeUnavailable(f"the Docker daemon does not answer: {exc}") from exc
        self.container_id = created["Id"]
        try:
            sock = api.attach_socket(self.container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._attach = sock
            self._spare = DockerProcessPipe(self, sock, token=self._token)
            api.start(self.container_id)
        except errors.APIError as exc:
            self.stop()
            raise SandboxStartError(
                f"cannot start container {self.container_name} from image {self.image!r}: {exc.explanation or exc}"
            ) from exc

    def stop(self) -> None:
        """Remove the container (killing everything in it) and the state dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        if self.container_id is not None or self.state_dir.exists():
            _remove_container(self.container_id or self.container_name)
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
        pid = self._init_pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, 0)
                return True
            return False
        try:
            state = self.api.inspect_container(self.container_id)["State"]
        except _errors().APIError:
            return False
        if state.get("Running") and state.get("Pid"):
            self._init_pid = int(state["Pid"])
        return bool(state.get("Running"))

    def init_pid(self) -> int | None:
        """Host pid of the container's init (``docker-init``), or None if it is not running."""
        if self._init_pid is None and self.container_id is not None:
            with contextlib.suppress(_errors().APIError):
                state = self.api.inspect_container(self.container_id)["State"]
                if state.get("Pid"):
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
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("NSpid:"):
                        if int(line.split()[-1]) == ns_pid:
                            return pid
                        break
            for child in children(pid):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return None

    def oom_kills(self) -> int:
        """Processes killed by the container's memory limit so far (cgroup v1 or v2)."""
        cid = self.container_id
        if cid is None:
            return 0
        candidates = [
            (Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.oom_control"), "oom_kill"),
            (Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.events"), "oom_kill"),
            (Path(f"/sys/fs/cgroup/docker/{cid}/memory.events"), "oom_kill"),
        ]
        for path, key in candidates:
            with contextlib.suppress(OSError):
                for line in path.read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        return 0

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
        pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        argv = " ".join(shlex.quote(a) for a in BASH_ARGV)
        line = (
            f"cd -- {shlex.quote(self.config.workdir)} || exit 126; "
            f"printf '\\036%s:ready:%s\\n' {self._token} \"$$\"; "
            f"exec env -i {pairs} {argv} 2>&1\n"
        )
        try:
            spare.write(line.encode())
            early = spare.wait_ready(timeout=30.0)
        except (OSError, SandboxStartError) as exc:
            logger.debug("spare shell of %s unusable (%s); using docker exec", self.container_name, exc)
            spare.close()
            return None
        if early:
            logger.debug("spare shell printed before exec: %r", early[:200])
        return spare

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
        return self._docker_exec(argv, cwd=cwd, pairs=pairs, stdin=stdin)

    def _docker_exec(self, argv: list[str], *, cwd: str, pairs: list[str], stdin: bool) -> DockerProcessPipe:
        errors = _errors()
        api = self.api
        container = self._container()
        try:
            exec_id = api.exec_create(
                container,
                ["/bin/sh", "-c", _EXEC_SCRIPT, "sh", cwd, *pairs, *argv],
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except errors.APIError as exc:
            if _is_not_found(exc) or exc.status_code == 409:
                raise SandboxError(
                    f"sandbox {self.sandbox_id}: the container is not running (stopped, reaped or out of memory)"
                ) from exc
            raise SandboxError(f"sandbox {self.sandbox_id}: docker exec failed: {exc}") from exc
        return DockerProcessPipe(self, sock, exec_id=exec_id)

    # --- files -----------------------------------------------------------------------------

    def _stat(self, path: str) -> bool:
        """True if ``path`` exists in the container (HEAD of the archive endpoint)."""
        api = self.api
        response = api.head(api._url("/containers/{0}/archive", self._container()), params={"path": path})
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def _make_dirs(self, path: str) -> None:
        """Create ``path`` and its missing parents with a small tar at the nearest existing ancestor."""
        missing: list[str] = []
        current = path
        while current not in {"", "/"} and not self._stat(current):
            missing.append(posixpath.basename(current))
            current = posixpath.dirname(current)
        if not missing:
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            name = ""
            for part in reversed(missing):
                name = posixpath.join(name, part) if name else part
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = int(time.time())
                tar.addfile(info)
        self.api.put_archive(self._container(), current or "/", buffer.getvalue())

    def put_archive(self, dest_dir: str, stream: BinaryIO) -> None:
        """Extract a tar stream into ``dest_dir`` (created if missing) with the archive API."""
        errors = _errors()
        if not self._stat(dest_dir):
            self._make_dirs(dest_dir)
        try:
            self.api.put_archive(self._container(), dest_dir, _chunks(stream))
        except errors.APIError as exc:
            if _is_not_found(exc):
                raise SandboxFileNotFound(f"{dest_dir!r} does not exist in the sandbox") from exc
            raise InvalidArgument(f"cannot write into {dest_dir!r}: {exc.explanation or exc}") from exc

    def get_archive(self, path: str) -> Iterator[bytes]:
        """Stream a tar of ``path`` from the container (its basename is the top member)."""
        errors = _errors()
        try:
            stream, _stat = self.api.get_archive(self._container(), path, chunk_size=1 << 16)
        except errors.APIError as exc:
            if _is_not_found(exc):
                raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox") from exc
            raise SandboxError(f"cannot read {path!r}: {exc.explanation or exc}") from exc
        return iter(stream)

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file (parents created) with one small tar through the archive API."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(path))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        self.put_archive(posixpath.dirname(path) or "/", buffer)

    def _merged_dir(self) -> str | None:
        """The container's overlay root on the host, if this host can see it."""
        if self._merged is False:
            merged: str | None = None
            with contextlib.suppress(_errors().APIError, KeyError, TypeError):
                if not daemon_shares_mounts():
                    raise KeyError("the daemon's paths are not ours")
                data = self.api.inspect_container(self._container())["GraphDriver"]["Data"]
                candidate = data.get("MergedDir")
                if candidate and os.path.isdir(candidate) and os.access(candidate, os.R_OK | os.X_OK):
                    merged = candidate
            self._merged = merged
        return self._merged if isinstance(self._merged, str) else None

    def _host_view(self, path: str) -> tuple[str, str] | None:
        """Where the host sees ``path``: (host directory, path below it), or None (ask the container).

        The workdir and /tmp are on the sandbox's tmpfs; other paths are in the overlay root,
        except the kernel and device filesystems the container mounts itself.
        """
        for inside, host in self._binds:
            if path == inside or path.startswith(inside.rstrip("/") + "/"):
                return str(host), path[len(inside) :]
        if path.split("/")[1:2] in (["proc"], ["sys"], ["dev"]):
            return None
        merged = self._merged_dir()
        return None if merged is None else (merged, path)

    def _open_inside(self, path: str) -> int | None:
        """Open a directory of the container from the host, refusing every symlink on the way.

        Returns an fd (close it), or None if the host cannot see the directory.
        Raises SandboxFileNotFound if a component is missing, not a directory or a symlink.
        """
        view = self._host_view(path)
        if view is None:
            return None
        base, rest = view
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags)
        try:
            for part in [p for p in rest.split("/") if p]:
                try:
                    nxt = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    raise SandboxFileNotFound(
                        f"{path!r} is not a directory in the sandbox (or a symlink on the way)"
                    ) from exc
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def list_dir(self, path: str) -> list[FileInfo]:
        """List a directory (sorted by name); symlinks are listed, not followed."""
        fd = self._open_inside(path)
        if fd is None:
            return self._list_dir_exec(path)
        out: list[FileInfo] = []
        try:
            for name in sorted(os.listdir(fd)):
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    out.append(_file_info(path, name, st.st_mode, st.st_size, st.st_mtime))
        finally:
            os.close(fd)
        return out

    def _list_dir_exec(self, path: str) -> list[FileInfo]:
        script = 'cd -- "$1" 2>/dev/null || exit 3; find . -mindepth 1 -maxdepth 1 -printf "%f\\0%y\\0%s\\0%m\\0%T@\\0"'
        pipe = self._docker_exec(["/bin/sh", "-c", script, "sh", path], cwd="/", pairs=[], stdin=False)
        data = bytearray()
        while chunk := pipe.read(60):
            data += chunk
        code = pipe.wait(10)
        pipe.close()
        if code != 0:
            raise SandboxFileNotFound(f"{path!r} is not a directory in the sandbox")
        fields = bytes(data).split(b"\0")
        kinds = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK}
        out = []
        for i in range(0, len(fields) - 4, 5):
            name = fields[i].decode(errors="replace")
            mode = kinds.get(fields[i + 1].decode(), 0) | int(fields[i + 3] or b"0", 8)
            out.append(_file_info(path, name, mode, int(fields[i + 2] or 0), float(fields[i + 4] or 0)))
        return sorted(out, key=lambda f: f.name)

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self, snapshot_id: str) -> int:
        """Save a tar of the workdir to the state dir; return its size in bytes."""
        self.snapshots.mkdir(parents=True, exist_ok=True)
        target = self.snapshots / f"{snapshot_id}.tar"
        partial = target.with_suffix(".partial")
        size = 0
        with open(partial, "wb") as fh:
            for chunk in self.get_archive(self.config.workdir):
                fh.write(chunk)
                size += len(chunk)
        partial.replace(target)
        return size

    def _clear_workdir(self) -> None:
        workdir = self.config.workdir
        fd = self._open_inside(workdir)
        if fd is None:
            pipe = self._docker_exec(
                ["find", workdir, "-mindepth", "1", "-delete"], cwd="/", pairs=["PATH=/usr/bin:/bin"], stdin=False
            )
            while pipe.read(60):
                pass
            pipe.wait(30)
            pipe.close()
            return
        try:
            for name in os.listdir(fd):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def restore(self, snapshot_id: str) -> None:
        """Empty the workdir and extract the snapshot's tar into it."""
        source = self.snapshots / f"{snapshot_id}.tar"
        if not source.is_file():
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id!r} in sandbox {self.sandbox_id}; take one with snapshot()"
            )
        self._clear_workdir()
        parent = posixpath.dirname(self.config.workdir.rstrip("/")) or "/"
        with open(source, "rb") as fh:
            self.api.put_archive(self._container(), parent, _chunks(fh))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot's tar (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            (self.snapshots / f"{snapshot_id}.tar").unlink()


def _file_info(parent: str, name: str, mode: int, size: int, mtime: float) -> FileInfo:
    if stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    return FileInfo(
        name=name,
        path=parent.rstrip("/") + "/" + name,
        type=kind,  # type: ignore[arg-type]
        size=size,
        mode=stat.S_IMODE(mode),
        mtime=mtime,
    )


def _chunks(stream: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    """Read a binary stream in chunks (sent with chunked transfer encoding, never buffered whole)."""
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


# --- reaping -----------------------------------------------------------------------------


def _remove_container(name_or_id: str) -> bool:
    """Force-remove a container; True if it existed."""
    errors = _errors()
    try:
        docker_api().remove_container(name_or_id, force=True, v=True)
    except errors.APIError as exc:
        if _is_not_found(exc):
            return False
        if exc.status_code == 409:  # removal already in progress (auto_remove)
            return True
        raise
    return True


def reap_containers(
    containers: list[str] | None = None, *, dry_run: bool = False, everything: bool = False
) -> list[str]:
    """Remove rock-env containers and return one line per container.

    With ``containers``: remove exactly those (names or ids). Without: every container labelled
    ``rock_env.sandbox`` whose ttl label has passed, whose owner process on this host is gone, or
    that has not been running for :data:`CREATE_GRACE` seconds after its creation (a container
    being started is not running yet) (``everything=True``: all of them). ``dry_run`` only reports.
    """
    lines: list[str] = []
    if containers is not None:
        for name in containers:
            if dry_run:
                lines.append(f"would remove container {name}")
            elif _remove_container(name):
                lines.append(f"removed container {name}")
        return lines
    api = docker_api()
    now = time.time()
    for item in api.containers(all=True, filters={"label": LABEL_SANDBOX}):
        labels = item.get("Labels") or {}
        name = (item.get("Names") or [item["Id"][:12]])[0].lstrip("/")
        expires = labels.get(LABEL_EXPIRES, "")
        created = labels.get(LABEL_CREATED, "")
        age = now - int(created) if created.isdigit() else now - float(item.get("Created") or 0)
        if everything:
            reason = "all"
        elif re.fullmatch(r"\d+", expires) and int(expires) < now:
            reason = "ttl expired"
        elif not _owner_alive(labels.get(LABEL_OWNER, "")):
            reason = "owner gone"
        elif item.get("State") != "running" and age > CREATE_GRACE:
            # a live owner's container between create and start is "created": leave it alone a while
            reason = f"state {item.get('State')}"
        else:
            continue
        if dry_run:
            lines.append(f"would remove container {name} (sandbox {labels.get(LABEL_SANDBOX)}, {reason})")
        elif _remove_container(item["Id"]):
            lines.append(f"removed container {name} (sandbox {labels.get(LABEL_SANDBOX)}, {reason})")
    return lines


__all__ = [
    "DEFAULT_IMAGE",
    "DROPPED_CAPS",
    "LABEL_OWNER",
    "LABEL_SANDBOX",
    "DockerProcessPipe",
    "DockerRuntime",
    "docker_api",
    "reap_containers",
]
