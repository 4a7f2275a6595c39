"""Connecting to Ray, shared by the admin's Ray backend and ``rock-env rollout cluster=ray``.

One place decides how an address is joined (``auto``: the running cluster or ``$RAY_ADDRESS``;
``local``: a private head on 127.0.0.1; else ``HOST:PORT`` of a GCS), keeps loopback clusters
on loopback, and turns a missing Ray or an unreachable cluster into errors that name the fix.
Importing this module does not import Ray (nor any server-only dependency).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from rock_env.cluster.net import is_loopback
from rock_env.errors import ConfigError, ServerUnavailable
from rock_env.sandbox.hostproc import pids_named

logger = logging.getLogger(__name__)

#: With this set to 0 before Ray is imported, Ray takes 127.0.0.1 as the node IP and binds its
#: servers to loopback only (otherwise it resolves 127.0.0.1 to the host's network address).
LOOPBACK_ENV_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: What to install when Ray is missing.
INSTALL_HINT = "pip install 'rock-env[ray]' (or pip install 'ray[default]')"
#: Seconds a TCP connect to the GCS may take before the cluster counts as unreachable.
PROBE_TIMEOUT = 5.0


def address_is_loopback(address: str) -> bool:
    """Whether a Ray address is ``local`` or ``HOST:PORT`` with a loopback host."""
    if address == "local":
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return bool(host) and is_loopback(host)


def import_ray(address: str) -> ModuleType:
    """Import Ray for joining ``address``; :class:`ConfigError` naming the install command if it is missing.

    For a loopback address, :data:`LOOPBACK_ENV_VAR` is set to 0 first so that Ray stays on 127.0.0.1.
    """
    if address_is_loopback(address):
        if "ray" in sys.modules and os.environ.get(LOOPBACK_ENV_VAR) != "0":
            logger.warning("Ray was imported before %s=0 was set: it may bind more than loopback", LOOPBACK_ENV_VAR)
        os.environ[LOOPBACK_ENV_VAR] = "0"
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"cluster=ray needs Ray: {INSTALL_HINT}.") from exc
    return ray


def init_kwargs(
    address: str, *, namespace: str | None = None, temp_dir: str | None = None, num_cpus: float | None = None
) -> dict[str, Any]:
    """The ``ray.init`` keyword arguments for joining ``address`` (a private head for ``local``).

    ``temp_dir`` (Ray's session dir) and ``num_cpus`` only apply to a private head.
    """
    kwargs: dict[str, Any] = {"log_to_driver": False}
    if namespace is not None:
        kwargs["namespace"] = namespace
    if address == "local":
        kwargs.update(address="local", include_dashboard=False)
        if temp_dir:
            kwargs["_temp_dir"] = os.path.abspath(os.path.expanduser(temp_dir))
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    else:
        kwargs["address"] = address
    return kwargs


def connect_error(address: str, exc: BaseException, local_hint: str) -> ServerUnavailable:
    """The :class:`ServerUnavailable` for a failed ``ray.init`` at ``address``.

    ``local_hint`` says how to get a private head instead (e.g. "use cluster.address=local").
    """
    hint = (
        f"start one (ray start --head) or {local_hint}"
        if address.startswith("auto")
        else f"check cluster.address (HOST:PORT of the Ray head's GCS), or {local_hint}"
    )
    return ServerUnavailable(
        f"cannot connect to the Ray cluster at {address!r}: {str(exc).rstrip('.')}. {hint[0].upper()}{hint[1:]}."
    )


def recorded_cluster() -> str | None:
    """The address ``auto`` would join from Ray's ``ray_current_cluster`` file, or ``None``.

    Ray reads that file (left by the last ``ray start``, under ``$RAY_TMPDIR``, ``$TMPDIR`` or
    /tmp, then ``ray/``) only when no GCS process runs on this host; otherwise it joins that process.
    """
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        recorded = Path(base, "ray", "ray_current_cluster").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not recorded or _gcs_server_running():
        return None
    return recorded


def _gcs_server_running() -> bool:
    """Whether a Ray GCS server process runs on this host."""
    return bool(pids_named("gcs_server"))


def gcs_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` that ``address`` joins; ``None`` if it cannot be known before ``ray.init``.

    ``auto`` means ``$RAY_ADDRESS``, else the cluster recorded by the last ``ray start`` (when no
    GCS runs here: a stale record would make ``ray.init`` retry for minutes).
    """
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip() or recorded_cluster() or "auto"
    if address in {"auto", "local"}:
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)


def probe_gcs(address: str, local_hint: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Fail fast with :class:`ServerUnavailable` when nothing listens at ``address``.

    ``ray.init`` keeps retrying an unreachable GCS for minutes; a plain TCP connect answers at once.
    """
    target = gcs_host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        shown = address if address != "auto" else f"auto ({target[0]}:{target[1]}, from {_auto_source()})"
        raise connect_error(shown, exc, local_hint) from exc


def _auto_source() -> str:
    """Where ``auto`` took its address from, for error messages."""
    if os.environ.get("RAY_ADDRESS", "").strip():
        return "$RAY_ADDRESS"
    return "the ray_current_cluster file of the last 'ray start'; remove it if that cluster is gone"


def init_ray(
    address: str,
    *,
    namespace: str | None = None,
    temp_dir: str | None = None,
    num_cpus: float | None = None,
    local_hint: str = "use cluster.address=local to start a private head",
) -> ModuleType:
    """``ray.init`` for ``address`` (see :func:`init_kwargs`); return the ``ray`` module.

    Raises :class:`ConfigError` when Ray is not installed and :class:`ServerUnavailable` when
    the cluster cannot be reached.
    """
    ray = import_ray(address)
    probe_gcs(address, local_hint)
    kwargs = init_kwargs(address, namespace=namespace, temp_dir=temp_dir, num_cpus=num_cpus)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise connect_error(address, exc, local_hint) from exc
    return ray
