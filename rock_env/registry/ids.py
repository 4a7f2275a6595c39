"""The env id grammar.

An id is ``[namespace:]Name[-vN][-variant]``:

* ``game:Sokoban-v0-easy`` -> namespace ``game``, name ``Sokoban``, version 0, variant ``easy``
* ``code:Python-v0-strict`` -> ``code``, ``Python``, 0, ``strict``
* ``math:GSM8K`` -> ``math``, ``GSM8K``, no version, no variant (GEM's dataset ids)
* ``rg:game_of_life_halting`` -> ``rg``, ``game_of_life_halting``
* ``MyEnv-v1`` -> no namespace

The namespace is letters, digits, ``_`` and ``.`` (starting with a letter); the name is
letters, digits, ``_``, ``.`` and ``-`` (a ``-vN`` part inside it is read as the version).
Gymnasium-style aliases ``rock_env/Sokoban-easy-v0`` are handled in :mod:`rock_env.gym_compat`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rock_env.errors import InvalidEnvId

_NAMESPACE = r"[A-Za-z][A-Za-z0-9_.]*"
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_ID_RE = re.compile(rf"^(?:(?P<namespace>{_NAMESPACE}):)?(?P<rest>{_NAME})$")
_VERSION_RE = re.compile(r"^(?P<name>.+?)-v(?P<version>\d+)(?:-(?P<variant>[A-Za-z0-9_.\-]+))?$")

MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class ParsedId:
    """The parts of an env id."""

    namespace: str | None
    name: str
    version: int | None
    variant: str | None

    def __str__(self) -> str:
        return format_id(self.namespace, self.name, self.version, self.variant)


def format_id(namespace: str | None, name: str, version: int | None = None, variant: str | None = None) -> str:
    """Build an id string from its parts (the inverse of :func:`parse_id`)."""
    out = f"{namespace}:{name}" if namespace else name
    if version is not None:
        out += f"-v{version}"
    if variant:
        if version is None:
            raise InvalidEnvId(f"an id with a variant ({variant!r}) needs a version, e.g. {out}-v0-{variant}")
        out += f"-{variant}"
    return out


def check_id_type(env_id: object) -> str:
    """Return ``env_id`` if it is a non-empty string, else raise :class:`InvalidEnvId`."""
    if not isinstance(env_id, str):
        raise InvalidEnvId(
            f"env id must be a string such as 'game:Sokoban-v0-easy', got {type(env_id).__name__}: {env_id!r}. "
            "Use rock.list_envs() to see the registered ids."
        )
    if not env_id.strip():
        raise InvalidEnvId("env id is empty: pass an id such as 'game:Sokoban-v0-easy' (rock.list_envs() lists them).")
    if len(env_id) > MAX_ID_LENGTH:
        raise InvalidEnvId(f"env id is {len(env_id)} characters long; ids have at most {MAX_ID_LENGTH}.")
    return env_id


def parse_id(env_id: object) -> ParsedId:
    """Parse an env id; raise :class:`InvalidEnvId` with a fix when it is malformed."""
    text = check_id_type(env_id)
    match = _ID_RE.match(text)
    if match is None:
        hint = ""
        if text.count(":") > 1:
            hint = " It has more than one ':'; only one separates the namespace from the name."
        elif text != text.strip():
            hint = " It has leading or trailing whitespace."
        elif "/" in text:
            hint = " '/' is the Gymnasium alias form; rock.make takes 'namespace:Name-vN-variant'."
        raise InvalidEnvId(
            f"malformed env id {text!r}: expected '[namespace:]Name[-vN][-variant]', e.g. 'game:Sokoban-v0-easy'.{hint}"
        )
    namespace = match.group("namespace")
    rest = match.group("rest")
    version_match = _VERSION_RE.match(rest)
    if version_match is None:
        return ParsedId(namespace, rest, None, None)
    return ParsedId(
        namespace,
        version_match.group("name"),
        int(version_match.group("version")),
        version_match.group("variant"),
    )
