"""Building base images without a registry: a Debian rootfs made with debootstrap.

``build_base_image()`` runs ``debootstrap --variant=minbase`` against the Debian mirror that apt
uses on this machine (:mod:`.mirror`), then

- keeps the result as a rootfs directory and a tarball under the library's data directory
  (:mod:`.store`; for the namespace runtime), and/or
- imports it into Docker as a tar stream (:mod:`.importer`), tagged e.g. ``rock-env/base:bookworm``
  and labelled with the cache key, the builder version and the package list.

Builds are cached: the key is a hash of the builder version, the suite, the variant, the
architecture and the package list. A second call with the same inputs returns at once. A file
lock serialises concurrent builds of the same key (e.g. several pytest-xdist workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rock_env.errors import ConfigError, ImageBuildError, RuntimeUnavailable
from rock_env.sandbox import mounts
from rock_env.sandbox.image import importer
from rock_env.sandbox.image.mirror import default_mirror
from rock_env.sandbox.image.store import DEFAULT_IMAGE_NAME, DEFAULT_SUITE, images_dir, link_name

logger = logging.getLogger(__name__)

DEFAULT_PACKAGES: tuple[str, ...] = ("python3", "bash", "coreutils", "git", "procps")

_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9\-]*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._\-/]*(:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?$")


class BaseImageSpec(BaseModel):
    """What to build: a Debian suite, a debootstrap variant and the packages to include."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str = DEFAULT_SUITE
    variant: str = "minbase"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    arch: str = Field(default_factory=lambda: _dpkg_arch())

    def key(self) -> str:
        """The cache key: a short hash of the builder version and every input that changes the result."""
        payload = {
            "builder": importer.BUILDER_VERSION,
            "suite": self.suite,
            "variant": self.variant,
            "arch": self.arch,
            "packages": sorted(set(self.packages)),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.suite}-{digest[:16]}"


class BuiltImage(BaseModel):
    """The result of :func:`build_base_image`."""

    key: str = Field(description="cache key (suite + hash of the build inputs)")
    name: str = Field(description="the Docker tag / name the image is known by")
    suite: str
    packages: tuple[str, ...]
    mirror: str | None = Field(default=None, description="Debian mirror used for the build")
    docker_image_id: str | None = Field(default=None, description="Docker image id when imported into Docker")
    rootfs_dir: Path | None = Field(default=None, description="rootfs directory for the namespace runtime")
    rootfs_tar: Path | None = Field(default=None, description="rootfs tarball (numeric owners, no device nodes)")
    cached: bool = Field(default=False, description="True when nothing had to be built or imported")
    seconds: float = Field(default=0.0, description="wall time of the call")


def _dpkg_arch() -> str:
    try:
        out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or "amd64"
    except (OSError, subprocess.SubprocessError):
        machine = platform.machine()
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _validate(name: str, spec: BaseImageSpec) -> None:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"image name {name!r} is not a valid Docker reference; use lowercase 'repo/name:tag', "
            f"e.g. {DEFAULT_IMAGE_NAME!r}"
        )
    if not _SUITE_RE.match(spec.suite):
        raise ConfigError(f"Debian suite {spec.suite!r} is malformed; use a codename such as 'bookworm'")
    if spec.variant not in {"minbase", "buildd", "fakechroot", "-"}:
        raise ConfigError(f"debootstrap variant {spec.variant!r} is unknown; use 'minbase' (default) or 'buildd'")
    bad = [p for p in spec.packages if not _PACKAGE_RE.match(p)]
    if bad:
        raise ConfigError(f"malformed Debian package names {bad}; use names such as 'python3' or 'git'")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _unmount_below(root: Path) -> None:
    """Lazily unmount anything a failed debootstrap left mounted below ``root`` (proc, sys, ...)."""
    mounts.unmount_below(root.resolve())


def _run_debootstrap(spec: BaseImageSpec, target: Path, mirror: str, log_path: Path) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise RuntimeUnavailable(
            "debootstrap is not installed; install it with 'apt-get install -y debootstrap' and run again"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building a base image with debootstrap needs root; run 'sudo rock-env image build-base' "
            "(or use an existing image with SandboxConfig(image=...))"
        )
    cmd = [
        debootstrap,
        f"--variant={spec.variant}",
        f"--arch={spec.arch}",
        f"--include={','.join(sorted(set(spec.packages)))}",
        spec.suite,
        str(target),
        mirror,
    ]
    logger.info("building base rootfs: %s (log: %s)", " ".join(cmd), log_path)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    finally:
        _unmount_below(target)
    if proc.returncode != 0:
        tail = _tail(log_path, target)
        raise ImageBuildError(
            f"debootstrap failed (exit {proc.returncode}) for suite {spec.suite!r} from mirror {mirror!r}. "
            f"Check that the mirror is reachable and serves that suite, or pass another one with --mirror / "
            f"ROCK_ENV_DEBIAN_MIRROR. Full log: {log_path}. Last lines:\n{tail}"
        )


def _tail(log_path: Path, target: Path, lines: int = 15) -> str:
    text = ""
    with contextlib.suppress(OSError):
        text = log_path.read_text(errors="replace")
    inner = target / "debootstrap" / "debootstrap.log"
    with contextlib.suppress(OSError):
        text += inner.read_text(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def _finish_rootfs(root: Path) -> None:
    """Make the rootfs small and ready for sandboxes: no apt caches, a /workspace, an empty /dev."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file() or entry.is_symlink():
                    entry.unlink()
    for bin_cache in (root / "var/cache/apt").glob("*.bin"):
        bin_cache.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    # Device nodes need mknod to unpack; runtimes provide their own /dev.
    dev = root / "dev"
    if dev.is_dir():
        for entry in dev.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
    (root / "workspace").mkdir(mode=0o755, exist_ok=True)
    (root / "etc/hostname").write_text("sandbox\n")


def _tar_command(root: Path, output: str) -> list[str]:
    return ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", output, "."]


def build_base_image(
    name: str = DEFAULT_IMAGE_NAME,
    *,
    suite: str = DEFAULT_SUITE,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    variant: str = "minbase",
    mirror: str | None = None,
    docker: bool = True,
    rootfs: bool = True,
    force: bool = False,
    root: Path | None = None,
) -> BuiltImage:
    """Build (or find in the cache) a Debian base image and return where it is.

    Args:
        name: Docker tag of the image (also the name the rootfs is found by, see :func:`base_rootfs`).
        suite: Debian codename to bootstrap.
        packages: packages to include on top of ``variant``.
        variant: debootstrap variant (``minbase`` is the smallest).
        mirror: Debian mirror URL; default: the one apt uses on this machine (:func:`default_mirror`).
        docker: import the rootfs into Docker as ``name``.
        rootfs: keep the rootfs directory and tarball under ``<data dir>/images/<key>/``.
        force: rebuild even when a cached build exists.
        root: data directory (default :func:`data_dir`).

    Raises:
        ConfigError: malformed name, suite or package names, or neither ``docker`` nor ``rootfs``.
        RuntimeUnavailable: debootstrap is missing, or Docker is requested and its daemon does not answer.
        ImageBuildError: no mirror found, debootstrap failed (bad mirror, unknown package), not root.
    """
    started = time.monotonic()
    spec = BaseImageSpec(suite=suite, variant=variant, packages=tuple(packages))
    _validate(name, spec)
    if not (docker or rootfs):
        raise ConfigError(
            "nothing to build: pass docker=True and/or rootfs=True (not --rootfs-only with --docker-only)"
        )
    key = spec.key()
    base = images_dir(root)
    entry = base / key
    client = importer.docker_client() if docker else None

    def finish(mirror_used: str | None, image_id: str | None, *, cached: bool) -> BuiltImage:
        """Link the name to the rootfs (if kept) and describe the build."""
        if rootfs:
            link_name(base, name, key)
        return BuiltImage(
            key=key,
            name=name,
            suite=spec.suite,
            packages=spec.packages,
            mirror=mirror_used,
            docker_image_id=image_id,
            rootfs_dir=entry / "rootfs" if rootfs else None,
            rootfs_tar=entry / "rootfs.tar" if rootfs else None,
            cached=cached,
            seconds=time.monotonic() - started,
        )

    with _locked(base / f"{key}.lock"):
        manifest_path = entry / "manifest.json"
        manifest: dict[str, Any] = {}
        if manifest_path.is_file() and not force:
            with contextlib.suppress(OSError, ValueError):
                manifest = json.loads(manifest_path.read_text())
        have_rootfs = bool(manifest) and (entry / "rootfs").is_dir() and (entry / "rootfs.tar").is_file()
        image_id: str | None = None
        if client is not None and not force:
            labels = importer.docker_image_labels(client, name)
            if labels is not None and labels.get(importer.LABEL_KEY) == key:
                image_id = client.api.inspect_image(name)["Id"]
        need_docker = client is not None and image_id is None
        need_rootfs = rootfs and not have_rootfs
        if not need_docker and not need_rootfs:
            return finish(manifest.get("mirror"), image_id, cached=True)

        used_mirror: str | None = manifest.get("mirror")
        if need_docker and have_rootfs and not need_rootfs:
            # The rootfs is cached: importing the tarball takes seconds.
            image_id = importer.docker_import(client, name, spec, key, entry / "rootfs.tar")
        else:
            used_mirror = mirror or default_mirror(spec.suite)
            base.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=base))
            work.chmod(0o755)
            try:
                target = work / "rootfs"
                target.mkdir()
                _run_debootstrap(spec, target, used_mirror, work / "debootstrap.log")
                _finish_rootfs(target)
                if rootfs:
                    subprocess.run(_tar_command(target, str(work / "rootfs.tar")), check=True, capture_output=True)
                    new_manifest = {
                        "key": key,
                        "name": name,
                        "builder_version": importer.BUILDER_VERSION,
                        "spec": spec.model_dump(mode="json"),
                        "mirror": used_mirror,
                        "created": time.time(),
                    }
                    (work / "manifest.json").write_text(json.dumps(new_manifest, indent=2))
                    (work / "debootstrap.log").unlink(missing_ok=True)
                    if entry.exists():
                        shutil.rmtree(entry)
                    work.rename(entry)
                    # The rootfs is kept even if the import fails: a retry only imports.
                    if client is not None:
                        image_id = importer.docker_import(client, name, spec, key, entry / "rootfs.tar")
                else:
                    proc = subprocess.Popen(_tar_command(target, "-"), stdout=subprocess.PIPE)
                    try:
                        image_id = importer.docker_import(client, name, spec, key, proc)
                    finally:
                        proc.wait()
            finally:
                if work.exists():
                    _unmount_below(work)
                    shutil.rmtree(work, ignore_errors=True)
        return finish(used_mirror, image_id, cached=False)


__all__ = ["DEFAULT_PACKAGES", "BaseImageSpec", "BuiltImage", "build_base_image"]
