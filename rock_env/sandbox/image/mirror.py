"""The Debian mirror a base image is built from: the one apt uses on this machine.

Read from ``/etc/apt/sources.list`` (one-line format) and ``/etc/apt/sources.list.d/`` (one-line
and deb822 ``.sources`` files); ``$ROCK_ENV_DEBIAN_MIRROR`` wins.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rock_env.errors import ImageBuildError
from rock_env.sandbox.image.store import DEFAULT_SUITE

_SOURCES_LIST = Path("/etc/apt/sources.list")
_SOURCES_DIR = Path("/etc/apt/sources.list.d")


def _apt_source_entries(
    sources_list: Path = _SOURCES_LIST, sources_dir: Path = _SOURCES_DIR
) -> list[tuple[str, list[str], list[str]]]:
    """Every enabled ``deb`` source apt knows: (uri, suites, components), in apt's file order."""
    entries: list[tuple[str, list[str], list[str]]] = []
    files: list[Path] = []
    if sources_list.is_file():
        files.append(sources_list)
    if sources_dir.is_dir():
        files += sorted(p for p in sources_dir.iterdir() if p.suffix in {".list", ".sources"} and p.is_file())
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            entries += _parse_deb822(text)
        else:
            entries += _parse_one_line(text)
    return entries


def _parse_one_line(text: str) -> list[tuple[str, list[str], list[str]]]:
    out: list[tuple[str, list[str], list[str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line[4:])  # drop [arch=... signed-by=...]
        parts = line.split()
        if len(parts) >= 2:
            out.append((parts[0], [parts[1]], parts[2:]))
    return out


def _parse_deb822(text: str) -> list[tuple[str, list[str], list[str]]]:
    out: list[tuple[str, list[str], list[str]]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and last:
                fields[last] += " " + raw.strip()
                continue
            name, _, value = raw.partition(":")
            last = name.strip().lower()
            fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in {"no", "false", "0"}:
            continue
        for uri in fields.get("uris", "").split():
            out.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
    return out


def default_mirror(
    suite: str = DEFAULT_SUITE, *, sources_list: Path = _SOURCES_LIST, sources_dir: Path = _SOURCES_DIR
) -> str:
    """The Debian mirror apt uses on this machine for ``suite`` (``$ROCK_ENV_DEBIAN_MIRROR`` wins).

    Raises :class:`ImageBuildError` when apt has no source serving ``suite`` with the ``main`` component.
    """
    override = os.environ.get("ROCK_ENV_DEBIAN_MIRROR")
    if override:
        return override
    entries = _apt_source_entries(sources_list, sources_dir)
    for uri, suites, components in entries:
        if suite in suites and "main" in components:
            return uri
    known = sorted({f"{uri} {' '.join(suites)}" for uri, suites, _ in entries}) or ["(none)"]
    raise ImageBuildError(
        f"no apt source for Debian suite {suite!r} with component 'main' in {sources_list} or {sources_dir}/ "
        f"(apt sources found: {'; '.join(known)}). Pass a mirror explicitly "
        "(rock-env image build-base --mirror http://deb.debian.org/debian) or set ROCK_ENV_DEBIAN_MIRROR."
    )


__all__ = ["default_mirror"]
