"""Base images without a registry: a Debian rootfs built with debootstrap, kept on disk and/or imported into Docker.

Split by job: :mod:`.build` (:func:`build_base_image`: the spec, debootstrap, the cache),
:mod:`.mirror` (the Debian mirror apt uses here), :mod:`.importer` (``docker import`` and image
labels) and :mod:`.store` (the data directory's layout, and resolving a name to its rootfs).
"""

from __future__ import annotations

from rock_env.sandbox.image.build import DEFAULT_PACKAGES, BaseImageSpec, BuiltImage, build_base_image
from rock_env.sandbox.image.importer import (
    BUILDER_VERSION,
    LABEL_BUILDER,
    LABEL_KEY,
    LABEL_PACKAGES,
    LABEL_SUITE,
    docker_image_labels,
)
from rock_env.sandbox.image.mirror import default_mirror
from rock_env.sandbox.image.store import (
    DEFAULT_IMAGE_NAME,
    DEFAULT_SUITE,
    SYSTEM_DATA_DIR,
    base_rootfs,
    data_dir,
    images_dir,
    list_built,
)

__all__ = [
    "BUILDER_VERSION",
    "DEFAULT_IMAGE_NAME",
    "DEFAULT_PACKAGES",
    "DEFAULT_SUITE",
    "LABEL_BUILDER",
    "LABEL_KEY",
    "LABEL_PACKAGES",
    "LABEL_SUITE",
    "SYSTEM_DATA_DIR",
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
