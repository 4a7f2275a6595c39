"""Where built images live and how a name finds one: the data directory, ``images/``, names and manifests.

Layout under ``<data dir>/images``: ``<key>/`` per build (``rootfs/``, ``rootfs.tar``,
``manifest.json``), ``by-name/<name>`` a link to the build an image name points to, and
``<key>.lock`` serialising builds of one key. The builder (:mod:`.build`) writes it; the namespace
runtime resolves names through :func:`base_rootfs`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from rock_env.errors import ImageNotFound

DEFAULT_SUITE = "bookworm"
DEFAULT_IMAGE_NAME = f"rock-env/base:{DEFAULT_SUITE}"
#: the data directory of root (namespace sandboxes run under unprivileged uids that must reach its images)
SYSTEM_DATA_DIR = Path("/var/lib/rock-env")


def data_dir() -> Path:
    """The library's data directory: ``$ROCK_ENV_DATA_DIR``, else ``$XDG_DATA_HOME/rock-env``,
    else ``/var/lib/rock-env`` for root and ``~/.local/share/rock-env`` for other users.

    Root's home is private (mode 700), and a namespace sandbox's mounts are made by its
    unprivileged host uid, which must be able to reach the rootfs it binds read-only.
    """
    explicit = os.environ.get("ROCK_ENV_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    if not xdg and os.geteuid() == 0:
        return SYSTEM_DATA_DIR
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "rock-env").absolute()


def images_dir(root: Path | None = None) -> Path:
    """Where built rootfs directories and tarballs are kept (``<data dir>/images``)."""
    return (data_dir() if root is None else Path(root).absolute()) / "images"


def link_name(root: Path, name: str, key: str) -> None:
    """Point the image name ``name`` at the build ``key`` under ``root`` (atomically replacing an older link)."""
    by_name = root / "by-name"
    by_name.mkdir(parents=True, exist_ok=True)
    link = by_name / safe_name(name)
    tmp = by_name / f".{safe_name(name)}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(Path("..") / key)
    tmp.replace(link)


def safe_name(name: str) -> str:
    """``name`` as one file name (every character but letters, digits, ``._-`` replaced by ``_``)."""
    return re.sub(r"[^A-Za-z0-9._\-]", "_", name)


def base_rootfs(name: str = DEFAULT_IMAGE_NAME, *, root: Path | None = None) -> Path:
    """The rootfs directory built for ``name`` (for the namespace runtime).

    Raises :class:`ImageNotFound` with the command to build it when there is none.
    """
    link = images_dir(root) / "by-name" / safe_name(name)
    target = link / "rootfs"
    if not target.is_dir():
        raise ImageNotFound(
            f"no rootfs built for image {name!r} under {images_dir(root)}; build it with "
            f"'rock-env image build-base --name {name} --rootfs-only' (or without --rootfs-only for Docker too)"
        )
    return target.resolve()


def list_built(root: Path | None = None) -> list[dict[str, Any]]:
    """Manifests of every cached rootfs build under the data directory."""
    out: list[dict[str, Any]] = []
    base = images_dir(root)
    if not base.is_dir():
        return out
    for manifest in sorted(base.glob("*/manifest.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(manifest.read_text()))
    return out


__all__ = [
    "DEFAULT_IMAGE_NAME",
    "DEFAULT_SUITE",
    "SYSTEM_DATA_DIR",
    "base_rootfs",
    "data_dir",
    "images_dir",
    "link_name",
    "list_built",
    "safe_name",
]
