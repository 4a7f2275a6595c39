"""Base images in Docker: the client, an image's labels, and importing a rootfs as a tar stream (``docker import``)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any, Protocol

from rock_env.errors import RuntimeUnavailable
from rock_env.sandbox.files import chunks

logger = logging.getLogger(__name__)

#: Bump when the build recipe changes so that cached images are rebuilt.
BUILDER_VERSION = 1
#: Label keys put on imported Docker images.
LABEL_KEY = "rock_env.image.key"
LABEL_BUILDER = "rock_env.image.builder_version"
LABEL_PACKAGES = "rock_env.image.packages"
LABEL_SUITE = "rock_env.image.suite"


def docker_client() -> Any:
    """A Docker client that answers (RuntimeUnavailable with what to do if the daemon does not)."""
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


class ImageInputs(Protocol):
    """What an imported image's labels record of its build (a :class:`~rock_env.sandbox.image.build.BaseImageSpec`)."""

    @property
    def suite(self) -> str: ...

    @property
    def packages(self) -> tuple[str, ...]: ...


def docker_import(client: Any, name: str, spec: ImageInputs, key: str, src: Path | subprocess.Popen[bytes]) -> str:
    """Import the rootfs tarball ``src`` (a file, or a running tar's stdout) into Docker as ``name``; its image id."""
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
        client.api.import_image(src=chunks(src.stdout, 1 << 20), repository=repo, tag=tag, changes=changes)
    image_id: str = client.api.inspect_image(name)["Id"]
    logger.info("imported %s into Docker as %s (%s)", key, name, image_id[:19])
    return image_id


__all__ = [
    "BUILDER_VERSION",
    "LABEL_BUILDER",
    "LABEL_KEY",
    "LABEL_PACKAGES",
    "LABEL_SUITE",
    "docker_client",
    "docker_image_labels",
    "docker_import",
]
