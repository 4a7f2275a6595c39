"""What a server hands out to its clients: one policy for every path to a sandbox or an env.

Every route that gives a client a sandbox or an env (``/api/v1/sandboxes``, ``/api/v1/envs``,
``/api/v1/vecs``, the ROCK-compatible routes, and whatever later routes add) passes the
client's request through :class:`ServerPolicy` before anything is built:

- **No host access.** ``runtime="local"`` runs commands on the host without isolation; it is
  refused with :class:`~rock_env.errors.PolicyViolation` (HTTP 403) unless the server was
  started with ``worker.allow_local_runtime=true`` ("clients get host access"). ``runtime="auto"``
  is resolved here, on the server, to ``namespace``, else ``docker``, and to ``local`` only if
  allowed: it never falls back to the host on its own.
- **No host paths.** Values that name files or directories (``dataset=``, ``tasks=``, ``image=``
  when it is a path, mounts, any ``*_path``/``*_dir``/``*_file`` kwarg, ``sandbox={"image": ...}``)
  are refused unless they lie, after resolving symlinks and ``..``, under one of the directories
  the admin serves (``worker.data_dirs``, empty by default). Image *names* (``rock-env/base:bookworm``,
  ``python:3.11``) are not paths and pass.
- **No code named by the client.** A server never imports a module or calls an entry point a
  client named: ``entry_point=``, Hydra's ``_target_`` and friends anywhere in the kwargs are refused;
  ids resolve only through the registry (built-ins, installed plugins, GEM), never by import.
- **No other servers.** ``base_url=``/``token=`` env kwargs would make the server call out to a
  URL the client chose; refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rock_env.errors import InvalidArgument, PolicyViolation
from rock_env.registry.spec import EnvSpec
from rock_env.sandbox.runtimes import AUTO_ORDER, deny_local_runtime

if TYPE_CHECKING:
    from rock_env.sandbox.models import SandboxConfig

logger = logging.getLogger(__name__)

#: Runtime names a client may ask for.
RUNTIME_NAMES = ("auto", "local", "namespace", "docker")

#: Kwarg names that name a file or directory (compared lower-case), besides the suffixes below.
FILE_KEYS = frozenset(
    {
        "dataset",
        "datasets",
        "tasks",
        "task_file",
        "image",
        "rootfs",
        "path",
        "paths",
        "file",
        "files",
        "filename",
        "dir",
        "dirs",
        "directory",
        "root",
        "mount",
        "mounts",
        "volume",
        "volumes",
        "data_files",
        "config_file",
    }
)
#: Kwarg name endings that name a file or directory.
FILE_SUFFIXES = ("_path", "_paths", "_dir", "_dirs", "_file", "_files", "_root", "_dataset", "_directory", "_mounts")
#: Kwargs that would make the server import or call what the client names.
CODE_KEYS = frozenset({"entry_point", "_target_", "_partial_", "_args_", "_recursive_", "_convert_"})
#: Kwargs that would make the server call out to another server.
REMOTE_KEYS = frozenset({"base_url", "token"})
#: Keys of a vector env's ``kwargs`` that belong to the vector env, not to its sub-envs.
VEC_KEYS = frozenset({"env_kwargs", "timeout", "close_timeout"})
#: Fields of the vector request that must not be repeated inside ``kwargs``.
VEC_FIELDS = frozenset({"mode", "autoreset_mode", "seed", "num_workers", "num_envs", "env_id"})

_ENABLE_LOCAL = (
    "Start the server with worker.allow_local_runtime=true to allow it (clients then get host access: "
    "their commands run on the server's host without isolation), e.g. "
    "rock-env admin start worker.allow_local_runtime=true"
)


def is_file_key(key: str) -> bool:
    """Whether a kwarg called ``key`` names a file or directory."""
    low = key.lower()
    return low in FILE_KEYS or low.endswith(FILE_SUFFIXES)


def looks_like_path(value: str) -> bool:
    """Whether ``value`` would be read as a host path (not a name such as ``rock-env/base:bookworm``).

    Absolute, home-relative and dot-relative paths, anything with a ``..`` component or a
    backslash, and any relative name that exists on this host (relative to the server's cwd).
    """
    if not value:
        return False
    if value.startswith(("/", "~", ".")) or "\\" in value or "\x00" in value:
        return True
    if ".." in value.replace("\\", "/").split("/"):
        return True
    try:
        return os.path.lexists(value)
    except (OSError, ValueError):
        return True


@dataclass
class ServerPolicy:
    """The rules above, for one server process (see :meth:`from_settings`)."""

    allow_local_runtime: bool = False
    data_dirs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        resolved = []
        for d in self.data_dirs:
            real = os.path.realpath(os.path.expanduser(str(d)))
            if real == os.sep:
                raise InvalidArgument("worker.data_dirs must not contain '/': that would serve the whole host.")
            resolved.append(real)
        self._roots = resolved

    @classmethod
    def from_settings(cls, settings: Any) -> ServerPolicy:
        """The policy of a :class:`~rock_env.server.settings.ServerSettings`."""
        return cls(allow_local_runtime=bool(settings.allow_local_runtime), data_dirs=list(settings.data_dirs))

    def apply_to_process(self) -> None:
        """Make the policy hold for every sandbox this server process starts, not only those its routes see.

        Without ``allow_local_runtime`` no code in the process (an env that makes its own sandbox,
        a plugin, ``runtime="auto"`` on a host without bubblewrap or Docker) can fall back to the
        unisolated ``local`` runtime. Called by the server entry points (``rock-env admin start``,
        ``rock-env worker start``, Ray worker actors), which own their process.
        """
        deny_local_runtime(
            None if self.allow_local_runtime else f"runtime='local' is refused on this server. {_ENABLE_LOCAL}"
        )

    # -- runtimes -------------------------------------------------------------------------

    def auto_candidates(self) -> tuple[str, ...]:
        """What ``runtime="auto"`` may become here, in order of preference."""
        return (*AUTO_ORDER, "local") if self.allow_local_runtime else AUTO_ORDER

    def check_runtime(self, runtime: object, what: str = "runtime") -> str | None:
        """Refuse ``local`` (unless allowed) and unknown names; the runtime name (None if unset)."""
        if runtime is None:
            return None
        if not isinstance(runtime, str) or runtime not in RUNTIME_NAMES:
            raise InvalidArgument(f"{what}={runtime!r} is not a sandbox runtime; choose one of {list(RUNTIME_NAMES)}.")
        if runtime == "local" and not self.allow_local_runtime:
            raise PolicyViolation(
                f"{what}='local' is refused: this server does not hand out runtime='local', which runs commands on "
                f"its host without isolation. Use runtime='namespace', 'docker' or 'auto'. {_ENABLE_LOCAL}."
            )
        return runtime

    def resolve_runtime(self, runtime: str | None, available: Iterable[str], what: str = "runtime") -> str:
        """A concrete runtime for ``runtime`` among a worker's ``available`` ones (``auto`` resolved here)."""
        name = self.check_runtime(runtime, what) or "auto"
        have = list(available)
        if name != "auto":
            return name
        for candidate in self.auto_candidates():
            if candidate in have:
                return candidate
        raise self.no_isolating_runtime(have)

    def no_isolating_runtime(self, have: Sequence[str]) -> PolicyViolation:
        """The refusal of ``runtime='auto'`` when no worker has an isolating runtime."""
        return PolicyViolation(
            f"runtime='auto' found no isolating runtime on this server's workers (they have {list(have) or 'none'}; "
            "namespace needs bubblewrap, docker needs the Docker daemon), and the server does not fall back to "
            f"runtime='local' (host access). Install bubblewrap or Docker on the workers. {_ENABLE_LOCAL}."
        )

    # -- host paths -----------------------------------------------------------------------

    def check_host_path(
        self, value: str, what: str, instead: str = "Send the data inline instead (e.g. dataset=[{...}, ...])"
    ) -> None:
        """Refuse a host path outside the served data directories (symlinks and ``..`` resolved).

        ``instead`` says what the client can do rather than naming a host path.
        """
        try:
            real = os.path.realpath(os.path.expanduser(value))
        except (OSError, ValueError) as exc:
            raise PolicyViolation(f"{what}={value!r} is not a usable path ({exc}).") from None
        for root in self._roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return
        served = self.data_dirs or []
        raise PolicyViolation(
            f"{what}={value!r} names a file or directory on the server's host, and this server serves only paths "
            f"under its data directories (worker.data_dirs={served}); {value!r} "
            f"{'resolves to ' + repr(real) + ', which is ' if real != value else 'is '}not under one. {instead}, "
            "or ask the admin to serve its directory: rock-env admin start 'worker.data_dirs=[/srv/data]'."
        )

    def check_image(self, image: object, what: str = "image") -> None:
        """An image name passes; an image that is a host path must lie under a data directory."""
        if image is None:
            return
        if not isinstance(image, str):
            raise InvalidArgument(f"{what} must be an image name or a rootfs path, got {type(image).__name__}.")
        if "\x00" in image:
            raise InvalidArgument(f"{what} contains a NUL byte; give an image name such as 'rock-env/base:bookworm'.")
        if looks_like_path(image):
            self.check_host_path(image, what, "Give the name of an image instead (e.g. 'rock-env/base:bookworm')")

    def check_file_value(self, value: object, what: str) -> None:
        """Check the value of a kwarg that names files: a string, a list of strings, or a dict of them."""
        if isinstance(value, str):
            if "\x00" in value:
                raise InvalidArgument(f"{what} contains a NUL byte.")
            if looks_like_path(value):
                self.check_host_path(value, what)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    self.check_file_value(item, f"{what}[{i}]")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(item, (str, list, tuple)):
                    self.check_file_value(item, f"{what}[{key!r}]")

    # -- sandboxes ------------------------------------------------------------------------

    def check_sandbox_fields(self, config: Mapping[str, Any], what: str = "config") -> None:
        """Check what a client put in a sandbox config (runtime, image, paths); nothing is changed."""
        if not isinstance(config, Mapping):
            raise InvalidArgument(f"{what} must be an object of SandboxConfig fields, got {type(config).__name__}.")
        self.check_runtime(config.get("runtime"), f"{what}.runtime")
        self.check_image(config.get("image"), f"{what}.image")
        for key, value in config.items():
            if isinstance(key, str) and key not in ("image", "workdir") and is_file_key(key):
                self.check_file_value(value, f"{what}.{key}")
        self.check_no_code(config, what)

    # -- code -----------------------------------------------------------------------------

    def check_no_code(self, value: object, what: str) -> None:
        """Refuse entry points and Hydra targets anywhere in ``value``."""
        stack: list[tuple[object, str, int]] = [(value, what, 0)]
        while stack:
            item, where, depth = stack.pop()
            if depth > 64:
                raise InvalidArgument(f"{where} is nested more than 64 levels deep.")
            if isinstance(item, Mapping):
                for key, sub in item.items():
                    if isinstance(key, str) and key in CODE_KEYS:
                        raise PolicyViolation(
                            f"{where}.{key} is refused: a server never imports a module or calls an entry point that "
                            "a client names. Use a registered env id (rock.list_envs() on the server); new envs are "
                            "installed on the server as plugins (entry-point group rock_env.envs) by its admin."
                        )
                    stack.append((sub, f"{where}.{key}", depth + 1))
            elif isinstance(item, (list, tuple)):
                stack.extend((sub, f"{where}[{i}]", depth + 1) for i, sub in enumerate(item))

    # -- envs -----------------------------------------------------------------------------

    def check_env_kwargs(self, kwargs: Mapping[str, Any], what: str = "kwargs") -> None:
        """Check a client's env kwargs (no rewriting): runtime, sandbox config, host paths, code, URLs."""
        self.check_no_code(kwargs, what)
        for key, value in kwargs.items():
            if key in REMOTE_KEYS and value is not None:
                raise PolicyViolation(
                    f"{what}.{key} is refused: on a server the env's sandbox is built by the server itself, never "
                    f"on another server a client names. Drop {key}= (the server is already remote)."
                )
            if key == "runtime":
                self.check_runtime(value, f"{what}.runtime")
            elif key == "sandbox":
                if value is not None:
                    self.check_sandbox_fields(value, f"{what}.sandbox")
            elif key == "image":
                self.check_image(value, f"{what}.image")
            elif is_file_key(key):
                self.check_file_value(value, f"{what}.{key}")

    def env_kwargs(self, spec: EnvSpec, kwargs: Mapping[str, Any], available: Iterable[str]) -> dict[str, Any]:
        """The checked kwargs of one env, with its sandbox runtime made concrete (never ``auto``).

        ``available`` are the runtimes of the worker that builds it. Only envs that need a
        sandbox and take ``runtime=`` get one set.
        """
        self.check_env_kwargs(kwargs)
        out = dict(kwargs)
        if not spec.needs_sandbox or not takes_runtime(spec):
            return out
        merged = {**spec.kwargs, **out}
        runtime = merged.get("runtime")
        if runtime is None:
            sandbox = merged.get("sandbox")
            runtime = sandbox.get("runtime") if isinstance(sandbox, Mapping) else getattr(sandbox, "runtime", None)
        if runtime in (None, "auto"):
            out["runtime"] = self.resolve_runtime(None, available)
        return out

    def vec_kwargs(self, spec: EnvSpec, kwargs: Mapping[str, Any], available: Iterable[str]) -> dict[str, Any]:
        """The checked kwargs of a vector env: its own keys, then each sub-env's kwargs as for one env."""
        repeated = sorted(k for k in kwargs if k in VEC_FIELDS)
        if repeated:
            raise InvalidArgument(
                f"kwargs repeats {repeated}: pass them as fields of the request (num_envs, mode, seed, ...), "
                "not inside kwargs."
            )
        out = {k: v for k, v in kwargs.items() if k in ("timeout", "close_timeout")}
        for key in ("timeout", "close_timeout"):
            if key in out and out[key] is not None:
                from rock_env.validation import check_duration

                out[key] = check_duration(out[key], f"kwargs.{key}")
        common = {k: v for k, v in kwargs.items() if k not in VEC_KEYS}
        per_env = kwargs.get("env_kwargs")
        if isinstance(per_env, (list, tuple)):
            out["env_kwargs"] = [
                self.env_kwargs(spec, {**_mapping(e, f"kwargs.env_kwargs[{i}]"), **common}, available)
                for i, e in enumerate(per_env)
            ]
            return out
        merged = {**_mapping(per_env, "kwargs.env_kwargs"), **common} if per_env is not None else common
        out.update(self.env_kwargs(spec, merged, available))
        return out


def sandbox_config_of(config: Mapping[str, Any]) -> SandboxConfig:
    """``config`` as a SandboxConfig; a :class:`~rock_env.errors.ConfigError` (422) as the local SDK raises."""
    from rock_env.sandbox.models import SandboxConfig

    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise InvalidArgument("a sandbox config must be an object of SandboxConfig fields.")
    return SandboxConfig(**dict(config))


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be an object of keyword arguments, got {type(value).__name__}.")
    return dict(value)


def takes_runtime(spec: EnvSpec) -> bool:
    """Whether the env's factory takes ``runtime=`` (imports the env's module)."""
    from rock_env.registry.factory import accepted_kwargs

    names, _ = accepted_kwargs(spec.load_entry_point())
    return "runtime" in names


__all__ = [
    "AUTO_ORDER",
    "CODE_KEYS",
    "FILE_KEYS",
    "FILE_SUFFIXES",
    "REMOTE_KEYS",
    "RUNTIME_NAMES",
    "ServerPolicy",
    "is_file_key",
    "looks_like_path",
    "sandbox_config_of",
    "takes_runtime",
]
