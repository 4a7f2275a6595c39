"""The docker runtime: one container per sandbox (see the package docstring for the design)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import secrets
import shlex
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rock_env.errors import (
    ConfigError,
    ImageNotFound,
    InvalidArgument,
    RuntimeUnavailable,
    SandboxClosed,
    SandboxError,
    SandboxFileNotFound,
    SandboxStartError,
    SnapshotNotFound,
)
from rock_env.sandbox import mounts
from rock_env.sandbox.confined import ConfinedRoots, open_root
from rock_env.sandbox.files import reader_of
from rock_env.sandbox.hostproc import children
from rock_env.sandbox.models import DEFAULT_DISK, DEFAULT_PIDS, FileInfo, SandboxConfig
from rock_env.sandbox.runtimes.base import ProcessPipe, Runtime
from rock_env.sandbox.runtimes.docker import archive
from rock_env.sandbox.runtimes.docker.cgroup import ContainerCgroups
from rock_env.sandbox.runtimes.docker.engine import (
    CONTAINER_PREFIX,
    LABEL_CREATED,
    LABEL_EXPIRES,
    LABEL_OWNER,
    LABEL_SANDBOX,
    close_socket,
    daemon_shares_mounts,
    docker_api,
    errors,
    is_not_found,
    owner_label,
    reap_containers,
    remove_container,
)
from rock_env.sandbox.runtimes.docker.pipe import DockerProcessPipe
from rock_env.sandbox.session import BASH_ARGV
from rock_env.sandbox.state import SandboxRecord, is_sandbox_dir

logger = logging.getLogger(__name__)

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

# The container's init (pid 1, bash or sh: nothing inside can signal it, so `kill -9 -1` leaves it):
# - opens a fifo (made and unlinked at once, before anything else runs in the container) that
#   feeds the spare shell: it keeps the fifo open (read-write) as its fd 5, so the shell never reads
#   EOF, and the owner writes the shell's input straight into it through ``/proc/<init>/fd/5``
#   (nothing in the container relays it, so no process killed from inside can swallow a command
#   line on its way; an image without mkfifo gets no spare shell: every session is a docker exec);
# - reads a random token and a nonce from the first line of its stdin (never in its argv, env or a file);
# - a watchdog in the background kills every process of the container when the ttl ($1) has
#   passed (the init then exits and the container is removed); it is replaced by a fresh one
#   (the old one and its sleep killed) whenever the init wakes up in phase 2, so a watchdog killed
#   from inside is back as soon as the stdin watcher it was killed with is;
# - phase 1: a watcher `cat` reads the container's stdin (nothing more comes after the first line)
#   and, when it ends, kills every process of the container. The owner keeps the attach socket
#   open until stop() and the container is created with StdinOnce, so stdin ends exactly when the
#   owner closes it or dies (even by SIGKILL, even while a command runs). The spare shell reads the
#   fifo in the foreground (sh starts background commands with SIGINT and SIGQUIT ignored, and the
#   session would inherit that). It prints its pid (after \036 + the nonce) and waits, in the
#   keeper's session (so that freeing a full sandbox spares it), for its start line, which makes it
#   the session's bash in a session of its own. When it ends, its exit code is printed after
#   \036 + the token;
# - phase 2, once the spare shell or its helper is gone (the shell exited, or everything was killed
#   from inside): the watcher is the init's foreground `cat`, restarted whenever it is killed. The
#   init always waits in the foreground: it reaps orphans.
_KEEPER_SCRIPT = r"""exec 3<&0 </dev/null
f=/dev/shm/.rock-env-keeper
rm -f "$f"
if mkfifo -m 600 "$f" 2>/dev/null && command exec 5<>"$f" 2>/dev/null; then q=1; else q=; exec 5>/dev/null; fi
rm -f "$f"
IFS=' ' read -r t r <&3 || exit 0
e=
if [ "$1" != infinity ]; then read -r u _ </proc/uptime; e=$(( ${u%.*} + $1 )); fi
w=
dog() {
  [ -n "$e" ] || return 0
  read -r u _ </proc/uptime
  l=$(( e - ${u%.*} ))
  if [ "$l" -le 0 ]; then kill -KILL -1; exit 0; fi
  if [ -n "$w" ]; then c=; read -r c _ 2>/dev/null <"/proc/$w/task/$w/children"; kill -KILL "$w" $c 2>/dev/null; fi
  (sleep "$l"; kill -KILL -1) >/dev/null 2>&1 3<&- 5<&- &
  w=$!
}
dog
s='printf "\036%s:spare:%s\n" "$0" "$$"; exec /bin/sh'
if [ -n "$q" ]; then
  { cat <&3 >/dev/null && kill -KILL -1; } 2>/dev/null &
  p=$!
  (/bin/sh -c "$s" "$r" 2>&1; printf '\036%s:exit:%d\n' "$t" "$?") <&5 3<&- 5<&-
  kill -KILL "$p" 2>/dev/null
else
  printf '\036%s:spare:none\n' "$r"
fi
t=
while :; do
  dog
  cat <&3 >/dev/null 2>/dev/null && break
done
kill -KILL -1
"""
# A session's shell starts with its effective uid set away from root (``setpriv --euid=1``, if the
# image has setpriv); bash at once sets it back to its real uid 0, which gives back every capability
# but leaves the process non-dumpable (a change of effective uid does): no other process of the
# container, though root with DAC_OVERRIDE, may then ptrace the shell or open its /proc/PID/{mem,fd,
# environ}, so the end markers of the commands it is sent cannot be read from inside (no SYS_PTRACE).
SESSION_WRAPPER = (
    "/bin/sh",
    "-c",
    'command -v setpriv >/dev/null 2>&1 && exec setpriv --euid=1 -- "$@"; exec "$@"',
    "rock-env-shell",
)
# The container's init runs the keeper with its effective uid away from root too (real uid 0 stays,
# so it can still signal every process; ``-p`` keeps it so; bash where the image has it, since bash
# retries a fork at the pids limit where dash, as pid 1, would exit and end the container): it and what it runs (the stdin relay
# `cat`) are non-dumpable, so the
# command lines that pass through them cannot be read from their memory or stolen from their fds.
_INIT_WRAPPER = (
    'k=$1; shift; s=/bin/sh; command -v bash >/dev/null 2>&1 && s="bash --norc --noprofile"; '
    'command -v setpriv >/dev/null 2>&1 && exec setpriv --euid=1 -- $s -p -c "$k" rock-env-init "$@"; '
    'exec $s -c "$k" rock-env-init "$@"'
)
# One-shot processes through `docker exec`: cd, then exec the argv with exactly the given env.
_EXEC_SCRIPT = 'cd -- "$1" || exit 126; shift; exec env -i "$@" 2>&1'
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


class DockerRuntime(Runtime):
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
        self._seen_hits = 0  # the pids limit hits at the last free_pids()
        self._stopped = False
        self.snapshots = state_dir / "snapshots"
        #: the host tmpfs (size = the disk limit) that holds every writable place, if mounted
        self.fs = state_dir / "fs"
        self._tmpfs = False
        #: (path inside, host directory) of the tmpfs bind mounts, longest path first
        self._binds: list[tuple[str, Path]] = []
        #: the file API's roots: the workdir and /tmp (paths elsewhere are refused, as on every runtime)
        self.roots = [config.workdir] if config.workdir == "/tmp" else [config.workdir, "/tmp"]
        self._files: ConfinedRoots | None = None
        self._files_lock = threading.Lock()

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
        labels.update({LABEL_SANDBOX: self.sandbox_id, LABEL_OWNER: owner_label(), LABEL_CREATED: f"{now:.0f}"})
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
            "init": False,  # the keeper script is pid 1 (see _KEEPER_SCRIPT), not docker-init
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
            # a list, not a dict keyed by the host path: /tmp and /var/tmp are the same directory
            kwargs["binds"] = [f"{host}:{inside}:rw" for inside, host in self._binds]
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

    def _mount_fs(self) -> None:
        """Mount a tmpfs of ``disk`` bytes in the state dir and plan its binds into the container.

        One tmpfs holds every writable place but the image's own directories: the workdir, ``/tmp``
        and ``/var/tmp`` (one directory, as on the namespace runtime) and ``/dev/shm``, so their
        *total* is capped (overlay2 on ext4 cannot cap a container's disk). ``HOME`` is the workdir.
        Without it (remote daemon, no CAP_SYS_ADMIN) only RLIMIT_FSIZE applies (and /dev/shm is
        Docker's, of at most ``disk``).
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
        workspace, tmp, shm = self.fs / "workspace", self.fs / "tmp", self.fs / "shm"
        binds = [(workdir, workspace)]
        if workdir != "/tmp":
            binds.append(("/tmp", tmp))
        for inside, host in (("/var/tmp", workspace if workdir == "/tmp" else tmp), ("/dev/shm", shm)):
            if not any(inside == used or inside.startswith(used + "/") for used, _ in binds):
                binds.append((inside, host))
        for host in {host for _, host in binds}:
            host.mkdir()
            if host != workspace:
                os.chmod(host, 0o1777)
        self._binds = sorted(binds, key=lambda item: len(item[0]), reverse=True)

    def workspace_size(self) -> int:
        """Size of the sandbox's tmpfs: ``disk``, but at most half the memory limit.

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
                entrypoint=["/bin/sh", "-c", _INIT_WRAPPER, "rock-env-init", _KEEPER_SCRIPT],
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
        with self._files_lock:
            files, self._files = self._files, None
        if files is not None:
            files.close()
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

    def free_pids(self, spare: Collection[int] = ()) -> int:
        """If the container is (nearly) full of processes, kill every command process but ``spare``.

        A fork bomb's orphans, or a job that took every pid, would otherwise make every later
        command fail to fork. Near full (90%) counts only after a failed fork since the last check.
        Returns the pids limit hits so far.
        """
        groups = self.cgroups()
        if groups is None:
            return 0
        hits = groups.limit_hits()
        current, limit = groups.pids_in_use()
        if limit is not None and (current >= limit or (hits > self._seen_hits and current >= limit * 0.9)):
            logger.info("sandbox %s is at its pids limit: killing every command process", self.sandbox_id)
            groups.kill_command_processes(spare)
            hits = groups.limit_hits()
        self._seen_hits = hits
        return hits

    def kill_command_processes(self, spare: Collection[int] | Callable[[], Collection[int]] = ()) -> None:
        """Kill every process of the container that a command started (all but the keeper and ``spare``)."""
        groups = self.cgroups()
        if groups is not None:
            groups.kill_command_processes(spare)
            self._seen_hits = groups.limit_hits()

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
        pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        argv = " ".join(shlex.quote(a) for a in (*SESSION_WRAPPER, *BASH_ARGV))
        line = (
            f"cd -- {shlex.quote(self.config.workdir)} || exit 126; "
            f"printf '\\036%s:ready:\\n' {self._ready_token}; "
            f"exec setsid env -i {pairs} {argv} 2>&1\n"
        )
        try:
            # its pid first: without a pidfd on it, its exit marker could not be told from a forged one
            if not spare.wait_spare(timeout=30.0):
                raise SandboxStartError("the spare shell is gone or cannot be watched")
            spare.write(line.encode())
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

    def open_session(
        self,
        argv: list[str],
        *,
        name: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ProcessPipe:
        """A session's shell, made non-dumpable on its way in (see :data:`SESSION_WRAPPER`)."""
        return self.open_process([*SESSION_WRAPPER, *argv], cwd=cwd, env=env)

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
        self.free_pids()  # a full sandbox cannot start anything: free it (as a timeout would)
        return self._docker_exec(argv, cwd=cwd, pairs=pairs, stdin=stdin)

    def _docker_exec(self, argv: list[str], *, cwd: str, pairs: list[str], stdin: bool) -> DockerProcessPipe:
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
        except errors().APIError as exc:
            if is_not_found(exc) or exc.status_code == 409:
                raise SandboxError(
                    f"sandbox {self.sandbox_id}: the container is not running (stopped, reaped or out of memory)"
                ) from exc
            raise SandboxError(f"sandbox {self.sandbox_id}: docker exec failed: {exc}") from exc
        return DockerProcessPipe(self, sock, exec_id=exec_id)

    # --- files -----------------------------------------------------------------------------
    #
    # With the sandbox's tmpfs (the daemon shares this host's mounts): directory fds on it and
    # confined, symlink-safe resolution, exactly as the namespace and local runtimes. Otherwise:
    # the archive API with the same rules (see archive.py).

    def files(self) -> ConfinedRoots | None:
        """The confined view of the workdir and /tmp on the sandbox's tmpfs, or None without the tmpfs."""
        if not self._tmpfs:
            return None
        with self._files_lock:
            if self._files is None:
                if self._stopped:
                    raise SandboxClosed(f"sandbox {self.sandbox_id} was stopped; its files are gone")
                hosts = dict(self._binds)
                fds: dict[str, int] = {}
                try:
                    for root in self.roots:
                        fds[root] = open_root("/", str(hosts[root]))
                except BaseException:
                    for fd in fds.values():
                        os.close(fd)
                    raise
                self._files = ConfinedRoots(fds, owner=self._file_owner())
            return self._files

    def _file_owner(self) -> tuple[int, int] | None:
        """(uid, gid) on the host of root in the container (a daemon with userns-remap), else None."""
        pid = self.init_pid()
        if pid is None:
            return None
        ids = []
        for name in ("uid_map", "gid_map"):
            try:
                first = Path(f"/proc/{pid}/{name}").read_text().split()
                ids.append(int(first[1]) if first and first[0] == "0" else 0)
            except (OSError, ValueError, IndexError):
                return None
        return None if ids == [0, 0] else (ids[0], ids[1])

    def _resolver(self) -> archive.ApiPathResolver:
        return archive.ApiPathResolver(self._head_stat, self.roots)

    def _head_stat(self, path: str) -> dict[str, Any] | None:
        """The daemon's stat of a container path (HEAD of the archive endpoint), None if it does not exist."""
        api = self.api
        response = api.head(api._url("/containers/{0}/archive", self._container()), params={"path": path})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return archive.stat_header(response) or {}

    def _make_dirs(self, path: str) -> None:
        """Create ``path`` and its missing parents with a small tar at the nearest existing ancestor."""
        missing: list[str] = []
        current = path
        while current not in {"", "/"} and self._head_stat(current) is None:
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
        """Extract a tar stream into ``dest_dir`` (created if missing).

        Members with absolute names or ``..``, symlinks or hard links pointing out, devices,
        fifos and other special files are refused with PathOutsideSandbox, as on every runtime.
        """
        files = self.files()
        if files is not None:
            files.extract(dest_dir, stream)
            return
        target = self._resolver().resolve(dest_dir)
        checked = archive.checked_tar(stream, str(self.state_dir) if self.state_dir.is_dir() else None)
        try:
            if self._head_stat(target) is None:
                self._make_dirs(target)
            self.api.put_archive(self._container(), target, _chunks(checked))
        except errors().APIError as exc:
            if is_not_found(exc):
                raise SandboxFileNotFound(f"{dest_dir!r} does not exist in the sandbox") from exc
            raise SandboxFileNotFound(f"cannot write into {dest_dir!r}: {exc.explanation or exc}") from exc
        finally:
            checked.close()

    def get_archive(self, path: str) -> Iterator[bytes]:
        """Stream a tar of ``path`` (its basename is the top member; special files are left out)."""
        top = posixpath.basename(path.rstrip("/")) or "workspace"
        files = self.files()
        if files is not None:
            return files.tar(path, top)
        target = self._resolver().resolve(path)
        try:
            stream, _stat = self.api.get_archive(self._container(), target, chunk_size=1 << 16)
        except errors().APIError as exc:
            if is_not_found(exc):
                raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox") from exc
            raise SandboxError(f"cannot read {path!r}: {exc.explanation or exc}") from exc
        return archive.renamed_tar(iter(stream), top)

    def read_file(self, path: str) -> bytes:
        """The content of a regular file of the workdir or /tmp."""
        files = self.files()
        if files is not None:
            return files.read_file(path)
        with tarfile.open(fileobj=reader_of(self.get_archive(path)), mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    kind = "a directory" if member.isdir() else "not a regular file"
                    raise SandboxFileNotFound(f"{path!r} is {kind}; read_file reads regular files")
                extracted = tar.extractfile(member)
                return b"" if extracted is None else extracted.read()
        raise SandboxFileNotFound(f"{path!r} does not exist in the sandbox")

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file of the workdir or /tmp (parents created)."""
        files = self.files()
        if files is not None:
            files.write_file(path, data)
            return
        target = self._resolver().resolve(path)
        if target in self.roots:
            raise SandboxFileNotFound(f"{path!r} is a directory; give a file path")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(target))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        self.put_archive(posixpath.dirname(target), buffer)

    def list_dir(self, path: str) -> list[FileInfo]:
        """List a directory of the workdir or /tmp (sorted by name); symlinks are listed, not followed."""
        files = self.files()
        if files is not None:
            return files.list_dir(path)
        return self._list_dir_exec(path, self._resolver().resolve(path))

    def _list_dir_exec(self, path: str, target: str) -> list[FileInfo]:
        script = 'cd -- "$1" 2>/dev/null || exit 3; find . -mindepth 1 -maxdepth 1 -printf "%f\\0%y\\0%s\\0%m\\0%T@\\0"'
        pipe = self._docker_exec(["/bin/sh", "-c", script, "sh", target], cwd="/", pairs=[], stdin=False)
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
        files = self.files()
        if files is None:
            pipe = self._docker_exec(
                ["find", workdir, "-mindepth", "1", "-delete"], cwd="/", pairs=["PATH=/usr/bin:/bin"], stdin=False
            )
            while pipe.read(60):
                pass
            pipe.wait(30)
            pipe.close()
            return
        fd = files.root_fd(workdir)
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

    def restore(self, snapshot_id: str) -> None:
        """Empty the workdir and extract the snapshot's tar into it (the daemon extracts it: the tar is ours)."""
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


__all__ = ["DEFAULT_IMAGE", "DROPPED_CAPS", "READONLY_PATHS", "SHM_SIZE", "DockerRuntime"]
