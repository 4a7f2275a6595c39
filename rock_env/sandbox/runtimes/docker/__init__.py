"""The docker runtime: one container per sandbox, driven through the Docker Engine API.

The package is split by job: :mod:`.engine` (the API client, stream framing, labels, reaping),
:mod:`.keeper` (what runs inside on rock-env's behalf: the keeper as pid 1, the shell wrappers, its
fifo), :mod:`.runtime` (:class:`DockerRuntime`: container creation, lifecycle, limits, processes),
:mod:`.files` (the writable layer: its tmpfs, files, snapshots), :mod:`.pipe` (processes over
hijacked API sockets), :mod:`.cgroup` (the container's cgroups seen from the host: OOM kills, the
pids limit) and :mod:`.archive` (files through the archive API when the daemon cannot see this
host's mounts).

Isolation: no network (``network_mode=none``) unless ``config.network``; never privileged;
``no-new-privileges``; the capabilities of :data:`DROPPED_CAPS` dropped from Docker's set (what is
left: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP); Docker's read-only
``/proc`` knobs (``/proc/sys``, ``/proc/sysrq-trigger``, ...) plus a read-only ``/dev`` (its device
nodes still work). Nothing of the host is mounted but the sandbox's own tmpfs.

Limits: ``cpus``, ``memory`` (no swap on top) and a pids limit (default
:data:`~rock_env.sandbox.models.DEFAULT_PIDS`, so a fork bomb stops there). ``disk`` (default
:data:`~rock_env.sandbox.models.DEFAULT_DISK`): one tmpfs of that size, mounted on the host in the
sandbox's state dir, holds every writable place a program uses for scratch data: the workdir (also
``HOME``), ``/tmp``, ``/var/tmp`` (the same directory as ``/tmp``, as on the namespace runtime) and
``/dev/shm``; their *total* is capped (overlay2 on ext4 cannot cap a container's disk). Elsewhere in
the container (``/root``, ``/usr``, ...) only each file is capped, by ``RLIMIT_FSIZE``. Like every
tmpfs, the files count against the memory limit, so with a ``memory`` limit the tmpfs gets at most
half of it (:meth:`DockerRuntime.workspace_size`). Without the tmpfs (a daemon that does not share
this process's mount namespace, see :func:`daemon_shares_mounts`, or no ``CAP_SYS_ADMIN``) only
``RLIMIT_FSIZE`` applies, ``/dev/shm`` is Docker's of at most ``disk``, and files go through the
archive API (:mod:`.archive`) with the same rules. Every container is labelled with the sandbox id
and its owner (host, pid, start time) so :func:`reap_containers` can find it.

Every limit recovers: the container's init is a small keeper shell (pid 1, which nothing inside
can signal, so ``kill -9 -1`` leaves it and the container running); before a session command
starts, a container that a fork bomb filled to its pids limit is emptied of every command process
but the session's shell; a command's timeout kills what it started, the orphans it left and, if
it hit the pids limit, every command process; ``oom_killed`` counts every process the memory limit
killed while a command ran (the memory cgroup's counter), not only the last one.

Speed: ``docker exec`` costs a ``runc exec`` (tens of ms), so the container is created with a
*spare shell*: the keeper runs a ``sh`` that reads a fifo the owner writes from the host (the
keeper's fd 5, ``/proc/<init>/fd/5``). So :meth:`DockerRuntime.initial_shell` (the SDK's default
session) only writes one line into it (``cd ... && exec setsid env -i ... bash``) instead of paying
for a ``docker exec``. Other
processes use ``docker exec``. Output is read straight from the hijacked attach/exec socket with
``poll`` (no polling loops). The spare shell's end is reported in band by the keeper after a random
token that it reads from its stdin (never in the container's argv, env or files), and believed only
once the shell's process is gone (a pidfd on the host), so a program in the sandbox cannot end the
session early or fake its exit code, even if it reads the token from memory.

The absolute TTL is also enforced inside the container (the keeper's watchdog kills every process
after ``ttl`` seconds; the container then ends and is removed; a killed watchdog is restarted), so
it holds even if every rock-env process is killed. The container also ends when its owner dies:
the owner holds the container's attach socket until :meth:`DockerRuntime.stop`, and when it
closes (even on SIGKILL) the container's stdin ends and the keeper kills the container.
The state dir and its tmpfs are then left for the reaper (with a ttl) or ``rock-env sandbox gc``;
containers are also found by label (:func:`reap_containers`) if a forked child kept the socket.
Snapshots are tars of the workdir kept in the state dir; restore empties the workdir and extracts
the tar.
"""

from __future__ import annotations

from rock_env.sandbox.runtimes.docker.engine import (
    CONTAINER_PREFIX,
    CREATE_GRACE,
    LABEL_CREATED,
    LABEL_EXPIRES,
    LABEL_OWNER,
    LABEL_SANDBOX,
    close_socket,
    daemon_shares_mounts,
    docker_api,
    reap_containers,
)
from rock_env.sandbox.runtimes.docker.pipe import DockerProcessPipe
from rock_env.sandbox.runtimes.docker.runtime import (
    DEFAULT_IMAGE,
    DROPPED_CAPS,
    READONLY_PATHS,
    SHM_SIZE,
    DockerRuntime,
)

__all__ = [
    "CONTAINER_PREFIX",
    "CREATE_GRACE",
    "DEFAULT_IMAGE",
    "DROPPED_CAPS",
    "LABEL_CREATED",
    "LABEL_EXPIRES",
    "LABEL_OWNER",
    "LABEL_SANDBOX",
    "READONLY_PATHS",
    "SHM_SIZE",
    "DockerProcessPipe",
    "DockerRuntime",
    "close_socket",
    "daemon_shares_mounts",
    "docker_api",
    "reap_containers",
]
