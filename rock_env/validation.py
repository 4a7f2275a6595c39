"""Checks of every input a sandbox call takes, shared by the local SDK and the server's wire models.

Each ``check_*`` function returns its (possibly normalised) value or raises
:class:`~rock_env.errors.InvalidArgument` (HTTP 422) with a message that names the bad
input and says what to pass instead. The SDK calls them at the top of its public methods
and the wire models (:mod:`rock_env.protocol`, :class:`~rock_env.sandbox.models.SandboxConfig`)
in their pydantic validators, so a call that fails validation never reaches a session,
locally or through a server, and both ways raise the same class with the same reason.

What is refused: NUL bytes in a command, an argv item, a working directory, a path, an env
var name or value, a session name; env var names that are not ``[A-Za-z_][A-Za-z0-9_]*``;
timeouts that are not finite, not positive or longer than :data:`MAX_TIMEOUT`; sizes and
counts outside their ranges (:data:`MAX_SIZE`, :data:`MAX_OUTPUT_LIMIT`, :data:`MAX_PIDS`,
:data:`MAX_CPUS`).

This module imports nothing of the sandbox package but the errors, so that the wire models
can use it without pulling in the runtimes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from rock_env.errors import InvalidArgument

#: Longest timeout (and ttl) accepted, in seconds: 7 days. A longer wait is a mistake or an attack
#: (``1e21`` overflows the clocks and ``select`` below the session).
MAX_TIMEOUT = 7 * 24 * 3600.0
#: Longest sandbox lifetime (``ttl``, ``idle_ttl``) accepted, in seconds: 365 days.
MAX_TTL = 365 * 24 * 3600.0
#: Largest memory or disk size accepted, in bytes (16 TiB).
MAX_SIZE = 1 << 44
#: Largest per-command output cap accepted, in bytes (1 GiB; the whole output travels in one answer).
MAX_OUTPUT_LIMIT = 1 << 30
#: Largest pids limit accepted (the kernel's own ceiling of ``pid_max``).
MAX_PIDS = 1 << 22
#: Largest CPU count accepted.
MAX_CPUS = 4096.0
#: Longest path or working directory accepted, in characters (Linux's PATH_MAX).
MAX_PATH = 4096
#: Longest session name accepted.
MAX_SESSION_NAME = 128
#: Most environment variables one call may set.
MAX_ENV_VARS = 4096
#: Longest environment variable name accepted.
MAX_ENV_NAME = 1024

#: What an environment variable name must look like (POSIX, as every shell accepts it).
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: JSON-schema patterns of the same rules, for the OpenAPI document of the wire models.
NO_NUL_PATTERN = "^[^\\u0000]*$"
ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_text(value: object, what: str, *, allow_empty: bool = True) -> str:
    """``value`` if it is a string without NUL bytes (and not empty unless ``allow_empty``)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}: {_shown(value)}.")
    if "\x00" in value:
        raise InvalidArgument(
            f"{what} contains a NUL byte (\\0) at position {value.index(chr(0))}; the kernel cannot pass one "
            "in a command, argument, path or environment variable. Remove it."
        )
    if not allow_empty and not value:
        raise InvalidArgument(f"{what} is empty; give a non-empty string.")
    return value


def check_command(cmd: object, what: str = "command") -> str | list[str]:
    """A command: a string (run by bash) or a non-empty list of strings (argv), without NUL bytes."""
    if isinstance(cmd, str):
        return check_text(cmd, what)
    if isinstance(cmd, (list, tuple)):
        if not cmd:
            raise InvalidArgument(
                f"{what} is an empty list; give a string (run by bash) or a non-empty list of strings (argv)."
            )
        for i, item in enumerate(cmd):
            check_text(item, f"{what}[{i}]")
        return list(cmd)
    raise InvalidArgument(
        f"{what} must be a string (run by bash) or a non-empty list of strings, got {type(cmd).__name__}: "
        f"{_shown(cmd)}."
    )


def check_env_name(name: object, what: str = "env") -> str:
    """An environment variable name: ``[A-Za-z_][A-Za-z0-9_]*`` (no ``=``, no NUL, not empty)."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{what}: variable names must be strings, got {type(name).__name__}: {_shown(name)}.")
    if len(name) > MAX_ENV_NAME or not ENV_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"{what}: {_shown(name)} is not a valid environment variable name; use letters, digits and '_', "
            "not starting with a digit (e.g. 'MY_VAR'), without '=' or NUL bytes."
        )
    return name


def check_env(env: object, what: str = "env") -> dict[str, str] | None:
    """Environment variables: ``None`` or a mapping of valid names to strings without NUL bytes."""
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise InvalidArgument(f"{what} must be a dict of name -> value strings, got {type(env).__name__}.")
    if len(env) > MAX_ENV_VARS:
        raise InvalidArgument(f"{what} sets {len(env)} variables; at most {MAX_ENV_VARS} are accepted.")
    out: dict[str, str] = {}
    for name, value in env.items():
        check_env_name(name, what)
        out[name] = check_text(value, f"{what}[{name!r}]")
    return out


def check_duration(value: object, what: str, *, cap: float = MAX_TIMEOUT, allow_none: bool = True) -> float | None:
    """A number of seconds: finite, positive, at most ``cap`` (``None`` passes if ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be a number of seconds, got {type(value).__name__}: {_shown(value)}.")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        seconds = math.inf
    if not math.isfinite(seconds):
        raise InvalidArgument(f"{what}={value!r} is not a finite number of seconds; give e.g. 30 (or None).")
    if seconds <= 0:
        raise InvalidArgument(f"{what}={value!r} must be positive (seconds); give e.g. 30 (or None).")
    if seconds > cap:
        raise InvalidArgument(
            f"{what}={value!r} is too long: at most {cap:g} s ({cap / 86400:g} days) is accepted "
            f"(rock_env.validation.{'MAX_TTL' if cap == MAX_TTL else 'MAX_TIMEOUT'})."
        )
    return seconds


def check_timeout(timeout: object, what: str = "timeout") -> float | None:
    """A command timeout: ``None`` (the default) or finite seconds in ``(0, MAX_TIMEOUT]``."""
    return check_duration(timeout, what)


def check_path(path: object, what: str = "path") -> str:
    """A path inside the sandbox: a non-empty string without NUL bytes, at most :data:`MAX_PATH` long."""
    text = check_text(path, what, allow_empty=False)
    if len(text) > MAX_PATH:
        raise InvalidArgument(f"{what} is {len(text)} characters long; at most {MAX_PATH} are accepted.")
    return text


def check_cwd(cwd: object, what: str = "cwd") -> str | None:
    """A working directory: ``None`` (the sandbox's workdir) or a path."""
    return None if cwd is None else check_path(cwd, what)


def check_session_name(name: object, what: str = "session", *, allow_none: bool = False) -> str | None:
    """A session name: 1 to :data:`MAX_SESSION_NAME` printable characters (``None`` if ``allow_none``)."""
    if name is None and allow_none:
        return None
    text = check_text(name, f"{what} name", allow_empty=False)
    if len(text) > MAX_SESSION_NAME:
        raise InvalidArgument(f"{what} name is {len(text)} characters long; at most {MAX_SESSION_NAME} are accepted.")
    if any(ord(c) < 32 or ord(c) == 127 for c in text) or "/" in text:
        raise InvalidArgument(
            f"{what} name {_shown(text)} contains a control character or '/'; use letters, digits, '-', '_', '.'."
        )
    return text


def check_count(value: object, what: str, *, low: int = 1, high: int) -> int:
    """An integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an integer, got {type(value).__name__}: {_shown(value)}.")
    if not low <= value <= high:
        raise InvalidArgument(f"{what}={value} is out of range: give an integer from {low} to {high}.")
    return value


def check_size_bytes(value: int, what: str, *, high: int = MAX_SIZE) -> int:
    """A size in bytes in ``[1, high]``."""
    if value < 1 or value > high:
        raise InvalidArgument(f"{what}={value} bytes is out of range: give 1 byte to {high} bytes ({high >> 30} GiB).")
    return value


def check_cpus(value: object, what: str = "cpus") -> float | None:
    """A CPU count: ``None`` or finite, positive, at most :data:`MAX_CPUS`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what}={_shown(value)} is not a number of CPUs; give e.g. 1.5.")
    try:
        cpus = float(value)
    except OverflowError:
        cpus = math.inf
    if not math.isfinite(cpus):
        raise InvalidArgument(f"{what}={_shown(value)} is not a finite number of CPUs; give e.g. 1.5.")
    if not 0 < cpus <= MAX_CPUS:
        raise InvalidArgument(f"{what}={_shown(value)} is out of range: give more than 0 and at most {MAX_CPUS:g}.")
    return cpus


# --- one call per SDK method -----------------------------------------------------------------


def check_run(cmd: object, session: object = None, timeout: object = None) -> None:
    """The inputs of ``Sandbox.run``: a command string, a session name (or None), a timeout."""
    if not isinstance(cmd, str):
        raise InvalidArgument(f"run() takes a command string, got {type(cmd).__name__}; use exec() for argv lists")
    check_text(cmd, "command")
    check_session_name(session, allow_none=True)
    check_timeout(timeout)


def check_exec(cmd: object, cwd: object = None, env: object = None, timeout: object = None) -> None:
    """The inputs of ``Sandbox.exec`` / ``spawn`` / ``stream``."""
    check_command(cmd)
    check_cwd(cwd)
    check_env(env)
    check_timeout(timeout)


def check_session(name: object, env: object = None, cwd: object = None) -> None:
    """The inputs of ``Sandbox.create_session``."""
    check_session_name(name)
    check_env(env)
    check_cwd(cwd)


def check_paths(*paths: object) -> None:
    """Paths of the file API (``write_file``, ``read_file``, ``list_dir``, ``upload``, ``download``)."""
    for path in paths:
        check_path(path)


def reason_of(exc: BaseException) -> InvalidArgument | None:
    """The :class:`InvalidArgument` a pydantic validator raised, if ``exc`` carries one (else None)."""
    errors: list[Any] = []
    with_errors = getattr(exc, "errors", None)
    if callable(with_errors):
        try:
            errors = list(with_errors())
        except Exception:
            errors = []
    for err in errors:
        cause = (err.get("ctx") or {}).get("error") if isinstance(err, dict) else None
        if isinstance(cause, InvalidArgument):
            return cause
    return None


__all__ = [
    "ENV_NAME_PATTERN",
    "ENV_NAME_RE",
    "MAX_CPUS",
    "MAX_ENV_VARS",
    "MAX_OUTPUT_LIMIT",
    "MAX_PATH",
    "MAX_PIDS",
    "MAX_SESSION_NAME",
    "MAX_SIZE",
    "MAX_TIMEOUT",
    "MAX_TTL",
    "NO_NUL_PATTERN",
    "check_command",
    "check_count",
    "check_cpus",
    "check_cwd",
    "check_duration",
    "check_env",
    "check_env_name",
    "check_exec",
    "check_path",
    "check_paths",
    "check_run",
    "check_session",
    "check_session_name",
    "check_size_bytes",
    "check_text",
    "check_timeout",
    "reason_of",
]
