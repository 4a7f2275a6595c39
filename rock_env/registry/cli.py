"""``rock-env envs``: list and show registered envs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rock_env.registry import list_envs, registry, spec
from rock_env.registry.spec import SOURCES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rock-env envs``."""
    parser = argparse.ArgumentParser(prog="rock-env envs", description="List and show registered envs.")
    sub = parser.add_subparsers(dest="action", required=True)
    list_parser = sub.add_parser("list", help="list env ids")
    list_parser.add_argument("--namespace", "-n", help="only this namespace (e.g. game)")
    list_parser.add_argument("--source", choices=SOURCES, help="only envs from this source")
    list_parser.add_argument("--json", action="store_true", help="print the specs as JSON lines")
    show_parser = sub.add_parser("show", help="show one env's spec")
    show_parser.add_argument("env_id")
    show_parser.add_argument("--json", action="store_true", help="print the spec as JSON")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``rock-env envs ...``."""
    args = build_parser().parse_args(list(argv))
    out = sys.stdout
    if args.action == "list":
        specs = list_envs(namespace=args.namespace, source=args.source)
        for env_spec in specs:
            if args.json:
                out.write(json.dumps(env_spec.to_dict(), default=repr) + "\n")
            else:
                out.write(f"{env_spec.id:<45} {env_spec.source:<8} {env_spec.description}\n")
        failures = registry.plugins.error_summary()
        if failures:
            sys.stderr.write(f"warning: {failures}\n")
        if not specs:
            sys.stderr.write("no envs match; try without --namespace/--source\n")
            return 1
        return 0
    env_spec = spec(args.env_id)
    out.write((json.dumps(env_spec.to_dict(), default=repr, indent=2) if args.json else env_spec.pretty()) + "\n")
    return 0
