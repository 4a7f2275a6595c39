"""One exception hierarchy for the whole library.

Every error the library raises on purpose is a :class:`RockEnvError`. Each class carries
an HTTP status (``http_status``) so that the server can map it to a response and the
remote clients can map the response back to the same class (see :func:`error_class`).
Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

from typing import ClassVar


class RockEnvError(Exception):
    """Base class of every error raised by rock_env."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- configuration and input -------------------------------------------------------------


class InvalidArgument(RockEnvError, ValueError):
    """An argument has the wrong type or value."""

    http_status = 422


class ConfigError(InvalidArgument):
    """A configuration (pydantic model, Hydra node, CLI option) is invalid."""


# --- registry ----------------------------------------------------------------------------


class RegistryError(RockEnvError):
    """Base class of registry errors."""


class InvalidEnvId(RegistryError, ValueError):
    """An env id is not a string or does not follow the id grammar."""

    http_status = 422


class EnvNotFound(RegistryError, LookupError):
    """No env is registered under the id; the message lists close matches."""

    http_status = 404


class NamespaceNotFound(EnvNotFound):
    """No env is registered in the namespace of the id."""


class AlreadyRegistered(RegistryError):
    """An env id is registered already (pass ``override=True`` to replace it)."""

    http_status = 409


class InvalidEnvKwargs(RegistryError, TypeError):
    """A keyword argument the env does not accept; the message names the accepted ones."""

    http_status = 422


class EntryPointError(RegistryError):
    """An entry point (``"module:attr"``) cannot be imported or called."""


class PluginError(RegistryError):
    """A third-party plugin in the ``rock_env.envs`` entry-point group failed to load."""


class DependencyMissing(RockEnvError, ImportError):
    """An optional dependency is not installed; the message names the package and the ``pip install`` to run.

    A 424 (Failed Dependency) over the wire: the request was fine, this host lacks a package.
    """

    http_status = 424


# --- episodes ----------------------------------------------------------------------------


class EnvError(RockEnvError):
    """Base class of errors raised by a running env."""

    http_status = 409


class ResetNeeded(EnvError):
    """``step`` was called before ``reset`` (or after ``close``)."""


class EnvClosed(ResetNeeded):
    """The env was closed; make a new one."""


class InvalidAction(EnvError, ValueError):
    """An action that the env cannot even interpret (e.g. not a string)."""

    http_status = 422


class SubEnvError(EnvError):
    """A sub-env of a vector env raised an error; the message names its index and the original error.

    ``env_index`` is the index of the sub-env (``None`` if unknown), ``error_type`` the name of the
    original exception class and ``remote_traceback`` its traceback text (async mode). The vector
    env is closed afterwards: make a new one.
    """

    http_status = 500

    def __init__(
        self,
        message: str = "",
        *,
        env_index: int | None = None,
        error_type: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.env_index = env_index
        self.error_type = error_type
        self.remote_traceback = remote_traceback


class VectorWorkerDied(SubEnvError):
    """A worker process of an async vector env died or stopped answering (killed, crashed, timed out).

    ``env_indices`` lists the sub-envs it hosted. The vector env is closed afterwards: make a new one.
    """

    def __init__(self, message: str = "", *, env_indices: tuple[int, ...] = (), exitcode: int | None = None) -> None:
        super().__init__(message, env_index=env_indices[0] if env_indices else None, error_type="VectorWorkerDied")
        self.env_indices = env_indices
        self.exitcode = exitcode


# --- sandboxes ---------------------------------------------------------------------------


class SandboxError(RockEnvError):
    """Base class of sandbox errors."""


class RuntimeUnavailable(SandboxError):
    """The requested runtime (bubblewrap, Docker) is not installed or not reachable."""

    http_status = 503


class ImageNotFound(SandboxError):
    """The image (Docker image or rootfs) does not exist."""

    http_status = 404


class SandboxStartError(SandboxError):
    """The sandbox could not be started."""


class SandboxNotFound(SandboxError, LookupError):
    """No sandbox with that id (it may have been stopped or reaped)."""

    http_status = 404


class SandboxClosed(SandboxError):
    """The sandbox was stopped; start a new one."""

    http_status = 409


class SessionNotFound(SandboxError, LookupError):
    """No bash session with that name in the sandbox."""

    http_status = 404


class SessionExists(SandboxError):
    """A bash session with that name exists already."""

    http_status = 409


class PathOutsideSandbox(SandboxError, PermissionError):
    """A path escapes the sandbox (``..``, an absolute path outside it, a symlink out)."""

    http_status = 403


class SandboxFileNotFound(SandboxError, FileNotFoundError):
    """A file or directory does not exist inside the sandbox."""

    http_status = 404


class SnapshotNotFound(SandboxError, LookupError):
    """No snapshot with that id."""

    http_status = 404


class ImageBuildError(SandboxError):
    """Building a base image failed (no Debian mirror, debootstrap error, not root)."""


# --- server and remote -------------------------------------------------------------------


class RemoteError(RockEnvError):
    """Base class of errors in the client/server tier."""

    http_status = 502


class ServerUnavailable(RemoteError, ConnectionError):
    """The admin server cannot be reached at the given URL."""

    http_status = 503


class Unauthorized(RemoteError, PermissionError):
    """The API token is missing or wrong."""

    http_status = 401


class Forbidden(RemoteError, PermissionError):
    """The server refuses the request for this caller (the message says why and what would allow it)."""

    http_status = 403


class PolicyViolation(Forbidden):
    """The request asks for something the server's policy does not hand out to clients.

    E.g. ``runtime="local"`` (host access) without ``worker.allow_local_runtime=true``, a host
    path outside ``worker.data_dirs``, or an entry point named by the client. The message
    names the setting that would allow it.
    """


class QuotaExceeded(RemoteError):
    """A per-token quota (envs, sandboxes, vector sub-envs, vector workers) is used up; the message names it."""

    http_status = 429


class WorkerLost(RemoteError):
    """The worker hosting an env or sandbox stopped answering; the object is gone."""

    http_status = 410


class NoCapacity(RemoteError):
    """No worker has the free capacity or runtime that the request needs."""

    http_status = 503


class RequestInvalid(RemoteError, ValueError):
    """A request body is malformed or too large."""

    http_status = 422


class EnvInstanceNotFound(RemoteError, LookupError):
    """No live env or vector env with that instance id on the server (closed, reaped or never made)."""

    http_status = 404


class PayloadTooLarge(RequestInvalid):
    """A request body is larger than the server accepts."""

    http_status = 413


class RequestTimeout(RequestInvalid):
    """A client sent its request body too slowly (or stopped sending)."""

    http_status = 408


# --- env hub -----------------------------------------------------------------------------


class HubError(RegistryError):
    """Base class of env hub errors (``rock-env hub``, ``hub:NAME-vN`` ids)."""

    http_status = 422


class HubSpecInvalid(HubError, ValueError):
    """A hub spec is malformed or names something the server cannot build; the message says what and how to fix it."""

    http_status = 422


class HubVersionConflict(HubError):
    """A hub spec version exists already with other content (versions are immutable: push a new version)."""

    http_status = 409


class HubSpecNotFound(EnvNotFound):
    """No hub spec with that name (or version); the message lists the versions there are."""


# --- model service (rock_env.agents) ------------------------------------------------------


class ModelServiceError(RockEnvError):
    """Base class of the model service's errors."""


class ModelRequestNotFound(ModelServiceError, LookupError):
    """No pending model request with that id (answered already, timed out, or its sandbox stopped)."""

    http_status = 404


class UpstreamError(ModelServiceError):
    """The upstream OpenAI-compatible server of a pass-through model service failed or is unreachable."""

    http_status = 502


# --- agent envs (rock_env.agents) -------------------------------------------------------


class HarnessFailed(EnvError):
    """An agent env's harness exited, or asked nothing of the model, before its episode could start."""

    http_status = 502


def _all_subclasses(cls: type[RockEnvError]) -> list[type[RockEnvError]]:
    out: list[type[RockEnvError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_class(name: str) -> type[RockEnvError]:
    """Return the error class called ``name`` (for mapping wire errors back); default base."""
    for cls in _all_subclasses(RockEnvError):
        if cls.__name__ == name:
            return cls
    return RockEnvError


__all__ = [name for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, RockEnvError)] + [
    "error_class"
]
