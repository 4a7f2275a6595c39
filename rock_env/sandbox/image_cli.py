"""``rock-env image``: build local base images without a registry.

Usage::

    rock-env image build-base [--name NAME] [--suite SUITE] [--packages a,b,c] [--mirror URL]
                              [--rootfs-only | --docker-only] [--force] [--json]
    rock-env image list [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rock_env.sandbox.image import (
    DEFAULT_IMAGE_NAME,
    DEFAULT_PACKAGES,
    DEFAULT_SUITE,
    build_base_image,
    images_dir,
    list_built,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rock-env image", description="Build local base images (no registry).")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser(
        "build-base",
        help="build a Debian base image with debootstrap (cached)",
        description="Build a Debian minbase rootfs with debootstrap from the mirror apt uses here, import it "
        "into Docker and keep it as a rootfs for the namespace runtime. A second call is instant (cached).",
    )
    build.add_argument("--name", default=DEFAULT_IMAGE_NAME, help=f"Docker tag (default {DEFAULT_IMAGE_NAME})")
    build.add_argument("--suite", default=DEFAULT_SUITE, help=f"Debian codename (default {DEFAULT_SUITE})")
    build.add_argument(
        "--packages",
        default=",".join(DEFAULT_PACKAGES),
        help=f"comma-separated packages to include (default {','.join(DEFAULT_PACKAGES)})",
    )
    build.add_argument("--extra-packages", default="", help="comma-separated packages added to --packages")
    build.add_argument("--mirror", default=None, help="Debian mirror URL (default: the one apt uses on this machine)")
    only = build.add_mutually_exclusive_group()
    only.add_argument("--rootfs-only", action="store_true", help="keep a rootfs directory + tarball, skip Docker")
    only.add_argument("--docker-only", action="store_true", help="import into Docker, keep no rootfs on disk")
    build.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    build.add_argument("--json", action="store_true", help="print the result as JSON")

    lst = sub.add_parser("list", help="list cached rootfs builds")
    lst.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def main(argv: Sequence[str]) -> int:
    """Run ``rock-env image ARGS``; returns the exit status."""
    args = _parser().parse_args(list(argv))
    if args.command == "build-base":
        packages = _split(args.packages) + _split(args.extra_packages)
        result = build_base_image(
            args.name,
            suite=args.suite,
            packages=packages,
            mirror=args.mirror,
            docker=not args.rootfs_only,
            rootfs=not args.docker_only,
            force=args.force,
        )
        if args.json:
            print(result.model_dump_json(indent=2))
            return 0
        state = "cached" if result.cached else "built"
        print(f"{state} {result.name} (key {result.key}) in {result.seconds:.1f}s")
        if result.docker_image_id:
            print(f"  docker image: {result.name} {result.docker_image_id[:19]}")
        if result.rootfs_dir:
            print(f"  rootfs:       {result.rootfs_dir}")
            print(f"  tarball:      {result.rootfs_tar}")
        return 0
    if args.command == "list":
        builds = list_built()
        if args.json:
            print(json.dumps(builds, indent=2))
            return 0
        if not builds:
            print(f"no cached builds under {images_dir()}; run 'rock-env image build-base'")
            return 0
        for b in builds:
            print(f"{b.get('name', '?'):<30} {b.get('key', '?'):<28} {','.join(b.get('spec', {}).get('packages', []))}")
        return 0
    print(f"unknown command {args.command!r}", file=sys.stderr)  # pragma: no cover - argparse rejects it first
    return 2
