"""What a namespace sandbox's root is made of: the image resolved to a rootfs, the secrets to mask, its shell.

``config.image`` names an image rock-env built (``rock-env image build-base``), or a rootfs
directory or tarball under one of :func:`image_roots` (:func:`resolve_rootfs`); ``None`` means the
host's system directories. Files and directories under ``/etc`` that hold secrets are found here
(:func:`secret_entries`, cached until one appears or goes) and masked by the mount plan
(:mod:`.bwrap`). A session's shell is an execute-only copy of the image's bash
(:func:`exec_only_shell`), which the kernel makes non-dumpable.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import stat
import subprocess
import threading
import time
from functools import lru_cache
from pathlib import Path

from rock_env.errors import ConfigError, ImageNotFound
from rock_env.paths import home_dir
from rock_env.sandbox.image.store import base_rootfs, images_dir

#: files under /etc that hold secrets: replaced by an empty file inside the sandbox
SECRET_FILES = ("shadow", "shadow-", "gshadow", "gshadow-", "security/opasswd", "ssh/ssh_host_*_key", "sudoers")
#: directories under /etc that hold secrets: replaced by an empty read-only tmpfs
SECRET_DIRS = ("ssl/private", "sudoers.d")
#: colon-separated directories under which ``image=`` may name a rootfs directory or tarball
IMAGE_ROOTS_ENV = "ROCK_ENV_IMAGE_ROOTS"


def _extract_rootfs(tarball: Path) -> Path:
    """Extract a rootfs tarball once into a cache dir (keyed by path, size and mtime)."""
    st = tarball.stat()
    key = hashlib.sha256(f"{tarball.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache_dir = home_dir() / "rootfs"
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o755)  # the sandbox's unprivileged uid mounts from here
    target = cache_dir / key
    if target.is_dir():
        return target
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        partial = cache_dir / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o755)
        done = subprocess.run(["tar", "-C", str(partial), "-xf", str(tarball)], capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise ImageNotFound(f"cannot extract rootfs tarball {tarball}: {done.stderr.strip()[-500:]}")
        partial.rename(target)
    return target


def exec_only_shell(rootfs: Path | None) -> Path | None:
    """An execute-only (mode 0111, root-owned) copy of the sandbox's bash, made once per bash binary.

    A process that executes a file it cannot read is made non-dumpable by the kernel, which keeps
    every other process of the same uid from ptracing it or opening its ``/proc`` files. ``None``
    if the image has no bash (sessions then fail to start with a clear error of their own).
    """
    base = Path("/") if rootfs is None else rootfs
    source = None
    for rel in ("usr/bin/bash", "bin/bash"):
        candidate = base / rel
        if candidate.is_file() and not candidate.is_symlink():
            source = candidate
            break
    if source is None:
        return None
    st = source.stat()
    key = hashlib.sha256(f"{source}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()).hexdigest()[:16]
    cache_dir = home_dir() / "shells"
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o755)  # bwrap binds from here as the sandbox's uid: it must reach the file
    target = cache_dir / f"bash-{key}"
    if not target.exists():
        partial = cache_dir / f".bash-{key}.{os.getpid()}.{threading.get_ident()}"
        shutil.copyfile(source, partial)
        os.chmod(partial, 0o111)
        os.replace(partial, target)
    return target


def _secret_stamp(etc: Path) -> tuple[int, ...]:
    """Modification times of the directories that hold secrets: they change when a secret appears or goes."""
    stamp = []
    for sub in ("", "ssh", "security", "ssl"):
        try:
            stamp.append(os.stat(etc / sub).st_mtime_ns)
        except OSError:
            stamp.append(0)
    return tuple(stamp)


@lru_cache(maxsize=64)
def _secrets_in(etc: str, stamp: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Secret files and directories under ``etc`` (relative paths), cached until ``stamp`` changes."""
    files = []
    for pattern in SECRET_FILES:
        for found in sorted(glob.glob(os.path.join(etc, pattern))):
            if os.path.isfile(found) and not os.path.islink(found):
                files.append(os.path.relpath(found, etc))
    dirs = [name for name in SECRET_DIRS if os.path.isdir(os.path.join(etc, name))]
    return tuple(files), tuple(dirs)


def secret_entries(etc: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The secret files and directories under ``etc`` (paths relative to it) that a sandbox must not see."""
    stamp = _secret_stamp(etc)
    # timestamps are coarse (a clock tick): trust the cache only for directories unchanged for a second
    fresh = time.time_ns() - max(stamp) < 1_000_000_000
    return (_secrets_in.__wrapped__ if fresh else _secrets_in)(str(etc), stamp)


def image_roots() -> list[Path]:
    """Directories under which ``image=`` may name a rootfs directory or tarball.

    The images rock-env builds (``<data dir>/images``) and the colon-separated list in
    ``$ROCK_ENV_IMAGE_ROOTS``. A sandbox never gets the host's ``/`` (or any directory of the
    host outside these roots) as its root.
    """
    roots = [images_dir()]
    roots += [Path(p) for p in os.environ.get(IMAGE_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(r)) for r in roots]


def _check_image_path(path: Path, image: str) -> Path:
    """``path`` resolved, if it lies strictly under an image root; a ConfigError naming the setting if not."""
    real = Path(os.path.realpath(path))
    roots = image_roots()
    if real == Path("/") or not any(real != root and real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ConfigError(
            f"image={image!r} is not allowed: a rootfs directory or tarball must lie under an image root "
            f"({allowed}); add its parent directory to ${IMAGE_ROOTS_ENV} (colon-separated), or build one "
            "with 'rock-env image build-base' and give its name"
        )
    return real


def check_reachable(rootfs: Path, uid: int) -> None:
    """The sandbox's uid mounts the rootfs: every directory above it must be searchable by others."""
    if uid == os.geteuid():
        return
    for parent in [rootfs, *rootfs.parents]:
        with contextlib.suppress(OSError):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                raise ImageNotFound(
                    f"rootfs {rootfs} cannot be mounted: {parent} is not searchable by other users (mode "
                    f"{stat.S_IMODE(os.stat(parent).st_mode):o}) and namespace sandboxes mount their root as an "
                    "unprivileged uid; keep images under a directory others can search (e.g. /var/lib/rock-env, "
                    "set $ROCK_ENV_DATA_DIR or $ROCK_ENV_IMAGE_ROOTS)"
                )


def resolve_rootfs(image: str | None) -> Path | None:
    """The rootfs directory for ``config.image`` (``None``: the host's system directories).

    ``image`` is the name of an image rock-env built (``rock-env image build-base``), or a rootfs
    directory or tarball under one of :func:`image_roots`; anything else raises
    :class:`~rock_env.errors.ConfigError` (outside the roots) or :class:`~rock_env.errors.ImageNotFound`.
    """
    if image is None:
        return None
    if not isinstance(image, str) or not image.strip() or "\0" in image:
        raise ConfigError(f"image={image!r} is not an image name or a rootfs path")
    path = Path(image)
    looks_like_path = image.startswith(("/", "./", "../", "~")) or path.exists()
    if looks_like_path:
        path = path.expanduser()
        if not path.exists():
            raise ImageNotFound(f"rootfs {image!r} does not exist; give a rootfs directory or tarball")
        real = _check_image_path(path, image)
        if real.is_dir():
            if not any((real / name).exists() for name in ("usr", "bin")):
                raise ImageNotFound(f"{image!r} is not a rootfs: it has neither usr/ nor bin/")
            return real
        if real.is_file():
            return _extract_rootfs(real)
        raise ImageNotFound(f"rootfs {image!r} is neither a directory nor a tarball")
    return base_rootfs(image)


__all__ = [
    "IMAGE_ROOTS_ENV",
    "SECRET_DIRS",
    "SECRET_FILES",
    "check_reachable",
    "exec_only_shell",
    "image_roots",
    "resolve_rootfs",
    "secret_entries",
]
