"""ROCK image names on a host without a registry: use the local image, else the server's image map.

ROCK's clients ask for registry images (``python:3.11``, ``ubuntu:22.04``). Nothing is pulled
here: an image the runtime has locally (a Docker image in the daemon, a rootfs built by
``rock-env image build-base`` for the namespace runtime) is used as it is; any other name goes
through ``server.rock_image_map`` (glob patterns -> local image names, by default Python 3 and the
common Debian/Ubuntu tags -> the base image); an image neither present nor mapped is refused
with :class:`~rock_env.errors.ImageNotFound` naming the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from rock_env.errors import ImageNotFound, RockEnvError
from rock_env.server.policy import looks_like_path

#: The setting that holds the map (``rock-env admin start '+server.rock_image_map={...}'``).
IMAGE_MAP_SETTING = "server.rock_image_map"


def image_present(image: str, runtime: str) -> bool:
    """Whether ``runtime`` has ``image`` on this host (blocking: asks the Docker daemon)."""
    if runtime == "docker":
        from rock_env.sandbox.runtimes.docker.engine import docker_api, is_not_found

        try:
            docker_api().inspect_image(image)
        except RockEnvError:
            raise
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True
    if runtime == "namespace":
        from rock_env.sandbox.image.store import base_rootfs

        try:
            base_rootfs(image)
        except ImageNotFound:
            return False
        return True
    return True  # the local runtime runs on the host and ignores the image


def mapped_image(image: str, image_map: Mapping[str, str]) -> str | None:
    """The local image ``image`` maps to (exact names first, then the first matching pattern)."""
    if image in image_map:
        return image_map[image]
    for pattern, target in image_map.items():
        if fnmatchcase(image, pattern):
            return target
    return None


def resolve_image(image: str, runtime: str, image_map: Mapping[str, str]) -> str:
    """The image to start for ROCK's ``image`` on ``runtime`` (see the module docstring). Blocking."""
    if looks_like_path(image):
        return image  # a rootfs path: the server's policy decides (host paths only under worker.data_dirs)
    if image_present(image, runtime):
        return image
    target = mapped_image(image, image_map)
    if target is not None:
        return target
    shown = "maps only " + ", ".join(f"{k!r}" for k in list(image_map)[:12]) if image_map else "is empty"
    raise ImageNotFound(
        f"image {image!r} is not on this host for runtime {runtime!r}, and there is no registry to pull it from; "
        f"the server's image map ({IMAGE_MAP_SETTING}) {shown}. Ask for a mapped or local image, "
        f"or have the admin map it, e.g. rock-env admin start '+{IMAGE_MAP_SETTING}=[\"{image}=rock-env/base:bookworm\"]' "
        "(the list replaces the default map; or load the image into Docker / build it with 'rock-env image build-base')."
    )


__all__ = ["IMAGE_MAP_SETTING", "image_present", "mapped_image", "resolve_image"]
