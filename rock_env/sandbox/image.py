"""Base images without a registry: a Debian rootfs built with debootstrap.

``build_base_image()`` runs ``debootstrap --variant=minbase`` against the Debian mirror that apt
uses on this machine (read from ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/``), then

- keeps the result as a rootfs directory and a tarball under the library's data directory
  (for the namespace runtime), and/or
- imports it into Docker as a tar stream (``docker import``), tagged e.g. ``rock-env/base:bookworm``
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

from rock_env.errors import ConfigError, ImageBuildError, ImageNotFound, RuntimeUnavailable

logger = logging.getLogger(__name__)

#: Bump when the build recipe changes so that cached images are rebuilt.
BUILDER_VERSION = 1
DEFAULT_SUITE = "bookworm"
DEFAULT_PACKAGES: tuple[str, ...] = ("python3", "bash", "coreutils", "git", "procps")
DEFAULT_IMAGE_NAME = f"rock-env/base:{DEFAULT_SUITE}"
#: Label keys put on imported Docker images.
LABEL_KEY = "rock_env.image.key"
LABEL_BUILDER = "rock_env.image.builder_version"
LABEL_PACKAGES = "rock_env.image.packages"
LABEL_SUITE = "rock_env.image.suite"

_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9\-]*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._\-/]*(:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?$")
_SOURCES_LIST = Path("/etc/apt/sources.list")
_SOURCES_DIR = Path("/etc/apt/sources.list.d")


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
            "builder": BUILDER_VERSION,
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


# --- mirror discovery --------------------------------------------------------------------


def _dpkg_arch() -> str:
    try:
        out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or "amd64"
    except (OSError, subprocess.SubprocessError):
        machine = platform.machine()
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


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


# --- the build ---------------------------------------------------------------------------


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
    prefix = str(root.resolve())
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


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


def _docker_client() -> Any:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeUnavailable(
            f"the Docker daemon does not answer ({exc}); start it (e.g. 'bash scripts/ensure-docker.sh' as root) "
            "or build a rootfs only with 'rock-env image build-base --rootfs-only'"
        ) from exc
    return client


def docker_image_labels(client: Any, name: str) -> dict[str, str] | None:
    """Labels of the Docker image ``name``, or None when Docker has no such image."""
    import docker.errors

    try:
        info = client.api.inspect_image(name)
    except docker.errors.ImageNotFound:
        return None
    return dict((info.get("Config") or {}).get("Labels") or {})


def _docker_import(client: Any, name: str, spec: BaseImageSpec, key: str, src: Path | subprocess.Popen[bytes]) -> str:
    repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    labels = {
        LABEL_KEY: key,
        LABEL_BUILDER: str(BUILDER_VERSION),
        LABEL_PACKAGES: ",".join(sorted(set(spec.packages))),
        LABEL_SUITE: spec.suite,
    }
    changes = [f"LABEL {k}={json.dumps(v)}" for k, v in labels.items()]
    changes += [
        'ENV PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
        'ENV LANG="C.UTF-8"',
        "WORKDIR /workspace",
        'CMD ["/bin/bash"]',
    ]
    if isinstance(src, Path):
        # A path is streamed from disk by requests (with a Content-Length), never read whole.
        client.api.import_image(src=str(src), repository=repo, tag=tag, changes=changes)
    else:
        assert src.stdout is not None
        # A generator body is sent with chunked transfer encoding: a tar stream straight from tar.
        client.api.import_image(src=_chunks(src.stdout), repository=repo, tag=tag, changes=changes)
    image_id: str = client.api.inspect_image(name)["Id"]
    logger.info("imported %s into Docker as %s (%s)", key, name, image_id[:19])
    return image_id


def _chunks(stream: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


def _link_name(root: Path, name: str, key: str) -> None:
    by_name = root / "by-name"
    by_name.mkdir(parents=True, exist_ok=True)
    link = by_name / _safe_name(name)
    tmp = by_name / f".{_safe_name(name)}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(Path("..") / key)
    tmp.replace(link)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._\-]", "_", name)


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
    client = _docker_client() if docker else None

    def finish(mirror_used: str | None, image_id: str | None, *, cached: bool) -> BuiltImage:
        """Link the name to the rootfs (if kept) and describe the build."""
        if rootfs:
            _link_name(base, name, key)
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
            labels = docker_image_labels(client, name)
            if labels is not None and labels.get(LABEL_KEY) == key:
                image_id = client.api.inspect_image(name)["Id"]
        need_docker = client is not None and image_id is None
        need_rootfs = rootfs and not have_rootfs
        if not need_docker and not need_rootfs:
            return finish(manifest.get("mirror"), image_id, cached=True)

        used_mirror: str | None = manifest.get("mirror")
        if need_docker and have_rootfs and not need_rootfs:
            # The rootfs is cached: importing the tarball takes seconds.
            image_id = _docker_import(client, name, spec, key, entry / "rootfs.tar")
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
                        "builder_version": BUILDER_VERSION,
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
                        image_id = _docker_import(client, name, spec, key, entry / "rootfs.tar")
                else:
                    proc = subprocess.Popen(_tar_command(target, "-"), stdout=subprocess.PIPE)
                    try:
                        image_id = _docker_import(client, name, spec, key, proc)
                    finally:
                        proc.wait()
            finally:
                if work.exists():
                    _unmount_below(work)
                    shutil.rmtree(work, ignore_errors=True)
        return finish(used_mirror, image_id, cached=False)


def base_rootfs(name: str = DEFAULT_IMAGE_NAME, *, root: Path | None = None) -> Path:
    """The rootfs directory built for ``name`` (for the namespace runtime).

    Raises :class:`ImageNotFound` with the command to build it when there is none.
    """
    link = images_dir(root) / "by-name" / _safe_name(name)
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
    "BUILDER_VERSION",
    "DEFAULT_IMAGE_NAME",
    "DEFAULT_PACKAGES",
    "DEFAULT_SUITE",
    "BaseImageSpec",
    "BuiltImage",
    "base_rootfs",
    "build_base_image",
    "data_dir",
    "default_mirror",
    "docker_image_labels",
    "images_dir",
    "list_built",
]
