"""The Docker Engine side of the docker runtime: the API client, container labels and reaping.

Every container the library creates carries :data:`LABEL_SANDBOX` (the sandbox id), :data:`LABEL_OWNER`
(``host/pid/start-time`` of the creating process) and :data:`LABEL_CREATED` (plus
:data:`LABEL_EXPIRES` with a ttl), so that :func:`reap_containers` can find what a crashed
owner left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from rock_env.errors import RuntimeUnavailable
from rock_env.sandbox.hostproc import pids_named
from rock_env.sandbox.state import process_start_time

logger = logging.getLogger(__name__)

#: label with the sandbox id (every container the library creates has it)
LABEL_SANDBOX = "rock_env.sandbox"
#: label with the owner: ``host/pid/start-time`` of the process that created the container
LABEL_OWNER = "rock_env.owner"
#: label with the creation time and, with a ttl, the expiry time (unix seconds)
LABEL_CREATED = "rock_env.created"
LABEL_EXPIRES = "rock_env.expires"
CONTAINER_PREFIX = "rock-env-"
#: seconds a live owner's container may stay not running (being created or started) before gc reaps it
CREATE_GRACE = 120.0

_API_TIMEOUT = 120.0

_client_lock = threading.Lock()
_client: Any = None
_shares_mounts: bool | None = None


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


def errors() -> Any:
    """The ``docker.errors`` module (imported lazily with the SDK)."""
    import docker.errors

    return docker.errors


def is_not_found(exc: Exception) -> bool:
    """True if a Docker API error means "no such container/path"."""
    return isinstance(exc, errors().NotFound) or getattr(exc, "status_code", None) == 404


def owner_label() -> str:
    """The :data:`LABEL_OWNER` value of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{process_start_time(pid) or 0}"


def container_labels(sandbox_id: str, extra: dict[str, str], ttl: float | None) -> dict[str, str]:
    """The labels of a new sandbox container: ``extra``, then its sandbox id, owner, creation time and expiry (with a ttl)."""
    now = time.time()
    labels = dict(extra)
    labels.update({LABEL_SANDBOX: sandbox_id, LABEL_OWNER: owner_label(), LABEL_CREATED: f"{now:.0f}"})
    if ttl is not None:
        labels[LABEL_EXPIRES] = f"{now + ttl:.0f}"
    return labels


def owner_alive(label: str) -> bool:
    """True unless the owner recorded in ``label`` is a process of this host that is gone."""
    host, _, rest = label.partition("/")
    pid_text, _, start_text = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another host's container: only its ttl or an explicit --all reaps it
    start = process_start_time(int(pid_text))
    if start is None:
        return False
    return not start_text.isdigit() or int(start_text) in {0, start}


def dockerd_pids() -> list[int]:
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
            for pid in dockerd_pids():
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == own:
                        shares = True
        _shares_mounts = shares
    return _shares_mounts


def decode_frames(raw: bytearray) -> bytearray:
    """The payload of the complete frames at the start of ``raw`` (removed from it) of a multiplexed stream.

    A non-TTY attach or exec stream is a sequence of frames: an 8-byte header (stream type, three
    zero bytes, big-endian payload size) and the payload; stdout and stderr are merged here. An
    incomplete frame stays in ``raw`` until the rest arrives.
    """
    out = bytearray()
    pos = 0
    while len(raw) - pos >= 8:
        size = struct.unpack_from(">I", raw, pos + 4)[0]
        if len(raw) - pos - 8 < size:
            break
        out += raw[pos + 8 : pos + 8 + size]
        pos += 8 + size
    if pos:
        del raw[:pos]
    return out


def close_socket(sock: Any) -> None:
    """Close a hijacked Docker API socket (the raw socket and its wrapper)."""
    with contextlib.suppress(OSError):
        getattr(sock, "_sock", sock).close()
    with contextlib.suppress(Exception):
        sock.close()


def remove_container(name_or_id: str) -> bool:
    """Force-remove a container; True if it existed."""
    try:
        docker_api().remove_container(name_or_id, force=True, v=True)
    except errors().APIError as exc:
        if is_not_found(exc):
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
            elif remove_container(name):
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
        elif not owner_alive(labels.get(LABEL_OWNER, "")):
            reason = "owner gone"
        elif item.get("State") != "running" and age > CREATE_GRACE:
            # a live owner's container between create and start is "created": leave it alone a while
            reason = f"state {item.get('State')}"
        else:
            continue
        if dry_run:
            lines.append(f"would remove container {name} (sandbox {labels.get(LABEL_SANDBOX)}, {reason})")
        elif remove_container(item["Id"]):
            lines.append(f"removed container {name} (sandbox {labels.get(LABEL_SANDBOX)}, {reason})")
    return lines
